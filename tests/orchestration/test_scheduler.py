"""A real scheduler: ``airflow standalone`` on loopback, driven through the REST API as the UI does.

One server for the module; every stage is a real ``spark-submit`` on a local master. The day is short
(300 rows, below the gate's ``row_count`` minimum of 1000):
1. a plain trigger: the gate blocks, validate fails with the checks, the report and the release params in its
   log (no job stack trace, no Spark INFO lines), the later stages stop, the failure callback reaches the
   alert sinks, and the run's note says the gate blocked;
2. a trigger with the override params releases it; the release is recorded and every event is scored once, by
   the fallback rules (no model is trained here): ``fallback_used`` fails, monitoring runs, the note says so;
3. the UI as a person sees it: log in with headless Chromium, open the grid, screenshot, the run's note shown.

The server runs with ``batchml ui``'s environment (``ui.environment``), so its tasks set the run notes through
the REST API as they would under ``batchml ui``.

Each task is a cold ``spark-submit`` on a local master, as deployed; the multi-day legs in ``test_multi_day.py``
attach to Spark Connect instead.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest

from batchml.orchestration import local
from tests.orchestration.airflow_server import AirflowServer
from tests.orchestration.browser import Browser, chromium
from tests.orchestration.helpers import airflow_env, demo_data, lake_path

pytestmark = pytest.mark.slow
DAG = "batchml_nightly"
SHORT_DAY = dt.date(2024, 1, 1)
OVERRIDE = {"run_date": str(SHORT_DAY), "override_table": "bronze.card_transactions",
            "override_checks": ["row_count"], "override_by": "ana",
            "override_reason": "holiday: a short day, confirmed with the source team"}
ARTIFACTS = Path(os.environ.get("BATCHML_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("scheduler")
    env = airflow_env(root)
    local.prepare(env)
    demo_data(env, SHORT_DAY, 1, 300)  # below the gate's row_count minimum of 1000
    airflow = AirflowServer(env)
    try:
        airflow.start()
        assert airflow.wait_for_dag(DAG)["is_paused"] is True  # new DAGs start paused
        assert airflow.api("PATCH", f"/dags/{DAG}", json={"is_paused": False})["is_paused"] is False
        yield airflow, root
    finally:
        airflow.stop()
        print(f"airflow standalone log: {airflow.log}")


def _trigger(airflow: AirflowServer, conf: dict) -> dict:
    run = airflow.api("POST", f"/dags/{DAG}/dagRuns", json={"logical_date": None, "conf": conf})
    return airflow.wait_for_runs(DAG, [run["dag_run_id"]])[0]


@pytest.mark.e2e
def test_a_blocked_gate_stops_the_later_stages_with_a_clear_log(server):
    airflow, root = server
    run = _trigger(airflow, {"run_date": str(SHORT_DAY)})
    assert run["state"] == "failed"
    states = airflow.task_states(DAG, run["dag_run_id"])
    assert states["ingest"] == "success" and states["validate"] == "failed"
    assert {states[t] for t in ("build_features", "materialize", "score", "monitor", "request_retraining")} == {
        "upstream_failed"}
    log = airflow.task_log(DAG, run["dag_run_id"], "validate")
    assert "VALIDATION GATE BLOCKED card_transactions for run date 2024-01-01: bronze.card_transactions: row_count" in log
    report = root / "artifacts" / "reports" / "validation" / "card_transactions" / str(SHORT_DAY)
    assert str(report / "bronze.card_transactions.html") in log and "override_checks" in log
    # the message comes before Airflow's one failure record (its traceback is structured), and the job left none
    assert log.count("Task failed with exception") == 1 and "Traceback" not in log
    assert log.index("VALIDATION GATE BLOCKED") < log.index("Task failed with exception")
    assert " INFO SparkContext" not in log and "Skipping registering function" not in log  # noise filtered
    assert "validation BLOCKED card_transactions 2024-01-01" in log  # the job's own one line
    alerts = [json.loads(line) for line in (root / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert [a["run_id"] for a in alerts if a["kind"] == "airflow_task_failed" and a["task_id"] == "validate"] == [
        run["dag_run_id"]]  # the failure callback reached the alert sinks
    assert _note(airflow, run) == "2024-01-01 · gate blocked: row_count"


def _note(airflow: AirflowServer, run: dict) -> str:
    return airflow.api("GET", f"/dags/{DAG}/dagRuns/{run['dag_run_id']}")["note"]


def test_an_override_in_the_params_releases_the_gate_and_is_recorded(server):
    airflow, root = server
    run = _trigger(airflow, OVERRIDE)
    states = airflow.task_states(DAG, run["dag_run_id"])
    # no model is trained here: the fallback rules score the day, fallback_used marks it, monitoring still runs
    assert run["state"] == "failed" and states.pop("fallback_used") == "failed", states
    assert states.pop("request_retraining") == "skipped" and set(states.values()) == {"success"}, states
    tis = airflow.api("GET", f"/dags/{DAG}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
    started = {t["task_id"]: dt.datetime.fromisoformat(t["start_date"]) for t in tis}
    assert started["score"] < started["materialize"], started  # one Spark slot: the scores go first
    from deltalake import DeltaTable

    overrides = DeltaTable(str(lake_path(root, "ops.validation_overrides"))).to_pandas()
    assert overrides[["check", "by", "reason"]].values.tolist() == [["row_count", "ana", OVERRIDE["override_reason"]]]
    results = DeltaTable(str(lake_path(root, "ops.validation_results"))).to_pandas()
    released = results[(results["run_date"] == SHORT_DAY) & (results["check"] == "row_count")]
    history = released.sort_values("attempt")[["attempt", "status", "override_by"]].values.tolist()
    assert history == [[1, "failed", None], [2, "overridden", "ana"]]  # both gate runs of the day are kept
    scores = DeltaTable(str(lake_path(root, "scores.card_transactions"))).to_pandas()
    silver = DeltaTable(str(lake_path(root, "silver.card_transactions"))).to_pandas()
    assert scores["transaction_id"].is_unique and set(scores["transaction_id"]) == set(silver["transaction_id"])
    assert len(silver) >= 250  # the short day went through (300 rows, a few quarantined)
    assert _note(airflow, run) == f"2024-01-01 · released row_count (ana) · FALLBACK {len(scores)}/{len(scores)} rows"
    alerts = [json.loads(line) for line in (root / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert not [a for a in alerts if a.get("task_id") == "fallback_used"]  # scoring's own alert is enough


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (Debian package `chromium`; "
                    "`make test` installs it when run as root)")
def test_the_ui_shows_the_run_and_its_note_after_login(server, tmp_path):
    airflow, _ = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser = Browser(tmp_path / "chromium-profile")
    try:
        browser.goto(f"{airflow.url}/dags/{DAG}")
        browser.wait_for("document.querySelector('input[type=password]') !== null")  # sent to the login form
        browser.type_into("input[name=username]", "admin")
        browser.type_into("input[type=password]", airflow.password)
        browser.js("document.querySelector('button[type=submit]').click()")
        browser.wait_for("document.querySelector('input[type=password]') === null && "
                         f"document.body.innerText.includes('{DAG}')")
        browser.goto(f"{airflow.url}/dags/{DAG}")  # the DAG page: the grid of runs x tasks on the left
        browser.wait_for(f"document.body.innerText.includes('{DAG}') && "
                         "document.querySelectorAll('a[href*=\"/runs/\"]').length > 0")
        time.sleep(2)  # let the grid finish drawing before the picture
        shot = browser.screenshot(ARTIFACTS / "airflow_grid_batchml_nightly.png")
        print(f"screenshot: {shot}")
        latest = airflow.api("GET", f"/dags/{DAG}/dagRuns", params={"order_by": "-run_after", "limit": 1})
        run_id = latest["dag_runs"][0]["dag_run_id"]
        browser.goto(f"{airflow.url}/dags/{DAG}/runs/{run_id}")
        browser.wait_for("document.body.innerText.includes('FALLBACK')")  # the run's note, on its page
        browser.screenshot(ARTIFACTS / "airflow_run_batchml_nightly.png")
        page = browser.text()
        assert run_id in page and "2024-01-01 · released row_count (ana) · FALLBACK" in page
    finally:
        browser.close()
