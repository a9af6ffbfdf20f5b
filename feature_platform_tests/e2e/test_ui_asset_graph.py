"""The asset graph as a person sees it: `feature-platform ui` in headless Chromium shows every group and every
asset of each group, and a partition materialized over GraphQL (what the Materialize button sends) shows up on
the asset's pages after a reload. Screenshots go to each test's tmp_path."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from feature_platform.definitions import build_defs
from feature_platform.orchestration import constants as C
from feature_platform.sources.generator import GeneratorConfig, generate
from feature_platform_tests.e2e.dagster_server import IN_PROCESS, DagsterGraphQL, Servers, clean_env
from feature_platform_tests.helpers import free_port

defs = build_defs()

END = dt.date(2025, 3, 12)
DAY = END.isoformat()
GROUPS = {C.GROUP_RAW, C.GROUP_TILES, C.GROUP_FEATURES, C.GROUP_DERIVED, C.GROUP_TRAINING, C.GROUP_MODELS,
          C.GROUP_ONLINE}
KEY_ASSETS = {C.RAW_EVENTS: C.GROUP_RAW, C.TILES_LEAD: C.GROUP_TILES, C.LEAD_FEATURES: C.GROUP_FEATURES,
              C.CHURN_MODEL: C.GROUP_MODELS, C.ONLINE_PUSH: C.GROUP_ONLINE}
ASSET_GROUPS = {spec.key: spec.group_name for assets in defs.assets for spec in assets.specs}
TIMEOUT = 90  # seconds; a page of the UI renders in a few, but two cores may be busy with a run

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`feature-platform ui` (dagster dev on a SQLite instance) over 60 users x 5 days of sample data."""
    root = tmp_path_factory.mktemp("ui_graph")
    generate(GeneratorConfig(users=60, days=5, end_date=END, seed=5), root / "src")
    port = free_port()
    servers = Servers(root)
    try:
        servers.start("ui", [sys.executable, "-m", "feature_platform.cli", "ui", "--port", str(port),
                             "--data-dir", str(root / "data")], cwd=root, env=clean_env(FP_RAW_DIR=str(root / "src")))
        url = f"http://127.0.0.1:{port}"
        servers.wait_until_serving(url)
        yield url, DagsterGraphQL(url), servers
    finally:
        servers.stop()


def _graph_node(name: str, member: bool = False) -> tuple[str, str]:
    """A node of the lineage graph by its name; a member of the page's group shows its status too."""
    status = " and contains(., 'Latest event')" if member else ""
    return By.XPATH, f"//*[name()='foreignObject'][.//*[@data-tooltip='{name}']{status}]"


def _text(text: str) -> tuple[str, str]:
    """An element showing exactly ``text`` (React may split it into several text nodes)."""
    return By.XPATH, f"//*[normalize-space(.)='{text}']"


def test_the_lineage_shows_every_group_and_each_group_page_every_asset_of_it(ui, browser, tmp_path):
    url, graphql, _ = ui
    assert set(ASSET_GROUPS.values()) == GROUPS
    assert {key: ASSET_GROUPS[key] for key in KEY_ASSETS} == KEY_ASSETS
    wait = WebDriverWait(browser, TIMEOUT)

    browser.get(f"{url}/asset-groups")  # "Lineage" in the navigation: the global graph, one node per group
    for group in sorted(GROUPS):
        wait.until(EC.presence_of_element_located(_graph_node(group)))
    assert "Join the Dagster community" not in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(tmp_path / "lineage.png"))

    browser.set_window_size(1600, 3600)  # the graph draws only what is in view: a tall view holds a group
    for group in sorted(GROUPS):
        browser.get(f"{url}/locations/{graphql.location}/asset-groups/{group}/lineage")
        try:
            for key in sorted(k for k, g in ASSET_GROUPS.items() if g == group):
                wait.until(EC.presence_of_element_located(_graph_node(key.path[-1], member=True)),
                           f"{key.to_user_string()} is not shown in the lineage of group {group}")
        finally:
            browser.save_screenshot(str(tmp_path / f"group_{group}.png"))  # what it showed, passed or not


def test_a_partition_materialized_over_graphql_shows_on_the_asset_pages(ui, browser, tmp_path):
    url, graphql, servers = ui
    wait = WebDriverWait(browser, TIMEOUT)
    partition_page = f"{url}/assets/{C.LEAD_FEATURES.to_user_string()}?view=partitions&partition={DAY}"
    browser.get(partition_page)
    wait.until(EC.presence_of_element_located(_text("Materialized (0)")))

    run_id = graphql.launch_assets([C.RAW_CUSTOMERS.path, C.RAW_EVENTS.path, C.TILES_LEAD.path,
                                    C.LEAD_FEATURES.path], DAY, run_config=IN_PROCESS)
    assert graphql.wait_for_run(run_id) == "SUCCESS", servers.logs()

    browser.refresh()  # the partition's detail names the run that materialized it
    wait.until(EC.presence_of_element_located(_text(run_id[:8])))
    wait.until(EC.presence_of_element_located(_text("Materialized (1)")))
    browser.save_screenshot(str(tmp_path / "lead_features_partition.png"))

    browser.get(f"{url}/assets/{C.RAW_EVENTS.to_user_string()}")  # overview: the latest materialization's partition
    wait.until(EC.presence_of_element_located(_text("Latest materialization")))
    wait.until(EC.presence_of_element_located(_text(DAY)))
    browser.save_screenshot(str(tmp_path / "raw_events.png"))

    browser.get(f"{url}/assets/{C.LEAD_FEATURES.to_user_string()}?view=checks")  # its blocking checks, passed
    for check in (C.CHECK_SNAPSHOT_SCHEMA, C.CHECK_SNAPSHOT_VALUES, C.CHECK_SNAPSHOT_ROWS):
        # a row of the check list: the (middle-truncated, full in its title) name, then the latest status
        wait.until(EC.presence_of_element_located(
            (By.XPATH, f"//*[@title='{check}']/following-sibling::*[normalize-space(.)='Succeeded']")))
    browser.save_screenshot(str(tmp_path / "lead_features_checks.png"))


def test_sigterm_stops_the_ui_and_everything_it_started(ui):
    """Last in this file: it stops the module's server. SIGTERM to `feature-platform ui` alone (as a process
    manager or `kill` sends it), not to its group: no webserver, daemon or code server may outlive it."""
    url, _, servers = ui
    process = servers.processes["ui"]
    home = str(Path(servers.log_dir) / "data" / "dagster_home")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    stopped_in = time.monotonic() - started
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if _dagster_home(p) == home]
    assert left == [], left
    assert stopped_in < 30, f"stopping took {stopped_in:.0f} s"
    assert "SupersessionWarning" not in servers.logs(100_000)


def _dagster_home(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("DAGSTER_HOME")
    except (psutil.Error, OSError):
        return None
