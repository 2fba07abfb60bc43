"""A small monitoring world built from the demo generator: quiet days, then concept and covariate drift.

The tables monitoring reads are written straight through the lake (no ingest / features / scoring
stages, to stay fast): a features table with a few raw-column features, the accepted chargebacks,
a champion booster trained on quiet days and registered through the model store, and its scores.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from batchml.config import Config
from batchml.demo.generator import DemoOptions, generate
from batchml.registry import store
from batchml.storage import Lake

START = dt.date(2024, 1, 1)
DAYS = 72
TRAIN = (START, dt.date(2024, 1, 14))
TEST = (dt.date(2024, 1, 15), dt.date(2024, 1, 28))
CONCEPT_DRIFT = dt.date(2024, 2, 1)
COVARIATE_DRIFT = dt.date(2024, 3, 10)
MODEL = "story_fraud"
FEATURES = ["log_amount", "hour", "is_foreign", "card_present_flag", "channel_code", "customer_tenure_days"]
CHANNELS = ["pos", "ecom", "atm"]


def features(tx: pa.Table) -> pa.Table:
    amount = tx.column("amount").to_numpy()
    return pa.table({
        "transaction_id": tx.column("transaction_id"),
        "event_date": pc.cast(tx.column("event_time"), pa.date32()),
        "log_amount": np.log1p(amount),
        "hour": pc.hour(tx.column("event_time")).cast(pa.float64()),
        "is_foreign": pc.not_equal(tx.column("country"), tx.column("customer_country")).cast(pa.float64()),
        "card_present_flag": tx.column("card_present").cast(pa.float64()),
        "channel_code": pa.array([CHANNELS.index(c) for c in tx.column("channel").to_pylist()], pa.float64()),
        "customer_tenure_days": tx.column("customer_tenure_days").cast(pa.float64()),
        "channel": tx.column("channel"),
        "merchant_category": tx.column("merchant_category"),
    })


def build(config: Config, root: str, rows_per_day: int = 3000) -> dict:
    """Write the world under the config's lake and register the champion; returns facts for the tests."""
    import mlflow
    import xgboost as xgb

    generate(root, DemoOptions(start=START, days=DAYS, rows_per_day=rows_per_day, fmt="parquet", seed=11,
                               drift_from=COVARIATE_DRIFT, concept_drift_from=CONCEPT_DRIFT))
    tx = pads.dataset(f"{root}/transactions", format="parquet").to_table()
    cb = pads.dataset(f"{root}/chargebacks", format="parquet").to_table()
    cb = cb.append_column("ingest_date", pc.cast(cb.column("reported_at"), pa.date32()))
    feats = features(tx)
    lake = Lake(config)
    spec = config.dataset().monitoring
    lake.write_arrow(feats, "features.card_transactions")
    lake.write_arrow(cb, config.dataset().label.table)

    fraud = set(cb.column("transaction_id").to_pylist())
    y = np.array([t in fraud for t in feats.column("transaction_id").to_pylist()], dtype=np.float32)
    x = np.column_stack([feats.column(c).to_numpy() for c in FEATURES]).astype(np.float32)
    day = feats.column("event_date").to_numpy().astype("datetime64[D]")
    train = (day >= np.datetime64(TRAIN[0])) & (day <= np.datetime64(TRAIN[1]))
    test = (day >= np.datetime64(TEST[0])) & (day <= np.datetime64(TEST[1]))
    booster = xgb.train({"max_depth": 4, "eta": 0.2, "objective": "binary:logistic", "nthread": 2,
                         "scale_pos_weight": 10.0}, xgb.DMatrix(x[train], label=y[train]), num_boost_round=40)
    score = booster.inplace_predict(x)
    threshold = float(np.quantile(score[train], 0.98))
    test_metrics = _metrics(y[test], score[test], threshold)

    store.experiment_id(config, "card_transactions")
    mlflow.set_experiment(store.experiment_name("card_transactions"))
    with mlflow.start_run():
        mv = store.log_and_register(config, MODEL, booster, FEATURES, threshold, {
            "features_table": "features.card_transactions",
            "features_version": str(lake.version("features.card_transactions")),
            "train_start": TRAIN[0].isoformat(), "train_end": TRAIN[1].isoformat(),
            "test_start": TEST[0].isoformat(), "test_end": TEST[1].isoformat(),
            "test_metrics": json.dumps(test_metrics)})
    store.client(config).set_registered_model_alias(MODEL, "champion", str(mv.version))

    scores = pa.table({"transaction_id": feats.column("transaction_id"), "run_date": feats.column("event_date"),
                       "chunk": pa.array(np.zeros(len(feats), np.int32)), "model_version": pa.array(
                           np.full(len(feats), mv.version, np.int64)),
                       "score": pa.array(score.astype(np.float64)), "threshold": pa.array(np.full(len(feats), threshold)),
                       "fallback": pa.array(np.zeros(len(feats), bool))})
    lake.write_arrow(scores, spec.scores_table)
    return {"threshold": threshold, "test_metrics": test_metrics, "y": y, "score": score, "day": day,
            "ids": feats.column("transaction_id").to_pylist(), "labels": cb}


def _metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import average_precision_score

    pred = score >= threshold
    tp, pos, flagged = float((pred & (y == 1)).sum()), float(y.sum()), float(pred.sum())
    return {"recall": tp / max(pos, 1), "precision": tp / max(flagged, 1), "f1": 2 * tp / max(pos + flagged, 1),
            "pr_auc": float(average_precision_score(y, score))}
