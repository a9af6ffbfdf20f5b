"""The model plots and the promotion gate as a person sees them: the real UI in headless Chromium."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from feature_platform_tests.helpers import copy_tree, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def ui(sample_cli_run, tmp_path_factory):
    """`feature-platform ui` on (a copy of) the data directory of the session's `feature-platform run` on
    150 users x 40 days (e2e/sample_run.py)."""
    run = sample_cli_run.result
    assert run.returncode == 0, run.stdout + run.stderr
    root = copy_tree(sample_cli_run.snapshot, tmp_path_factory.mktemp("ui"))  # `dagster dev` writes to its instance
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FP_", "DAGSTER_"))}
    env["PATH"] = "/usr/bin:/bin"  # the command must find its own dagster, not one on PATH
    server = subprocess.Popen([sys.executable, "-m", "feature_platform.cli", "ui", "--port", str(port)], cwd=root,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "feature-platform ui exited"
                assert time.monotonic() < deadline, "the UI did not answer within 180 s"
                time.sleep(1)
        yield url
    finally:
        # Ctrl-C to the command alone (SIGTERM is test_ui_asset_graph.py's): it stops all it started, exit 0.
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(timeout=60)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
        home = str(root / "data" / "dagster_home")
        left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if _dagster_home(p) == home]
        assert code == 0 and left == [], (code, left)


def _dagster_home(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("DAGSTER_HOME")
    except (psutil.Error, OSError):
        return None


def test_the_churn_model_page_shows_its_metrics_plots_and_gate(ui, browser, tmp_path):
    browser.get(f"{ui}/assets/models/churn_model")
    wait = WebDriverWait(browser, 90)
    wait.until(EC.presence_of_element_located((By.XPATH, "//*[text()='plot_roc_pr']")))
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "out_of_time" in page and "baseline_recency" in page  # the metrics table renders inline
    assert "Join the Dagster community" not in page  # the instance the CLI writes turns the pop-up off
    for plot, size in (("plot_roc_pr", ("1000", "450")), ("plot_calibration", ("600", "700"))):
        row = browser.find_element(By.XPATH, f"//tr[.//*[text()='{plot}']]")
        browser.execute_script("arguments[0].click()",
                               row.find_element(By.XPATH, ".//*[contains(text(), 'Show Markdown')]"))
        image = wait.until(EC.visibility_of_element_located(
            (By.XPATH, "//img[starts-with(@src, 'data:image/png;base64,')]")))
        wait.until(lambda _, shown=image: shown.get_attribute("naturalWidth") != "0")
        assert (image.get_attribute("naturalWidth"), image.get_attribute("naturalHeight")) == size
        browser.save_screenshot(str(tmp_path / f"churn_model_{plot}.png"))
        browser.find_element(By.XPATH, "//button[normalize-space()='Close']").click()
        wait.until(EC.invisibility_of_element_located((By.XPATH, "//img[starts-with(@src, 'data:image/png')]")))

    browser.get(f"{ui}/assets/models/churn_model?view=checks")
    wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'promotion_gate')]")))
    wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'promoted: champion')]")))
    checks = browser.find_element(By.TAG_NAME, "body").text
    # the gate names the best of the baselines (recency or BG/NBD), whichever it was on this data
    assert "blocking" in checks and "Passed" in checks and re.search(r"beats the baseline baseline_(recency|bg_nbd)",
                                                                     checks)
    browser.save_screenshot(str(tmp_path / "churn_model_checks.png"))


def test_after_a_default_run_a_person_sees_filled_partitions_named_runs_and_described_columns(ui, browser, tmp_path):
    """What a newcomer looks at after `feature-platform run`: the Runs page names each step's job, a feature's
    partitions are all filled (they start on the data's first day), its checks passed, its columns described."""
    from feature_platform.registry import load_registry

    wait = WebDriverWait(browser, 90)
    browser.get(f"{ui}/runs")
    for job in ("ingest_raw_inputs", "build_feature_snapshots", "train_models", "push_online_store"):
        wait.until(EC.presence_of_element_located((By.XPATH, f"//*[normalize-space(text())='{job}']")))
    assert "__ephemeral_asset_job__" not in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(tmp_path / "runs.png"))

    browser.get(f"{ui}/assets/features/lead_features?view=partitions")
    wait.until(EC.presence_of_element_located((By.XPATH, "//*[normalize-space(.)='Materialized (40)']")))
    missing = re.findall(r"Missing \((\d+)\)", browser.find_element(By.TAG_NAME, "body").text)
    assert missing and set(missing) == {"0"}, missing  # the range before the data is not "missing"
    browser.save_screenshot(str(tmp_path / "lead_features_partitions.png"))

    # No check failed on this untouched data, the drift checks included, on every feature family (windows that
    # a 40-day history cannot fill yet are reported, not judged: ml/drift.py).
    for family in (f for f in load_registry().families.values() if not f.derived):
        browser.get(f"{ui}/assets/features/{family.asset}?view=checks")
        for check in ("schema_matches_registry", "values_within_registry_rules", "one_row_per_known_user",
                      "feature_drift_psi"):
            wait.until(EC.presence_of_element_located(
                (By.XPATH, f"//*[@title='{check}']/following-sibling::*[normalize-space(.)='Succeeded']")))
        if family.name == "lifetime":
            browser.save_screenshot(str(tmp_path / "lifetime_features_checks_after_run.png"))

    feature = load_registry().list_features("lead")[0]
    browser.get(f"{ui}/assets/features/lead_features")
    wait.until(EC.presence_of_element_located((By.XPATH, f"//*[contains(text(), {feature.description[:40]!r})]")))
    browser.save_screenshot(str(tmp_path / "lead_features_columns.png"))
    browser.get(f"{ui}/assets")
    wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'lead_features')]")))
    browser.save_screenshot(str(tmp_path / "catalog.png"))
