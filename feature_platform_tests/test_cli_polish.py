"""The CLI as a person reads it: `registry show`/`list` without Python reprs and with the models that read a
feature, did-you-mean for unknown names, help text on every option, `--version`."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from feature_platform.cli import _parser, main
from feature_platform.cli_registry import MODELS, duration
from feature_platform.ml.expand import ExpandedFeature, ExpansionSpec
from feature_platform.ml.model_store import ModelStore
from feature_platform.registry import load_registry
from feature_platform.registry.registry import UnknownNameError, did_you_mean

REPRS = ("('", "None", "0:00:00", "True", "False", "[", "]")  # tuples, None, timedelta, bools, lists


@pytest.fixture(autouse=True)
def _restore_umask() -> Iterator[None]:
    """main() sets the CLI's private umask on the process: give the worker its own back."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def shown(out: str) -> dict[str, str]:
    """`registry show`'s lines as {label: value}."""
    rows = {}
    for line in out.splitlines():
        label, value = line.split(": ", 1)
        rows[label.strip()] = value
    return rows


def promote(models: Path, name: str, features: list[str]) -> str:
    """A stub champion of ``name`` whose manifest lists ``features`` (nothing here loads the model)."""
    store = ModelStore(models)
    spec = ExpansionSpec(tuple(ExpandedFeature(f, "int", (f,)) for f in features))
    saved = store.save_version(name, model={"stub": True}, spec=spec, feature_names=features, registry_versions={},
                               training_fingerprint="stub", metrics={}, plots={}, card="stub",
                               created_at=dt.datetime(2026, 1, 2, 3, 4, 5))
    store.promote(name, saved.version, "test")
    return saved.version


# -- registry show / list -------------------------------------------------------------------------------
def test_registry_show_reads_as_text_not_python_reprs(capsys, tmp_path):
    code, out = run(capsys, "registry", "show", "total_events", "--data-dir", str(tmp_path))
    assert code == 0
    rows = shown(out)
    assert rows["name"] == "total_events"
    assert rows["dependencies"] == "-"
    assert rows["staleness_tolerance"] == "2 days"
    assert rows["serving_location"] == "offline, online"
    assert rows["range"] == ">= 0"
    assert rows["nullable"] == "no"
    assert rows["event_types"] == "every event type (18)"
    assert "length" not in rows  # vectors only
    assert rows["upstream features"] == "-"
    assert rows["raw sources"] == "raw/events"
    assert rows["computed by asset"] == "features/user_activity_features"
    assert rows["merged from tiles"] == "tiles/activity"
    for line in out.splitlines():
        label, value = line.split(": ", 1)
        assert len(label) == 22, line  # the values line up
        if label.strip() not in ("description", "computation"):  # free text
            assert not any(r in value for r in REPRS), line
    # No trained model in this data directory: what the model code declares.
    assert rows["used by models"] == (f"churn, contact (no trained champion in {tmp_path / 'models'}; their code "
                                      "trains on every snapshot-family feature)")


def test_registry_show_lists_partial_event_types_ranges_and_vectors(capsys, tmp_path):
    rows = shown(run(capsys, "registry", "show", "engagement_score", "--data-dir", str(tmp_path))[1])
    assert rows["event_types"] == "page_view, email_open, form_submit, purchase, login"
    assert rows["upstream features"].startswith("page_views_30d, email_opens_30d, ")
    assert rows["default"] == "0.0"
    rows = shown(run(capsys, "registry", "show", "topic_vector", "--data-dir", str(tmp_path))[1])
    assert rows["length"] == "10" and rows["range"] == "-" and rows["default"] == "-"
    assert rows["event_types"] == "-" and rows["nullable"] == "yes"


def test_registry_show_of_a_model_output_names_its_model_and_its_inputs_in_words(capsys, tmp_path):
    rows = shown(run(capsys, "registry", "show", "churn_risk_score", "--data-dir", str(tmp_path))[1])
    inputs = len(load_registry().snapshot_features())
    assert rows["dependencies"] == f"model_inputs: every snapshot-family feature ({inputs})"
    assert rows["upstream features"] == f"every snapshot-family feature ({inputs})"
    assert rows["range"] == "0 .. 1"
    assert rows["scored by model"] == "models/churn_model"
    assert rows["used by models"] == "-"  # an output, never an input


def test_registry_show_names_the_trained_champions_that_read_the_feature(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FP_DATA_DIR", str(tmp_path))  # the default data directory
    churn = promote(tmp_path / "models", "churn", ["total_events", "last_active_days"])
    rows = shown(run(capsys, "registry", "show", "total_events")[1])
    assert rows["used by models"] == (f"churn (champion {churn}), contact (no trained champion in "
                                      f"{tmp_path / 'models'}; its code trains on every snapshot-family feature)")
    contact = promote(tmp_path / "models", "contact", ["total_events"])
    rows = shown(run(capsys, "registry", "show", "total_events")[1])
    assert rows["used by models"] == f"churn (champion {churn}), contact (champion {contact})"
    rows = shown(run(capsys, "registry", "show", "last_active_days")[1])
    assert rows["used by models"] == f"churn (champion {churn})"  # what the champion was trained on
    rows = shown(run(capsys, "registry", "show", "purchase_count")[1])
    assert rows["used by models"] == "-"  # neither champion reads it
    other = promote(tmp_path / "models", "upsell", ["purchase_count"])  # any model in the store, not only ours
    rows = shown(run(capsys, "registry", "show", "purchase_count")[1])
    assert rows["used by models"] == f"upsell (champion {other})"


def test_a_damaged_champion_is_said_and_the_rest_still_shown(capsys, tmp_path):
    promote(tmp_path / "models", "churn", ["total_events"])
    (tmp_path / "models" / "churn" / "champion.json").write_text("{not json")
    code, out = run(capsys, "registry", "show", "total_events", "--data-dir", str(tmp_path))
    assert code == 0
    used = shown(out)["used by models"]
    assert used.startswith("churn (champion unreadable: ") and "contact (no trained champion in" in used


def test_the_models_looked_up_are_the_ones_the_server_loads():
    from feature_platform.serving.state import CHURN, CONTACT

    assert MODELS == (CHURN, CONTACT)


@pytest.mark.parametrize(("value", "text"), [
    (dt.timedelta(days=2), "2 days"), (dt.timedelta(days=1), "1 day"), (dt.timedelta(hours=36), "36 hours"),
    (dt.timedelta(minutes=90), "90 minutes"), (dt.timedelta(seconds=30), "30 seconds"),
    (dt.timedelta(hours=1), "1 hour"), (dt.timedelta(seconds=1.5), "1.5 seconds"),
])
def test_durations_read_in_the_largest_whole_unit(value, text):
    assert duration(value) == text


def test_registry_list_is_aligned_and_filters_by_family(capsys):
    code, out = run(capsys, "registry", "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(load_registry().features)
    assert len({len(line) - len(line.split()[-1]) for line in lines}) == 1  # the versions line up
    assert "event_vector_listing_contact_clicked" in out  # the longest name, not cut
    code, out = run(capsys, "registry", "list", "--family", "profile")
    assert code == 0 and {line.split()[0] for line in out.splitlines()} == {"profile"}
    assert "gender__missing" in out


# -- did you mean ---------------------------------------------------------------------------------------
def test_an_unknown_feature_suggests_the_closest_names(capsys):
    code, out = run(capsys, "registry", "show", "totl_events")
    assert code == 2
    assert out == ("error: unknown feature 'totl_events' (did you mean 'total_events' or 'total_reviews'?); "
                   "see `feature-platform registry list`\n")
    code, out = run(capsys, "registry", "show", "TOTAL_EVENTS")  # case does not hide the match
    assert code == 2 and "did you mean 'total_events'" in out
    code, out = run(capsys, "registry", "show", "nope")  # nothing close: no guess
    assert out == "error: unknown feature 'nope'; see `feature-platform registry list`\n"


def test_an_unknown_family_suggests_the_closest_and_lists_them_all(capsys):
    code, out = run(capsys, "registry", "list", "--family", "actvity")
    families = ", ".join(sorted(load_registry().families))
    assert code == 2
    assert out == f"error: unknown family 'actvity' (did you mean 'activity'?); families: {families}\n"
    with pytest.raises(UnknownNameError, match=r"unknown family 'profil' \(did you mean 'profile'\?\); families: "):
        load_registry().family("profil")


def test_the_suggestion_is_made_where_the_error_is_raised():
    registry = load_registry()
    with pytest.raises(UnknownNameError) as raised:
        registry.get_feature("engagment_score")
    assert "did you mean 'engagement_score'" in str(raised.value)
    with pytest.raises(UnknownNameError, match="did you mean 'engagement_score'"):
        registry.lineage("engagment_score")
    assert did_you_mean("x", ["abc"]) == ""
    three = did_you_mean("abd", ["abc", "abe", "abf", "zzz"])  # equally close: difflib's order
    assert re.fullmatch(r" \(did you mean 'ab[cef]', 'ab[cef]' or 'ab[cef]'\?\)", three), three


# -- help and version -----------------------------------------------------------------------------------
def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path) or "feature-platform", action


def test_every_option_of_every_command_has_help():
    options = list(_options(_parser()))
    missing = [f"{command} {'/'.join(action.option_strings) or action.dest}" for command, action in options
               if not (action.help or "").strip()]
    assert not missing, f"options without help=: {missing}"
    commands = {command.split()[0] for command, _ in options}
    assert {"generate", "ingest", "run", "registry", "prune", "backfill", "ui", "serve"} <= commands  # it walked them
    assert ("generate", "--format") in {(c, a.option_strings[0]) for c, a in options if a.option_strings}


def test_version_in_process(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"feature-platform {version('feature_platform')}\n"


def test_version_of_the_installed_command():
    script = Path(sys.executable).with_name("feature-platform")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "feature_platform.cli"]
    result = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"feature-platform {version('feature_platform')}\n"


def test_the_ui_output_drops_dagster_api_notices_and_keeps_the_rest():
    from feature_platform.cli_ui import quiet_lines

    lines = ["DAGSTER_HOME=/x dagster dev\n",
             "/venv/click/core.py:911: SupersessionWarning: Function `dev_command` is superseded.\n",
             "  return callback(*args, **kwargs)\n", "\n",
             "2026-12-02 - dagster - INFO - Launching Dagster services...\n",
             "/venv/x.py:1: BetaWarning: Parameter `pool` is currently in beta\n", "    pool=None,\n",
             "Traceback (most recent call last):\n", "  File \"x.py\", line 1\n"]
    assert list(quiet_lines(lines)) == [lines[0], lines[4], lines[7], lines[8]]  # a traceback stays whole
