"""batchml_nightly: ingest -> validate -> build_features -> score -> monitor, and build_features -> materialize,
one run date per run.

The run date is the data interval's start (the calendar day before the run, UTC), or the
``run_date`` Param of a manual trigger. Every stage overwrites that date's partitions, so a
rerun, a clear or a backfill is idempotent. A blocked validation gate fails ``validate`` with
the failed checks in its log and stops the later stages; to release them, trigger with
``run_date`` and the ``override_*`` Params (the release is recorded in ops.validation_overrides).
When monitoring files a retraining request, ``request_retraining`` emits the
``batchml_retraining_request`` Asset event that starts ``batchml_training``; otherwise it is skipped.
``fallback_used`` fails (and with it the run) when the fallback rules scored rows of the day; monitoring
still runs. ``materialize`` (the online store) is a branch of its own: the scores do not wait for it (with
the Spark pool's one slot it runs after ``monitor``), and an online store outage does not hold them.
Each run's note says the business date and the outcome, e.g. ``2024-03-01 · gate blocked: ...``.
"""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, chain

from batchml.orchestration import defaults, params, tasks
from batchml.orchestration.operators import StageOperator, stage_timeout

with DAG(
    dag_id="batchml_nightly",
    description="Nightly batch: ingest, validation gate, features, online store, scoring, monitoring",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=defaults.START_DATE,
    catchup=False,
    max_active_runs=1,  # with the Spark pool: a backfill and the nightly never write a partition at once
    default_args=defaults.default_args(),
    params=params.nightly_params(),
    tags=[*defaults.TAGS, "nightly"],
    doc_md=__doc__,
) as dag:
    resolve_run = PythonOperator(task_id=tasks.RESOLVE_TASK, python_callable=tasks.resolve_run, retries=0)
    record_override = PythonOperator(task_id="record_override", python_callable=tasks.record_override)
    ingest, validate, features, score, monitor, materialize = [
        StageOperator(stage=s, execution_timeout=stage_timeout(s))
        for s in ("ingest", "validate", "features", "score", "monitor", "materialize")]
    request_retraining = PythonOperator(task_id="request_retraining", python_callable=tasks.request_retraining,
                                        outlets=[tasks.RETRAINING_REQUEST])
    chain(resolve_run, record_override, ingest, validate, features, score, monitor, request_retraining)
    features >> materialize  # the pool's priority (downstream weight) runs score and monitor first
    fallback_used = PythonOperator(task_id="fallback_used", python_callable=tasks.fallback_used, retries=0)
    score >> fallback_used  # beside monitor: marked, still monitored
