"""model_store: versions round-trip, are hashed and tamper-evident, appear atomically; promotion and rejections."""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sklearn
import xgboost
from sklearn.linear_model import LogisticRegression
from xgboost import XGBClassifier

from feature_platform.ml import model_store
from feature_platform.ml.expand import ExpansionSpec, expand, fit_expansion
from feature_platform.ml.model_store import ModelIntegrityError, ModelStore, training_fingerprint
from feature_platform.ml.training_sets import training_metadata
from feature_platform.offline.store import OfflineStore, read_parquet
from feature_platform.offline.versions import training_set_metadata
from feature_platform.registry import load_registry

REGISTRY = load_registry()
FEATURES = ["days_since_last_purchase", "total_events"]
T0 = dt.datetime(2025, 3, 1, 12, 0, 0)
PLOTS = {"roc": b"\x89PNG roc", "calibration": b"\x89PNG calibration"}


@pytest.fixture(scope="module")
def fitted_model() -> tuple[LogisticRegression, ExpansionSpec, pa.Table]:
    table = pa.table({
        "days_since_last_purchase": pa.array([1, 30, 2, 60, 5, 90], pa.int64()),
        "total_events": pa.array([40, 3, 25, 1, 30, 0], pa.int64()),
        "churned": pa.array([0, 1, 0, 1, 0, 1], pa.int64()),
    })
    spec = fit_expansion(table, FEATURES, REGISTRY)
    x, _ = expand(table, spec)
    return LogisticRegression().fit(x, table.column("churned").to_numpy()), spec, table


def save(store: ModelStore, fitted_model: tuple, created_at: dt.datetime = T0, info: dict | None = None,
         name: str = "churn") -> model_store.ModelVersion:
    model, spec, table = fitted_model
    return store.save_version(
        name,
        model=model,
        spec=spec,
        feature_names=FEATURES,
        registry_versions={"lead": "1.0.0"},
        training_fingerprint=training_fingerprint(table),
        metrics={"oot": {"roc_auc": np.float64(0.75), "n": np.int64(6), "curve": np.array([0.1, 0.2])},
                 "window": ("2025-01-01", "2025-02-01"), "flag": np.bool_(True)},
        plots=PLOTS,
        card="# churn\n\nA card.\n",
        info=info or {"seed": 7},
        created_at=created_at,
    )


def test_save_and_load_round_trip(tmp_path: Path, fitted_model: tuple) -> None:
    model, spec, table = fitted_model
    store = ModelStore(tmp_path)
    saved = save(store, fitted_model)
    assert saved.path == tmp_path / "churn" / saved.version
    assert saved.version.startswith("20250301T120000Z-") and len(saved.version) == len("20250301T120000Z-") + 10
    assert saved.created_at == "2025-03-01T12:00:00+00:00"

    loaded, loaded_spec, meta = store.load("churn", saved.version)
    assert loaded_spec == spec
    assert meta == saved
    x, _ = expand(table, loaded_spec)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_every_file_is_written_and_hashed_in_the_manifest(tmp_path: Path, fitted_model: tuple) -> None:
    _, spec, table = fitted_model
    saved = save(ModelStore(tmp_path), fitted_model)
    files = {"model.joblib", "expansion.json", "features.json", "metrics.json", "model_card.md", "roc.png",
             "calibration.png"}
    assert {p.name for p in saved.path.iterdir()} == files | {"manifest.json"}

    manifest = json.loads((saved.path / "manifest.json").read_text())
    assert manifest == saved.manifest
    assert set(manifest["files"]) == files
    for file, digest in manifest["files"].items():
        assert digest == model_store._sha256(saved.path / file)
    assert manifest["name"] == "churn" and manifest["version"] == saved.version
    assert manifest["feature_names"] == FEATURES
    assert manifest["columns"] == spec.columns == FEATURES
    assert manifest["registry_versions"] == {"lead": "1.0.0"}
    assert manifest["training_fingerprint"] == training_fingerprint(table)
    assert manifest["info"] == {"seed": 7}

    assert json.loads((saved.path / "features.json").read_text()) == {"feature_names": FEATURES, "columns": FEATURES}
    assert ExpansionSpec.from_json((saved.path / "expansion.json").read_text()) == spec
    metrics_text = (saved.path / "metrics.json").read_text()
    assert json.loads(metrics_text) == {"flag": True, "oot": {"curve": [0.1, 0.2], "n": 6, "roc_auc": 0.75},
                                        "window": ["2025-01-01", "2025-02-01"]}
    assert metrics_text.index('"flag"') < metrics_text.index('"oot"')  # sorted keys
    assert (saved.path / "roc.png").read_bytes() == PLOTS["roc"]
    assert (saved.path / "model_card.md").read_text() == "# churn\n\nA card.\n"


def test_a_changed_file_is_refused_on_load(tmp_path: Path, fitted_model: tuple) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, fitted_model)
    (saved.path / "expansion.json").write_text('{"features": []}')
    with pytest.raises(ModelIntegrityError, match=r"expansion\.json does not match"):
        store.load("churn", saved.version)


def test_a_missing_file_is_refused_on_load(tmp_path: Path, fitted_model: tuple) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, fitted_model)
    (saved.path / "model.joblib").unlink()
    with pytest.raises(ModelIntegrityError, match=r"model\.joblib is listed in the manifest but missing"):
        store.load("churn", saved.version)


def test_same_training_in_the_same_second_reuses_the_version(tmp_path: Path, fitted_model: tuple) -> None:
    store = ModelStore(tmp_path)
    first = save(store, fitted_model)
    again = save(store, fitted_model)
    other = save(store, fitted_model, info={"seed": 8})
    assert again == first
    assert other.version != first.version and other.version.startswith("20250301T120000Z-")
    assert [v.version for v in store.versions("churn")] == sorted([first.version, other.version])


def test_a_different_model_for_the_same_training_and_second_replaces_the_version(tmp_path: Path,
                                                                                  fitted_model: tuple) -> None:
    model, spec, table = fitted_model
    store = ModelStore(tmp_path)
    first = save(store, fitted_model)
    x, _ = expand(table, spec)
    refit = LogisticRegression(C=0.01).fit(x, table.column("churned").to_numpy())
    second = save(store, (refit, spec, table))
    assert second.version == first.version
    assert second.manifest["files"]["model.joblib"] != first.manifest["files"]["model.joblib"]
    loaded, _, _ = store.load("churn", second.version)
    assert loaded.C == 0.01
    assert [p.name for p in (tmp_path / "churn").iterdir()] == [first.version]  # nothing left aside


def test_versions_oldest_first_skipping_temp_and_incomplete_folders(tmp_path: Path, fitted_model: tuple) -> None:
    store = ModelStore(tmp_path)
    assert store.versions("churn") == []
    late = save(store, fitted_model, created_at=T0 + dt.timedelta(days=1))
    early = save(store, fitted_model, created_at=T0)
    middle = save(store, fitted_model, created_at=dt.datetime(2025, 3, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=-1))))
    (tmp_path / "churn" / ".20250309T000000Z-abc.1234.tmp").mkdir()
    (tmp_path / "churn" / "20250310T000000Z-no-manifest").mkdir()
    assert [v.version for v in store.versions("churn")] == [early.version, middle.version, late.version]
    assert middle.created_at == "2025-03-01T14:00:00+00:00"


def test_promote_sets_champion_previous_and_history(tmp_path: Path, fitted_model: tuple) -> None:
    store = ModelStore(tmp_path)
    assert store.champion("churn") is None
    first = save(store, fitted_model, created_at=T0)
    second = save(store, fitted_model, created_at=T0 + dt.timedelta(hours=1))

    store.promote("churn", first.version, "first model")
    assert store.champion("churn") == first
    store.promote("churn", second.version, "beats the champion")
    assert store.champion("churn") == second

    champion = json.loads((tmp_path / "churn" / "champion.json").read_text())
    assert champion["version"] == second.version
    assert champion["reason"] == "beats the champion"
    assert champion["previous"] == first.version
    assert [(h["version"], h["reason"]) for h in champion["history"]] == [
        (first.version, "first model"), (second.version, "beats the champion")]
    assert all(h["promoted_at"] for h in champion["history"])


def test_history_keeps_the_last_twenty_promotions(tmp_path: Path, fitted_model: tuple) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, fitted_model)
    for i in range(25):
        store.promote("churn", saved.version, f"round {i}")
    history = json.loads((tmp_path / "churn" / "champion.json").read_text())["history"]
    assert [h["reason"] for h in history] == [f"round {i}" for i in range(5, 25)]


def test_promoting_an_unknown_version_is_refused(tmp_path: Path, fitted_model: tuple) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, fitted_model)
    store.promote("churn", saved.version, "first")
    with pytest.raises(ValueError, match="no saved version '20990101T000000Z-0000000000'"):
        store.promote("churn", "20990101T000000Z-0000000000", "typo")
    assert store.champion("churn") == saved


def test_rejections_are_logged_and_leave_the_champion_alone(tmp_path: Path, fitted_model: tuple) -> None:
    store = ModelStore(tmp_path)
    champion = save(store, fitted_model, created_at=T0)
    candidate = save(store, fitted_model, created_at=T0 + dt.timedelta(hours=1))
    store.promote("churn", champion.version, "first")
    before = (tmp_path / "churn" / "champion.json").read_bytes()

    for i in range(55):
        store.record_rejection("churn", candidate.version, f"auc below floor {i}")
    assert (tmp_path / "churn" / "champion.json").read_bytes() == before
    assert store.champion("churn") == champion
    rejections = json.loads((tmp_path / "churn" / "rejections.json").read_text())
    assert len(rejections) == 50
    assert rejections[-1]["version"] == candidate.version
    assert rejections[-1]["reason"] == "auc below floor 54" and rejections[0]["reason"] == "auc below floor 5"
    assert rejections[-1]["at"]
    with pytest.raises(ValueError, match="no saved version"):
        store.record_rejection("churn", "nope", "unknown")


@pytest.mark.parametrize("bad", ["", ".", "..", ".hidden", "a/b", "../x", "a b", "churn\n", "é"])
def test_unsafe_names_are_rejected(tmp_path: Path, fitted_model: tuple, bad: str) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(ValueError, match="not a safe path component"):
        save(store, fitted_model, name=bad)
    with pytest.raises(ValueError, match="not a safe path component"):
        store.load("churn", bad)
    with pytest.raises(ValueError, match="not a safe path component"):
        store.promote("churn", bad, "x")
    assert list(tmp_path.iterdir()) == []


def test_unsafe_plot_keys_are_rejected(tmp_path: Path, fitted_model: tuple) -> None:
    model, spec, table = fitted_model
    with pytest.raises(ValueError, match="plot key '../roc'"):
        ModelStore(tmp_path).save_version("churn", model=model, spec=spec, feature_names=FEATURES,
                                          registry_versions={}, training_fingerprint="x", metrics={},
                                          plots={"../roc": b""}, card="")


def test_fingerprint_ignores_chunking_and_sees_values_and_schema() -> None:
    table = pa.table({"user_id": pa.array(["a", "b", None, "d"]), "x": pa.array([1.5, None, 3.0, 4.0]),
                      "v": pa.array([[1.0, 2.0], None, [], [3.0]])})
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert rechunked.column("x").num_chunks == 3
    from_a_longer_table = pa.concat_tables([table, table]).slice(0, 4)
    assert training_fingerprint(rechunked) == training_fingerprint(table) == training_fingerprint(from_a_longer_table)
    assert len(training_fingerprint(table)) == 64

    changed = table.set_column(1, "x", pa.array([1.5, None, 3.0, 4.5]))
    assert training_fingerprint(changed) != training_fingerprint(table)
    as_float32 = table.set_column(1, "x", table.column("x").cast(pa.float32()))
    assert training_fingerprint(as_float32) != training_fingerprint(table)


def test_a_crash_during_save_leaves_no_version_and_the_champion_unchanged(
    tmp_path: Path, fitted_model: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path)
    champion = save(store, fitted_model, created_at=T0)
    store.promote("churn", champion.version, "first")
    before = sorted(p.name for p in (tmp_path / "churn").iterdir())

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(model_store.joblib, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        save(store, fitted_model, created_at=T0 + dt.timedelta(hours=1))
    assert sorted(p.name for p in (tmp_path / "churn").iterdir()) == before  # not even a temp folder left
    assert store.versions("churn") == [champion]
    assert store.champion("churn") == champion


# -- library versions: a pickle only loads with the library releases that wrote it ---------------------------

def rewrite_manifest(saved: model_store.ModelVersion, **changes: object) -> None:
    """Edit the manifest as an older or other environment would have written it (None drops a key)."""
    manifest = json.loads((saved.path / "manifest.json").read_text())
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    (saved.path / "manifest.json").write_text(json.dumps(manifest))


def test_the_manifest_records_the_libraries_that_wrote_the_model(tmp_path: Path, fitted_model: tuple) -> None:
    saved = save(ModelStore(tmp_path), fitted_model)
    assert saved.manifest["libraries"] == {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "xgboost": xgboost.__version__,
    }
    assert saved.manifest["model_libraries"] == ["numpy", "scikit-learn"]  # a logistic regression, no XGBoost


def test_an_xgboost_model_from_the_installed_versions_loads(tmp_path: Path, fitted_model: tuple) -> None:
    _, spec, table = fitted_model
    x, _ = expand(table, spec)
    model = XGBClassifier(n_estimators=2, max_depth=1).fit(x, table.column("churned").to_numpy())
    store = ModelStore(tmp_path)
    saved = save(store, (model, spec, table))
    assert saved.manifest["model_libraries"] == ["scikit-learn", "xgboost"]  # an sklearn estimator too
    loaded, _, _ = store.load("churn", saved.version)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


@pytest.mark.parametrize(("dist", "written", "needs"), [
    ("scikit-learn", "1.3.2", "scikit-learn==1.3.*"),
    ("numpy", "1.26.4", "numpy==1.*"),
])
def test_a_model_from_another_release_is_refused_naming_both_versions(
    tmp_path: Path, fitted_model: tuple, dist: str, written: str, needs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, fitted_model)
    rewrite_manifest(saved, libraries={**saved.manifest["libraries"], dist: written})

    def unpickle(*args: object) -> None:
        raise AssertionError("the versions are checked before the pickle is opened")

    monkeypatch.setattr(model_store.joblib, "load", unpickle)
    installed = {"scikit-learn": sklearn.__version__, "numpy": np.__version__}[dist]
    with pytest.raises(model_store.ModelLibraryMismatchError) as raised:
        store.load("churn", saved.version)
    message = str(raised.value)
    assert f"churn/{saved.version} cannot be loaded: {dist} {written} wrote it, {installed} is installed" in message
    assert f"(needs {needs})" in message
    assert "retrain the model with the installed versions" in message


def test_a_model_from_another_xgboost_minor_is_refused(tmp_path: Path, fitted_model: tuple) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, fitted_model)
    major, minor = (int(p) for p in xgboost.__version__.split(".")[:2])
    other = f"{major}.{minor + 1}.0"
    rewrite_manifest(saved, libraries={**saved.manifest["libraries"], "xgboost": other},
                     model_libraries=["numpy", "scikit-learn", "xgboost"])
    with pytest.raises(model_store.ModelLibraryMismatchError,
                       match=rf"xgboost {other} wrote it, {re.escape(xgboost.__version__)} is installed"):
        store.load("churn", saved.version)


def _same_major_minor(version: str, patch: str) -> str:
    return ".".join([*version.split(".")[:2], patch])


@pytest.mark.parametrize("written", [
    {"scikit-learn": _same_major_minor(sklearn.__version__, "99")},  # another patch release of the same minor
    {"numpy": f"{np.__version__.split('.')[0]}.0.0"},  # numpy: the same major is enough
    {"xgboost": "1.7.6"},  # the logistic regression is not made of XGBoost
    {"python": "3.99.0"},  # recorded, not checked
])
def test_what_the_rule_lets_through(tmp_path: Path, fitted_model: tuple, written: dict[str, str]) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, fitted_model)
    rewrite_manifest(saved, libraries={**saved.manifest["libraries"], **written})
    model, _, _ = store.load("churn", saved.version)
    assert model.coef_.shape == (1, len(FEATURES))


def test_a_manifest_without_versions_loads_with_a_warning(tmp_path: Path, fitted_model: tuple,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, fitted_model)
    rewrite_manifest(saved, libraries=None, model_libraries=None)
    with caplog.at_level(logging.WARNING, logger="feature_platform.ml.model_store"):
        model, _, _ = store.load("churn", saved.version)
    assert model.coef_.shape == (1, len(FEATURES))
    assert [r.getMessage() for r in caplog.records] == [
        f"churn/{saved.version}: the manifest does not record the library versions that wrote the model; "
        "loading it unchecked (retrain to record them)"
    ]


class _Holder:
    def __init__(self, *parts: object) -> None:
        self.parts = {"nested": [tuple(parts)]}


@pytest.mark.parametrize(("model", "expected"), [
    (LogisticRegression(), ["scikit-learn"]),  # unfitted: no arrays yet
    (_Holder(np.zeros(2)), ["numpy"]),
    (_Holder(np.float64(1.0)), ["numpy"]),
    (_Holder(np.log1p), ["numpy"]),  # held by reference
    (_Holder(LogisticRegression), ["scikit-learn"]),  # a class held by reference
    (_Holder(1, "a", None, {2.0}), []),
])
def test_model_libraries_finds_what_a_model_is_made_of(model: object, expected: list[str]) -> None:
    assert model_store.model_libraries(model) == expected


def test_the_manifest_records_the_family_versions_of_the_training_set(tmp_path: Path, fitted_model: tuple) -> None:
    """Read back from a written training set's file (what the model assets pass), and null when not given."""
    model, spec, table = fitted_model
    written = OfflineStore(tmp_path / "data").write("training/t", table, metadata=training_set_metadata(
        {"lead": "1.1.0", "activity": "1.0.0"}))
    recorded = training_metadata(read_parquet(written.path), "churned", REGISTRY)["family_versions"]
    store = ModelStore(tmp_path / "models")
    saved = store.save_version("churn", model=model, spec=spec, feature_names=FEATURES, registry_versions={},
                               training_fingerprint=training_fingerprint(table), metrics={}, plots={}, card="c",
                               family_versions=recorded)
    manifest = json.loads((saved.path / "manifest.json").read_text())
    assert manifest["family_versions"] == {"activity": "1.0.0", "lead": "1.1.0"}
    assert store.load("churn", saved.version)[2].manifest["family_versions"] == manifest["family_versions"]
    assert save(store, fitted_model, created_at=T0 + dt.timedelta(seconds=1)).manifest["family_versions"] is None
