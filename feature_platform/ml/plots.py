"""Model plots as PNG bytes, rendered headless so they can be attached to Dagster metadata.

- :func:`roc_pr_png`: the ROC curve (against the diagonal chance line) beside the precision-recall
  curve (against the positive-rate line a random ranking would score), one line per model; the
  legends carry each model's ROC-AUC and average precision.
- :func:`importance_png`: feature importance as horizontal bars, largest on top.
- :func:`calibration_png`: the reliability diagram (fraction of positives per bin of predicted
  probability, against the perfect-calibration diagonal) over a histogram of the predicted
  probabilities, which shows how many rows each bin rests on.
- :func:`distribution_png`: a feature's binned distribution in a reference sample beside the
  current one (drift checks), one pair of bars per bin, with the PSI in the title.
- :func:`markdown_image`: a PNG as an inline markdown image, which is how Dagster's UI shows an
  image in markdown metadata.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas, never ``pyplot``, so
rendering is thread-safe and never opens a window. Fixed sizes, a fixed dpi and no ``Software``
PNG tag make the bytes the same for the same inputs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

DPI = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROC_PR_SIZE = (10.0, 4.5)
CALIBRATION_SIZE = (6.0, 7.0)
IMPORTANCE_WIDTH = 8.0
IMPORTANCE_INCHES_PER_FEATURE = 0.28
IMPORTANCE_MIN_HEIGHT = 2.5
DISTRIBUTION_MIN_WIDTH = 5.0
DISTRIBUTION_HEIGHT = 3.5

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]


def roc_pr_png(curves: Curves, title: str) -> bytes:
    """ROC and precision-recall curves side by side; ``curves[name] = (y_true, y_score)``."""
    checked = _check_curves(curves)
    fig = _figure(ROC_PR_SIZE)
    roc_ax, pr_ax = fig.subplots(1, 2)
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    rates = {name: float(y.mean()) for name, y, _ in checked}
    shared_rate = len(set(rates.values())) == 1
    if shared_rate:
        rate = next(iter(rates.values()))
        pr_ax.axhline(rate, linestyle="--", color="grey", linewidth=1, label=f"positive rate {rate:.3f}")
    for i, (name, y, p) in enumerate(checked):
        color = f"C{i}"
        fpr, tpr, _ = roc_curve(y, p)
        roc_ax.plot(fpr, tpr, color=color, linewidth=1.5, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        pr_ax.plot(recall, precision, color=color, linewidth=1.5, drawstyle="steps-post",
                   label=f"{name} (AP {average_precision_score(y, p):.3f})")
        if not shared_rate:
            pr_ax.axhline(rates[name], linestyle="--", color=color, linewidth=1,
                          label=f"{name} positive rate {rates[name]:.3f}")
    _unit_axes(roc_ax, "ROC", "false positive rate", "true positive rate")
    _unit_axes(pr_ax, "Precision-recall", "recall", "precision")
    roc_ax.legend(loc="lower right", fontsize="small")
    pr_ax.legend(loc="lower left", fontsize="small")
    fig.suptitle(title)
    return _png(fig)


def importance_png(importance: Sequence[tuple[str, float]], title: str) -> bytes:
    """Horizontal bars, largest on top; the figure grows with the number of features."""
    if len(importance) == 0:
        raise ValueError("importance is empty: there are no features to plot")
    rows = sorted(((str(n), float(v)) for n, v in importance), key=lambda row: -row[1])
    bad = [n for n, v in rows if not np.isfinite(v)]
    if bad:
        raise ValueError(f"importance of {', '.join(bad)} is not a finite number")
    height = max(IMPORTANCE_MIN_HEIGHT, 1.0 + IMPORTANCE_INCHES_PER_FEATURE * len(rows))
    fig = _figure((IMPORTANCE_WIDTH, height))
    ax = fig.subplots()
    positions = np.arange(len(rows))[::-1]  # first (largest) row at the top
    ax.barh(positions, [v for _, v in rows], color="C0")
    ax.set_yticks(positions, [n for n, _ in rows], fontsize="small")
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("importance")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title)
    return _png(fig)


def calibration_png(curves: Curves, title: str, bins: int = 10) -> bytes:
    """Reliability diagram over a histogram of predicted probabilities, ``bins`` equal-width bins."""
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    checked = _check_curves(curves)
    for name, _, p in checked:
        if p.min() < 0.0 or p.max() > 1.0:
            raise ValueError(f"model {name!r}: scores must be probabilities in [0, 1] for a calibration plot, "
                             f"got values in [{p.min():.4g}, {p.max():.4g}]")
    fig = _figure(CALIBRATION_SIZE)
    rel_ax, hist_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    rel_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0.0, 1.0, bins + 1)
    for i, (name, y, p) in enumerate(checked):
        color = f"C{i}"
        prob_true, prob_pred = calibration_curve(y, p, n_bins=bins)
        rel_ax.plot(prob_pred, prob_true, marker="o", markersize=4, color=color, linewidth=1.5, label=name)
        hist_ax.hist(p, bins=edges, histtype="step", color=color, linewidth=1.5, label=name)
    _unit_axes(rel_ax, title, "", "fraction of positives")
    rel_ax.legend(loc="upper left", fontsize="small")
    hist_ax.set_xlabel("predicted probability")
    hist_ax.set_ylabel("rows")
    hist_ax.grid(alpha=0.3)
    return _png(fig)


def distribution_png(labels: Sequence[str], reference: ArrayLike, current: ArrayLike,
                     reference_label: str, current_label: str, title: str) -> bytes:
    """Grouped bars of the share of rows per bin, reference beside current (as the drift check bins them)."""
    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if not len(labels) == len(ref) == len(cur) or len(labels) == 0:
        raise ValueError(f"labels, reference and current need one share per bin, got {len(labels)}, {len(ref)}, "
                         f"{len(cur)}")
    fig = _figure((max(DISTRIBUTION_MIN_WIDTH, 0.6 * len(labels)), DISTRIBUTION_HEIGHT))
    ax = fig.subplots()
    positions = np.arange(len(labels))
    ax.bar(positions - 0.2, ref, width=0.4, color="C0", label=reference_label)
    ax.bar(positions + 0.2, cur, width=0.4, color="C1", label=current_label)
    ax.set_xticks(positions, list(labels), rotation=45, ha="right", fontsize="small")
    ax.set_ylabel("share of rows")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title, fontsize="medium")
    return _png(fig)


def markdown_image(png: bytes, alt: str) -> str:
    """``png`` as an inline markdown image, for ``MetadataValue.md`` in Dagster."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("markdown_image expects PNG bytes (they must start with the PNG signature)")
    safe_alt = " ".join(alt.split()).replace("[", "\\[").replace("]", "\\]")
    return f"![{safe_alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _check_curves(curves: Curves) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Validated ``(name, y_true, y_score)`` rows: 1-D, same length, labels 0/1 with both present."""
    if len(curves) == 0:
        raise ValueError("curves is empty: pass at least one model as {name: (y_true, y_score)}")
    checked = []
    for name, (y_true, y_score) in curves.items():
        y = np.asarray(y_true)
        p = np.asarray(y_score, dtype=np.float64)
        if y.ndim != 1 or p.ndim != 1:
            raise ValueError(f"model {name!r}: y_true and y_score must be 1-D, got shapes {y.shape} and {p.shape}")
        if len(y) != len(p):
            raise ValueError(f"model {name!r}: y_true has {len(y)} rows but y_score has {len(p)}")
        if len(y) == 0:
            raise ValueError(f"model {name!r}: y_true and y_score are empty")
        labels = set(np.unique(y).tolist())
        if not labels <= {0, 1}:
            raise ValueError(f"model {name!r}: y_true must hold binary labels 0/1, got {sorted(labels, key=str)}")
        if len(labels) < 2:
            raise ValueError(f"model {name!r}: y_true holds one class only ({sorted(labels)}); "
                             "ROC, precision-recall and calibration need both classes in the test split")
        if not np.isfinite(p).all():
            raise ValueError(f"model {name!r}: y_score holds NaN or infinite values")
        checked.append((str(name), y.astype(np.int64), p))
    return checked


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _unit_axes(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
