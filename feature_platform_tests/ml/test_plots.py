"""plots: valid PNGs of the promised size, byte-for-byte deterministic, and clear errors on bad input."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import pytest
from matplotlib.image import imread

from feature_platform.ml.plots import calibration_png, importance_png, markdown_image, roc_pr_png

Y = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0])
GOOD = np.array([0.1, 0.2, 0.8, 0.7, 0.3, 0.9, 0.4, 0.6, 0.55, 0.05])
POOR = np.array([0.5, 0.6, 0.4, 0.7, 0.2, 0.3, 0.8, 0.1, 0.45, 0.9])
CURVES = {"gbm": (Y, GOOD), "logreg": (Y, POOR)}
IMPORTANCE = [("total_events", 0.5), ("engagement_score", 0.3), ("premium", 0.2)]


# Each case renders once (cached) for the size checks; the determinism test renders it again.
CASES: dict[str, Callable[[], bytes]] = {
    "roc_pr": lambda: roc_pr_png(CURVES, "churn"),
    "roc_pr_one_model": lambda: roc_pr_png({"gbm": (Y, GOOD)}, "churn"),
    "calibration": lambda: calibration_png(CURVES, "churn"),
    "calibration_4_bins": lambda: calibration_png(CURVES, "churn", bins=4),
    "importance_3": lambda: importance_png(IMPORTANCE, "churn"),
    "importance_20": lambda: importance_png([(f"f{i}", float(i)) for i in range(20)], "churn"),
}


@cache
def rendered(case: str) -> bytes:
    return CASES[case]()


def pixels(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return imread(io.BytesIO(png), format="png")


@pytest.mark.parametrize(
    ("case", "shape"),
    [
        ("roc_pr", (450, 1000)),
        ("roc_pr_one_model", (450, 1000)),
        ("calibration", (700, 600)),
        ("calibration_4_bins", (700, 600)),
        ("importance_3", (250, 800)),  # the 2.5 in floor at 100 dpi
        ("importance_20", (660, 800)),  # 1 in + 20 * 0.28 in
    ],
)
def test_renders_valid_png_of_fixed_size(case: str, shape: tuple[int, int]) -> None:
    png = rendered(case)
    image = pixels(png)
    assert image.shape[:2] == shape
    assert image[..., :3].std() > 0  # something was drawn, not a blank canvas
    assert len(png) < 150_000


@pytest.mark.parametrize(
    ("case", "changed"),
    [
        ("roc_pr", lambda: roc_pr_png(CURVES, "contact")),
        ("roc_pr_one_model", lambda: roc_pr_png({"gbm": (Y, POOR)}, "churn")),
        ("calibration", lambda: calibration_png(CURVES, "churn", bins=5)),
        ("calibration_4_bins", lambda: calibration_png({"gbm": (Y, POOR)}, "churn", bins=4)),
        ("importance_3", lambda: importance_png(IMPORTANCE[:2], "churn")),
        ("importance_20", lambda: importance_png([(f"f{i}", float(i)) for i in range(19)] + [("f19", 20.0)], "churn")),
    ],
)
def test_same_inputs_same_bytes_and_different_inputs_different_bytes(case: str, changed: Callable[[], bytes]) -> None:
    assert CASES[case]() == rendered(case)
    assert changed() != rendered(case)


def test_importance_is_sorted_so_input_order_does_not_matter() -> None:
    assert importance_png(IMPORTANCE[::-1], "churn") == rendered("importance_3")


def test_rendering_in_threads_matches_rendering_in_sequence() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: CASES[case](), ["roc_pr", "calibration", "roc_pr", "calibration"]))
    assert results == [rendered("roc_pr"), rendered("calibration")] * 2


def test_markdown_image_round_trips() -> None:
    png = rendered("importance_3")
    md = markdown_image(png, "churn importance")
    match = re.fullmatch(r"!\[churn importance\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert match is not None
    assert base64.b64decode(match.group(1)) == png


def test_markdown_image_escapes_brackets_and_newlines_in_alt() -> None:
    md = markdown_image(rendered("importance_3"), "top [20]\nfeatures")
    assert md.startswith(r"![top \[20\] features](data:image/png;base64,")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: roc_pr_png({}, "t"), "curves is empty"),
        (lambda: calibration_png({}, "t"), "curves is empty"),
        (lambda: roc_pr_png({"gbm": (Y, GOOD), "stump": (np.zeros(10), GOOD)}, "t"), "'stump'.*one class only"),
        (lambda: calibration_png({"stump": (np.ones(10), GOOD)}, "t"), "'stump'.*one class only"),
        (lambda: roc_pr_png({"gbm": (Y, GOOD[:-1])}, "t"), "'gbm'.*10 rows but y_score has 9"),
        (lambda: calibration_png({"gbm": (Y[:3], GOOD)}, "t"), "'gbm'.*3 rows but y_score has 10"),
        (lambda: roc_pr_png({"gbm": (np.array([]), np.array([]))}, "t"), "'gbm'.*empty"),
        (lambda: roc_pr_png({"gbm": (Y * 2, GOOD)}, "t"), "'gbm'.*binary labels 0/1"),
        (lambda: roc_pr_png({"gbm": (Y, np.where(Y, np.nan, 0.5))}, "t"), "'gbm'.*NaN"),
        (lambda: calibration_png({"gbm": (Y, GOOD * 2)}, "t"), r"'gbm'.*probabilities in \[0, 1\]"),
        (lambda: calibration_png(CURVES, "t", bins=0), "bins must be a positive integer"),
        (lambda: importance_png([], "t"), "importance is empty"),
        (lambda: importance_png([("premium", float("nan"))], "t"), "premium is not a finite number"),
        (lambda: markdown_image(b"GIF89a", "alt"), "expects PNG bytes"),
    ],
)
def test_bad_input_raises_clear_value_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
