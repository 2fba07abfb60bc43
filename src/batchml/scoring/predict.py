"""Executor-side scoring: runs inside the feature table's read tasks (``Lake.read(transform=)``).

A :class:`BatchScorer` takes each Arrow batch the read task produces, keeps the chunk's rows,
and returns only the scored columns, so the model's inputs never cross into Spark. The booster
travels inside the scorer as UBJSON bytes and is rebuilt once per Python worker. A batch the
model cannot score is flagged ``fallback`` and carries the fallback rules' input columns, which
Spark then scores with the rules' SQL (``score.apply_fallback_rules``); on model-scored rows
those columns are null. One bad batch never fails the night. With a :class:`DirectWrite`, the task
writes the rows that need nothing more to the scores table itself and passes on only the rest.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchml.storage.files import FileWriter
from batchml.training.calibration import Calibrator

_BOOSTERS: dict = {}  # model key -> Booster, per Python worker


@dataclass(frozen=True)
class ScorerArgs:
    id_column: str
    feature_columns: tuple[str, ...]
    threshold: float  # the model's
    fallback_threshold: float
    band_below: float  # reason codes for scores >= threshold - band_below (rows: flagged)
    top_k: int
    exact: bool  # TreeSHAP instead of path attribution
    all_rows: bool  # reason codes for every row
    threads: int  # XGBoost threads per task
    no_model_reason: str | None = None  # set when there is no model: every row uses the rules
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()  # the model's categorical inputs and their categories
    calibrator: Calibrator | None = None  # the model's raw score -> probability (scores, threshold: calibrated)


# The top-k features that pushed a score up, strongest first (the scores table's consumer contract)
REASON_CODES = pa.list_(pa.struct([("feature", pa.string()), ("contribution", pa.float64())]))


def output_schema(id_column: str, rule_inputs: pa.Schema | None = None) -> pa.Schema:
    return pa.schema([(id_column, pa.string()), ("score", pa.float64()), ("threshold", pa.float64()),
                      ("fallback", pa.bool_()), ("fallback_reason", pa.string()), ("reason_codes", REASON_CODES),
                      *(rule_inputs or [])])


@dataclass(frozen=True)
class BatchScorer:
    """Batch in, scored batch out; ``schema`` is the output (``Lake.read``'s transform protocol)."""

    args: ScorerArgs
    model: bytes | None  # the booster as UBJSON; None: the rules score everything
    rule_inputs: pa.Schema  # the fallback rules' input columns, passed through on fallback rows
    chunks: int = 1
    chunk: int = 0
    model_key: str | None = field(default=None, compare=False)
    direct: "DirectWrite | None" = None  # set: the task writes its final rows itself (``map_task``)

    def __post_init__(self):
        if self.model is not None and self.model_key is None:
            object.__setattr__(self, "model_key", hashlib.sha256(self.model).hexdigest())

    @property
    def schema(self) -> pa.Schema:
        schema = output_schema(self.args.id_column, self.rule_inputs)
        return schema.append(pa.field(WRITTEN, pa.string())) if self.direct else schema

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self.chunks > 1:
            batch = batch.filter(pa.array(chunk_of(batch.column(self.args.id_column), self.chunks) == self.chunk))
        booster = None if self.model is None else _booster(self.model, self.model_key, self.args.threads)
        return score_batch(batch, booster, self.args, self.rule_inputs)

    def map_task(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """A read task's batches scored. With ``direct``, the rows that need nothing more (``DirectWrite``)
        go to Parquet here; the others come out, then one row whose ``WRITTEN`` lists the files."""
        if self.direct is None:
            yield from (out for out in map(self, batches) if out.num_rows)
            return
        rest: list[pa.RecordBatch] = []

        def final_rows():
            for batch in batches:
                scored = self(batch)
                done = self.direct.done(scored)
                rest.append(scored.filter(pc.invert(done)))
                yield self.direct.final(scored.filter(done))

        written = self.direct.files.write(final_rows())
        for batch in rest:
            if batch.num_rows:
                yield batch.append_column(WRITTEN, pa.nulls(batch.num_rows, pa.string()))
        yield pa.RecordBatch.from_arrays([pa.nulls(1, f.type) for f in self.schema][:-1]
                                         + [pa.array([json.dumps(written)])], schema=self.schema)


WRITTEN = "_written_files"  # BatchScorer.map_task's last row: the task's Parquet files (JSON add actions)


@dataclass(frozen=True)
class DirectWrite:
    """Model-scored rows outside the review band need nothing from the rest of the chunk: their decision is
    the threshold's. The read task writes them to the scores table in its final layout (uncommitted files,
    committed by the driver with the chunk's other rows), so only the band and fallback rows enter Spark."""

    files: FileWriter  # the scores table's write of the chunk
    band: tuple[float, float] | None  # the model's review band [low, high); None: no band
    positive: str  # decision at or above the threshold
    negative: str
    constants: tuple[tuple[str, object], ...]  # the rest of the final layout: run date, chunk, model, ...

    def done(self, scored: pa.RecordBatch) -> pa.Array:
        """Rows the model scored outside the review band (``score._in_band``'s complement)."""
        done = pc.invert(scored.column("fallback"))
        if self.band is not None:
            low, high = self.band
            score = scored.column("score")
            done = pc.and_(done, pc.or_(pc.less(score, low), pc.greater_equal(score, high)))
        return pc.fill_null(done, False)  # a null score (rule-scored rows) is never done: a null mask drops rows

    def final(self, scored: pa.RecordBatch) -> pa.RecordBatch:
        """``score.decide`` and ``score._stamp`` for rows outside the band (no review, no overflow)."""
        n = scored.num_rows
        positive = pc.greater_equal(scored.column("score"), scored.column("threshold"))
        columns = {**{name: scored.column(name) for name in scored.schema.names},
                   "decision": pc.if_else(positive, self.positive, self.negative),
                   "review": pa.array(np.zeros(n, bool)), "review_overflow": pa.array(np.zeros(n, bool)),
                   "fallback_rule": pa.nulls(n, pa.string()),
                   **{name: pa.repeat(value, n) for name, value in self.constants}}
        schema = self.files.schema
        return pa.RecordBatch.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema)


def chunk_of(ids: pa.Array, chunks: int) -> np.ndarray:
    """The checkpoint chunk of each id: CRC-32 of its text, modulo the chunk count (stable forever)."""
    text = ids.cast(pa.string()).to_pylist()
    return np.fromiter((zlib.crc32(t.encode()) for t in text), np.int64, len(text)) % chunks


def _booster(model: bytes, key: str, threads: int):
    if key not in _BOOSTERS:
        import xgboost as xgb

        from batchml.spark import freeze_worker_imports

        freeze_worker_imports()  # xgboost's module objects, like the data source's
        booster = xgb.Booster(model_file=bytearray(model))
        _BOOSTERS.clear()
        _BOOSTERS[key] = booster
    _BOOSTERS[key].set_param({"nthread": threads})
    return _BOOSTERS[key]


def score_batch(batch: pa.RecordBatch, booster, args: ScorerArgs, rule_inputs: pa.Schema) -> pa.RecordBatch:
    n = batch.num_rows
    ids = batch.column(args.id_column).cast(pa.string())
    schema = output_schema(args.id_column, rule_inputs)
    reason = args.no_model_reason
    if booster is not None:
        try:
            X = features_matrix(batch, args.feature_columns, dict(args.categories))
            scores = booster.inplace_predict(X, validate_features=False).astype(np.float64)
            if scores.shape != (n,):
                raise ValueError(f"model returned shape {scores.shape} for {n} rows")
            if args.calibrator is not None:
                scores = args.calibrator(scores)
            codes = reason_codes(booster, X, scores, args)
            return pa.RecordBatch.from_arrays(
                [ids, pa.array(scores), pa.array(np.full(n, args.threshold)), pa.array(np.zeros(n, bool)),
                 pa.nulls(n, pa.string()), pa.array(codes, REASON_CODES),
                 *[pa.nulls(n, f.type) for f in rule_inputs]], schema=schema)
        except (ValueError, TypeError, pa.ArrowException) as exc:  # XGBoostError is a ValueError: the rules take over
            reason = f"model failed on a batch of {n} rows: {type(exc).__name__}: {str(exc)[:300]}"
    return pa.RecordBatch.from_arrays(
        [ids, pa.nulls(n, pa.float64()), pa.array(np.full(n, args.fallback_threshold)), pa.array(np.ones(n, bool)),
         pa.array([reason] * n, pa.string()), pa.nulls(n, REASON_CODES),
         *[batch.column(f.name).cast(f.type) for f in rule_inputs]], schema=schema)


def features_matrix(batch: pa.RecordBatch | pa.Table, columns, categories=None) -> np.ndarray:
    """Row-major float32 matrix in the model's column order; nulls become NaN (XGBoost's missing).
    ``categories``: the model's categorical inputs, coded as at training (unseen values: NaN)."""
    from batchml.categories import codes

    X = np.empty((batch.num_rows, len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        col = batch.column(name)
        if categories and name in categories:
            X[:, j] = codes(col, categories[name])
            continue
        if not pa.types.is_floating(col.type):  # int, decimal and boolean features
            col = col.cast(pa.float64())
        if col.null_count:
            col = col.fill_null(np.nan)
        X[:, j] = col.to_numpy(zero_copy_only=False)
    return X


def reason_codes(booster, X: np.ndarray, scores: np.ndarray, args: ScorerArgs) -> list[list[dict] | None]:
    """``[{"feature", "contribution"}]`` per row: the top-k features pushing the score up, in the booster's raw
    log-odds, before calibration (the calibrator is increasing: what raises the log-odds raises the score)."""
    import xgboost as xgb

    rows = np.arange(len(scores)) if args.all_rows else np.flatnonzero(scores >= args.threshold - args.band_below)
    out: list[list[dict] | None] = [None] * len(scores)
    if len(rows) == 0:
        return out
    contribs = booster.predict(xgb.DMatrix(X[rows], missing=np.nan, nthread=args.threads), pred_contribs=True,
                               approx_contribs=not args.exact, validate_features=False)[:, :-1]  # drop the bias
    top = np.argsort(-contribs, axis=1, kind="stable")[:, :args.top_k]
    for r, row, picks in zip(rows, contribs, top):
        out[r] = [{"feature": args.feature_columns[j], "contribution": round(float(row[j]), 6)} for j in picks]
    return out
