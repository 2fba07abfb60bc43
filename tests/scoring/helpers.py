"""A small real feature table, a real XGBoost model registered in a real MLflow store, and a config for both."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import xgboost as xgb

from batchml.config import Config, load_config
from batchml.registry import store
from batchml.storage import Lake
from batchml.training.review import ReviewBand

REPO = Path(__file__).resolve().parents[2]
DATASET = "card_transactions"
FEATURES = ["amount", "is_foreign", "card_present_flag", "amount_to_customer_mean_30d", "customer_count_1h"]
# conf/test overlay for the dataset: small chunks and a small review capacity, so tests see both.
OVERLAY = """
scoring:
  chunk_rows: 250
  review: {share_below: 0.1, share_above: 0.1, daily_capacity: 12}
"""
BAND = 0.1  # register() records the review band [threshold - 0.1, threshold + 0.1), as training would a band


def scoring_config(root: Path) -> Config:
    """The test config with a dataset overlay; ``root`` is BATCHML_HOME (lake, MLflow, alerts)."""
    conf = root / "conf"
    if not conf.exists():
        shutil.copytree(REPO / "conf", conf)
        (conf / "test" / "datasets").mkdir(exist_ok=True)
        (conf / "test" / "datasets" / f"{DATASET}.yaml").write_text(OVERLAY)
    return load_config("test", conf_dir=conf, environ={"BATCHML_HOME": str(root)})


def with_scoring(config: Config, **changes) -> Config:
    ds = config.dataset(DATASET)
    ds = ds.model_copy(update={"scoring": ds.scoring.model_copy(update=changes)})
    return config.model_copy(update={"datasets": {**config.datasets, DATASET: ds}})


def feature_rows(day: dt.date, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ratio = rng.lognormal(0, 1, n)
    ratio[rng.random(n) < 0.1] = np.nan  # no history: null ratio
    return pa.table({
        "transaction_id": [f"tx-{day:%Y%m%d}-{i:05d}" for i in range(n)],
        "event_date": pa.array([day] * n, pa.date32()),
        "amount": rng.gamma(2, 60, n).round(2),
        "is_foreign": rng.binomial(1, 0.2, n).astype(np.int32),
        "card_present_flag": rng.binomial(1, 0.5, n).astype(np.int32),
        "amount_to_customer_mean_30d": pa.array(ratio, from_pandas=True),
        "new_device_for_customer": rng.binomial(1, 0.1, n).astype(np.int32),
        "customer_count_1h": rng.poisson(1, n).astype(np.int64),
        "channel": rng.choice(["pos", "ecom", "atm"], n),
    })


def write_features(config: Config, days: dict[dt.date, int]) -> None:
    lake = Lake(config)
    for i, (day, n) in enumerate(sorted(days.items())):
        lake.write_arrow(feature_rows(day, n, seed=i), config.dataset(DATASET).features.table,
                         mode="overwrite", replace_where=[("event_date", "=", day)])


def matrix(table: pa.Table, columns=FEATURES) -> np.ndarray:
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in columns])


def train(seed: int, rounds: int = 20) -> xgb.Booster:
    data = feature_rows(dt.date(2024, 1, 1), 4000, seed=100 + seed)
    X = matrix(data)
    logit = 0.01 * X[:, 0] + 1.5 * X[:, 1] - X[:, 2] + 0.5 * np.nan_to_num(X[:, 3]) - 4
    y = (np.random.default_rng(seed).random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    return xgb.train({"max_depth": 3, "eta": 0.3, "objective": "binary:logistic", "seed": seed},
                     xgb.DMatrix(X, y, missing=np.nan), rounds)


def register(config: Config, booster: xgb.Booster, threshold: float, name: str | None = None,
             columns=FEATURES, alias: str | None = "champion") -> int:
    name = name or config.dataset(DATASET).model.registered_name
    band = ReviewBand(threshold - BAND, threshold + BAND, 0.1, 0.1)
    tags = {"features_table": "features.card_transactions", "features_version": "0", "train_start": "2023-12-01",
            "train_end": "2023-12-20", "test_start": "2023-12-21", "test_end": "2023-12-31",
            "test_metrics": '{"pr_auc": 0.5}', "review_band": band.tag()}
    with mlflow.start_run(experiment_id=store.experiment_id(config, DATASET)):
        mv = store.log_and_register(config, name, booster, list(columns), threshold, tags)
    if alias:
        store.client(config).set_registered_model_alias(name, alias, str(mv.version))
    return mv.version
