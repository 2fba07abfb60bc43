"""The monitoring stage: ``batchml run monitor --run-date D``.

1. load the champion (model store) and measure drift of D's batch against its training data;
2. join the labels delivered by D to the scores of the last ``lookback_days`` days and judge
   realized performance on matured dates against the champion's test metrics;
3. overwrite D's rows in the drift and performance tables (a re-run recomputes the same rows);
4. on an alert: write a retraining request (JSON under ``{artifacts}/retraining/<dataset>/`` and a
   row in the requests table) and send the alert to the configured sinks, once per run date
   and set of reasons;
5. write a self-contained HTML report.

Alerts are not failures: the stage exits 0 when it alerts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

import pyarrow as pa

from batchml import alerts
from batchml.config import Config, ConfigError
from batchml.monitoring import drift, performance, report
from batchml.monitoring.requests import pending_request, request_uri
from batchml.monitoring.spec import MonitoringSpec
from batchml.registry import store
from batchml.storage import Lake
from batchml.storage.artifacts import write_text

log = logging.getLogger(__name__)

DRIFT_SCHEMA = pa.schema([
    ("run_date", pa.date32()), ("dataset", pa.string()), ("model_name", pa.string()), ("model_version", pa.int64()),
    ("column", pa.string()), ("kind", pa.string()), ("test", pa.string()), ("statistic", pa.float64()),
    ("p_value", pa.float64()), ("psi", pa.float64()), ("psi_alert", pa.float64()), ("reference_rows", pa.int64()),
    ("batch_rows", pa.int64()), ("status", pa.string()),
])
PERF_SCHEMA = pa.schema([
    ("run_date", pa.date32()), ("dataset", pa.string()), ("model_name", pa.string()), ("model_version", pa.int64()),
    ("scoring_date", pa.date32()), ("age_days", pa.int32()), ("matured", pa.bool_()), ("rows", pa.int64()),
    ("positives", pa.int64()), ("predicted_positives", pa.int64()), ("true_positives", pa.int64()),
    ("precision", pa.float64()), ("recall", pa.float64()), ("f1", pa.float64()), ("pr_auc", pa.float64()),
    ("labelled_rows", pa.int64()), ("positive_decision_rate", pa.float64()), ("review_rate", pa.float64()),
    ("overflow_rate", pa.float64()),
])
REQUEST_SCHEMA = pa.schema([
    ("run_date", pa.date32()), ("dataset", pa.string()), ("model_name", pa.string()), ("model_version", pa.int64()),
    ("reasons", pa.string()), ("request_uri", pa.string()),
])


@dataclass
class MonitorOutcome:
    dataset: str
    run_date: dt.date
    model_version: int | None
    drift: list
    performance: list
    verdict: performance.Verdict | None
    reasons: list[dict]
    request: dict | None
    report_uri: str = ""


def monitor(config: Config, run_date: dt.date, dataset: str | None = None, spark=None,
            model_version: int | None = None) -> MonitorOutcome:
    """Monitor the champion (or ``model_version``: ``batchml rebuild`` replays a date with its live run's)."""
    name = dataset or config.default_dataset
    ds = config.dataset(name)
    spec = ds.monitoring
    if spec is None or ds.features is None:
        raise ConfigError(f"dataset {name!r} has no monitoring (and features) section in its config")
    model_name = spec.model_name or (ds.model.registered_name if ds.model else None)
    if not model_name:
        raise ConfigError(f"dataset {name!r}: monitoring.model_name is not set and there is no model section")
    model = store.load(config, model_name, version=model_version)
    if model is None:
        log.warning("monitor %s %s: model %s has no champion; nothing to monitor", name, run_date, model_name)
        return MonitorOutcome(name, run_date, None, [], [], None, [], None)
    lake = Lake(config, spark)
    fs = ds.features
    log.info("monitor %s %s: champion %s v%s, reference %s@v%s %s..%s", name, run_date, model_name, model.version,
             model.tags["features_table"], model.tags["features_version"], model.tags["train_start"],
             model.tags["train_end"])
    drifts = drift.measure(lake, spec, model, fs.table, fs.id_column, fs.date_column, run_date)
    dates = performance.measure(lake, spec, ds.label, fs.id_column, ds.ingest_column, run_date, ds.timezone)
    verdict = performance.judge(dates, model.test_metrics, spec)
    key = [("run_date", "=", run_date)]
    lake.write_arrow(_drift_rows(drifts, spec, name, model, run_date), spec.drift_table, mode="overwrite",
                     replace_where=key)
    lake.write_arrow(_perf_rows(dates, name, model, run_date), spec.performance_table, mode="overwrite",
                     replace_where=key)
    reasons = _reasons(drifts, verdict, spec)
    outcome = MonitorOutcome(name, run_date, model.version, drifts, dates, verdict, reasons, None)
    history = lake.read_arrow(spec.drift_table, filters=[("run_date", "<=", run_date),
                                                         ("run_date", ">", run_date - dt.timedelta(days=90))])
    outcome.report_uri = write_text(lake.storage, config.storage.artifacts_uri,
                                    f"reports/monitoring/{name}/{run_date.isoformat()}.html",
                                    report.render(outcome, history.to_pylist(), spec))
    if reasons:
        outcome.request = _request(config, lake, spec, outcome, model)
    log.info("monitor %s %s: %d columns (%d over PSI %.2f), %s %s on %d matured dates -> %s; report %s",
             name, run_date, len(drifts), sum(1 for r in reasons if r["kind"].endswith("drift")), spec.psi_alert,
             verdict.metric, verdict.status, len(verdict.dates), "ALERT" if reasons else "ok", outcome.report_uri)
    return outcome


def _status(d, spec: MonitoringSpec) -> str:
    if d.batch_rows < spec.min_rows or d.reference_rows < spec.min_rows:
        return "insufficient"
    return "alert" if d.psi > spec.psi_alert else "ok"


def _drift_rows(drifts, spec, name, model, run_date) -> pa.Table:
    rows = [{"run_date": run_date, "dataset": name, "model_name": model.name, "model_version": model.version,
             "column": d.column, "kind": "prediction" if d.column == drift.SCORE else d.kind, "test": d.test,
             "statistic": d.statistic, "p_value": d.p_value, "psi": d.psi, "psi_alert": spec.psi_alert,
             "reference_rows": d.reference_rows, "batch_rows": d.batch_rows, "status": _status(d, spec)}
            for d in drifts]
    return pa.Table.from_pylist(rows, DRIFT_SCHEMA)


def _perf_rows(dates, name, model, run_date) -> pa.Table:
    rows = [{"run_date": run_date, "dataset": name, "model_name": model.name, "model_version": model.version,
             **vars(d)} for d in dates]
    return pa.Table.from_pylist(rows, PERF_SCHEMA)


def _reasons(drifts, verdict: performance.Verdict, spec: MonitoringSpec) -> list[dict]:
    out = [{"kind": "prediction_drift" if d.column == drift.SCORE else "data_drift", "column": d.column,
            "psi": round(d.psi, 6), "threshold": spec.psi_alert}
           for d in drifts if _status(d, spec) == "alert"]
    if verdict.status == "alert":
        out.append({"kind": "performance", **verdict.to_dict()})
    return out


def _request(config: Config, lake: Lake, spec: MonitoringSpec, outcome: MonitorOutcome, model) -> dict:
    request = {"dataset": outcome.dataset, "run_date": outcome.run_date.isoformat(), "model_name": model.name,
               "model_version": model.version, "reasons": outcome.reasons, "report_uri": outcome.report_uri}
    previous = pending_request(config, outcome.dataset, outcome.run_date)
    uri = request_uri(config, outcome.dataset, outcome.run_date)
    write_text(lake.storage, config.storage.artifacts_uri,
               f"retraining/{outcome.dataset}/{outcome.run_date.isoformat()}.json", json.dumps(request, indent=2))
    row = {"run_date": outcome.run_date, "dataset": outcome.dataset, "model_name": model.name,
           "model_version": model.version, "reasons": json.dumps(outcome.reasons), "request_uri": uri}
    lake.write_arrow(pa.Table.from_pylist([row], REQUEST_SCHEMA), spec.requests_table, mode="overwrite",
                     replace_where=[("dataset", "=", outcome.dataset), ("run_date", "=", outcome.run_date)])
    if previous is None or previous.get("reasons") != request["reasons"]:  # a re-run does not re-page anyone
        kinds = sorted({r["kind"] for r in outcome.reasons})
        alerts.alert(config, {"kind": "monitoring", "dataset": outcome.dataset,
                              "run_date": outcome.run_date.isoformat(),
                              "message": f"{outcome.dataset} {outcome.run_date}: {', '.join(kinds)}; retraining requested",
                              "request_uri": uri, **request})
    return request
