"""deploy/prometheus: the rules pass promtool's checks and unit tests, every alert is tested firing and silent, and
every metric the rules name is one the feature server or the Dagster exporter really exports."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from feature_platform.config import Settings
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.orchestration.monitoring.exporter import exposition
from feature_platform.serving.api import create_app
from feature_platform_tests.monitoring.conftest import sample_values
from feature_platform_tests.serving.conftest import END, REGISTRY

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES, RULES_TEST, CONFIG = PROMETHEUS / "rules.yml", PROMETHEUS / "rules_test.yml", PROMETHEUS / "prometheus.yml"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself writes per scrape target
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
            "inf", "nan"}


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The series a PromQL expression selects: (metric name, label names matched). Enough of PromQL for these
    rules: strings, ranges and grouping clauses are cut out first, then names not called as functions remain."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = []
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?", text):
        name, braces, call = match.groups()
        if call or name.lower() in KEYWORDS:
            continue
        found.append((name, set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", braces or ""))))
    return found


@pytest.mark.parametrize(("expr", "expected"), [
    ('histogram_quantile(0.99, sum by (le, route) (rate(fp_x_bucket{route=~"/a/{b}", s!="x"}[5m])))',
     [("fp_x_bucket", {"route", "s"})]),
    ("fp_a > 0.5 * fp_b and fp_a <= fp_b", [("fp_a", set()), ("fp_b", set()), ("fp_a", set()), ("fp_b", set())]),
    ('time() - fp_t{job="d"} > 93600', [("fp_t", {"job"})]),
    ('sum(rate(fp_c{to=~"a|b"}[5m])) / on(job) group_left sum(fp:d:ratio) > 1e-3', [("fp_c", {"to"}), ("fp:d:ratio", set())]),
    ('up{job="x"} == 0', [("up", {"job"})]),
])
def test_selectors_finds_the_metric_names_and_their_matched_labels(expr, expected):
    assert selectors(expr) == expected


@pytest.mark.promtool
def test_promtool_accepts_the_rules(promtool):
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout + done.stderr


@pytest.mark.promtool
def test_promtool_unit_tests_of_the_rules_pass(promtool):
    done = subprocess.run([promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True, timeout=120,
                          cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_waits_has_a_severity_and_says_what_to_do():
    alerts = [rule for rule in _rules() if "alert" in rule]
    assert len(alerts) >= 10
    for rule in alerts:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"].strip() and len(rule["annotations"]["description"]) > 80, rule["alert"]


def test_every_alert_is_unit_tested_firing_and_silent():
    cases = [case for test in yaml.safe_load(RULES_TEST.read_text())["tests"] for case in test.get("alert_rule_test", [])]
    for name in (rule["alert"] for rule in _rules() if "alert" in rule):
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}  # True: fires
        assert outcomes == {True, False}, f"{name}: tested firing {True in outcomes}, silent {False in outcomes}"
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    tested = {name for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
              for case in test.get("promql_expr_test", []) for name, _ in selectors(case["expr"])}
    assert recorded <= tested, recorded - tested


def _server_exposition(data: Path) -> str:
    user = user_vectors(OfflineStore(data), REGISTRY, END).column("user_id")[0].as_py()
    app = create_app(Settings(data_dir=data), reload_seconds=0, clock=lambda: dt.datetime(2025, 3, 13, 9, 0))
    with TestClient(app) as client:
        assert client.get(f"/features/{user}").status_code == 200
        assert client.post("/features/batch", json={"user_ids": [user, "nobody"]}).status_code == 200
        return client.get("/metrics").text


def test_every_metric_and_label_the_rules_name_is_exported_by_the_server_or_the_exporter(served_data, dagster_history):
    labels: dict[str, set[str]] = {}
    for text in (_server_exposition(served_data),
                 exposition(dagster_history.instance, dagster_history.defs).decode()):
        for name, sample_labels in sample_values(text):
            labels.setdefault(name, set()).update(key for key, _ in sample_labels)
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    used = [found for rule in _rules() for found in selectors(str(rule["expr"]))]
    assert {name for name, _ in used} & {"fp_request_latency_seconds_bucket", "fp_dagster_last_run_failed"}  # parsed
    unknown = sorted({name for name, _ in used if name not in labels and name not in recorded | PROMETHEUS_OWN})
    assert unknown == [], f"the rules name metrics nobody exports: {unknown}"
    wrong = sorted({(name, label) for name, matched in used if name in labels
                    for label in matched if label not in labels[name]})
    assert wrong == [], f"the rules match labels these metrics do not carry: {wrong}"


def test_the_example_config_loads_the_rules_and_scrapes_the_jobs_the_rules_watch():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    jobs = {scrape["job_name"] for scrape in config["scrape_configs"]}
    watched = {re.search(r'job="([^"]+)"', str(rule["expr"])).group(1)  # type: ignore[union-attr]
               for rule in _rules() if "alert" in rule and any(n == "up" for n, _ in selectors(str(rule["expr"])))}
    assert watched and watched <= jobs, (watched, jobs)
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
