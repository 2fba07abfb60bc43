"""Executor-side scoring: Arrow batches in, scores and reason codes out (one ``mapInArrow`` pass).

The booster travels as a broadcast of its UBJSON bytes and is rebuilt once per Python worker.
Input columns: the id, the model's features as float32 (null = missing), and the fallback
rules' ``_fallback_score`` / ``_fallback_rule``. A batch the model cannot score is scored by
the fallback rules instead and flagged, so one bad batch never fails the night.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

FALLBACK_SCORE, FALLBACK_RULE = "_fallback_score", "_fallback_rule"

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


def spark_schema(id_column: str):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(output_schema(id_column))


def output_schema(id_column: str) -> pa.Schema:
    return pa.schema([(id_column, pa.string()), ("score", pa.float64()), ("threshold", pa.float64()),
                      ("fallback", pa.bool_()), ("fallback_reason", pa.string()), ("fallback_rule", pa.string()),
                      ("reason_codes", pa.string())])


def make_scorer(args: ScorerArgs, broadcast_model, model_key: str | None):
    """The function for ``DataFrame.mapInArrow``; ``broadcast_model`` holds the booster bytes (or None)."""

    def score_batches(batches):
        booster = None if broadcast_model is None else _booster(broadcast_model, model_key, args.threads)
        for batch in batches:
            yield score_batch(batch, booster, args)

    return score_batches


def _booster(broadcast_model, key: str, threads: int):
    if key not in _BOOSTERS:
        import xgboost as xgb

        booster = xgb.Booster(model_file=bytearray(broadcast_model.value))
        _BOOSTERS.clear()
        _BOOSTERS[key] = booster
    _BOOSTERS[key].set_param({"nthread": threads})
    return _BOOSTERS[key]


def score_batch(batch: pa.RecordBatch, booster, args: ScorerArgs) -> pa.RecordBatch:
    n = batch.num_rows
    ids = batch.column(args.id_column)
    reason = args.no_model_reason
    if booster is not None:
        try:
            X = features_matrix(batch, args.feature_columns)
            scores = booster.inplace_predict(X, validate_features=False).astype(np.float64)
            if scores.shape != (n,):
                raise ValueError(f"model returned shape {scores.shape} for {n} rows")
            codes = reason_codes(booster, X, scores, args)
            return pa.RecordBatch.from_arrays(
                [ids, pa.array(scores), pa.array(np.full(n, args.threshold)), pa.array(np.zeros(n, bool)),
                 pa.nulls(n, pa.string()), pa.nulls(n, pa.string()), pa.array(codes, pa.string())],
                schema=output_schema(args.id_column))
        except Exception as exc:  # noqa: BLE001 - the model failed on this batch: the rules take over
            reason = f"model failed on a batch of {n} rows: {type(exc).__name__}: {str(exc)[:300]}"
    rules = batch.column(FALLBACK_RULE)
    codes = [json.dumps([{"rule": r}]) for r in rules.to_pylist()]
    return pa.RecordBatch.from_arrays(
        [ids, batch.column(FALLBACK_SCORE).cast(pa.float64()), pa.array(np.full(n, args.fallback_threshold)),
         pa.array(np.ones(n, bool)), pa.array([reason] * n, pa.string()), rules, pa.array(codes, pa.string())],
        schema=output_schema(args.id_column))


def features_matrix(batch: pa.RecordBatch, columns) -> np.ndarray:
    """Row-major float32 matrix in the model's column order; nulls become NaN (XGBoost's missing)."""
    X = np.empty((batch.num_rows, len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        col = batch.column(name)
        if col.null_count:
            col = col.fill_null(np.nan)
        X[:, j] = col.to_numpy(zero_copy_only=False)
    return X


def reason_codes(booster, X: np.ndarray, scores: np.ndarray, args: ScorerArgs) -> list[str | None]:
    """JSON ``[{"feature", "contribution"}]``: the top-k features pushing the score up (log-odds)."""
    import xgboost as xgb

    rows = np.arange(len(scores)) if args.all_rows else np.flatnonzero(scores >= args.threshold - args.band_below)
    out: list[str | None] = [None] * len(scores)
    if len(rows) == 0:
        return out
    contribs = booster.predict(xgb.DMatrix(X[rows], missing=np.nan, nthread=args.threads), pred_contribs=True,
                               approx_contribs=not args.exact, validate_features=False)[:, :-1]  # drop the bias
    top = np.argsort(-contribs, axis=1, kind="stable")[:, :args.top_k]
    for r, row, picks in zip(rows, contribs, top):
        out[r] = json.dumps([{"feature": args.feature_columns[j], "contribution": round(float(row[j]), 6)}
                             for j in picks])
    return out
