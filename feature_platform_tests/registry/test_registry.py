"""The registry: loads, validates strictly, answers lineage, and agrees with what families compute."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
import yaml

from feature_platform import registry as api
from feature_platform.registry.fingerprint import family_fingerprint, lock, read_lock, unlocked_changes
from feature_platform.registry.registry import (
    REGISTRY_PATH,
    RegistryError,
    UnknownNameError,
    load_registry,
    parse_duration,
    parse_registry,
)
from feature_platform.sources.schema import EVENT_TYPES
from feature_platform_tests.features.helpers import snapshot_table

RAW = yaml.safe_load(REGISTRY_PATH.read_text())


def _broken(mutate) -> dict:
    raw = copy.deepcopy(RAW)
    mutate(raw)
    return raw


def test_the_shipped_registry_loads():
    registry = api.load_registry()
    assert {"activity", "lead", "engagement", "profile", "review", "affinity", "lifetime", "derived"} == set(registry.families)
    assert [f.name for f in registry.families.values() if f.derived] == ["derived"]
    assert len(registry.features) == sum(len(f.features) for f in registry.families.values())


def test_api_functions():
    feature = api.get_feature("engagement_score")
    assert feature.family == "engagement" and feature.type == "float" and feature.value_range == (0, 1)
    assert api.get_feature_version("engagement_score") == "1.0.0"
    assert "gender__other" in {f.name for f in api.list_features("profile")}
    with pytest.raises(KeyError, match="unknown feature 'nope'"):
        api.get_feature("nope")


def test_lineage_reaches_upstream_features_raw_sources_and_the_asset():
    lineage = api.lineage("engagement_score")
    assert set(lineage.upstream_features) == {"page_views_30d", "email_opens_30d", "form_submits_30d",
                                              "purchase_count", "login_frequency"}
    assert lineage.raw_sources == ("raw/events",)
    assert lineage.asset == "features/engagement_features"
    assert api.lineage("topic_vector").raw_sources == ("raw/reviews",)


def test_the_churn_score_lineage_runs_through_the_model_to_every_snapshot_feature_and_raw_source():
    registry = api.load_registry()
    lineage = registry.lineage("churn_risk_score")
    assert lineage.models == ("models/churn_model",)
    assert lineage.asset == "features/churn_risk_scores"
    # `dependencies: model_inputs`: exactly the features the training sets give the churn model
    assert list(lineage.upstream_features) == registry.snapshot_features()
    assert {"total_events", "engagement_score", "gender_female", "topic_vector", "category_affinity"} <= set(
        lineage.upstream_features)
    assert "churn_risk_score" not in lineage.upstream_features
    assert lineage.raw_sources == ("raw/customers", "raw/events", "raw/listings", "raw/reviews")
    score = registry.get_feature("churn_risk_score")
    assert (score.family, score.type, score.value_range, score.nullable, score.default) == (
        "derived", "float", (0, 1), True, None)
    assert "null when no churn model has been promoted" in score.description
    assert "online" in score.serving_location
    assert api.lineage("engagement_score").models == ()  # snapshot features are not model outputs


def _derived_entry(raw: dict) -> dict:
    return next(f for f in raw["features"] if f["name"] == "churn_risk_score")


def test_event_vocabulary_is_the_raw_contract():
    assert api.load_registry().vocabularies["event_type"] == EVENT_TYPES


def test_event_types_map_to_the_features_they_touch():
    touched = set(api.load_registry().features_affected_by("purchase"))
    assert {"monetary_total", "frequency_purchases_90d", "days_since_last_purchase", "has_purchased"} <= touched
    assert "sentiment_avg_30d" not in touched


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["features"][0].update(colour="blue"), r"unknown key\(s\) \['colour'\]"),
        (lambda r: r["features"][0].update(version="1.0"), "not a semantic version"),
        (lambda r: r["families"]["lead"].update(version="v2"), "family 'lead': version"),
        (lambda r: r["features"].append(copy.deepcopy(r["features"][0])), "listed twice"),
        (lambda r: r["features"][0].update(type="string"), "type must be one of"),
        (lambda r: r["features"][0].update(family="astrology"), "unknown family"),
        (lambda r: r["features"][0].update(dependencies=["nope"]), "depends on unknown feature 'nope'"),
        (lambda r: r["features"][0].update(staleness_tolerance="soon"), "staleness_tolerance"),
        (lambda r: r["features"][0].update(default="zero"), "default 'zero' is not a int"),
        (lambda r: r["features"][0].pop("owner"), "missing owner"),
        (lambda r: r["features"][0].update(event_types=["teleport"]), "unknown event types"),
        (lambda r: (r["features"][0].update(dependencies=["purchase_count"]),
                    r["features"][1].update(dependencies=["total_events"])), "dependency cycle"),
        (lambda r: r["families"]["derived"].update(kind="magic"), "kind must be one of"),
        (lambda r: r["families"]["derived"].update(sources=["raw/events"]), "a derived family's sources are the model"),
        (lambda r: r["families"]["lead"].update(sources=["models/churn_model"]), "a snapshot family cannot read a model"),
        (lambda r: _derived_entry(r).update(source="raw/events"), "a derived feature's source is one of its family"),
        (lambda r: r["features"][0].update(dependencies="model_inputs"), "is for features of derived families"),
        (lambda r: r["features"][0].update(dependencies="purchase_count"), "dependencies is a list of feature names"),
        (lambda r: r["features"][0].update(dependencies=["churn_risk_score"]), "a model would learn from its own output"),
        (lambda r: r["features"][0].update(window="a month"), "window is a number of days"),
        (lambda r: r["features"][0].update(window="0d"), "window is a number of days"),
    ],
)
def test_invalid_registries_fail_with_a_clear_error(mutate, message):
    with pytest.raises(RegistryError, match=message):
        parse_registry(_broken(mutate))


def test_each_feature_window_is_the_one_its_computation_reads():
    """The `window` the drift check relies on says what the computation text says (`in 30d`, `D-29 <= day`,
    `in 90d`); where the text names none, the family's lookback: lead and affinity 90 days (their modules'
    LOOKBACK), the engagement score its 30-day inputs, whole-history families `all`, attributes none."""
    registry = load_registry()
    unnamed = {"engagement_score": "30d", "form_submit_conversion_rate": "30d",
               "avg_response_time_seconds": "90d", "conversation_to_purchase_rate": "90d",
               "campaign_ignored": "90d", "category_affinity": "90d", "city_affinity": "90d",
               "price_sensitivity": "90d", "activity_score": "90d"}
    for feature in registry.features.values():
        text = feature.computation
        expected = ("30d" if "in 30d" in text or "D-29 <= day" in text else "90d" if "in 90d" in text
                    else "all" if feature.family in ("lifetime", "review")
                    else None if feature.family in ("profile", "derived") else unnamed.get(feature.name, "?"))
        assert feature.window == expected, feature.name
    assert load_registry().get_feature("total_events").days_covered(12) == 12
    assert load_registry().get_feature("total_events").days_covered(400) == 30
    assert load_registry().get_feature("lifetime_spend").days_covered(400) == 400
    assert load_registry().get_feature("age").days_covered(400) is None


@pytest.mark.parametrize(("text", "expected"), [("36h", dt.timedelta(hours=36)), ("2d", dt.timedelta(days=2)),
                                                 ("15m", dt.timedelta(minutes=15)), ("30s", dt.timedelta(seconds=30))])
def test_durations(text, expected):
    assert parse_duration(text) == expected


def _fitted_topic_artifacts():
    from feature_platform.features import topics
    from feature_platform.sources.schema import REVIEWS
    from feature_platform_tests.features.helpers import table

    texts = ["fast delivery great courier", "price too high value poor", "delivery late courier slow",
             "cheap price good value", "great quality material", "quality poor material broke"] * 3
    rows = [{"review_id": f"r{i}", "user_id": "u1", "rating": 3, "text": t, "timestamp": dt.datetime(2025, 1, 1)}
            for i, t in enumerate(texts)]
    return {"review_topic_model": topics.fit_topic_model(table(REVIEWS.arrow_schema, rows),
                                                         topics.TopicModelConfig(topics=10, min_df=1))}


@pytest.mark.parametrize("family", ["activity", "lead", "engagement", "profile", "review", "affinity", "lifetime"])
def test_each_family_produces_exactly_the_registry_columns(family):
    """Both ways: no feature missing from the output, no output column missing from the registry."""
    registry = api.load_registry()
    fam = registry.family(family)
    artifacts = _fitted_topic_artifacts() if family == "review" else {}
    produced = snapshot_table(fam, dt.date(2025, 3, 1), [], ["u1"], artifacts=artifacts)  # conform() checks too
    assert set(produced.column_names) - {"user_id", "snapshot_date"} == set(fam.features)


def test_every_family_version_has_its_fingerprint_recorded():
    assert unlocked_changes() == []


def test_a_changed_computation_without_a_version_bump_is_caught(tmp_path):
    registry = api.load_registry()
    lock_file = tmp_path / "fingerprints.lock"
    lock(registry, lock_file)
    assert unlocked_changes(registry, lock_file) == []
    changed = copy.deepcopy(RAW)
    changed["families"]["engagement"]["config"]["score_inputs"]["login"]["weight"] = 0.5
    edited = parse_registry(changed)
    [problem] = unlocked_changes(edited, lock_file)
    version = registry.family("engagement").version
    assert problem.startswith(f"engagement {version}: computation changed")
    with pytest.raises(RegistryError, match="Bump the family version"):
        lock(edited, lock_file)
    changed["families"]["engagement"]["version"] = "9.0.0"
    bumped = parse_registry(changed)
    assert lock(bumped, lock_file) == {"engagement": "9.0.0"}
    assert unlocked_changes(bumped, lock_file) == []
    assert read_lock(lock_file)["engagement"][version] != read_lock(lock_file)["engagement"]["9.0.0"]


def test_comments_and_docstrings_do_not_change_a_fingerprint():
    from feature_platform.registry.fingerprint import _normalised_source

    family = api.load_registry().family("activity")
    before = family_fingerprint(family)
    assert before == family_fingerprint(family)
    assert "Activity family" not in _normalised_source(family.module)


def test_a_fingerprint_covers_the_tile_code_of_its_family():
    from feature_platform.registry.fingerprint import _normalised_source

    lead = _normalised_source(api.load_registry().family("lead").module)
    assert "ASOF LEFT JOIN" in lead and "first_out_ts" in lead  # the tile SQL, not only the merge


def test_shared_engine_counts_only_through_its_semantic_parts():
    from feature_platform.registry.fingerprint import _normalised_source, _shared_modules

    engine = _normalised_source("feature_platform.features.engine")
    assert "ORDER BY timestamp, event_id" in engine  # what a tile sees and in which order counts
    assert "signup_days" in engine  # which users a snapshot has counts
    assert "snapshots (" not in engine  # progress logging does not
    # the engine and the window code reach every family, through the family module's own imports
    for family in api.load_registry().families.values():
        if not family.derived:
            assert "feature_platform.features.engine" in _shared_modules(family.module), family.name


def test_a_shared_module_counts_only_through_what_a_family_imports():
    import ast

    from feature_platform.registry.fingerprint import _closure

    tree = ast.parse("RATE = 2\n\ndef helper(x):\n    return x * RATE\n\ndef used(x):\n    return helper(x)\n\n"
                     "def unrelated():\n    return 1\n")
    assert _closure(tree, {"used"}) == ("RATE", "helper", "used")  # what `used` reaches, transitively
    assert "unrelated" not in _closure(tree, {"used"})


def test_an_unknown_name_is_a_plain_sentence_and_still_a_key_error():
    registry = load_registry()
    with pytest.raises(UnknownNameError) as raised:
        registry.get_feature("no_such_feature")
    assert str(raised.value) == "unknown feature 'no_such_feature'; see `feature-platform registry list`"
    assert isinstance(raised.value, KeyError)
    with pytest.raises(UnknownNameError, match="unknown family 'nope'; families: "):
        registry.family("nope")
