"""Scoring benchmark: batchml's score stage against single-process XGBoost on the same rows and model.

A feature partition of ``--rows`` events (28 float features, nulls included) is written to the
feature table, and a 100-tree depth-6 XGBoost model is registered as the champion. Then:

* ``floor``: what a user would write instead, in one Python process: read the same day's features
  from the Delta table with ``deltalake`` (``DeltaTable.to_pyarrow_table``, partition filter), build the
  float32 matrix and score it with ``inplace_predict`` (all cores). ``ratio`` = stage rows/s over this
  floor's rows/s (goal >= 1.0);
* ``in_memory``: ``inplace_predict`` alone on that matrix already in memory: the raw model speed.
  ``in_memory_ratio`` = stage rows/s over it (goal >= 0.5);
* ``pass``: batchml's scoring pass alone (the read tasks score their rows with reason codes;
  only the scored columns enter Spark), executed with Spark's ``noop`` sink;
* ``stage``: the real stage, ``score()`` end to end: plan, the pass, the Delta write, the review
  queue, the completeness check and the runs table.

The floors, the pass and the stage are each the median of --repeat interleaved runs (the stage: the
night's run and re-scores); ``pass_first`` and ``stage_first`` are the first runs. The floors neither
write nor compute reason codes; the stage does both.

A warm-up day scores first so the JVM and the Python workers are running, as in a nightly job.

    .venv/bin/python bench/bench_scoring.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil

from common import Run, bench_config, median, parse

DATASET = "card_transactions"
RULE_COLUMNS = ["amount", "is_foreign", "card_present_flag", "amount_to_customer_mean_30d",
                "new_device_for_customer", "customer_count_1h"]  # the demo config's fallback rules read these
FEATURES = RULE_COLUMNS + [f"f{i:02d}" for i in range(22)]


def feature_partition(day: dt.date, n: int, seed: int):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    cols = {"transaction_id": pa.array([f"tx-{day:%Y%m%d}-{i:08d}" for i in range(n)]),
            "event_date": pa.array([day] * n, pa.date32())}
    for j, name in enumerate(FEATURES):
        values = rng.normal(size=n).astype(np.float64)
        if j % 5 == 3:
            values[rng.random(n) < 0.1] = np.nan  # missing values, as null ratios in the real table
        cols[name] = pa.array(values, from_pandas=True)
    return pa.table(cols)


def train(seed: int = 7):
    import numpy as np
    import xgboost as xgb

    data = feature_partition(dt.date(2020, 1, 1), 200_000, seed)
    X = np.column_stack([data.column(c).to_numpy(zero_copy_only=False) for c in FEATURES]).astype(np.float32)
    logit = X[:, 0] + 0.8 * X[:, 1] - 0.5 * X[:, 6] + 0.4 * np.nan_to_num(X[:, 3]) * X[:, 7] - 5
    y = (np.random.default_rng(seed).random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = xgb.train({"max_depth": 6, "eta": 0.1, "objective": "binary:logistic", "tree_method": "hist"},
                        xgb.DMatrix(X, y, missing=np.nan), 100)
    return booster, float(np.quantile(booster.inplace_predict(X), 0.99))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parse(parser)
    run = Run(args)

    import mlflow
    import numpy as np

    from batchml.registry import store
    from batchml.scoring.score import needed_columns, score, score_rows, scoring_spec
    from batchml.spark import get_spark
    from batchml.storage import Lake
    from batchml.training import review

    config, home = bench_config()
    spark = get_spark(config)
    lake = Lake(config, spark)
    table = config.dataset(DATASET).features.table
    warm, day = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
    warm_rows = feature_partition(warm, 20_000, 1)
    lake.write_arrow(warm_rows, table)
    lake.write_arrow(feature_partition(day, args.rows, 2), table)

    booster, threshold = train()
    name = config.dataset(DATASET).model.registered_name
    review_rules = scoring_spec(config, DATASET).review  # the band training would record, from the warm-up day
    warm_scores = booster.inplace_predict(np.column_stack([warm_rows.column(c).to_numpy(zero_copy_only=False)
                                                           for c in FEATURES]).astype(np.float32))
    band = review.band(warm_scores, threshold, review_rules.share_below, review_rules.share_above)
    tags = {"features_table": table, "features_version": "1", "train_start": "2020-01-01", "train_end": "2020-01-01",
            "test_start": "2020-01-02", "test_end": "2020-01-02", "test_metrics": "{}", "review_band": band.tag()}
    with mlflow.start_run(experiment_id=store.experiment_id(config, DATASET)):
        mv = store.log_and_register(config, name, booster, FEATURES, threshold, tags)
    store.client(config).set_registered_model_alias(name, "champion", str(mv.version))

    score(config, warm, spark=spark)  # JVM, Python workers, MLflow: warm, as in a nightly run
    spec = scoring_spec(config, DATASET)
    features = config.dataset(DATASET).features
    model = store.load(config, name)
    columns = needed_columns(lake.read(table).columns, features, spec, FEATURES)
    state: dict = {"stage": 0}

    from deltalake import DeltaTable

    from batchml.scoring.predict import features_matrix

    uri, options = lake.uri(table), lake.storage.delta_rs(lake.uri(table))

    def floor():  # one process: deltalake read of the day, float32 matrix, inplace_predict
        data = DeltaTable(uri, storage_options=options).to_pyarrow_table(
            filters=[("event_date", "=", day)], columns=FEATURES)
        state["X"] = features_matrix(data, FEATURES)
        state["p"] = booster.inplace_predict(state["X"])

    def one_pass():
        (score_rows(lake, spark, spec, features, day, lake.version(table), columns, 1, 0, model, None)
         .write.format("noop").mode("overwrite").save())

    def stage():  # the night's run, then deliberate re-scores (the same work, plus replacing)
        i = state["stage"]
        state["stage"] += 1
        summary = score(config, day, spark=spark, rescore_reason=f"benchmark repeat {i}" if i else None)
        assert summary.rows == args.rows and not summary.fallback_rows and summary.chunks_written, summary

    runs = run.interleaved({"floor": floor, "in_memory": lambda: booster.inplace_predict(state["X"]),
                            "pass": one_pass, "stage": stage})
    times = {side: median(seconds) for side, seconds in runs.items()}
    times["pass_first"], times["stage_first"] = runs["pass"][0], runs["stage"][0]
    summary = score(config, day, spark=spark)  # already done: the last generation's summary
    assert len(state["p"]) == args.rows, len(state["p"])

    rate = {k: round(args.rows / v) for k, v in times.items()}
    run.write(
        "scoring", ratio=round(rate["stage"] / rate["floor"], 3), goal=1.0, higher_is_better=True, rows=args.rows,
        floor="one Python process: deltalake DeltaTable.to_pyarrow_table of the day's partition, float32 matrix, "
              "xgboost inplace_predict (all cores); same rows and model, read included, no write",
        unit="stage rows/s over floor rows/s (higher is better)", rows_per_s=rate, seconds=times, runs_s=runs,
        in_memory_ratio=round(rate["stage"] / rate["in_memory"], 3), in_memory_goal=0.5,
        pass_ratio=round(rate["pass"] / rate["floor"], 3),
        model="xgboost 100 trees, depth 6, 28 float features",
        reason_codes=f"top {spec.reason_codes.top_k}, {spec.reason_codes.method}, rows: {spec.reason_codes.rows}",
        flagged_rows=int((state["p"] >= band.low).sum()), review_rows=summary.review_rows,
        chunks=summary.chunks, spark_master=config.spark.master)
    spark.stop()
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
