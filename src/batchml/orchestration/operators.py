"""One pipeline stage as an Airflow task: its ``jobs/<file>.py`` entrypoint, run where config says.

``orchestration.submit`` in ``conf/<env>`` chooses the runner when the task runs (parsing a DAG file
reads no config, so the DAG files are the same everywhere):

* ``spark-submit``: the Spark provider's ``SparkSubmitOperator`` on ``orchestration.spark_conn_id``
  (a laptop, YARN, a standalone cluster, Kubernetes); the entrypoints come from ``BATCHML_JOBS_URI``
  (a path on the workers), by default the copies inside the installed package;
* ``emr-serverless``: the Amazon provider's ``EmrServerlessStartJobOperator``, with the application,
  job role and release (the wheel's environment archive, ``jobs/`` and ``conf/`` uploaded by
  ``make deploy``) from ``orchestration.emr_serverless``.

EMR gives no exit codes, so on both paths a failed job's outcome is read from the lake's own tables
(``lake_state``): a blocked gate fails the task without retries and says how to release it; a day
scored partly by the fallback rules counts as done (flagged and alerted by the stage); anything else
is a crash, and the task retries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import os
import shlex

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from batchml.orchestration import lake_state
from batchml.orchestration.params import RunSpec
from batchml.orchestration.tasks import config_from_environment, spec_from

log = logging.getLogger(__name__)

# stage name (``batchml run <stage>``) -> entrypoint file; the task id is the file's verb.
JOBS = {
    "ingest": "ingest.py",
    "validate": "validate.py",
    "features": "build_features.py",
    "materialize": "materialize.py",
    "score": "score.py",
    "monitor": "monitor.py",
    "training-set": "build_training_set.py",
    "train": "train.py",
    "evaluate": "evaluate.py",
    "promote": "promote.py",
}
SPARK_POOL = "batchml_spark"  # every Spark task of every batchml DAG: one writer at a time
ENV_PYTHON = "./environment/bin/python"  # inside the unpacked environment archive (spark.archives ...#environment)


def jobs_uri() -> str:
    if os.environ.get("BATCHML_JOBS_URI"):
        return os.environ["BATCHML_JOBS_URI"]
    from batchml.resources import folder

    return str(folder("jobs"))


class StageOperator(BaseOperator):
    """``jobs/<file>.py --run-date D --dataset X`` with D and X from the ``resolve_run`` task."""

    ui_color = "#fdf0d5"

    def __init__(self, *, stage: str, **kwargs) -> None:
        if stage not in JOBS:
            raise ValueError(f"unknown stage {stage!r}; stages with entrypoints: {', '.join(JOBS)}")
        kwargs.setdefault("task_id", JOBS[stage].removesuffix(".py"))
        kwargs.setdefault("pool", SPARK_POOL)
        super().__init__(**kwargs)
        self.stage = stage

    def execute(self, context):
        spec = spec_from(context)
        config = config_from_environment()
        runner = _spark_submit if config.orchestration.submit == "spark-submit" else _emr_serverless
        try:
            result = runner(self, context, config, spec)
        except AirflowException as exc:
            if isinstance(exc, AirflowFailException) or not self._ended_as_designed(context, config, spec):
                raise  # the job crashed: Airflow retries
            result = None
        if self.stage in NOTED_STAGES:
            note_run(context, config, spec)
        return result

    def _ended_as_designed(self, context, config, spec: RunSpec) -> bool:
        """After a failed job: True when the lake shows a day scored partly by the fallback rules; a blocked
        gate raises AirflowFailException (no retries); False for anything else."""
        run_date = dt.date.fromisoformat(spec.run_date)
        if self.stage == "score":
            fallback = lake_state.scoring_fallback(config, spec.dataset, run_date)
            if fallback:
                # rows are scored and flagged; the stage already alerted: monitoring must still run
                self.log.warning("score %s %s: %s of %s row(s) were scored by the FALLBACK rules, not the champion "
                                 "model (%s); the fallback_used task marks the day", spec.dataset, spec.run_date,
                                 fallback["rows"], fallback["total"], fallback["reason"])
                return True
        if self.stage == "validate":
            blocked = lake_state.blocked_checks(config, spec.dataset, run_date)
            if blocked:
                self.log.error("%s", blocked_gate_message(config, spec, blocked))
                raise AirflowFailException(f"validation gate blocked {spec.run_date}: {'; '.join(blocked)} "
                                           "(see the message above)") from None
        return False


NOTED_STAGES = ("validate", "score", "monitor")  # the stages after which the run's note can change


def note_run(context, config, spec: RunSpec, failed_task: str | None = None) -> None:
    """Set the DAG run's note from the lake; a note that cannot be set is logged, never fails the task."""
    from batchml.orchestration import run_note

    note = run_note.outcome(config, spec.dataset, dt.date.fromisoformat(spec.run_date), failed_task)
    try:
        run_note.publish(context, config, note)
    except (RuntimeError, OSError) as exc:  # the API server is down or refuses: the run itself is fine
        log.warning("could not set the run note %r: %s", note, exc)


def blocked_gate_message(config, spec: RunSpec, blocked: list[str]) -> str:
    """What a person reads first in a blocked validate task's log: checks, report, how to release."""
    import json

    from batchml.validation.overrides import blocked_by_table, release_commands, release_params, report_uri

    run_date = dt.date.fromisoformat(spec.run_date)
    lines = [f"VALIDATION GATE BLOCKED {spec.dataset} for run date {spec.run_date}: {'; '.join(blocked)}",
             "Downstream tasks will not run. If the data is wrong, fix it upstream, then clear ingest and validate."]
    for table, checks in blocked_by_table(blocked).items():
        lines += [f"Report: {report_uri(config, spec.dataset, run_date, table)}",
                  "If the change is real, release it (recorded): trigger batchml_nightly with these params",
                  "  " + json.dumps(release_params(spec.dataset, run_date, table, checks)),
                  "or from a shell:", *("  " + c for c in release_commands(spec.dataset, run_date, table, checks))]
    return "\n".join(lines)


def job_name(stage: str, spec: RunSpec) -> str:
    return f"batchml-{stage}-{spec.dataset}-{spec.run_date}"


def job_arguments(config, spec: RunSpec) -> list[str]:
    return ["--env", config.env, "--run-date", spec.run_date, "--dataset", spec.dataset]


def _spark_submit(op: StageOperator, context, config, spec: RunSpec):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from batchml.spark import log4j_option

    # the driver JVM starts before the job's Python: its logging config goes on the command line
    job = SparkSubmitOperator(task_id=op.task_id, application=f"{jobs_uri()}/{JOBS[op.stage]}",
                              conn_id=config.orchestration.spark_conn_id, name=job_name(op.stage, spec),
                              application_args=job_arguments(config, spec),
                              conf={"spark.driver.defaultJavaOptions": log4j_option()})
    return job.execute(context)


def emr_job_request(config, stage: str, spec: RunSpec) -> dict:
    """The EMR Serverless ``StartJobRun`` request for one stage of one run date (pure: tests read it)."""
    emr = config.orchestration.emr_serverless
    release = emr.release_uri.rstrip("/")
    conf = {
        "spark.archives": f"{release}/environment.tar.gz#environment",
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON": ENV_PYTHON,
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": ENV_PYTHON,
        "spark.executorEnv.PYSPARK_PYTHON": ENV_PYTHON,
        "spark.emr-serverless.driverEnv.BATCHML_CONF_DIR": f"{release}/conf",
        "spark.emr-serverless.driverEnv.BATCHML_ENV": config.env,
        **emr.spark_conf,
    }
    monitoring = {}
    if emr.log_uri:
        monitoring["s3MonitoringConfiguration"] = {"logUri": emr.log_uri}
    if emr.log_group:
        monitoring["cloudWatchLoggingConfiguration"] = {"enabled": True, "logGroupName": emr.log_group,
                                                        "logStreamNamePrefix": f"batchml/{stage}"}
    return {
        "name": job_name(stage, spec),
        "applicationId": emr.application_id,
        "executionRoleArn": emr.execution_role_arn,
        "executionTimeoutMinutes": emr.timeout_minutes,
        "jobDriver": {"sparkSubmit": {
            "entryPoint": f"{release}/jobs/{JOBS[stage]}",
            "entryPointArguments": job_arguments(config, spec),
            "sparkSubmitParameters": " ".join(f"--conf {shlex.quote(f'{k}={v}')}" for k, v in conf.items()),
        }},
        "configurationOverrides": {
            # the driver's log: batchml's logger levels over EMR's own appenders (classification spark-driver-log4j2)
            "applicationConfiguration": [{"classification": "spark-driver-log4j2", "properties": log4j_levels()}],
            **({"monitoringConfiguration": monitoring} if monitoring else {})},
    }


def log4j_levels() -> dict[str, str]:
    """The logger levels of batchml's log4j2.properties (no appenders: EMR keeps writing where it does)."""
    from batchml.resources import folder

    lines = (folder("spark") / "log4j2.properties").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs if k.strip().startswith(("logger.", "rootLogger.level"))}


def _emr_serverless(op: StageOperator, context, config, spec: RunSpec):
    from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator

    emr = config.orchestration.emr_serverless
    request = emr_job_request(config, op.stage, spec)
    ti = context["ti"]
    # the same try of the same task never starts two job runs; a retry starts a new one
    token = hashlib.sha256(f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.try_number}".encode()).hexdigest()[:64]
    job = EmrServerlessStartJobOperator(
        task_id=op.task_id, application_id=request["applicationId"],
        execution_role_arn=request["executionRoleArn"], job_driver=request["jobDriver"],
        configuration_overrides=request["configurationOverrides"] or None, name=request["name"],
        config={"executionTimeoutMinutes": request["executionTimeoutMinutes"]}, client_request_token=token,
        aws_conn_id=emr.aws_conn_id, region_name=emr.region or config.storage.s3.region,
        wait_for_completion=True, waiter_delay=emr.poll_seconds,
        waiter_max_attempts=math.ceil(emr.timeout_minutes * 60 / emr.poll_seconds) + 1, deferrable=False)
    op.log.info("EMR Serverless job %s: %s %s", request["name"], request["jobDriver"]["sparkSubmit"]["entryPoint"],
                " ".join(request["jobDriver"]["sparkSubmit"]["entryPointArguments"]))
    return job.execute(context)


def stage_timeout(stage: str) -> dt.timedelta:
    """Generous bounds: a hung Spark job fails (and alerts) instead of holding the pool forever."""
    return dt.timedelta(hours=3 if stage in ("train", "training-set") else 1)
