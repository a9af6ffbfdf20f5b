"""Checks on feature snapshots: schema, values and row count as the registry says, and drift.

The family asset evaluates the blocking registry checks over every partition it wrote in the run (a
backfill writes many), so their specs are declared on the asset and these functions turn snapshots
into check results. Drift is a check of its own per family (:func:`drift_checks`): it reads the
snapshot back and compares it with D-7 (else D-1) and with the churn champion's training rows of D's
weekday, the features that count days since a first event aged to D (ml/drift.py).
"""

import datetime as dt

import dagster as dg
import pyarrow as pa

from feature_platform.ml import drift
from feature_platform.ml.model_store import ModelStore
from feature_platform.ml.plots import distribution_png, markdown_image
from feature_platform.offline.store import OfflineStore, WriteResult, read_parquet_schema
from feature_platform.orchestration.constants import (
    CHECK_FEATURE_DRIFT,
    CHECK_SNAPSHOT_ROWS,
    CHECK_SNAPSHOT_SCHEMA,
    CHECK_SNAPSHOT_VALUES,
)
from feature_platform.orchestration.pipeline import RANGE_END_TAG
from feature_platform.orchestration.resources import OfflineStoreResource
from feature_platform.registry.registry import Family, Registry, load_registry

PARTITION_TAG = "dagster/partition"  # a single-partition run; a single-run backfill tags its range instead


def snapshot_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(CHECK_SNAPSHOT_SCHEMA, asset=asset_key, blocking=True,
                          description="Columns and types of every written partition equal the registry's."),
        dg.AssetCheckSpec(CHECK_SNAPSHOT_VALUES, asset=asset_key, blocking=True,
                          description="No nulls where the registry forbids them; values inside registry ranges "
                                      "(rates and scores in [0, 1], counts >= 0, hour 0-23, day 0-6); maps sum to 1."),
        dg.AssetCheckSpec(CHECK_SNAPSHOT_ROWS, asset=asset_key, blocking=True,
                          description="One row per user known at the snapshot date."),
    ]


def schema_result(asset_key: dg.AssetKey, expected: pa.Schema, writes: list[WriteResult]) -> dg.AssetCheckResult:
    wrong = {}
    for write in writes:
        actual = read_parquet_schema(write.path).remove_metadata()
        if not actual.equals(expected):
            wrong[write.path.stem] = sorted(set(map(str, actual)) ^ set(map(str, expected)))
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=CHECK_SNAPSHOT_SCHEMA, passed=not wrong,
        metadata={"partitions_checked": len(writes), "mismatches": dg.MetadataValue.json(wrong)},
        description=f"{len(wrong)} partition(s) differ from the registry schema" if wrong else None,
    )


def values_result(asset_key: dg.AssetKey, problems: dict[str, list[str]], checked: int) -> dg.AssetCheckResult:
    """``problems``: partition -> registry-rule violations found in it (see features.quality)."""
    problems = {day: found for day, found in problems.items() if found}
    first = next(iter(problems.items()), None)
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=CHECK_SNAPSHOT_VALUES, passed=not problems,
        metadata={"partitions_checked": checked, "violations": dg.MetadataValue.json(problems)},
        description=f"{len(problems)} partition(s) break registry rules, e.g. {first[0]}: {first[1][:3]}" if first else None,
    )


def rows_result(asset_key: dg.AssetKey, rows: dict[str, tuple[int, int]]) -> dg.AssetCheckResult:
    """``rows``: partition -> (rows written, users known at that date)."""
    wrong = {day: {"rows": got, "known_users": want} for day, (got, want) in rows.items() if got != want}
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=CHECK_SNAPSHOT_ROWS, passed=not wrong,
        metadata={"partitions_checked": len(rows), "mismatches": dg.MetadataValue.json(wrong)},
        description=f"{len(wrong)} partition(s) do not have one row per known user" if wrong else None,
    )


def drift_checks(families: list[Family]) -> list[dg.AssetChecksDefinition]:
    """One drift check per snapshot family (derived families score with the model, they are not its inputs)."""
    return [_drift_check(family) for family in families if not family.derived]


def _drift_check(family: Family) -> dg.AssetChecksDefinition:
    key = dg.AssetKey(list(family.asset_path))

    # Declared blocking so that FP_DRIFT_BLOCKS_PUSH can stop the push at run time: a failing check blocks
    # downstream assets only with ERROR severity, which it has only when that setting is on.
    @dg.asset_check(
        asset=key, name=CHECK_FEATURE_DRIFT, blocking=True,
        description="Population stability index per feature of snapshot D against D-7, the same weekday a week "
                    "before (D-1 when there is no D-7 partition; the label says which), and against the churn "
                    "champion's newest training rows when they fall on D's weekday. Features that count days since "
                    "a user's first event or purchase (tenure_days, first_purchase_days, btyd_age_days) are compared "
                    "with the reference aged by the days between the two snapshots; a feature whose window (30d, "
                    "90d, all) covers more days on D than on the reference (a history younger than the window) is "
                    "reported but not judged. The PSI is judged above what the two sample sizes show by chance: "
                    "warns from FP_DRIFT_PSI_WARN (0.1), fails from FP_DRIFT_PSI_FAIL (0.25); a failure blocks the "
                    "online push only with FP_DRIFT_BLOCKS_PUSH=1.",
    )
    def _check(context: dg.AssetCheckExecutionContext, offline: OfflineStoreResource) -> dg.AssetCheckResult:
        settings, registry, store = offline.settings(), load_registry(), offline.store()
        table = "/".join(family.asset_path)
        day = _evaluated_day(context, store.partitions(table))
        if day is None:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                       description=f"no {table} partition to check: materialize one")
        current = store.read(table, day.isoformat(), day.isoformat())
        references = [drift.weekday_reference(store, table, day),
                      drift.champion_training_rows(store, ModelStore(settings.models_dir), day)]
        history = _history_days(store, family, day)
        reports = [drift.drift_report(ref.table, current, list(family.features), registry, ref.label, f"D ({day})",
                                      ref.age_days, history)
                   for ref in references if ref.table is not None]
        skipped = {ref.label: ref.note for ref in references if ref.table is None}
        warn, fail = settings.drift_psi_warn, settings.drift_psi_fail
        return _drift_result(day, reports, skipped, warn, fail, settings.drift_blocks_push, references, current,
                             registry)

    return _check


def _history_days(store: OfflineStore, family: Family, day: dt.date) -> int | None:
    """Days of raw data up to and including ``day``: from the first stored partition of the family's raw
    sources (what its windows could see), None when it has none (then no window counts as filling)."""
    firsts = [parts[0] for source in family.sources if source.startswith("raw/") and (parts := store.partitions(source))]
    return (day - dt.date.fromisoformat(min(firsts))).days + 1 if firsts else None


def _evaluated_day(context: dg.AssetCheckExecutionContext, stored: list[str]) -> dt.date | None:
    """The run's last partition (one day, or a backfill's range), else the latest stored one (a check run alone).

    Read from the run's tags: the check itself is not partitioned (partitioned checks are a preview API), so
    its context has no partition keys of its own.
    """
    tags = context.run.tags
    key = tags.get(RANGE_END_TAG) or tags.get(PARTITION_TAG)
    if key:
        return dt.date.fromisoformat(key)
    return dt.date.fromisoformat(stored[-1]) if stored else None


def _drift_result(day: dt.date, reports: list[drift.DriftReport], skipped: dict[str, str], warn: float, fail: float,
                  blocks: bool, references: list[drift.Reference], current: pa.Table,
                  registry: Registry) -> dg.AssetCheckResult:
    compared = [r for r in reports if r.columns]
    if not compared:
        return dg.AssetCheckResult(
            passed=True, description=f"snapshot {day}: nothing to compare with ({'; '.join(skipped.values())})",
            metadata={"snapshot_date": day.isoformat(), "references_skipped": dg.MetadataValue.json(skipped)})
    worst_report = max(compared, key=lambda r: (r.max_excess, r.max_psi))
    worst = worst_report.worst_judged
    assert worst is not None  # a report with columns has a worst one
    level = drift.drift_level(worst.excess, warn, fail)
    floor = f", noise floor {worst.noise:.3f} at {worst_report.reference_rows:,}/{worst_report.current_rows:,} rows" \
        if worst.noise >= 0.005 and not worst.filling else ", not judged: its window is still filling" \
        if worst.filling else ""
    reference = next(ref for ref in references if ref.label == worst_report.reference)
    bins = drift.column_bins(reference.table, current, worst.feature, worst.column, registry, reference.age_days)
    png = distribution_png(bins.labels, bins.reference, bins.current, worst_report.reference, worst_report.current,
                           f"{worst.column}: PSI {worst.psi:.3f} ({bins.method})")
    # The check is declared blocking (the UI says so); whether a failure blocks is its severity, said here
    # in the same words the CLI prints and the README uses.
    consequence = ("ERROR: it blocks the online push (FP_DRIFT_BLOCKS_PUSH=1)" if blocks and level == "fail"
                   else "WARN: the online push goes ahead (FP_DRIFT_BLOCKS_PUSH=1 makes a failure block it)")
    filling = sorted({feature for r in reports for feature in r.filling})
    unjudged = f"; {len(filling)} features not judged, their window still filling ({', '.join(filling[:3])}" \
        f"{', ..' if len(filling) > 3 else ''})" if filling else ""
    return dg.AssetCheckResult(
        passed=level == "ok",
        severity=dg.AssetCheckSeverity.ERROR if blocks and level == "fail" else dg.AssetCheckSeverity.WARN,
        description=f"snapshot {day}: worst PSI {worst.psi:.3f} ({worst.column} vs {worst_report.reference}{floor}): "
                    f"{level}" + ("" if level == "ok" else f"; {consequence}") + unjudged,
        metadata={
            "snapshot_date": day.isoformat(),
            "drift_level": level,
            "max_psi": round(worst.psi, 6),
            "noise_floor": round(worst.noise, 6),  # judged: PSI minus this (ml/drift.py noise_floor)
            "worst_column": worst.column,
            "worst_compared_with": worst_report.reference,
            "psi_warn": warn,
            "psi_fail": fail,
            "blocks_push": blocks,
            "worst_features": dg.MetadataValue.md(drift.worst_markdown(reports, warn, fail)),
            "psi_per_feature": dg.MetadataValue.json({r.reference: r.psi_by_column() for r in reports}),
            "columns_skipped": dg.MetadataValue.json({r.reference: r.skipped for r in reports if r.skipped}),
            "references_skipped": dg.MetadataValue.json(skipped),
            "reference_notes": dg.MetadataValue.json({ref.label: ref.note for ref in references
                                                      if ref.table is not None and ref.note}),
            "not_judged_window_filling": dg.MetadataValue.json({r.reference: r.filling for r in reports
                                                                if r.filling}),
            "aged_features": dg.MetadataValue.json({r.reference: {"days": r.age_days, "features": list(r.aged)}
                                                    for r in reports if r.aged}),
            "plot_worst_feature": dg.MetadataValue.md(markdown_image(png, f"{worst.column} distribution")),
        },
    )


FEATURE_CHECKS = drift_checks(list(load_registry().families.values()))
