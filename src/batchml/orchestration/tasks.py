"""Python task callables and callbacks of the batchml DAGs.

They run inside Airflow workers (or in-process under ``dag.test()``). Config, the lake and
monitoring are imported inside each function so DAG files parse fast. Config comes from the
worker's environment (``BATCHML_ENV``, ``BATCHML_HOME``, ... as for the CLI).
"""

from __future__ import annotations

import datetime as dt
import logging

from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from batchml.orchestration import lake_state
from batchml.orchestration.params import ParamError, RunSpec, resolve

log = logging.getLogger(__name__)

# Monitoring's retraining request, as an Airflow Asset: the nightly DAG emits it, training listens.
RETRAINING_REQUEST = Asset(name="batchml_retraining_request", uri="batchml://retraining/requests",
                           group="batchml")
RESOLVE_TASK = "resolve_run"


def config_from_environment():
    """batchml's config as the worker's environment selects it (BATCHML_ENV, BATCHML_CONF_DIR, ...)."""
    from batchml.config import load_config

    return load_config()


def spec_from(context) -> RunSpec:
    """The RunSpec the ``resolve_run`` task of this DAG run decided."""
    return RunSpec(**context["ti"].xcom_pull(task_ids=RESOLVE_TASK))


def resolve_run(**context) -> dict:
    """Validate the params and fix run date and dataset for every later task (via XCom)."""
    try:
        spec = resolve(dict(context["params"]), context.get("data_interval_start"))
        config = config_from_environment()
        dataset = spec.dataset or config.default_dataset
        config.dataset(dataset)  # unknown dataset: fail here, with the configured names
    except (ParamError, ValueError) as exc:  # ConfigError is a ValueError; retrying cannot fix params
        raise AirflowFailException(f"bad params: {exc}") from exc
    spec = RunSpec(**{**spec.to_xcom(), "dataset": dataset})
    log.info("batchml run: run date %s, dataset %s%s", spec.run_date, spec.dataset,
             f", override of {spec.override_table} {spec.override_checks} by {spec.override_by}"
             if spec.override_checks else "")
    _note(context, config, f"{spec.run_date} · {spec.dataset}")  # the business date, from the first task on
    return spec.to_xcom()


def _note(context, config, note: str) -> None:
    from batchml.orchestration import run_note

    try:
        run_note.publish(context, config, note)
    except (RuntimeError, OSError) as exc:  # the API server is down or refuses: the run itself is fine
        log.warning("could not set the run note %r: %s", note, exc)


def resolve_training_run(**context) -> dict:
    """Like resolve_run; the run date also comes from the retraining request that triggered the run,
    or, for a scheduled run, is the last complete day before it."""
    params = dict(context["params"])
    if not params.get("run_date"):
        requested = [e.extra for events in (context.get("triggering_asset_events") or {}).values()
                     for e in events if (e.extra or {}).get("run_date")]
        if requested:
            params["run_date"] = max(r["run_date"] for r in requested)
            params["dataset"] = params.get("dataset") or requested[-1].get("dataset")
            log.info("triggered by retraining request(s): %s", requested)
    if not params.get("run_date"):
        anchor = context.get("data_interval_end") or context.get("logical_date")
        if anchor is not None:
            params["run_date"] = (anchor.date() - dt.timedelta(days=1)).isoformat()
    return resolve_run(**{**context, "params": params, "data_interval_start": None})


def record_override(**context) -> list[str]:
    """Record the override given in the params (if any) before the gate runs; once per content."""
    spec = spec_from(context)
    if not spec.override_checks:
        log.info("no validation override in the params")
        return []
    run_date = dt.date.fromisoformat(spec.run_date)
    try:
        recorded = lake_state.record_overrides(config_from_environment(), spec.dataset, run_date,
                                               spec.override_table, spec.override_checks, spec.override_by,
                                               spec.override_reason)
    except ValueError as exc:
        raise AirflowFailException(f"bad override params: {exc}") from exc
    log.info("override of %s %s for %s: %s", spec.override_table, spec.override_checks, run_date,
             f"recorded {recorded}" if recorded else "already recorded")
    return recorded


def blocked_checks(dataset: str, run_date: str) -> list[str]:
    """Checks the gate's latest run for this date failed without release, as ``table: check``."""
    return lake_state.blocked_checks(config_from_environment(), dataset, dt.date.fromisoformat(run_date))


def release_params(dataset: str, run_date: str, by: str, reason: str) -> dict | None:
    """Nightly params that release what the gate blocked on ``run_date`` (the first blocked table's
    checks; an override names one table), or None when nothing is blocked."""
    blocked = blocked_checks(dataset, run_date)
    if not blocked:
        return None
    table = blocked[0].split(": ")[0]
    checks = [b.split(": ", 1)[1] for b in blocked if b.startswith(table + ": ")]
    return {"run_date": run_date, "override_table": table, "override_checks": checks, "override_by": by,
            "override_reason": reason}


class FallbackScored(AirflowFailException):
    """Rows of the day were scored by the fallback rules: the ``fallback_used`` task fails to show it."""


def fallback_used(**context) -> None:
    """Fail (red in the grid, the run failed) when the fallback rules scored rows of this date; skip otherwise.

    Scoring itself succeeded (the rows are scored and flagged) and monitoring runs beside this task; the failure
    is the mark a person notices. Once a model serves again: ``batchml run score --run-date D --rescore
    --reason ...``, then clear this task.
    """
    spec = spec_from(context)
    fallback = lake_state.scoring_fallback(config_from_environment(), spec.dataset, dt.date.fromisoformat(spec.run_date))
    if not fallback:
        raise AirflowSkipException(f"every row of {spec.run_date} was scored by the model")
    raise FallbackScored(
        f"FALLBACK: {fallback['rows']} of {fallback['total']} rows of {spec.dataset} {spec.run_date} were scored by "
        f"the fallback rules, not the model: {fallback['reason']}. They are flagged (fallback = true) and monitoring "
        f"ran. When a model serves again: batchml run score --dataset {spec.dataset} --run-date {spec.run_date} "
        "--rescore --reason \"<why>\", then clear this task.")


def request_retraining(**context) -> dict:
    """Emit the retraining Asset event when monitoring left a request for this date; else skip."""
    spec = spec_from(context)
    request = lake_state.pending_retraining(config_from_environment(), spec.dataset,
                                            dt.date.fromisoformat(spec.run_date))
    if not request:
        raise AirflowSkipException(f"no retraining request for {spec.dataset} on {spec.run_date}")
    context["outlet_events"][RETRAINING_REQUEST].extra = {"run_date": spec.run_date, "dataset": spec.dataset,
                                                          "request": request}
    log.warning("retraining requested for %s on %s: %s; batchml_training will run", spec.dataset,
                spec.run_date, request)
    return request


def on_failure(context) -> None:
    """Task failure callback: the same alert sinks as monitoring (log, alerts.jsonl, webhook, email), then the
    run's note (Airflow logs a callback's own error)."""
    ti = context.get("ti")
    exception = context.get("exception")
    if not isinstance(exception, FallbackScored):  # scoring itself sent the fallback alert
        _alert_failure(context, ti)
    _note_failure(context, ti, exception)


def _alert_failure(context, ti) -> None:
    from batchml.alerts import alert

    event = {"kind": "airflow_task_failed", "dag_id": getattr(ti, "dag_id", None),
             "task_id": getattr(ti, "task_id", None), "run_id": getattr(ti, "run_id", None),
             "try_number": getattr(ti, "try_number", None), "error": str(context.get("exception") or "")[:2000]}
    event["message"] = f"{event['dag_id']}.{event['task_id']} failed ({event['run_id']}): {event['error'][:200]}"
    try:
        alert(config_from_environment(), event)
    except (ValueError, OSError):  # a bad config (ConfigError) or alerts folder must not hide the failure
        log.exception("could not send the failure alert %s", event)


def _note_failure(context, ti, exception) -> None:
    """The run's note after a failed task: the lake's outcome (a blocked gate, a fallback day) or where it failed."""
    from batchml.orchestration import run_note

    if ti is None or not ti.xcom_pull(task_ids=RESOLVE_TASK):
        return  # resolve_run itself failed: no run date to note
    spec, config = spec_from(context), config_from_environment()
    crashed = None if isinstance(exception, AirflowFailException) else ti.task_id
    _note(context, config, run_note.outcome(config, spec.dataset, dt.date.fromisoformat(spec.run_date), crashed))
