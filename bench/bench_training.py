"""Training benchmark: batchml's distributed fit (``xgboost.spark``) vs single-node ``xgboost.train``.

A synthetic training set (``--rows`` rows x ``--features`` float features, ~1.6% fraud with a
learnable signal, 10 event days) is written as a Delta table through ``Lake.write_arrow``. Every side
fits the same booster settings (hist, depth 6, ``--rounds`` rounds, max_bin 256, scale_pos_weight)
on the first 9 days and is scored by ROC-AUC on the last day (time-ordered hold-out):

* ``floor``: single-node ``xgboost.train`` with ``nthread=2`` (both cores) on the rows in memory
  (``QuantileDMatrix`` build included);
* ``batchml``: ``training.fit.fit``, one fit of the train stage, on the prepared training set
  (``train.prepare``: read from Delta, cast, partitioned to the workers, persisted; done once per
  stage for all its fits and timed apart as ``prepare_s``); ``num_workers`` barrier tasks, one thread
  each (``spark.task.cpus`` = 1 in local[2]);
* ``xgboost_spark``: the library as documented, ``SparkXGBClassifier(num_workers).fit`` on the same
  rows cached and repartitioned: for reference (it adds a ``countDistinct`` job on the label).

Floor, batchml and xgboost_spark run interleaved, ``--repeat`` times each (median). Once each, after:
``tiny_fit_s``, a fit of 1,000 rows, xgboost.spark's fixed cost per fit (barrier stage, tracker,
workers); ``first_fit_s`` is the first batchml fit of the session (Python workers start, import
xgboost). To tell fixed cost from per-row cost, run at 1M and at 5M rows (``training_5m.json``).

    .venv/bin/python bench/bench_training.py [--rows 1000000] [--features 28] [--rounds 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
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


def result_name(rows: int) -> str:
    return "training" if rows == 1_000_000 else f"training_{rows / 1e6:g}m".replace(".", "_")


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
    from batchml.training import fit as fitting
    from batchml.training.splits import Range
    from batchml.training.train import prepare

    config, home = bench_config()
    cutoff = START + dt.timedelta(days=DAYS + 14)
    spec = config.dataset().model.model_copy(update={"num_workers": args.num_workers, "slices": [], "params": {}})
    data = synthetic(args.rows, args.features)
    features = [f"f{i:02d}" for i in range(args.features)]
    lake = Lake(config, get_spark(config))
    lake.write_arrow(data, spec.training_table)
    test_day = START + dt.timedelta(days=DAYS - 1)
    window = Range(START, test_day - dt.timedelta(days=1))
    frame = data.to_pandas()
    train, test = frame[frame.event_date < test_day], frame[frame.event_date == test_day]
    x_train, x_test = train[features].to_numpy(np.float32), test[features].to_numpy(np.float32)
    pos = int(train.label.sum())
    scale = (len(train) - pos) / pos
    booster = {"max_depth": 6, "learning_rate": 0.1, "max_bin": 256, "scale_pos_weight": scale}
    timings: dict = {}
    out: dict = {}
    del frame

    def floor():
        dtrain = xgb.QuantileDMatrix(x_train, label=train.label, nthread=2, max_bin=256)
        out["floor"] = xgb.train({**booster, "objective": "binary:logistic", "tree_method": "hist", "seed": 7,
                                  "nthread": 2}, dtrain, num_boost_round=args.rounds)

    with timed(timings, "prepare_s"):  # once per train stage, shared by all its fits
        prep, _ = prepare(lake, spec, spec.training_table, lake.version(spec.training_table), cutoff, "id",
                          "event_date")
    assert prep.features == features and prep.counts(window) == (len(train), pos), (prep.features, prep.counts(window))
    params = {"n_estimators": args.rounds, "tree_method": "hist", **booster}

    def batchml():
        out["batchml"] = fitting.fit(prep, window, spec, params)

    with timed(timings, "first_fit_s"):  # Python workers start and import xgboost
        batchml()

    est = SparkXGBClassifier(features_col=features, label_col="label", num_workers=args.num_workers,
                             n_estimators=args.rounds, tree_method="hist", random_state=7, **booster)
    source = lake.read(spec.training_table).where(F.col("event_date") < F.lit(test_day)).select(*features, "label")
    cached = source.repartition(args.num_workers).persist()
    cached.count()

    def xgboost_spark():
        out["xgboost_spark"] = est.fit(cached).get_booster()

    runs = run.interleaved({"floor_s": floor, "batchml_fit_s": batchml, "xgboost_spark_fit_s": xgboost_spark})
    cached.unpersist()
    timings |= {side: median(seconds) for side, seconds in runs.items()}
    tiny = fitting.partitioned(prep.frame.sample(fraction=1000 / args.rows, seed=1), spec).persist()
    day_counts = {r[0]: (r[1], r[2]) for r in tiny.groupBy(fitting.DATE).agg(F.count("*"), F.sum("label")).collect()}
    with timed(timings, "tiny_fit_s"):  # xgboost.spark's fixed cost per fit
        fitting.fit(fitting.Prepared(tiny, features, day_counts), window, spec, params)
    aucs = {side: auc(test.label, b.inplace_predict(x_test)) for side, b in out.items()}
    fixed = timings["tiny_fit_s"]

    ratio = round(timings["batchml_fit_s"] / timings["floor_s"], 3)
    run.write(
        result_name(args.rows), ratio=ratio, goal=1.5, higher_is_better=False, rows=args.rows,
        unit="batchml fit time (training.fit.fit, xgboost.spark) over single-node xgboost.train time "
             "(lower is better)",
        floor=f"single-node xgboost.train hist, nthread=2, QuantileDMatrix build included, {len(train)} rows in memory",
        features=args.features, rounds=args.rounds, num_workers=args.num_workers, train_rows=len(train),
        test_rows=len(test), auc=aucs, auc_gap=round(abs(aucs["batchml"] - aucs["floor"]), 5), auc_goal=0.005,
        xgboost_spark_ratio=round(timings["xgboost_spark_fit_s"] / timings["floor_s"], 3),
        ratio_without_fixed_cost=round((timings["batchml_fit_s"] - fixed) / timings["floor_s"], 3),
        gap_s=round(timings["batchml_fit_s"] - timings["floor_s"], 3), timings_s=timings, runs_s=runs,
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    prep.frame.unpersist()
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
