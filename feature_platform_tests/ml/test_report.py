"""evaluation and report: metrics of a hand-checkable case, the promotion rule, the metrics table, the model
card and its plots."""

from __future__ import annotations

import json
import math
from itertools import product
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_platform.ml.evaluation import (
    DEFAULT_AUC_FLOOR,
    TOP_FEATURES,
    Evaluation,
    evaluate,
    promotion_decision,
    require_both_classes,
)
from feature_platform.ml.report import OOT, importance_markdown, metrics_markdown, model_card, model_plots

Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.4, 0.35, 0.8])
COLUMNS = ["engagement_score", "premium", "total_events"]
IMPORTANCE = np.array([0.2, 0.5, 0.3])
PNG = b"\x89PNG\r\n\x1a\n"


def tiny(p: np.ndarray = P, ranking: dict[str, float] | None = None, n_train: int = 12) -> Evaluation:
    ev = evaluate(Y, p, COLUMNS, IMPORTANCE, {"max_depth": 3}, n_train)
    ev.ranking = dict(ranking or {})
    return ev


# ----------------------------------------------------------------------------------------------------- evaluate


def test_evaluate_by_hand() -> None:
    ev = evaluate(Y, P, COLUMNS, IMPORTANCE, {"max_depth": 3}, 12)
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 0.35 > 0.1, 0.35 < 0.4, 0.8 > both -> 3 of 4 pairs
    assert ev.roc_auc == 0.75
    # ranked 0.8 (1), 0.4 (0), 0.35 (1), 0.1 (0): precision 1 at recall 1/2, 2/3 at recall 1 -> (1 + 2/3) / 2
    assert ev.pr_auc == pytest.approx(5 / 6)
    # (0.1² + 0.4² + 0.65² + 0.2²) / 4 = (0.01 + 0.16 + 0.4225 + 0.04) / 4
    assert ev.brier == pytest.approx(0.6325 / 4)
    assert ev.log_loss == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)
    # at the 0.5 threshold only 0.8 is positive: class 0 precision 2/3 recall 1, class 1 precision 1 recall 1/2
    report = ev.classification_report
    assert report["accuracy"] == 0.75
    assert report["0"]["precision"] == pytest.approx(2 / 3) and report["0"]["recall"] == 1.0
    assert report["1"]["precision"] == 1.0 and report["1"]["recall"] == 0.5
    # 10 bins: 0.1 falls in bin 0, 0.35 and 0.4 in bin 3, 0.8 in bin 7; the empty bins are left out
    assert ev.calibration["prob_true"] == [0.0, 0.5, 1.0]
    assert ev.calibration["prob_pred"] == pytest.approx([0.1, 0.375, 0.8])
    assert ev.importance == [("premium", 0.5), ("total_events", 0.3), ("engagement_score", 0.2)]
    assert (ev.n_train, ev.n_test, ev.best_params, ev.ranking) == (12, 4, {"max_depth": 3}, {})
    np.testing.assert_array_equal(ev.y_true, Y)
    np.testing.assert_array_equal(ev.y_score, P)


def test_evaluate_clips_scores_and_copies_params() -> None:
    params = {"max_depth": 3}
    ev = evaluate(Y, np.array([-0.5, 0.2, 0.9, 1.5]), COLUMNS, IMPORTANCE, params, 1)
    np.testing.assert_array_equal(ev.y_score, [0.0, 0.2, 0.9, 1.0])
    params["max_depth"] = 5
    assert ev.best_params == {"max_depth": 3}


def test_importance_largest_first_ties_by_name_capped() -> None:
    columns = [f"f{i:02d}" for i in range(TOP_FEATURES + 5)]
    importance = np.array([float(i // 2) for i in range(len(columns))])  # pairs of equal values
    ev = evaluate(Y, P, columns, importance, {}, 1)
    assert len(ev.importance) == TOP_FEATURES == 20
    assert ev.importance[:3] == [("f24", 12.0), ("f22", 11.0), ("f23", 11.0)]  # 11.0 twice: f22 before f23
    values = [v for _, v in ev.importance]
    assert values == sorted(values, reverse=True)
    # 20 kept: f24, the nine pairs valued 11 .. 3 (18 columns), then f04 of the pair valued 2 (f04 before f05)
    assert ev.importance[-1] == ("f04", 2.0)


def test_metrics_leave_out_labels_and_scores_and_are_json_ready() -> None:
    ev = tiny(ranking={"ndcg@5": 0.5, "precision@5": 0.25, "users_ranked": 3})
    metrics = ev.metrics()
    assert set(metrics) == {"roc_auc", "pr_auc", "log_loss", "brier", "classification_report", "importance",
                            "calibration", "best_params", "n_train", "n_test", "ranking"}
    back = json.loads(json.dumps(metrics))  # plain json.dumps: every value is a Python number, str, list or dict
    assert back["roc_auc"] == 0.75 and back["n_test"] == 4
    assert back["importance"][0] == ["premium", 0.5]
    assert back["ranking"] == {"ndcg@5": 0.5, "precision@5": 0.25, "users_ranked": 3}


def test_metrics_with_numpy_params_need_a_default() -> None:
    # a grid search can hand back numpy numbers; json.dumps then needs default=float (what the caller passes)
    metrics = evaluate(Y, P, COLUMNS, IMPORTANCE, {"max_depth": np.int64(3)}, 1).metrics()
    with pytest.raises(TypeError):
        json.dumps(metrics)
    assert json.loads(json.dumps(metrics, default=float))["best_params"] == {"max_depth": 3.0}


def brute_force_auc(y: list[int], p: list[float]) -> float:
    """The share of (positive, negative) pairs ordered correctly, a tie counting one half."""
    pairs = [(a, b) for a, b in product(range(len(y)), repeat=2) if y[a] == 1 and y[b] == 0]
    return sum(1.0 if p[a] > p[b] else 0.5 if p[a] == p[b] else 0.0 for a, b in pairs) / len(pairs)


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 20)), min_size=2, max_size=25)
       .filter(lambda rows: len({y for y, _ in rows}) == 2))
def test_evaluate_matches_brute_force(rows: list[tuple[int, int]]) -> None:
    y = [label for label, _ in rows]
    p = [score / 20 for _, score in rows]  # a coarse grid, so ties happen
    ev = evaluate(np.array(y), np.array(p), ["x"], np.array([1.0]), {}, 0)
    assert ev.roc_auc == pytest.approx(brute_force_auc(y, p))
    assert ev.brier == pytest.approx(sum((a - b) ** 2 for a, b in zip(y, p, strict=True)) / len(y))
    assert ev.n_test == len(y)
    assert sum(ev.classification_report[c]["support"] for c in ("0", "1")) == len(y)


@pytest.mark.parametrize("y", [[0, 0, 0], [1], []])
def test_require_both_classes(y: list[int]) -> None:
    with pytest.raises(ValueError, match="out_of_time split: the test rows hold one class only"):
        require_both_classes(np.array(y), "out_of_time", "test")


# ------------------------------------------------------------------------------------------- promotion_decision


@pytest.mark.parametrize(("auc", "baseline_auc", "floor", "promote", "words", "absent"), [
    (0.80, 0.60, 0.70, True, ["promoted: champion xgboost OOT ROC-AUC 0.8000", "baseline (0.6000)", "floor 0.7000"],
     ["not promoted"]),
    (0.70, 0.60, 0.70, True, ["promoted"], ["not"]),  # the floor is inclusive
    (0.65, 0.70, 0.60, False, ["not promoted", "does not beat the baseline (baseline, OOT ROC-AUC 0.7000)"],
     ["floor"]),
    (0.65, 0.60, 0.70, False, ["not promoted", "is below the AUC floor 0.7000"], ["does not beat"]),
    (0.75, 0.75, 0.70, False, ["does not beat the baseline"], ["floor"]),  # equal AUC is not a win
    (0.55, 0.60, 0.70, False, ["does not beat the baseline", " and is below the AUC floor 0.7000"], []),
    (float("nan"), 0.60, 0.70, False, ["does not beat", "floor"], []),
])
def test_promotion_decision(auc: float, baseline_auc: float, floor: float, promote: bool, words: list[str],
                            absent: list[str]) -> None:
    decision, reason = promotion_decision("xgboost", auc, "baseline", baseline_auc, floor)
    assert decision is promote
    assert all(w in reason for w in words), reason
    assert not any(w in reason for w in absent), reason


def test_promotion_decision_default_floor() -> None:
    assert DEFAULT_AUC_FLOOR == 0.7
    assert promotion_decision("m", 0.69, "b", 0.5) == (
        False, "not promoted: champion m OOT ROC-AUC 0.6900 is below the AUC floor 0.7000")


# ------------------------------------------------------------------------------------------------- the markdown

P_BASELINE = np.array([0.5, 0.3, 0.6, 0.2])  # positives 0.6, 0.2 vs 0.5, 0.3: 0.6 wins both, 0.2 neither -> 0.5


def evaluations(ranking: bool) -> dict[str, dict[str, Evaluation]]:
    def ranks(ndcg: float) -> dict[str, float] | None:
        return {"ndcg@5": ndcg, "precision@5": 0.25, "users_ranked": 3} if ranking else None

    return {
        "by_user": {"xgboost": tiny(ranking=ranks(0.9), n_train=12_345), "baseline": tiny(P_BASELINE, ranks(0.6))},
        OOT: {"xgboost": tiny(ranking=ranks(0.8)), "baseline": tiny(P_BASELINE, ranks(0.5))},
    }


def rows_of(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()]


def test_metrics_markdown_without_ranking() -> None:
    rows = rows_of(metrics_markdown(evaluations(ranking=False), "xgboost"))
    assert rows[0] == ["split", "model", "ROC-AUC", "PR-AUC", "log loss", "Brier", "train rows", "test rows"]
    assert rows[1] == ["---"] * 8
    assert [r[:2] for r in rows[2:]] == [["by_user", "**xgboost** (champion)"], ["by_user", "baseline"],
                                        [OOT, "**xgboost** (champion)"], [OOT, "baseline"]]
    assert rows[2][2:] == ["0.7500", "0.8333", "0.4723", "0.1581", "12,345", "4"]
    assert rows[3][2] == "0.5000"


def test_metrics_markdown_with_ranking() -> None:
    evals = evaluations(ranking=True)
    del evals[OOT]["baseline"].ranking["ndcg@5"]  # a missing value shows as n/a
    rows = rows_of(metrics_markdown(evals, "baseline"))
    assert rows[0][6:8] == ["ndcg@5", "precision@5"] and "users_ranked" not in rows[0]
    assert len(rows) == 2 + 4 and all(len(r) == 10 for r in rows)
    assert [r[6] for r in rows[2:]] == ["0.9000", "0.6000", "0.8000", "n/a"]
    assert [r[1] for r in rows[2:]] == ["xgboost", "**baseline** (champion)"] * 2


CARD_TRAINING = {"rows": 1200, "labelled_rows": 1000, "label_rate": 0.125, "snapshot_date_min": "2025-01-06",
                 "snapshot_date_max": "2025-02-17"}


def card_args(**overrides: Any) -> dict[str, Any]:
    evals = evaluations(ranking=True)
    args = dict(name="contact", version="v20250301-abc123", description="Predicts a contact.", evaluations=evals,
                champion="xgboost", decision="promoted: champion xgboost OOT ROC-AUC 0.7500 beats ...",
                training=CARD_TRAINING, feature_names=["premium", "total_events"], expanded_columns=COLUMNS,
                registry_versions={"registry": "2.0.0", "family:activity": "1.1.0"},
                training_fingerprint="sha256:feedbeef",
                plot_links={"roc_pr": "roc_pr.png", "importance": "importance.png", "calibration": "calibration.png"})
    return {**args, **overrides}


def test_model_card_holds_everything() -> None:
    args = card_args()
    card = model_card(**args)
    assert card.startswith("# Model card: contact v20250301-abc123\n")
    assert "**Champion:** xgboost (best out-of-time ROC-AUC 0.7500)." in card
    assert f"**Gate:** {args['decision']}" in card
    assert "| training-data fingerprint | `sha256:feedbeef` |" in card
    assert "| rows (labelled) | 1,000 of 1,200 |" in card
    assert "| label rate | 0.1250 |" in card
    assert "| snapshot dates | 2025-01-06 .. 2025-02-17 |" in card
    assert "| registry | family:activity 1.1.0, registry 2.0.0 |" in card
    assert "2 registry features expanded to 3 numeric columns" in card
    assert metrics_markdown(args["evaluations"], "xgboost") in card
    assert importance_markdown(args["evaluations"][OOT]["xgboost"].importance) in card
    assert "| premium | 0.5 |" in card
    assert "`{'max_depth': 3}`" in card
    for key, title in (("roc_pr", "ROC and precision-recall curves"), ("importance", "Feature importance"),
                       ("calibration", "Calibration")):
        assert f"### {title}\n\n![{key}]({key}.png)" in card


def test_model_card_without_row_counts_shows_na() -> None:
    training = {k: v for k, v in CARD_TRAINING.items() if k not in ("rows", "labelled_rows")}
    try:
        card = model_card(**card_args(training=training))
    except ValueError as error:
        pytest.fail(f"BUG in report.model_card: the 'n/a' default for a missing rows/labelled_rows is formatted "
                    f"with ',' (f\"{{training.get('rows', 'n/a'):,}}\"), which raises for a str: {error}")
    assert "| rows (labelled) | n/a of n/a |" in card


def test_model_plots_are_pngs() -> None:
    pngs = model_plots("contact", evaluations(ranking=True), "xgboost")
    assert set(pngs) == {"roc_pr", "importance", "calibration"}
    assert all(png.startswith(PNG) for png in pngs.values())
