"""One pipeline stage as an Airflow task: its ``jobs/<file>.py`` entrypoint through ``spark-submit``.

Where the job runs is decided by the Airflow connection (``spark_default``: master, deploy mode,
queue, ``spark-binary``) and by batchml's config in the worker's environment; the DAG itself
does not change between a laptop and a cluster. ``BATCHML_JOBS_URI`` says where the entrypoints
are (a path on the workers, or an ``s3://`` prefix for a cluster); by default the repository's
``jobs/``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from batchml.orchestration.tasks import RESOLVE_TASK, blocked_checks, fallback_exit_code, spec_from

# stage name (``batchml run <stage>``) -> entrypoint file; the task id is the file's verb.
JOBS = {
    "ingest": "ingest.py",
    "validate": "validate.py",
    "features": "build_features.py",
    "score": "score.py",
    "monitor": "monitor.py",
    "training-set": "build_training_set.py",
    "train": "train.py",
    "evaluate": "evaluate.py",
    "promote": "promote.py",
}
SPARK_POOL = "batchml_spark"  # every Spark task of every batchml DAG: one writer at a time
_SPEC = f"ti.xcom_pull(task_ids='{RESOLVE_TASK}')"


def jobs_uri() -> str:
    return os.environ.get("BATCHML_JOBS_URI") or str(Path(__file__).resolve().parents[3] / "jobs")


class StageSubmitOperator(SparkSubmitOperator):
    """``spark-submit jobs/<file>.py --run-date D --dataset X`` with D and X from the ``resolve_run`` task.

    A blocked validation gate fails the task without retries and names the failed checks, so
    downstream stages stop (upstream_failed) and the log says what to do. Scoring's fallback exit
    code (rows scored by the rules, flagged and alerted) counts as done, so monitoring still runs.
    """

    def __init__(self, *, stage: str, conn_id: str = "spark_default", **kwargs) -> None:
        if stage not in JOBS:
            raise ValueError(f"unknown stage {stage!r}; stages with entrypoints: {', '.join(JOBS)}")
        self.stage = stage
        kwargs.setdefault("task_id", JOBS[stage].removesuffix(".py"))
        kwargs.setdefault("pool", SPARK_POOL)
        super().__init__(
            application=f"{jobs_uri()}/{JOBS[stage]}",
            conn_id=conn_id,
            name=f"batchml-{stage}-{{{{ {_SPEC}['dataset'] }}}}-{{{{ {_SPEC}['run_date'] }}}}",
            application_args=["--run-date", f"{{{{ {_SPEC}['run_date'] }}}}",
                              "--dataset", f"{{{{ {_SPEC}['dataset'] }}}}"],
            **kwargs,
        )

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowException:
            spec = spec_from(context)
            code = getattr(getattr(self._hook, "_submit_sp", None), "returncode", None)
            if self.stage == "score" and code is not None and code == fallback_exit_code(spec.dataset):
                # rows are scored and flagged; the stage already alerted: monitoring must still run
                self.log.warning("score %s %s: some rows were scored by the FALLBACK rules (exit %s), not the "
                                 "champion model; see the scoring summary above and the alert sinks",
                                 spec.dataset, spec.run_date, code)
                return None
            if self.stage != "validate":
                raise
            blocked = blocked_checks(spec.dataset, spec.run_date)
            if not blocked:
                raise  # the job crashed: retry
            self.log.error(
                "VALIDATION GATE BLOCKED %s for run date %s: %s. Downstream tasks will not run. Open the "
                "report under <artifacts>/reports/validation/%s/, fix the data and clear this task, or, if "
                "the change is real, trigger this DAG with run_date=%s and the override_* params (table, "
                "checks, by, reason) to release them.", spec.dataset, spec.run_date, "; ".join(blocked),
                spec.run_date, spec.run_date)
            raise AirflowFailException(f"validation gate blocked {spec.run_date}: {'; '.join(blocked)}") from None


def stage_timeout(stage: str) -> dt.timedelta:
    """Generous bounds: a hung Spark job fails (and alerts) instead of holding the pool forever."""
    return dt.timedelta(hours=3 if stage in ("train", "training-set") else 1)
