"""The local ``dag.test()`` runner: its run lines, and the override params that release a blocked gate."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from batchml.config import load_config
from batchml.orchestration.local import RunLine, run_lines
from batchml.orchestration.params import resolve
from batchml.orchestration.tasks import release_params
from batchml.storage import Lake
from batchml.validation import gate

DAY = dt.date(2024, 3, 1)


def test_run_lines_read_back_what_the_runner_printed(tmp_path):
    lines = [RunLine("run", "batchml_nightly", "2024-03-01", "failed", 78.6, {"validate": "failed"}),
             RunLine("release", "batchml_nightly", "2024-03-01", details={"override_checks": ["drift:amount"]}),
             RunLine("run", "batchml_nightly", "2024-03-01", "success", 109.0, {"validate": "success"})]
    log = tmp_path / "runner.log"
    log.write_text("task output\n" + "\n".join(f"{line.text()}\nmore task output" for line in lines) + "\n")

    assert run_lines(log) == [RunLine("run", "batchml_nightly", "2024-03-01", "failed", 79.0, {"validate": "failed"}),
                              lines[1], lines[2]]


def test_release_params_name_the_failed_checks_of_the_first_blocked_table(monkeypatch, tmp_path):
    monkeypatch.setenv("BATCHML_ENV", "test")
    monkeypatch.setenv("BATCHML_HOME", str(tmp_path))
    results = [("bronze.card_transactions", "drift:channel", "failed", DAY),
               ("bronze.card_transactions", "drift:amount", "failed", DAY),
               ("bronze.card_transactions", "row_count", "passed", DAY),
               ("bronze.card_transactions", "null:amount", "quarantined", DAY),
               ("bronze.card_chargebacks", "row_count", "failed", DAY),
               ("bronze.card_transactions", "freshness:event_time", "failed", DAY - dt.timedelta(days=1))]
    rows = [{"run_date": day, "dataset": "card_transactions", "table": table, "check": check, "status": status,
             "passed": status == "passed"} for table, check, status, day in results]
    Lake(load_config()).write_arrow(pa.Table.from_pylist(rows, gate.RESULT_SCHEMA), gate.RESULTS)

    params = release_params("card_transactions", str(DAY), "ana", "drift is expected after the launch")

    # one override names one table: the first blocked one (by name); its other checks are not included
    assert params == {"run_date": "2024-03-01", "override_table": "bronze.card_chargebacks",
                      "override_checks": ["row_count"], "override_by": "ana",
                      "override_reason": "drift is expected after the launch"}
    assert resolve(params, None).override_table == "bronze.card_chargebacks"  # the DAG accepts them
    assert release_params("card_transactions", str(DAY + dt.timedelta(days=1)), "ana", "nothing blocked here") is None


def test_run_notes_say_the_date_and_what_the_lake_shows(monkeypatch, tmp_path):
    from batchml.orchestration import run_note
    from batchml.scoring.score import RUNS_SCHEMA

    monkeypatch.setenv("BATCHML_ENV", "test")
    monkeypatch.setenv("BATCHML_HOME", str(tmp_path))
    config, dataset, tx = load_config(), "card_transactions", "bronze.card_transactions"
    lake = Lake(config)

    def attempt(n: int, status: str, by: str | None = None) -> None:
        row = {"run_date": DAY, "dataset": dataset, "table": tx, "check": "drift:amount", "status": status,
               "passed": False, "attempt": n, "override_by": by}
        lake.write_arrow(pa.Table.from_pylist([row], gate.RESULT_SCHEMA), gate.RESULTS)

    assert run_note.outcome(config, dataset, DAY) == "2024-03-01"
    attempt(1, "failed")
    assert run_note.outcome(config, dataset, DAY, "validate") == "2024-03-01 · gate blocked: drift:amount"
    attempt(2, "overridden", "ana")  # the latest attempt decides
    assert run_note.outcome(config, dataset, DAY, "score") == "2024-03-01 · released drift:amount (ana) · FAILED at score"
    runs = config.dataset().scoring.runs_table
    done = {"run_date": DAY, "dataset": dataset, "generation": 1, "event": "completed", "rows": 2783,
            "fallback_rows": 2783, "fallback_reason": "no champion"}
    lake.write_arrow(pa.Table.from_pylist([done], RUNS_SCHEMA), runs)
    assert run_note.outcome(config, dataset, DAY) == "2024-03-01 · released drift:amount (ana) · FALLBACK 2783/2783 rows"
    lake.write_arrow(pa.Table.from_pylist([{**done, "generation": 2, "fallback_rows": 0}], RUNS_SCHEMA), runs)
    assert run_note.outcome(config, dataset, DAY) == "2024-03-01 · released drift:amount (ana) · scored 2783 rows"


def test_the_ui_environment_runs_tasks_as_the_demo_does(tmp_path):
    import json
    import sys
    from pathlib import Path

    from batchml.orchestration import ui

    env = ui.environment(tmp_path, 8123, "demo", base={"PATH": "/usr/bin"})
    assert json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])["host"] == "local[2]"  # never spark-submit's yarn default
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent) and env["BATCHML_ENV"] == "demo"
    api = json.loads(env["AIRFLOW_CONN_AIRFLOW_API"])
    assert api["host"] == "http://127.0.0.1:8123" and api["login"] == ui.USER
    assert api["password"] == ui.password(Path(env["AIRFLOW_HOME"]))  # kept: the same login next time
    assert ui.environment(tmp_path, 8123, "demo", base={})["AIRFLOW_CONN_AIRFLOW_API"] == env["AIRFLOW_CONN_AIRFLOW_API"]


class _FlakyApi:
    """A real HTTP server on loopback that answers the first ``failures`` calls with 500, as Airflow's API
    server does while another writer holds its SQLite lock, then 200; it records each request."""

    def __init__(self, failures: int):
        import http.server
        import threading

        api = self
        self.failures, self.calls = failures, []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PATCH(self):  # http.server calls do_<METHOD>
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.calls.append((self.path, body))
                ok = len(api.calls) > api.failures
                payload = json.dumps(body if ok else {"detail": {"reason": "Database error"}}).encode()
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("failures", [2, 99])
def test_a_run_note_rides_out_a_busy_api_server_and_never_fails_the_task(monkeypatch, tmp_path, caplog, failures):
    from types import SimpleNamespace

    from batchml.orchestration import operators, run_note
    from batchml.orchestration.params import RunSpec

    api = _FlakyApi(failures)
    monkeypatch.setenv("BATCHML_ENV", "test")
    monkeypatch.setenv("BATCHML_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps({"conn_type": "http", "host": api.url,
                                                                "password": "a-token"}))
    monkeypatch.setattr(run_note, "RETRY_DELAYS", (0.01, 0.01, 0.01))
    context = {"ti": SimpleNamespace(dag_id="batchml_nightly", run_id="manual__2024-03-02T00:00:00+00:00")}
    try:
        operators.note_run(context, load_config(), RunSpec(dataset="card_transactions", run_date=str(DAY)))
    finally:
        api.close()
    assert all(path.startswith("/api/v2/dags/batchml_nightly/dagRuns/manual__2024-03-02T00%3A00%3A00%2B00%3A00")
               and body == {"note": "2024-03-01"} for path, body in api.calls)
    if failures == 2:  # the third try goes through
        assert len(api.calls) == 3 and "could not set the run note" not in caplog.text
    else:  # every try refused: one warning, the task goes on
        assert len(api.calls) == 4 and "could not set the run note '2024-03-01'" in caplog.text
        assert "HTTP 500" in caplog.text
