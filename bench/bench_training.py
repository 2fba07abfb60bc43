"""Training benchmark: distributed ``xgboost.spark`` vs single-node ``xgboost.train`` on one training set.

A synthetic training set (``--rows`` rows x ``--features`` float features, ~1% fraud with a learnable
signal, 10 event days) is written as a Delta table through ``Lake.write_arrow``. Both sides fit the
same booster settings (hist, depth 6, ``--rounds`` rounds, max_bin 256, scale_pos_weight) on the
first 9 days and are scored by ROC-AUC on the last day (time-ordered hold-out):

* ``floor``: single-node ``xgboost.train`` with ``nthread=2`` (both cores) on the rows in memory
  (``QuantileDMatrix`` build included);
* ``spark_fit``: ``SparkXGBClassifier(num_workers=2).fit`` on the same rows, already cached in Spark
  and repartitioned to the workers (what the train stage does), one thread per worker
  (``spark.task.cpus`` = 1 in local[2]);
* ``spark_end_to_end``: the same fit straight from the Delta table (read + repartition + fit).

    .venv/bin/python bench/bench_training.py [--rows 1000000] [--features 28] [--rounds 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import pyarrow as pa

from common import Run, bench_config, median, parse, timed

START = dt.date(2024, 1, 1)
DAYS = 10


def synthetic(rows: int, n_features: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, n_features)).astype(np.float32)
    x[rng.random(size=x.shape) < 0.02] = np.nan  # a few missing values, as in real features
    logit = -5.2 + 1.2 * np.nan_to_num(x[:, 0]) + 0.8 * np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) \
        + 0.6 * (np.nan_to_num(x[:, 3]) > 1)
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    days = np.sort(rng.integers(0, DAYS, rows))
    cols = {f"f{i:02d}": pa.array(x[:, i], pa.float64()) for i in range(n_features)}
    return pa.table({**cols, "label": label,
                     "event_date": pa.array([START + dt.timedelta(days=int(d)) for d in days], pa.date32()),
                     "cutoff_date": pa.array([START + dt.timedelta(days=DAYS + 14)] * rows, pa.date32())})


def auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, p)), 5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--num-workers", type=int, default=2)
    args = parse(parser)
    run = Run(args)

    import xgboost as xgb
    from pyspark.sql import functions as F
    from xgboost.spark import SparkXGBClassifier

    from batchml.spark import get_spark
    from batchml.storage import Lake

    config, home = bench_config()
    spec = config.dataset().model
    data = synthetic(args.rows, args.features)
    features = [f"f{i:02d}" for i in range(args.features)]
    lake = Lake(config, get_spark(config))
    lake.write_arrow(data, spec.training_table)
    test_day = START + dt.timedelta(days=DAYS - 1)
    frame = data.to_pandas()
    train, test = frame[frame.event_date < test_day], frame[frame.event_date == test_day]
    pos = int(train.label.sum())
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "learning_rate": 0.1,
              "max_bin": 256, "scale_pos_weight": (len(train) - pos) / pos, "seed": 7}
    timings: dict = {}
    out: dict = {}

    def floor():
        dtrain = xgb.QuantileDMatrix(train[features].to_numpy(np.float32), label=train.label, nthread=2,
                                     max_bin=256)
        out["floor"] = xgb.train({**params, "nthread": 2}, dtrain, num_boost_round=args.rounds)

    est = SparkXGBClassifier(features_col=features, label_col="label", num_workers=args.num_workers,
                             n_estimators=args.rounds, tree_method="hist", max_depth=6, learning_rate=0.1,
                             max_bin=256, scale_pos_weight=params["scale_pos_weight"], random_state=7)
    source = (lake.read(spec.training_table).where(F.col("event_date") < F.lit(test_day))
              .select(*features, "label"))
    cached = source.repartition(args.num_workers).persist()
    with timed(timings, "cache_s"):
        cached.count()  # materialise outside the timed fit

    def spark_fit():
        out["spark"] = est.fit(cached).get_booster()

    runs = run.interleaved({"floor_s": floor, "spark_fit_s": spark_fit})
    floor_auc = auc(test.label, out["floor"].inplace_predict(test[features].to_numpy(np.float32)))
    spark_auc = auc(test.label, out["spark"].inplace_predict(test[features].to_numpy(np.float32)))
    cached.unpersist()
    runs |= run.interleaved({"spark_end_to_end_s": lambda: est.fit(source.repartition(args.num_workers))})
    timings |= {side: median(seconds) for side, seconds in runs.items()}

    ratio = round(timings["spark_fit_s"] / timings["floor_s"], 3)
    run.write(
        "training", ratio=ratio, goal=1.5, higher_is_better=False, rows=args.rows,
        unit="xgboost.spark fit time over single-node xgboost.train time (lower is better)",
        floor=f"single-node xgboost.train hist, nthread=2, QuantileDMatrix build included, {len(train)} rows in memory",
        features=args.features, rounds=args.rounds, num_workers=args.num_workers, train_rows=len(train),
        test_rows=len(test), spark_auc=spark_auc, floor_auc=floor_auc,
        auc_gap=round(abs(spark_auc - floor_auc), 5), auc_goal=0.005,
        end_to_end_ratio=round(timings["spark_end_to_end_s"] / timings["floor_s"], 3), timings_s=timings,
        runs_s=runs, when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    import shutil

    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
