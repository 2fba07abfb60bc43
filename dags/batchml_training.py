"""batchml_training: build_training_set -> train -> evaluate -> promote (or not).

Runs weekly (Monday 03:00 UTC), on a manual trigger, and whenever the nightly DAG emits a
``batchml_retraining_request`` Asset event (monitoring saw drift or a performance drop). The
run date is the ``run_date`` Param, else the request's run date, else the day before a
scheduled run. ``promote`` applies evaluate's decision: the challenger becomes champion only
when it beats the champion by the configured margin.
"""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, chain

from batchml.orchestration import defaults, params, tasks
from batchml.orchestration.operators import StageOperator, stage_timeout

with DAG(
    dag_id="batchml_training",
    description="Retraining: training set, train, evaluate challenger vs champion, promote",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"),
                                 assets=[tasks.RETRAINING_REQUEST]),
    start_date=defaults.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=defaults.default_args(),
    params=params.run_params(),
    tags=[*defaults.TAGS, "training"],
    doc_md=__doc__,
) as dag:
    resolve_run = PythonOperator(task_id=tasks.RESOLVE_TASK, python_callable=tasks.resolve_training_run, retries=0)
    stages = [StageOperator(stage=s, execution_timeout=stage_timeout(s))
              for s in ("training-set", "train", "evaluate", "promote")]
    chain(resolve_run, *stages)
