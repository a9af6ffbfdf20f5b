"""What a trained model shows people: a metrics table, plots, and the model card saved next to it.

Used by the model assets: the same markdown goes into the Dagster materialization (plots embedded
as PNG data URLs so the UI shows them) and into ``model_card.md`` in the model's version folder
(plots referenced as the PNG files beside it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from feature_platform.ml import plots
from feature_platform.ml.evaluation import Evaluation

OOT = "out_of_time"
PLOT_TITLES = {
    "roc_pr": "ROC and precision-recall curves",
    "importance": "Feature importance",
    "calibration": "Calibration",
}


def model_plots(name: str, evaluations: Mapping[str, Mapping[str, Evaluation]], champion: str) -> dict[str, bytes]:
    """PNG bytes per plot key: curves and calibration of every model on the out-of-time split, and the
    champion's importance."""
    oot = evaluations[OOT]
    curves = {model: (ev.y_true, ev.y_score) for model, ev in oot.items()}
    return {
        "roc_pr": plots.roc_pr_png(curves, f"{name}: out-of-time test set"),
        "importance": plots.importance_png(oot[champion].importance, f"{name}: {champion} (out-of-time fit)"),
        "calibration": plots.calibration_png(curves, f"{name}: calibration, out-of-time test set"),
    }


def metrics_markdown(evaluations: Mapping[str, Mapping[str, Evaluation]], champion: str) -> str:
    """One row per (split, model): ROC-AUC, PR-AUC, log loss, Brier, ranking metrics when present."""
    ranking_keys = sorted({k for models in evaluations.values() for ev in models.values() for k in ev.ranking
                           if k != "users_ranked"})
    head = ["split", "model", "ROC-AUC", "PR-AUC", "log loss", "Brier", *ranking_keys, "train rows", "test rows"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for split, models in evaluations.items():
        for model, ev in models.items():
            label = f"**{model}** (champion)" if model == champion else model
            cells = [split, label, _f(ev.roc_auc), _f(ev.pr_auc), _f(ev.log_loss), _f(ev.brier),
                     *(_f(ev.ranking.get(k)) for k in ranking_keys), f"{ev.n_train:,}", f"{ev.n_test:,}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def importance_markdown(importance: Sequence[tuple[str, float]]) -> str:
    return "\n".join(["| feature | importance |", "| --- | --- |",
                      *(f"| {name} | {value:.4g} |" for name, value in importance)])


def model_card(
    *,
    name: str,
    version: str,
    description: str,
    evaluations: Mapping[str, Mapping[str, Evaluation]],
    champion: str,
    decision: str,
    training: Mapping[str, Any],
    feature_names: Sequence[str],
    expanded_columns: Sequence[str],
    registry_versions: Mapping[str, str],
    training_fingerprint: str,
    plot_links: Mapping[str, str],
) -> str:
    """The markdown model card; ``plot_links`` maps plot keys to an image target (file name or data URL)."""
    champion_eval = evaluations[OOT][champion]
    images = "\n\n".join(f"### {PLOT_TITLES.get(key, key)}\n\n![{key}]({target})" for key, target in plot_links.items())
    versions = ", ".join(f"{k} {v}" for k, v in sorted(registry_versions.items()))
    return f"""# Model card: {name} {version}

{description}

**Champion:** {champion} (best out-of-time ROC-AUC {champion_eval.roc_auc:.4f}).
**Gate:** {decision}

## Training data

| | |
| --- | --- |
| rows (labelled) | {_count(training.get('labelled_rows'))} of {_count(training.get('rows'))} |
| label rate | {_f(training.get('label_rate'))} |
| snapshot dates | {training.get('snapshot_date_min')} .. {training.get('snapshot_date_max')} |
| training-data fingerprint | `{training_fingerprint}` |
| registry | {versions} |

## Inputs

{len(feature_names)} registry features expanded to {len(expanded_columns)} numeric columns by
`feature_platform.ml.expand` (spec in `expansion.json`, ordered list in `features.json`).

## Metrics

Test sets: `by_user` holds out a random fifth of the users with all their rows (a user's rows never on
both sides); `out_of_time` trains on earlier data and tests on the latest, which is what production
sees. The champion is chosen on `out_of_time`.

{metrics_markdown(evaluations, champion)}

Best hyper-parameters (out-of-time search): `{champion_eval.best_params}`

## Feature importance ({champion}, out-of-time fit)

{importance_markdown(champion_eval.importance)}

## Plots

{images}
"""


def _count(value: Any) -> str:
    return "n/a" if value is None else f"{value:,}"


def _f(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"
