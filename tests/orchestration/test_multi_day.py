"""The multi-day Airflow legs (part of ``make test``; ``make test-e2e`` runs them alone). Tasks attach to Spark Connect.

* dag.test(): the nightly DAG over two days gives one scored row per event; the same dates again change nothing.
  No model is trained here, so the fallback rules score every day: each run fails on ``fallback_used`` alone,
  with the note ``<date> · FALLBACK n/n rows``;
* a real scheduler (``airflow standalone``): a backfill of the two days through the REST API gives the same
  tables as the two separate dag.test() runs.
"""

from __future__ import annotations

import pytest

from batchml.orchestration import local
from tests.orchestration.airflow_server import AirflowServer
from tests.orchestration.helpers import DATES, airflow_env, demo_data, lake_path, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
DAG = "batchml_nightly"


def _runs(log) -> list[tuple[str, str, dict, str]]:
    return [(r.day, r.state, r.details, r.note) for r in local.run_lines(log) if r.kind == "run"]


def _fallback_days(runs) -> None:
    """Every stage ran, no retraining request; only fallback_used failed (no champion), and the note says so."""
    for day, state, states, note in runs:
        assert state == "failed" and states["fallback_used"] == "failed", (day, states)
        assert states["request_retraining"] == "skipped"
        assert {s for t, s in states.items() if t not in ("fallback_used", "request_retraining")} == {"success"}
        rows = note.rsplit(" ", 2)[-2].split("/")
        assert note == f"{day} · FALLBACK {rows[0]}/{rows[0]} rows" and int(rows[0]) > 1000, note


def test_nightly_runs_score_one_row_per_event(nightly):
    runs = _runs(nightly["log"])
    assert [d for d, *_ in runs] == [str(d) for d in DATES], runs
    _fallback_days(runs)
    from deltalake import DeltaTable

    events = DeltaTable(str(lake_path(nightly["root"], "silver.card_transactions"))).to_pandas()
    scores = DeltaTable(str(lake_path(nightly["root"], "scores.card_transactions"))).to_pandas()
    assert len(events) > 2000
    assert scores["transaction_id"].is_unique
    assert set(scores["transaction_id"]) == set(events["transaction_id"])


def test_running_the_same_dates_again_changes_nothing(nightly):
    before = snapshot(nightly["root"])
    assert all(before[t] for t in ("silver.card_transactions", "features.card_transactions",
                                   "scores.card_transactions"))
    again = nightly["root"] / "again.log"
    local.run_dates(nightly["env"], "batchml_nightly", DATES, log_file=again)
    _fallback_days(_runs(again))
    assert snapshot(nightly["root"]) == before


def test_a_backfill_through_the_scheduler_equals_separate_nightly_runs(nightly, tmp_path_factory, connect_server):
    root = tmp_path_factory.mktemp("backfill")
    env = airflow_env(root, connect_server)
    local.prepare(env)
    demo_data(env, DATES[0], len(DATES))
    airflow = AirflowServer(env)
    try:
        airflow.start()
        airflow.wait_for_dag(DAG)
        airflow.api("PATCH", f"/dags/{DAG}", json={"is_paused": False})
        airflow.api("POST", "/backfills", json={"dag_id": DAG, "from_date": f"{DATES[0]}T00:00:00Z",
                                                 "to_date": f"{DATES[-1]}T00:00:00Z", "max_active_runs": 1})
        runs = airflow.wait_for_runs(DAG, count=len(DATES))
    finally:
        airflow.stop()
    assert sorted((r["logical_date"][:10], r["run_type"], r["state"]) for r in runs) == [
        (str(d), "backfill", "failed") for d in DATES], f"{runs}; see {airflow.log}"  # failed: fallback_used
    notes = {r["logical_date"][:10]: r["note"] for r in runs}
    assert notes == {day: note for day, *_, note in _runs(nightly["log"])}  # set by the tasks, via the REST API
    _fallback_days(_runs(nightly["log"]))
    assert snapshot(root) == snapshot(nightly["root"])
