"""The score stage: score the events of event date D with the champion, in checkpointed chunks.

A run of D is one **generation** (1, 2, ... after each deliberate re-score). Its plan (chunk
count, feature-table version, model version) is committed to the runs table first; each chunk
``crc32(id) mod K = i`` is then committed to the scores table and to the review queue,
each write with its own Delta app transaction id. A restart therefore skips committed chunks and
scores the rest from the same pinned snapshot with the same model: exactly one row per event.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
from dataclasses import dataclass, replace
from typing import Literal

import pyarrow as pa

from batchml.alerts import alert
from batchml.config import Config
from batchml.registry import store
from batchml.scoring import layout, predict
from batchml.scoring.predict import WRITTEN
from batchml.scoring.spec import ScoringSpec
from batchml.spark import default_parallelism
from batchml.storage import Lake

log = logging.getLogger(__name__)

# Test hook (Spark conf or env var): "after-request" (a re-score's request is recorded, its plan not yet),
# "after-plan", "after-scores:<chunk>", "before-commit:<chunk>"
# (the storage layer dies between writing files and committing). BATCHML_TESTING_HARD_CRASH=1 kills
# the process (os._exit) instead of raising.
CRASH_AT = "batchml.testing.scoring.crashAt"


class SimulatedCrash(RuntimeError):
    pass


@dataclass(frozen=True)
class Plan:
    generation: int
    chunks: int
    rows: int
    features_version: int
    model_name: str
    model_version: int | None
    reason: str | None  # why this generation was started by a re-score


@dataclass(frozen=True)
class ScoreSummary:
    dataset: str
    run_date: dt.date
    generation: int
    rows: int
    chunks: int
    chunks_written: int
    model_name: str
    model_version: int | None
    fallback_rows: int
    fallback_reason: str | None
    review_rows: int
    overflow_rows: int
    already_done: bool = False

    def line(self) -> str:
        if self.already_done:
            return (f"score {self.dataset} {self.run_date}: generation {self.generation} already complete; "
                    "nothing to do (use --rescore --reason to replace it)")
        model = f"{self.model_name} v{self.model_version}" if self.model_version else f"{self.model_name} (none)"
        text = (f"score {self.dataset} {self.run_date}: {self.rows} row(s) in {self.chunks} chunk(s) "
                f"({self.chunks_written} written now), generation {self.generation}, model {model}, "
                f"{self.review_rows} queued for review, {self.overflow_rows} over review capacity")
        if self.fallback_rows:
            text += f"; FALLBACK scored {self.fallback_rows} row(s): {self.fallback_reason}"
        return text


def scoring_spec(config: Config, dataset: str) -> ScoringSpec:
    spec = config.dataset(dataset).scoring
    if spec is None:
        raise ValueError(f"dataset {dataset!r} declares no scoring (add a 'scoring:' section to its config)")
    return spec


def registered_name(config: Config, dataset: str, spec: ScoringSpec) -> str:
    """``scoring.registered_model``, else the dataset's ``model.registered_name``."""
    model = getattr(config.dataset(dataset), "model", None)
    name = spec.registered_model or getattr(model, "registered_name", None)
    if not name:
        raise ValueError(f"dataset {dataset!r}: set scoring.registered_model or model.registered_name")
    return name


def score(config: Config, run_date: dt.date, dataset: str | None = None, spark=None,
          rescore_reason: str | None = None, migrate: bool = False,
          model_version: int | None | Literal["alias"] = "alias") -> ScoreSummary:
    """``migrate``: convert scores tables of the old layout first (``layout``); without it they are refused.

    ``model_version``: ``"alias"`` scores with the version the configured alias points at when the date is
    planned; a number pins that version and None the fallback rules (``batchml rebuild`` replays a date
    with the version its live run recorded)."""
    name = dataset or config.default_dataset
    spec = scoring_spec(config, name)
    features = config.dataset(name).features
    if features is None:
        raise ValueError(f"dataset {name!r} declares no features; scoring reads the feature table")
    if rescore_reason is not None and len(rescore_reason.strip()) < 10:
        raise ValueError("a re-score needs --reason of at least 10 characters (it is recorded)")
    lake = Lake(config, spark)  # Spark starts after a re-score request is recorded
    layout.check(lake, spec, migrate, f"batchml run score --dataset {name} --run-date {run_date}")
    runs = {(r["generation"], r["event"]): r for r in _runs(lake, spec, name, run_date)}
    latest = max((generation for generation, _ in runs), default=0)
    scored_at = dt.datetime.now(dt.timezone.utc)  # audit only: never decides which rows are produced

    if rescore_reason is not None:  # durable before anything else: a crash cannot lose the request
        latest += 1
        runs[(latest, "requested")] = _record_request(lake, spec, name, run_date, latest, rescore_reason, scored_at)
        _maybe_crash(lake.spark, "after-request")
    elif (latest, "completed") in runs:
        completed = runs[(latest, "completed")]
        summary = ScoreSummary(name, run_date, latest, completed["rows"], completed["chunks"], 0,
                               completed["model_name"], completed["model_version"], completed["fallback_rows"],
                               completed["fallback_reason"], completed["review_rows"], completed["overflow_rows"],
                               already_done=True)
        log.info(summary.line())
        return summary
    plan = _current_plan(lake, config, spec, name, run_date, runs, latest, scored_at, model_version)
    spark = lake._spark()
    _maybe_crash(spark, "after-plan")

    present = lake.read(features.table, version=plan.features_version).columns
    model, load_error = _load_model(config, plan, spec, features, present)
    _check_band(model, spec, name, run_date)
    if load_error:
        alert(config, {"kind": "scoring_fallback", "dataset": name, "run_date": str(run_date),
                       "generation": plan.generation, "reason": load_error,
                       "message": f"{name} {run_date}: no usable model, scoring with fallback rules: {load_error}"})
    written = 0
    columns = needed_columns(present, features, spec, model.feature_columns if model else ())
    for chunk in range(plan.chunks):
        written += _score_chunk(lake, spark, spec, features, name, run_date, plan, chunk, model, load_error,
                                columns, scored_at)
    totals = _totals(lake, spec, run_date)
    if totals["rows"] != plan.rows:  # ids are distinct by construction: each chunk replaces its own rows
        raise RuntimeError(f"scores for {run_date} hold {totals['rows']} row(s) but the feature partition "
                           f"has {plan.rows}; not marking the run complete")
    reason = load_error or (_first_fallback_reason(lake, spec, run_date) if totals["fallback_rows"] else None)
    unseen = unseen_categories(lake, features, plan.features_version, run_date, model)
    if any(unseen.values()):
        log.warning("score %s %s: categories unseen at training, scored as missing: %s", name, run_date, unseen)
    summary = ScoreSummary(name, run_date, plan.generation, totals["rows"], plan.chunks, written, plan.model_name,
                           plan.model_version if model else None, totals["fallback_rows"], reason,
                           totals["review_rows"], totals["overflow_rows"])
    if totals["fallback_rows"] and not load_error:
        alert(config, {"kind": "scoring_fallback", "dataset": name, "run_date": str(run_date),
                       "generation": plan.generation, "reason": reason, "rows": totals["fallback_rows"],
                       "message": f"{name} {run_date}: model failed on {totals['fallback_rows']} row(s); "
                                  f"fallback rules scored them: {reason}"})
    _record(lake, spec, name, run_date, plan, "completed", dt.datetime.now(dt.timezone.utc),
            {**totals, "fallback_reason": reason, "unseen_categories": json.dumps(unseen) if unseen else None})
    log.info(summary.line())
    return summary


# -- planning -------------------------------------------------------------------------------
def _runs(lake: Lake, spec: ScoringSpec, dataset: str, run_date: dt.date) -> list[dict]:
    if not lake.exists(spec.runs_table):
        return []
    return lake.read_arrow(spec.runs_table, [("run_date", "=", run_date), ("dataset", "=", dataset)]).to_pylist()


def _current_plan(lake, config, spec, dataset, run_date, runs: dict, latest: int, at: dt.datetime,
                  model_version: int | None | Literal["alias"] = "alias") -> Plan:
    """Generation ``latest``'s plan: resumed if committed, else made and committed now (the date's first
    run, or a requested re-score: this run's, or one that a crash interrupted before its plan)."""
    if (latest, "planned") in runs:
        plan = _plan_from_row(runs[(latest, "planned")])
        log.info("score %s %s: resuming generation %s (%s chunk(s))", dataset, run_date, latest, plan.chunks)
        return plan
    reason = runs[(latest, "requested")]["rescore_reason"] if (latest, "requested") in runs else None
    first = next((r for (_, event), r in sorted(runs.items()) if event == "planned"), None)
    features = config.dataset(dataset).features
    plan = _new_plan(lake, config, spec, features, dataset, run_date, max(latest, 1), reason,
                     first["chunks"] if first else None, model_version)
    _record(lake, spec, dataset, run_date, plan, "planned", at, {})
    log.info("score %s %s: generation %s planned: %s row(s), %s chunk(s), features v%s, model %s v%s%s",
             dataset, run_date, plan.generation, plan.rows, plan.chunks, plan.features_version, plan.model_name,
             plan.model_version, f", re-score: {reason}" if reason else "")
    return plan


def _plan_from_row(row: dict) -> Plan:
    return Plan(row["generation"], row["chunks"], row["rows"], row["features_version"], row["model_name"],
                row["model_version"], row["rescore_reason"])


def _new_plan(lake, config, spec, features, dataset, run_date, generation, reason, chunks,
              model_version: int | None | Literal["alias"] = "alias") -> Plan:
    if not lake.exists(features.table):
        raise FileNotFoundError(f"feature table {features.table} does not exist; run `batchml run features` first")
    version = lake.version(features.table)
    rows = lake.count(features.table, [(features.date_column, "=", run_date)])
    if rows == 0:
        raise ValueError(f"no features for event date {run_date} in {features.table}; "
                         f"run `batchml run features --run-date {run_date}` first")
    # The chunk count is fixed by a date's first plan, so a re-score replaces exactly the same chunks.
    chunks = chunks or max(1, math.ceil(rows / spec.chunk_rows))
    model = registered_name(config, dataset, spec)
    pinned = store.resolve(config, model, spec.alias) if model_version == "alias" else model_version
    return Plan(generation, chunks, rows, version, model, pinned, reason)


RUNS_SCHEMA = pa.schema([
    ("run_date", pa.date32()), ("dataset", pa.string()), ("generation", pa.int32()), ("event", pa.string()),
    ("chunks", pa.int32()), ("rows", pa.int64()), ("features_version", pa.int64()), ("model_name", pa.string()),
    ("model_version", pa.int32()), ("rescore_reason", pa.string()), ("fallback_rows", pa.int64()),
    ("fallback_reason", pa.string()), ("review_rows", pa.int64()), ("overflow_rows", pa.int64()),
    ("recorded_at", pa.timestamp("us", "UTC")),
    ("unseen_categories", pa.string()),  # JSON {column: count} of categorical values unseen at training
])


def _record(lake, spec, dataset, run_date, plan: Plan, event: str, at: dt.datetime, totals: dict) -> None:
    row = {"run_date": run_date, "dataset": dataset, "generation": plan.generation, "event": event,
           "chunks": plan.chunks, "rows": totals.get("rows", plan.rows), "features_version": plan.features_version,
           "model_name": plan.model_name, "model_version": plan.model_version, "rescore_reason": plan.reason,
           "fallback_rows": totals.get("fallback_rows"), "fallback_reason": totals.get("fallback_reason"),
           "review_rows": totals.get("review_rows"), "overflow_rows": totals.get("overflow_rows"), "recorded_at": at,
           "unseen_categories": totals.get("unseen_categories")}
    lake.write_arrow(pa.Table.from_pylist([row], RUNS_SCHEMA), spec.runs_table,
                     txn=(f"score-{event}/{dataset}/{run_date}/g{plan.generation}", 1),
                     metadata={"job": "score", "runDate": str(run_date)})


def _record_request(lake, spec, dataset, run_date, generation: int, reason: str, at: dt.datetime) -> dict:
    """A ``requested`` row: the re-score the next run of the date must carry out, whatever happens first."""
    row = {"run_date": run_date, "dataset": dataset, "generation": generation, "event": "requested",
           "rescore_reason": reason, "recorded_at": at}
    lake.write_arrow(pa.Table.from_pylist([row], RUNS_SCHEMA), spec.runs_table,
                     txn=(f"score-requested/{dataset}/{run_date}/g{generation}", 1),
                     metadata={"job": "score", "runDate": str(run_date)})
    return row


def _load_model(config, plan: Plan, spec, features, present: list[str]):
    """(ModelVersion, None), or (None, why not) when the fallback rules must score the run."""
    if plan.model_version is None:
        return None, f"no version of model {plan.model_name!r} under alias {spec.alias!r}"
    from mlflow.exceptions import MlflowException

    try:  # a version that cannot serve means: use the rules; an MLflow outage fails the run (retried later)
        model = store.load(config, plan.model_name, version=plan.model_version)
    except (store.ModelUnusable, MlflowException) as exc:
        if isinstance(exc, MlflowException) and not store.not_found(exc):
            raise
        return None, f"loading {plan.model_name} v{plan.model_version} failed: {type(exc).__name__}: {exc}"
    missing = [c for c in model.feature_columns if c not in present]
    if missing:
        return None, f"{plan.model_name} v{plan.model_version} needs columns missing from {features.table}: {missing}"
    return model, None


def _check_band(model, spec: ScoringSpec, dataset: str, run_date: dt.date) -> None:
    """Say when the model's review band is missing or was trained with other shares than configured."""
    band = model.review_band if model else None
    if model and band is None and spec.review.daily_capacity:
        log.warning("score %s %s: %s v%s records no review band (batchml.review_band); nothing goes to review "
                    "until a model trained with one is champion", dataset, run_date, model.name, model.version)
    elif band and (band.below_share, band.above_share) != (spec.review.share_below, spec.review.share_above):
        log.warning("score %s %s: %s v%s was trained with review shares %s/%s; config says %s/%s (used from the "
                    "next trained model)", dataset, run_date, model.name, model.version, band.below_share,
                    band.above_share, spec.review.share_below, spec.review.share_above)


def needed_columns(present: list[str], features, spec: ScoringSpec, model_columns) -> list[str]:
    """The id, the date, the model's inputs and every column the fallback rules mention."""
    return list(dict.fromkeys([features.id_column, features.date_column, *model_columns,
                               *rule_columns(present, spec)]))


def rule_columns(present: list[str], spec: ScoringSpec) -> list[str]:
    """The columns the fallback rules mention (by name)."""
    sql = spec.fallback.score_sql()
    return [c for c in present if re.search(rf"\b{re.escape(c)}\b", sql)]


# -- one chunk ------------------------------------------------------------------------------
def _score_chunk(lake, spark, spec, features, dataset, run_date, plan, chunk, model, load_error, columns,
                 scored_at) -> int:
    """Score and commit one chunk unless both its writes are already committed; returns 1 if it scored."""
    prefix = f"{dataset}/{run_date}/g{plan.generation}/c{chunk}"
    scores_txn, review_txn = (f"score/{prefix}", 1), (f"review/{prefix}", 1)
    where = [("run_date", "=", run_date), ("chunk", "=", chunk)]
    meta = {"job": "score", "runDate": str(run_date), "chunk": str(chunk), "generation": str(plan.generation),
            "modelName": plan.model_name, "modelVersion": str(model.version) if model else "none: fallback rules"}
    if lake.committed(spec.table, scores_txn):  # resumed: the queue still comes from the committed scores
        if not lake.committed(spec.review_table, review_txn):
            _write_queue(lake, spec, features.id_column, where, review_txn, meta, scored_at)
        return 0
    log.info("score %s %s: chunk %s/%s", dataset, run_date, chunk + 1, plan.chunks)
    scorer = _scorer(lake, spark, spec, features, run_date, plan.features_version, columns, plan.chunks, chunk,
                     model, load_error)
    constants = _constants(run_date, chunk, plan, model, scored_at)
    band = model.review_band if model else None
    if model is not None and lake.tasks_write_files:  # most rows are written by the read tasks themselves
        scorer = replace(scorer, direct=_direct_write(lake, spark, spec, features.id_column, where, scorer, band,
                                                      constants))
    cached = _scored(lake, spec, features, run_date, plan.features_version, columns, scorer).persist()
    try:
        files, scored = _split_written(cached) if scorer.direct is not None else ([], cached)
        capacity = spec.review.daily_capacity // plan.chunks + (chunk < spec.review.daily_capacity % plan.chunks)
        picked = review_picks(scored, band, features.id_column, capacity)
        final = _stamp(decide(scored, spec, features.id_column, picked, band), constants)
        if files:  # Spark writes only the band and fallback rows: one file, not one per task
            final = final.coalesce(1)
        crash = _crash_point(spark) == f"before-commit:{chunk}"
        lake.write(final, spec.table, mode="overwrite", replace_where=where, txn=scores_txn, metadata=meta,
                   options={"batchml.testing.crashBeforeCommit": "true"} if crash else None, files=files)
    finally:
        cached.unpersist()
    _maybe_crash(spark, f"after-scores:{chunk}")
    _write_queue(lake, spec, features.id_column, where, review_txn, meta, scored_at)
    return 1


def _split_written(cached):
    """The files the read tasks wrote (their last rows), and the scored rows they left to Spark. The files
    are listed once: a partition recomputed later only leaves unlisted (never committed) files behind."""
    from pyspark.sql import functions as F

    files = [f for row in cached.where(F.col(WRITTEN).isNotNull()).select(WRITTEN).collect()
             for f in json.loads(row[0])]
    return files, cached.where(F.col(WRITTEN).isNull()).drop(WRITTEN)


def _direct_write(lake: Lake, spark, spec: ScoringSpec, id_column: str, where, scorer: predict.BatchScorer, band,
                  constants: dict) -> predict.DirectWrite:
    """The read tasks' share of the chunk's write, in the layout Spark gives the other rows."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from batchml.spark import arrow_schema

    template = apply_fallback_rules(spark.createDataFrame([], from_arrow_schema(scorer.schema)), spec, id_column)
    layout = arrow_schema(_stamp(decide(template, spec, id_column, [], band), constants).schema)
    d = spec.decisions
    return predict.DirectWrite(lake.file_writer(spec.table, layout, where), (band.low, band.high) if band else None,
                               d["positive"], d["negative"], tuple(constants.items()))


def score_rows(lake: Lake, spark, spec: ScoringSpec, features, run_date: dt.date, version: int, columns: list[str],
               chunks: int, chunk: int, model, no_model_reason: str | None):
    """The scoring pass: the feature table's read tasks score the chunk's rows of the date
    (``predict.BatchScorer``), then Spark applies the fallback rules where the model could not score."""
    scorer = _scorer(lake, spark, spec, features, run_date, version, columns, chunks, chunk, model, no_model_reason)
    return _scored(lake, spec, features, run_date, version, columns, scorer)


def _scorer(lake: Lake, spark, spec: ScoringSpec, features, run_date: dt.date, version: int, columns: list[str],
            chunks: int, chunk: int, model, no_model_reason: str | None) -> predict.BatchScorer:
    from batchml.spark import arrow_schema

    where = [(features.date_column, "=", run_date)]
    plain = lake.read(features.table, columns, version, where=where)
    # A day in one file is one task: give XGBoost the idle cores rather than shuffle the rows to them.
    threads = max(1, default_parallelism(spark) // max(1, lake.read_tasks(features.table, version, where)))
    rules = [c for c in rule_columns(columns, spec) if c != features.id_column]
    rc = spec.reason_codes
    args = predict.ScorerArgs(features.id_column, tuple(model.feature_columns if model else ()),
                              model.threshold if model else spec.fallback.threshold, spec.fallback.threshold,
                              _reason_code_reach(model), rc.top_k, rc.method == "exact", rc.rows == "all", threads,
                              no_model_reason, _category_args(model), model.calibrator if model else None)
    return predict.BatchScorer(args, bytes(model.booster.save_raw("ubj")) if model else None,
                               arrow_schema(plain.select(*rules).schema), chunks, chunk)


def _scored(lake: Lake, spec: ScoringSpec, features, run_date: dt.date, version: int, columns: list[str],
            scorer: predict.BatchScorer):
    scored = lake.read(features.table, columns, version, where=[(features.date_column, "=", run_date)],
                       transform=scorer)
    return apply_fallback_rules(scored, spec, features.id_column)


def _category_args(model) -> tuple:
    return tuple((c, tuple(v)) for c, v in sorted(model.categories.items())) if model else ()


def unseen_categories(lake: Lake, features, version: int, run_date: dt.date, model) -> dict[str, int]:
    """Per categorical input of the model, the run date's values not among its training categories (scored as
    missing values)."""
    from batchml.categories import unseen

    if not model or not model.categories:
        return {}
    rows = lake.read_arrow(features.table, [(features.date_column, "=", run_date)], columns=list(model.categories),
                           version=version)
    return {c: unseen(rows.column(c), values) for c, values in sorted(model.categories.items())}


def apply_fallback_rules(scored, spec: ScoringSpec, id_column: str):
    """Rows flagged ``fallback`` get the rules' score, rule name and reason code; the rest keep the model's."""
    from pyspark.sql import functions as F

    fallback, rule = F.col("fallback"), F.expr(spec.fallback.rule_sql())
    return scored.select(
        id_column,
        F.when(fallback, F.expr(spec.fallback.score_sql()).cast("double")).otherwise(F.col("score")).alias("score"),
        "threshold", "fallback", "fallback_reason", F.when(fallback, rule).alias("fallback_rule"),
        F.when(~fallback, F.col("reason_codes")).alias("reason_codes"),  # rule-scored rows: see fallback_rule
        *[c for c in scored.columns if c == WRITTEN])


def review_picks(scored, band, id_column: str, capacity: int) -> list:
    """The ids of the band's rows closest to the threshold, at most ``capacity`` (ties: by id)."""
    from pyspark.sql import functions as F

    if capacity <= 0 or band is None:
        return []
    return [r[0] for r in scored.where(_in_band(band)).orderBy(F.abs(F.col("score") - F.col("threshold")), id_column)
            .select(id_column).limit(capacity).collect()]


def decide(scored, spec: ScoringSpec, id_column: str, picked: list, band):
    """Decisions: the ``picked`` ids go to review; the band's other rows keep the model's decision, flagged."""
    from pyspark.sql import functions as F

    review = F.col(id_column).isin(picked) if picked else F.lit(False)
    d = spec.decisions
    decision = (F.when(review, F.lit(d["review"])).when(F.col("score") >= F.col("threshold"), F.lit(d["positive"]))
                .otherwise(F.lit(d["negative"])))
    return scored.select(id_column, "score", "threshold", decision.alias("decision"), review.alias("review"),
                         (_in_band(band) & ~review).alias("review_overflow"), "fallback", "fallback_reason",
                         "fallback_rule", "reason_codes")


def _in_band(band):
    """Model-scored rows inside the model's review band (``training.review``); rule-scored rows never are."""
    from pyspark.sql import functions as F

    if band is None:
        return F.lit(False)
    inside = F.col("score") >= F.lit(band.low)
    if band.high != math.inf:
        inside &= F.col("score") < F.lit(band.high)
    return ~F.col("fallback") & inside


def _reason_code_reach(model) -> float:
    """How far below its threshold a score still gets reason codes (rows: flagged): to the band's low edge."""
    band = model.review_band if model else None
    return max(0.0, model.threshold - band.low) if band else 0.0


def _constants(run_date, chunk: int, plan: Plan, model, scored_at) -> dict:
    """The scores table's columns that are the same on every row of a chunk."""
    return {"run_date": run_date, "chunk": chunk, "model_name": plan.model_name,
            "model_version": model.version if model else None, "generation": plan.generation, "scored_at": scored_at}


_INT_CONSTANTS = {"chunk", "model_version", "generation"}


def _stamp(df, constants: dict):
    from pyspark.sql import functions as F

    return df.select("*", *[(F.lit(v).cast("int") if k in _INT_CONSTANTS else F.lit(v)).alias(k)
                            for k, v in constants.items()])


def _write_queue(lake, spec, id_column: str, where, txn, meta, queued_at) -> None:
    """The chunk's review queue, always built from the committed scores (so a resume builds the same)."""
    rows = lake.read_arrow(spec.table, [*where, ("review", "=", True)], columns=_queue_columns(id_column))
    lake.write_arrow(review_queue(rows, id_column, queued_at), spec.review_table, mode="overwrite",
                     replace_where=where, txn=txn, metadata=meta)


def _queue_columns(id_column: str) -> list[str]:
    return [id_column, "run_date", "chunk", "model_name", "model_version", "score", "threshold", "fallback",
            "reason_codes", "generation"]


def review_queue(rows: pa.Table, id_column: str, queued_at: dt.datetime) -> pa.Table:
    """Review rows numbered closest to the threshold first (``priority`` 1, 2, ...; ties by id)."""
    import pyarrow.compute as pc

    rows = rows.append_column("distance", pc.abs(pc.subtract(rows.column("score"), rows.column("threshold"))))
    rows = rows.sort_by([("distance", "ascending"), (id_column, "ascending")])
    n = rows.num_rows
    columns = _queue_columns(id_column)
    return (rows.select([*columns[:7], "distance", *columns[7:]])
            .append_column("queued_at", pa.array([queued_at] * n, pa.timestamp("us", "UTC")))
            .append_column("priority", pa.array(range(1, n + 1), pa.int32())))


def _totals(lake, spec, run_date) -> dict:
    """Rows from the Delta statistics (no scan); flag counts from the committed table's three flag columns."""
    import pyarrow.compute as pc

    flags = lake.read_arrow(spec.table, [("run_date", "=", run_date)],
                            columns=["fallback", "review", "review_overflow"])
    counts = {c: int(pc.sum(flags.column(c).cast(pa.int64())).as_py() or 0) for c in flags.column_names}
    return {"rows": lake.count(spec.table, [("run_date", "=", run_date)]), "fallback_rows": counts["fallback"],
            "review_rows": counts["review"], "overflow_rows": counts["review_overflow"]}


def _first_fallback_reason(lake, spec, run_date) -> str | None:
    rows = lake.read_arrow(spec.table, [("run_date", "=", run_date), ("fallback", "=", True)],
                           columns=["fallback_reason"])
    return rows.column(0)[0].as_py() if rows.num_rows else None


# -- test hook ------------------------------------------------------------------------------
def _crash_point(spark) -> str | None:
    in_conf = spark.conf.get(CRASH_AT, None) if spark is not None else None  # None: before Spark starts
    return in_conf or os.environ.get("BATCHML_TESTING_SCORING_CRASH_AT")


def _maybe_crash(spark, point: str) -> None:
    if _crash_point(spark) == point:
        if os.environ.get("BATCHML_TESTING_HARD_CRASH") == "1":
            os._exit(137)  # like a killed driver: no cleanup, no finally blocks
        raise SimulatedCrash(f"simulated crash at {point}")
