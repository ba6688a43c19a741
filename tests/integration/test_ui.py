"""The Dagster UI as a user sees it: `dagster dev` on loopback, a GraphQL backfill, headless Chromium.

Needs Debian's chromium and chromedriver (``bash .ci/install-test-deps.sh``) and the
``selenium`` package (dev extra); skips with the reason when they are missing.
Screenshots land in the test's temp dir (``screenshots/``), printed at the end.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT, open_data

pytestmark = [pytest.mark.ui, pytest.mark.timeout(900)]

SOURCES = {"alpha": 37, "beta": 23}  # distinct row counts, so the page shows which is which
SERVER_START_TIMEOUT_S = 150
BACKFILL_TIMEOUT_S = 240

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(base: str, query: str, variables: dict) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        payload = json.load(resp)
    assert "errors" not in payload, payload
    return payload["data"]


def _own_group_with_sigint() -> None:
    # A new process group (so one signal reaches all of dagster dev), and SIGINT handled even
    # when pytest itself runs in the background, where the shell leaves SIGINT ignored.
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (zombies do not count)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-5000:] if path.exists() else ""


@pytest.fixture
def browser_tools():
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("chromium/chromedriver missing: run `bash .ci/install-test-deps.sh`")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[dev]'")
    return webdriver, chromium, chromedriver


@pytest.fixture
def dagster_dev(tmp_path, r1_home, write_config):
    """`dagster dev` on a free loopback port with a temp DAGSTER_HOME; stopped with SIGINT."""
    for name, rows in SOURCES.items():
        with (tmp_path / f"{name}.jsonl").open("w") as fh:
            for i in range(rows):
                fh.write(json.dumps({"problem": f"{name}: what is {i} times 3?", "answer": str(3 * i)}) + "\n")
    write_config({"sources": [{"name": n, "kind": "file", "path": f"{n}.jsonl"} for n in SOURCES]})
    import dagster as dg

    from dagster_project.pools import ensure_pools

    with dg.DagsterInstance.get() as instance:
        ensure_pools(instance)  # what `make dagster-home` does
    port = _free_port()
    log = tmp_path / "dagster-dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_own_group_with_sigint,
            env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}:\n{_log_tail(log)}")
            try:
                # The code location is loaded once the asset shows up in GraphQL.
                data = _graphql(base, '{ assetNodes { assetKey { path } } }', {})
                if any(n["assetKey"]["path"] == ["raw_problems"] for n in data["assetNodes"]):
                    break
            except (urllib.error.URLError, ConnectionError, OSError, AssertionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster dev did not serve the code location in {SERVER_START_TIMEOUT_S}s:\n{_log_tail(log)}")
            time.sleep(2)
        yield base, log
    finally:
        # dagster dev shuts its webserver, daemon and code servers down on SIGINT to its group,
        # as on Ctrl-C in a terminal. Nothing of the group may outlive the test.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 90
        while _live_group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(1)
        left = _live_group_members(proc.pid)
        proc.poll()
        if left:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"dagster dev left processes running 90 s after SIGINT: {left}\n{_log_tail(log)}")


def _page_text(driver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def _wait_for_text(driver, texts: list[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = _page_text(driver)
        if all(t in text for t in texts):
            return text
        if time.monotonic() > deadline:
            missing = [t for t in texts if t not in text]
            raise AssertionError(f"{driver.current_url}: {missing} not shown; page text:\n{text[:3000]}")
        time.sleep(1)


def _dismiss_welcome_dialog(driver) -> None:
    """The first visit shows a 'Join the Dagster community' dialog; a user clicks Skip."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        button.click()
        time.sleep(1)


def _screenshot(driver, path: Path) -> None:
    _dismiss_welcome_dialog(driver)
    driver.save_screenshot(str(path))


def _asset_names(base: str) -> set[str]:
    nodes = _graphql(base, "{ assetNodes { assetKey { path } } }", {})["assetNodes"]
    return {"/".join(n["assetKey"]["path"]) for n in nodes}


def test_backfill_through_graphql_then_catalog_lineage_and_partitions_in_chromium(tmp_path, dagster_dev, browser_tools, r1_home):
    base, log = dagster_dev
    webdriver, chromium, chromedriver = browser_tools

    launched = _graphql(base, LAUNCH_BACKFILL, {"params": {
        "assetSelection": [{"path": ["raw_problems"]}],
        "partitionNames": sorted(SOURCES),
        "title": "ui test backfill",
    }})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while True:
        status = _graphql(base, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert status["__typename"] == "PartitionBackfill", status
        if status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"):
            break
        assert status["status"] in ("REQUESTED",), f"backfill ended {status}:\n{_log_tail(log)}"
        assert time.monotonic() < deadline, f"backfill still {status['status']} after {BACKFILL_TIMEOUT_S}s:\n{_log_tail(log)}"
        time.sleep(3)

    with open_data(r1_home) as con:
        assert dict(con.execute("SELECT source, count(*) FROM raw_problems GROUP BY 1").fetchall()) == SOURCES

    shots = tmp_path / "screenshots"
    shots.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1600,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver), options=options)
    try:
        driver.set_page_load_timeout(60)

        # The asset catalog lists the asset with its group.
        driver.get(f"{base}/assets")
        _wait_for_text(driver, ["raw_problems", "collection"])
        _screenshot(driver, shots / "asset_catalog.png")

        # The lineage graph of raw_problems: the asset node (partitions filled) and what the
        # project wires downstream of it.
        downstream = [n for n in _asset_names(base) if n == "unique_problems"]
        driver.get(f"{base}/assets/raw_problems?view=lineage")
        text = _wait_for_text(driver, ["raw_problems", "2 partitions", *downstream])
        assert "100% filled" in text
        _screenshot(driver, shots / "lineage_graph.png")

        # The partitions view: both sources materialized; the selected one shows its metadata.
        for name, rows in SOURCES.items():
            driver.get(f"{base}/assets/raw_problems?view=partitions&partition={name}")
            text = _wait_for_text(driver, ["Materialized (2)", "Missing (0)", "rows_read", "rows_rejected", "source_ref"])
            flat = re.sub(r"\s+", " ", text)
            assert f"dagster/row_count {rows} " in flat, flat[:3000]
            assert f"rows_read {rows} rows_rejected 0" in flat, flat[:3000]
            assert f"{name}.jsonl" in flat
            _screenshot(driver, shots / f"partitions_{name}.png")

        # The backfill page, reached from the run list.
        driver.get(f"{base}/runs/b/{backfill_id}")
        _wait_for_text(driver, ["raw_problems", "Succeeded", "100% completed", "alpha", "beta"])
        _screenshot(driver, shots / "backfill.png")
    finally:
        driver.quit()
    saved = sorted(p.name for p in shots.glob("*.png") if p.stat().st_size > 10_000)
    assert saved == ["asset_catalog.png", "backfill.png", "lineage_graph.png", "partitions_alpha.png", "partitions_beta.png"]
    print(f"screenshots in {shots}")


START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on SensorNotFoundError { message }
  }
}"""
SENSOR_RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) {
    __typename
    ... on Runs { results { runId status } }
  }
}"""
# A sensor-requested run queues behind the duckdb_writer pool; on a loaded 2-core machine (CI
# runs two test files at once) collection plus dedupe has taken over 4 minutes.
SENSOR_TIMEOUT_S = 480


def _raw_counts_when(home: Path, expected: dict, log: Path) -> None:
    """Waits until raw_problems holds ``expected`` rows per source (read-only, retried while a run writes)."""
    import duckdb

    deadline = time.monotonic() + SENSOR_TIMEOUT_S
    counts = None
    while time.monotonic() < deadline:
        try:
            with open_data(home) as con:
                counts = dict(con.execute("SELECT source, count(*) FROM raw_problems GROUP BY 1").fetchall())
        except duckdb.Error:  # no table yet, or a run holds the write lock right now
            pass
        if counts == expected:
            return
        time.sleep(3)
    pytest.fail(f"raw_problems is {counts}, not {expected}, {SENSOR_TIMEOUT_S}s after the sensor was started:\n{_log_tail(log)}")


def test_daemon_ticks_the_source_file_sensor_on_new_and_changed_files(tmp_path, dagster_dev, r1_home):
    """The daemon of `dagster dev` runs the sensor: turned on, it collects the never-collected
    sources; a row appended to one file later re-collects that source alone."""
    base, log = dagster_dev
    started = _graphql(base, START_SENSOR, {"selector": {
        "repositoryLocationName": "r1_curator", "repositoryName": "__repository__", "sensorName": "source_file_sensor",
    }})["startSensor"]
    assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started

    _raw_counts_when(r1_home, SOURCES, log)

    with (tmp_path / "alpha.jsonl").open("a") as fh:
        fh.write(json.dumps({"problem": "alpha: what is 100 times 3?", "answer": "300"}) + "\n")
    _raw_counts_when(r1_home, {**SOURCES, "alpha": SOURCES["alpha"] + 1}, log)

    tags = [{"key": "r1/trigger", "value": "source_file_sensor"}]
    runs = _graphql(base, SENSOR_RUNS, {"tags": tags})["runsOrError"]["results"]
    # None failed or was canceled. The backfill may have just created its next run (the steps
    # after raw_problems) when raw_problems reached the expected counts: NOT_STARTED is that
    # moment, before the run is queued (CI, 2026-12-03).
    assert runs and not [r for r in runs if r["status"] in ("FAILURE", "CANCELING", "CANCELED")], runs
