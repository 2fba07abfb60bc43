"""DAG integrity: the files import cleanly and fast, and wire the expected graph with the house defaults."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from batchml.orchestration import local

NIGHTLY = ["resolve_run", "record_override", "ingest", "validate", "build_features", "score", "monitor",
           "request_retraining"]
NIGHTLY_BRANCHES = {("score", "fallback_used"),  # beside monitor: a fallback day is marked, and still monitored
                    ("build_features", "materialize")}  # the online store: the scores do not wait for it
TRAINING = ["resolve_run", "build_training_set", "train", "evaluate", "promote"]


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(local.DAGS))


def _edges(dag) -> set[tuple[str, str]]:
    return {(t.task_id, down) for t in dag.tasks for down in t.downstream_task_ids}


def _line(tasks: list[str]) -> set[tuple[str, str]]:
    return set(zip(tasks, tasks[1:]))


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"batchml_nightly", "batchml_training"}


def test_expected_task_graphs(dagbag):
    assert _edges(dagbag.dags["batchml_nightly"]) == _line(NIGHTLY) | NIGHTLY_BRANCHES
    assert _edges(dagbag.dags["batchml_training"]) == _line(TRAINING)


@pytest.mark.parametrize("dag_id", ["batchml_nightly", "batchml_training"])
def test_house_defaults(dagbag, dag_id):
    from batchml.orchestration.operators import JOBS, StageOperator

    dag = dagbag.dags[dag_id]
    assert "batchml" in dag.tags and dag.max_active_runs == 1 and dag.catchup is False
    assert dag.doc_md
    for task in dag.tasks:
        assert task.owner == "batchml"
        assert task.on_failure_callback, task.task_id
        assert task.execution_timeout is not None and task.execution_timeout <= dt.timedelta(hours=3)
        if isinstance(task, StageOperator):
            assert task.retries == 2 and task.retry_exponential_backoff and task.max_retry_delay
            assert task.pool == "batchml_spark"
            assert JOBS[task.stage] == f"{task.task_id}.py"


def test_the_pool_runs_score_and_monitor_before_materialize(dagbag):
    """One Spark slot: the scheduler takes the ready task of highest priority, by Airflow's default
    ``downstream`` rule (own weight plus every downstream task's), so the scores never wait for the online store."""
    dag = dagbag.dags["batchml_nightly"]

    def weight(task_id: str) -> int:
        task = dag.get_task(task_id)
        return task.priority_weight + sum(dag.get_task(t).priority_weight
                                          for t in task.get_flat_relative_ids(upstream=False))

    assert {dag.get_task(t).weight_rule for t in ("score", "monitor", "materialize")} == {"downstream"}
    assert weight("score") > weight("monitor") > weight("materialize")


def test_spark_tasks_cover_the_pipeline(dagbag):
    from batchml.orchestration.operators import StageOperator

    spark = {d: [t.task_id for t in dagbag.dags[d].tasks if isinstance(t, StageOperator)]
             for d in dagbag.dag_ids}
    assert spark["batchml_nightly"] == ["ingest", "validate", "build_features", "score", "monitor", "materialize"]
    assert spark["batchml_training"] == ["build_training_set", "train", "evaluate", "promote"]


def test_training_listens_to_the_retraining_asset(dagbag):
    from batchml.orchestration.tasks import RETRAINING_REQUEST

    nightly, training = dagbag.dags["batchml_nightly"], dagbag.dags["batchml_training"]
    assert RETRAINING_REQUEST in nightly.get_task("request_retraining").outlets
    assert type(training.timetable).__name__ == "AssetOrTimeSchedule"
    assert list(training.timetable.asset_condition.objects) == [RETRAINING_REQUEST]


def test_dag_files_do_no_heavy_imports_at_parse_time():
    """Parsing the DAG files must not pull in Spark, MLflow, Great Expectations or batchml's config."""
    heavy = ["pyspark", "mlflow", "great_expectations", "xgboost", "batchml.config", "deltalake"]
    code = ("import sys, runpy, glob\n"
            f"for f in sorted(glob.glob({str(local.DAGS)!r} + '/*.py')): runpy.run_path(f)\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
