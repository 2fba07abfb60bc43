"""Champion / challenger promotion with an audit trail MLflow itself does not keep.

``evaluate`` scores the run date's new model version and the current champion on the same, most
recent window (the new model's test window) and records a decision; ``promote`` applies it by
moving MLflow aliases. A version becomes ``champion`` only if it beats the champion's metric by
``promotion.margin`` and no slice with enough positives drops more than ``promotion.slice_tolerance``;
otherwise it becomes ``challenger``. The first model ever becomes champion. Every decision and
every alias change, manual ones included, is a row of the audit table, which answers "which
version was champion at time T".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass, field

import pyarrow as pa

from batchml.config import Config
from batchml.registry import store
from batchml.storage import Lake
from batchml.training.spec import ModelSpec, Promotion

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
AUDIT_SCHEMA = pa.schema([
    ("run_date", pa.date32()), ("recorded_at", pa.timestamp("us", "UTC")), ("dataset", pa.string()),
    ("model_name", pa.string()), ("event", pa.string()),  # decision | alias
    ("action", pa.string()),  # promote | challenger | keep | manual_promote | rollback
    ("alias", pa.string()), ("from_version", pa.int64()), ("to_version", pa.int64()),
    ("metric", pa.string()), ("candidate_value", pa.float64()), ("champion_value", pa.float64()),
    ("metrics_json", pa.string()), ("decided_by", pa.string()), ("reason", pa.string()),
])


@dataclass(frozen=True)
class Decision:
    action: str  # promote | challenger | keep
    reason: str
    regressions: list[str] = field(default_factory=list)


def decide(candidate: dict, champion: dict, candidate_slices: dict, champion_slices: dict,
           rules: Promotion) -> Decision:
    """Pure promotion rule over two models' metrics on the same window."""
    m, new, old = rules.metric, candidate.get(rules.metric, math.nan), champion.get(rules.metric, math.nan)
    if math.isnan(new):
        return Decision(CHALLENGER, f"candidate {m} is undefined on the window (no positives in it?)")
    regressions = []
    for column, values in candidate_slices.items():
        for value, cm in values.items():
            om = champion_slices.get(column, {}).get(value, {})
            if cm.get("positives", 0) < rules.min_slice_positives or math.isnan(om.get(m, math.nan)):
                continue
            if math.isnan(cm[m]) or cm[m] < om[m] - rules.slice_tolerance:
                regressions.append(f"{column}={value}: {m} {cm[m]:.4f} < champion {om[m]:.4f} - "
                                   f"{rules.slice_tolerance}")
    if not math.isnan(old) and new < old + rules.margin:
        return Decision(CHALLENGER, f"{m} {new:.4f} does not beat champion {old:.4f} by margin {rules.margin}",
                        regressions)
    if regressions:
        return Decision(CHALLENGER, f"{m} {new:.4f} beats champion {old:.4f}, but slices regress: "
                        + "; ".join(regressions), regressions)
    return Decision("promote", f"{m} {new:.4f} beats champion {old:.4f} by >= {rules.margin}; no slice regresses "
                    f"past {rules.slice_tolerance}")


# -- audit table ---------------------------------------------------------------------
def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)  # audit timestamp only; never decides what is produced


def write_audit(lake: Lake, spec: ModelSpec, rows: list[dict], txn=None):
    recorded = _now()
    full = [{**dict.fromkeys(AUDIT_SCHEMA.names), "recorded_at": recorded, **r} for r in rows]
    return lake.write_arrow(pa.Table.from_pylist(full, AUDIT_SCHEMA), spec.audit_table, txn=txn)


def history(config: Config, dataset: str | None = None) -> list[dict]:
    """Every audit row of the dataset's model, oldest first."""
    from batchml.training.dataset import model_spec

    _, spec = model_spec(config, dataset)
    lake = Lake(config)
    if not lake.exists(spec.audit_table):
        return []
    rows = lake.read_arrow(spec.audit_table, filters=[("model_name", "=", spec.registered_name)]).to_pylist()
    return sorted(rows, key=lambda r: r["recorded_at"])


def champion_at(config: Config, at: dt.datetime, dataset: str | None = None) -> int | None:
    """The version that held ``champion`` at time ``at`` (UTC if naive), per the audit table."""
    at = at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
    version = None
    for row in history(config, dataset):
        if row["recorded_at"] > at:
            break
        if row["event"] == "alias" and row["alias"] == CHAMPION:
            version = row["to_version"]
    return version


# -- the evaluate and promote stages ------------------------------------------------------
def _window_frame(config: Config, name: str, spec: ModelSpec, candidate, champion, spark):
    """The candidate's test window, from the training set it was tested on, with both models' inputs."""

    from batchml.training.dataset import CUTOFF, LABEL

    date_column = config.dataset(name).features.date_column
    t = candidate.tags
    start, end = (dt.date.fromisoformat(t[k]) for k in ("test_start", "test_end"))
    frame = Lake(config, spark).read(
        t["training_table"], version=int(t["training_version"]),
        where=[(CUTOFF, "=", dt.date.fromisoformat(t["cutoff_date"])), (date_column, ">=", start),
               (date_column, "<=", end)])
    missing = [c for c in champion.feature_columns if c not in frame.columns]
    if missing:
        return None, f"the champion's inputs {missing} are not in the current training set"
    cols = list(dict.fromkeys([*candidate.feature_columns, *champion.feature_columns, LABEL, *spec.slices]))
    return frame.select(*cols).toArrow().to_pandas(), f"{start}..{end}"


def _inputs(frame, model: store.ModelVersion):
    """The model's input matrix from a pandas frame of feature-table rows (categoricals coded as at training)."""
    import numpy as np
    import pyarrow as pa

    from batchml.categories import codes

    columns = [codes(pa.array(frame[c], pa.string()), model.categories[c]) if c in model.categories
               else frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in model.feature_columns]
    return np.column_stack(columns).astype(np.float32) if columns else np.empty((len(frame), 0), np.float32)


def _score(model: store.ModelVersion, frame, spec: ModelSpec) -> tuple[dict, dict]:
    from batchml.training import metrics as M
    from batchml.training.dataset import LABEL

    y = frame[LABEL].to_numpy()
    p = model.predict(_inputs(frame, model))
    overall = M.evaluate(y, p, model.threshold, spec.costs, spec.calibration_bins)
    slices = M.by_slice(y, p, {s: frame[s].to_numpy() for s in spec.slices}, model.threshold, spec.costs,
                        spec.calibration_bins)
    return overall, slices


def evaluate(config: Config, run_date: dt.date, dataset: str | None = None, spark=None) -> Decision:
    """Record the promotion decision for the model version trained on ``run_date`` (once per date)."""
    from batchml.training.dataset import model_spec
    from batchml.training.train import VERSION_TAG, finished_run

    name, spec = model_spec(config, dataset)
    lake = Lake(config, spark)
    txn = (f"model-evaluate/{name}/{run_date}", 1)
    if lake.exists(spec.audit_table) and lake.committed(spec.audit_table, txn):
        row = _decision_row(config, name, run_date)
        log.info("evaluate %s %s: decision already recorded (%s); nothing to do", name, run_date, row["action"])
        return Decision(row["action"], row["reason"])
    run = finished_run(config, name, run_date)
    if run is None:
        raise ValueError(f"no model trained for run date {run_date}; run `batchml run train --run-date {run_date}`")
    candidate_v = int(run.data.tags[VERSION_TAG])
    champion_v = store.resolve(config, spec.registered_name, CHAMPION)
    values, payload = (math.nan, math.nan), {}
    if champion_v is None:
        decision = Decision("promote", "first model: there is no champion yet")
    elif champion_v == candidate_v:
        decision = Decision("keep", f"version {candidate_v} is already champion")
    else:
        candidate = store.load(config, spec.registered_name, version=candidate_v)
        champion = store.load(config, spec.registered_name, version=champion_v)
        frame, window = _window_frame(config, name, spec, candidate, champion, spark)
        if frame is None:
            decision = Decision(CHALLENGER, window + "; promote manually after review")
        else:
            (cm, cs), (om, os_) = _score(candidate, frame, spec), _score(champion, frame, spec)
            decision = decide(cm, om, cs, os_, spec.promotion)
            values = (cm[spec.promotion.metric], om[spec.promotion.metric])
            payload = {"window": window, "candidate": {"overall": cm, "slices": cs},
                       "champion": {"overall": om, "slices": os_}}
    write_audit(lake, spec, [{
        "run_date": run_date, "dataset": name, "model_name": spec.registered_name, "event": "decision",
        "action": decision.action, "alias": CHAMPION if decision.action == "promote" else CHALLENGER,
        "from_version": champion_v, "to_version": candidate_v, "metric": spec.promotion.metric,
        "candidate_value": values[0], "champion_value": values[1],
        "metrics_json": json.dumps(payload, default=str), "decided_by": "batchml evaluate",
        "reason": decision.reason}], txn=txn)
    log.info("evaluate %s %s: version %s vs champion %s -> %s (%s)", name, run_date, candidate_v, champion_v,
             decision.action, decision.reason)
    return decision


def _decision_row(config: Config, name: str, run_date: dt.date) -> dict | None:
    rows = [r for r in history(config, name) if r["event"] == "decision" and r["run_date"] == run_date]
    return rows[-1] if rows else None


def promote(config: Config, run_date: dt.date, dataset: str | None = None, spark=None) -> str:
    """Apply the run date's recorded decision to the MLflow aliases (once per date); returns the action."""
    from batchml.training.dataset import model_spec

    name, spec = model_spec(config, dataset)
    lake = Lake(config, spark)
    txn = (f"model-promote/{name}/{run_date}", 1)
    row = _decision_row(config, name, run_date)
    if row is None:
        raise ValueError(f"no promotion decision for run date {run_date}; run "
                         f"`batchml run evaluate --run-date {run_date}` first")
    if lake.committed(spec.audit_table, txn):
        log.info("promote %s %s: already applied (%s); nothing to do", name, run_date, row["action"])
        return row["action"]
    if row["action"] == "keep":
        log.info("promote %s %s: nothing to change (%s)", name, run_date, row["reason"])
        return "keep"
    alias = CHAMPION if row["action"] == "promote" else CHALLENGER
    before = row["from_version"] if alias == CHAMPION else _last_holder(config, name, CHALLENGER)
    store.client(config).set_registered_model_alias(spec.registered_name, alias, str(row["to_version"]))
    write_audit(lake, spec, [{
        "run_date": run_date, "dataset": name, "model_name": spec.registered_name, "event": "alias",
        "action": row["action"], "alias": alias, "from_version": before, "to_version": row["to_version"],
        "metric": row["metric"], "candidate_value": row["candidate_value"], "champion_value": row["champion_value"],
        "decided_by": f"batchml promote (decision of evaluate {run_date})", "reason": row["reason"]}], txn=txn)
    log.info("promote %s %s: %s @%s %s -> %s", name, run_date, spec.registered_name, alias, before, row["to_version"])
    return row["action"]


def _last_holder(config: Config, dataset: str, alias: str) -> int | None:
    """The version the audit last gave ``alias``: unlike asking MLflow, the same answer when a promote is
    re-run after an outage in which MLflow applied an alias change the client never heard back about."""
    changes = [r for r in history(config, dataset) if r["event"] == "alias" and r["alias"] == alias]
    return changes[-1]["to_version"] if changes else None


# -- manual commands -----------------------------------------------------------------------
def set_champion(config: Config, version: int, by: str, reason: str, dataset: str | None = None,
                 action: str = "manual_promote") -> int | None:
    """Make ``version`` champion by hand (audited); returns the previous champion."""
    from batchml.training.dataset import model_spec

    name, spec = model_spec(config, dataset)
    if not by.strip() or not reason.strip():
        raise ValueError("a manual alias change needs --by and --reason")
    c = store.client(config)
    _require_version(c, spec.registered_name, version)
    before = store.resolve(config, spec.registered_name, CHAMPION)
    c.set_registered_model_alias(spec.registered_name, CHAMPION, str(version))
    write_audit(Lake(config), spec, [{
        "run_date": _now().date(), "dataset": name, "model_name": spec.registered_name, "event": "alias",
        "action": action, "alias": CHAMPION, "from_version": before, "to_version": int(version),
        "decided_by": by, "reason": reason}])
    log.info("%s: %s @champion %s -> %s by %s (%s)", action, spec.registered_name, before, version, by, reason)
    return before


def _require_version(c, registered_name: str, version: int) -> None:
    """A clear error when MLflow says the version does not exist; an outage propagates as it is."""
    from mlflow.exceptions import MlflowException

    try:
        c.get_model_version(registered_name, str(version))
    except MlflowException as exc:
        if store.not_found(exc):
            raise ValueError(f"{registered_name} has no version {version}") from None
        raise


def rollback(config: Config, by: str, reason: str, to_version: int | None = None,
             dataset: str | None = None) -> int:
    """Point ``champion`` back at ``to_version`` (default: the champion before the current one)."""
    from batchml.training.dataset import model_spec

    _, spec = model_spec(config, dataset)
    if to_version is None:
        current = store.resolve(config, spec.registered_name, CHAMPION)
        changes = [r for r in history(config, dataset) if r["event"] == "alias" and r["alias"] == CHAMPION
                   and r["to_version"] == current and r["from_version"] is not None]
        if current is None or not changes:
            raise ValueError(f"{spec.registered_name}: no earlier champion to roll back to; pass --to-version")
        to_version = changes[-1]["from_version"]
    set_champion(config, to_version, by, reason, dataset, action="rollback")
    return int(to_version)
