"""A small synthetic feature table and chargeback feed with a learnable fraud signal."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from batchml.config import Config
from batchml.storage import Lake

UTC = dt.timezone.utc
START = dt.date(2024, 3, 1)
DAYS = 16
CUTOFF = START + dt.timedelta(days=20)  # maturity 5 days -> events START .. START + 15 count

FEATURES_SCHEMA = pa.schema([
    ("transaction_id", pa.string()), ("event_time", pa.timestamp("us", "UTC")), ("event_date", pa.date32()),
    ("channel", pa.string()), ("merchant_category", pa.string()), ("amount", pa.float64()),
    ("risk_signal", pa.float64()), ("noise", pa.float64()), ("customer_count_24h", pa.int64()),
    ("channel_ecom", pa.int32()), ("share", pa.decimal128(38, 12)),  # a decimal input: cast to double
])
CHARGEBACKS_SCHEMA = pa.schema([
    ("chargeback_id", pa.string()), ("transaction_id", pa.string()), ("reported_at", pa.timestamp("us", "UTC")),
    ("reason_code", pa.string()), ("amount", pa.float64()), ("ingest_date", pa.date32()),
])


def small_model(config: Config, **model) -> Config:
    """The test config with a model section sized for seconds, not minutes."""
    ds = config.dataset()
    spec = ds.model.model_copy(update={
        "label_maturity_days": 5, "history_days": 60, "num_workers": 2,
        "params": {"n_estimators": 15, "tree_method": "hist", "max_bin": 32},
        "splits": ds.model.splits.model_copy(update={"test_days": 3, "validation_days": 2, "cv_folds": 1,
                                                     "cv_fold_days": 2, "min_train_days": 3}),
        "search": ds.model.search.model_copy(update={"trials": 2}),
        "baseline_sample_rows": 1000, **model})
    datasets = {**config.datasets, config.default_dataset: ds.model_copy(update={"model": spec})}
    return config.model_copy(update={"datasets": datasets})


def synthetic(seed: int = 3, per_day: int = 300, start: dt.date = START, days: int = DAYS,
              concept: float = 1.0) -> tuple[pa.Table, pa.Table]:
    """(features, chargebacks). ``concept`` scales the signal (0 = fraud unrelated to risk_signal)."""
    rng = np.random.default_rng(seed)
    n = per_day * days
    day = np.repeat(np.arange(days), per_day)
    seconds = rng.integers(0, 86_400, n)
    channel = rng.choice(["pos", "ecom", "atm"], n, p=[0.5, 0.4, 0.1])
    category = rng.choice(["grocery", "travel", "electronics"], n)
    signal = rng.normal(size=n)
    logit = -3.6 + concept * 1.6 * signal + 0.8 * (channel == "ecom")
    fraud = rng.random(n) < 1 / (1 + np.exp(-logit))
    base = dt.datetime.combine(start, dt.time(), UTC)
    times = [base + dt.timedelta(days=int(d), seconds=int(s)) for d, s in zip(day, seconds)]
    ids = [f"t{start:%m%d}_{i}" for i in range(n)]
    counts = rng.poisson(2, n).astype("int64")
    features = pa.Table.from_pydict({
        "transaction_id": ids, "event_time": times, "event_date": [t.date() for t in times],
        "channel": channel, "merchant_category": category, "amount": rng.gamma(2.0, 30.0, n),
        "risk_signal": signal, "noise": pa.array(rng.normal(size=n), mask=rng.random(n) < 0.05),  # real nulls
        "customer_count_24h": counts, "channel_ecom": (channel == "ecom").astype("int32"),
        "share": pa.array(np.round(rng.random(n), 6)).cast(pa.decimal128(38, 12)),
    }, FEATURES_SCHEMA)
    idx = np.flatnonzero(fraud)
    delay = rng.integers(1, 5, len(idx)) * 86_400 + rng.integers(0, 86_400, len(idx))  # 1-4 days late
    reported = [times[i] + dt.timedelta(seconds=int(s)) for i, s in zip(idx, delay)]
    chargebacks = pa.Table.from_pydict({
        "chargeback_id": [f"cb_{ids[i]}" for i in idx], "transaction_id": [ids[i] for i in idx],
        "reported_at": reported, "reason_code": ["fraud_card"] * len(idx),
        "amount": np.ones(len(idx)), "ingest_date": [r.date() for r in reported],
    }, CHARGEBACKS_SCHEMA)
    return features, chargebacks


def load(config: Config, features: pa.Table, chargebacks: pa.Table) -> None:
    lake = Lake(config)
    ds = config.dataset()
    lake.write_arrow(features, ds.features.table)
    lake.write_arrow(chargebacks, ds.validation[ds.labels.table].accepted_table)
