"""model_store: versions round-trip, are hashed and tamper-evident, appear atomically; promotion and rejections."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

from feature_platform.ml import model_store
from feature_platform.ml.expand import ExpansionSpec, expand, fit_expansion
from feature_platform.ml.model_store import ModelIntegrityError, ModelStore, training_fingerprint
from feature_platform.registry import load_registry

REGISTRY = load_registry()
FEATURES = ["days_since_last_purchase", "total_events"]
T0 = dt.datetime(2025, 3, 1, 12, 0, 0)
PLOTS = {"roc": b"\x89PNG roc", "calibration": b"\x89PNG calibration"}


@pytest.fixture(scope="module")
def trained() -> tuple[LogisticRegression, ExpansionSpec, pa.Table]:
    table = pa.table({
        "days_since_last_purchase": pa.array([1, 30, 2, 60, 5, 90], pa.int64()),
        "total_events": pa.array([40, 3, 25, 1, 30, 0], pa.int64()),
        "churned": pa.array([0, 1, 0, 1, 0, 1], pa.int64()),
    })
    spec = fit_expansion(table, FEATURES, REGISTRY)
    x, _ = expand(table, spec)
    return LogisticRegression().fit(x, table.column("churned").to_numpy()), spec, table


def save(store: ModelStore, trained: tuple, created_at: dt.datetime = T0, info: dict | None = None,
         name: str = "churn") -> model_store.ModelVersion:
    model, spec, table = trained
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


def test_save_and_load_round_trip(tmp_path: Path, trained: tuple) -> None:
    model, spec, table = trained
    store = ModelStore(tmp_path)
    saved = save(store, trained)
    assert saved.path == tmp_path / "churn" / saved.version
    assert saved.version.startswith("20250301T120000Z-") and len(saved.version) == len("20250301T120000Z-") + 10
    assert saved.created_at == "2025-03-01T12:00:00+00:00"

    loaded, loaded_spec, meta = store.load("churn", saved.version)
    assert loaded_spec == spec
    assert meta == saved
    x, _ = expand(table, loaded_spec)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_every_file_is_written_and_hashed_in_the_manifest(tmp_path: Path, trained: tuple) -> None:
    _, spec, table = trained
    saved = save(ModelStore(tmp_path), trained)
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


def test_a_changed_file_is_refused_on_load(tmp_path: Path, trained: tuple) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, trained)
    (saved.path / "expansion.json").write_text('{"features": []}')
    with pytest.raises(ModelIntegrityError, match=r"expansion\.json does not match"):
        store.load("churn", saved.version)


def test_a_missing_file_is_refused_on_load(tmp_path: Path, trained: tuple) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, trained)
    (saved.path / "model.joblib").unlink()
    with pytest.raises(ModelIntegrityError, match=r"model\.joblib is listed in the manifest but missing"):
        store.load("churn", saved.version)


def test_same_training_in_the_same_second_reuses_the_version(tmp_path: Path, trained: tuple) -> None:
    store = ModelStore(tmp_path)
    first = save(store, trained)
    again = save(store, trained)
    other = save(store, trained, info={"seed": 8})
    assert again == first
    assert other.version != first.version and other.version.startswith("20250301T120000Z-")
    assert [v.version for v in store.versions("churn")] == sorted([first.version, other.version])


def test_a_different_model_for_the_same_training_and_second_replaces_the_version(tmp_path: Path,
                                                                                  trained: tuple) -> None:
    model, spec, table = trained
    store = ModelStore(tmp_path)
    first = save(store, trained)
    x, _ = expand(table, spec)
    refit = LogisticRegression(C=0.01).fit(x, table.column("churned").to_numpy())
    second = save(store, (refit, spec, table))
    assert second.version == first.version
    assert second.manifest["files"]["model.joblib"] != first.manifest["files"]["model.joblib"]
    loaded, _, _ = store.load("churn", second.version)
    assert loaded.C == 0.01
    assert [p.name for p in (tmp_path / "churn").iterdir()] == [first.version]  # nothing left aside


def test_versions_oldest_first_skipping_temp_and_incomplete_folders(tmp_path: Path, trained: tuple) -> None:
    store = ModelStore(tmp_path)
    assert store.versions("churn") == []
    late = save(store, trained, created_at=T0 + dt.timedelta(days=1))
    early = save(store, trained, created_at=T0)
    middle = save(store, trained, created_at=dt.datetime(2025, 3, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=-1))))
    (tmp_path / "churn" / ".20250309T000000Z-abc.1234.tmp").mkdir()
    (tmp_path / "churn" / "20250310T000000Z-no-manifest").mkdir()
    assert [v.version for v in store.versions("churn")] == [early.version, middle.version, late.version]
    assert middle.created_at == "2025-03-01T14:00:00+00:00"


def test_promote_sets_champion_previous_and_history(tmp_path: Path, trained: tuple) -> None:
    store = ModelStore(tmp_path)
    assert store.champion("churn") is None
    first = save(store, trained, created_at=T0)
    second = save(store, trained, created_at=T0 + dt.timedelta(hours=1))

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


def test_history_keeps_the_last_twenty_promotions(tmp_path: Path, trained: tuple) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, trained)
    for i in range(25):
        store.promote("churn", saved.version, f"round {i}")
    history = json.loads((tmp_path / "churn" / "champion.json").read_text())["history"]
    assert [h["reason"] for h in history] == [f"round {i}" for i in range(5, 25)]


def test_promoting_an_unknown_version_is_refused(tmp_path: Path, trained: tuple) -> None:
    store = ModelStore(tmp_path)
    saved = save(store, trained)
    store.promote("churn", saved.version, "first")
    with pytest.raises(ValueError, match="no saved version '20990101T000000Z-0000000000'"):
        store.promote("churn", "20990101T000000Z-0000000000", "typo")
    assert store.champion("churn") == saved


def test_rejections_are_logged_and_leave_the_champion_alone(tmp_path: Path, trained: tuple) -> None:
    store = ModelStore(tmp_path)
    champion = save(store, trained, created_at=T0)
    candidate = save(store, trained, created_at=T0 + dt.timedelta(hours=1))
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
def test_unsafe_names_are_rejected(tmp_path: Path, trained: tuple, bad: str) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(ValueError, match="not a safe path component"):
        save(store, trained, name=bad)
    with pytest.raises(ValueError, match="not a safe path component"):
        store.load("churn", bad)
    with pytest.raises(ValueError, match="not a safe path component"):
        store.promote("churn", bad, "x")
    assert list(tmp_path.iterdir()) == []


def test_unsafe_plot_keys_are_rejected(tmp_path: Path, trained: tuple) -> None:
    model, spec, table = trained
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
    tmp_path: Path, trained: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path)
    champion = save(store, trained, created_at=T0)
    store.promote("churn", champion.version, "first")
    before = sorted(p.name for p in (tmp_path / "churn").iterdir())

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(model_store.joblib, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        save(store, trained, created_at=T0 + dt.timedelta(hours=1))
    assert sorted(p.name for p in (tmp_path / "churn").iterdir()) == before  # not even a temp folder left
    assert store.versions("churn") == [champion]
    assert store.champion("churn") == champion
