"""Validation gate benchmark: 5M rows x 20 columns through the gate (GX suite + drift) against the
floor, one plain Spark aggregation pass computing the batch's statistics (after the reference's
quantiles, which drift needs either way).

Interleaved, ``--repeat`` times each (median): ``floor``; ``checks``, the gate's checks alone (read
and cache the batch, the GX suite, drift against the reference; ``ratio`` = checks / floor, goal
1.5); ``gate_total``, the whole stage (``gate.validate``: checks plus quarantine, accepted rows,
results table and report). Writes ``bench/results/validation.json``.

    .venv/bin/python bench/bench_validation.py [--rows 5000000] [--force --results /tmp/trial]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil

from common import Run, bench_config, median, parse, timed

RUN = dt.date(2024, 2, 1)
NUMERIC = [f"f{i}" for i in range(10)]
CATEGORICAL = ["c0", "c1", "c2"]


def frame(spark, rows: int, seed: int, day: dt.date):
    from pyspark.sql import functions as F

    cols = [F.concat(F.lit("t"), F.col("id").cast("string")).alias("id")]
    cols += [(F.randn(seed + i) * (i + 1) + 10 * i).alias(f"f{i}") for i in range(10)]
    cols += [(F.rand(seed + 20 + i) * 1000).cast("int").alias(f"n{i}") for i in range(3)]
    cols += [F.element_at(F.array(*[F.lit(v) for v in "abcdefgh"]), (F.rand(seed + 30 + i) * 8).cast("int") + 1)
             .alias(f"c{i}") for i in range(3)]
    cols += [F.concat(F.lit("ABC"), (F.col("id") % 7).cast("string")).alias("code")]
    cols += [F.expr(f"timestamp'{day} 00:00:00' + make_interval(0,0,0,0,0,0, id % 86400)").alias("ts")]
    cols += [F.lit(day).alias("ingest_date")]
    return spark.range(rows).select(*cols)


def spec_and_config(config):
    from batchml.config import ColumnContract, DatasetConfig, SourceConfig, TableConfig
    from batchml.validation.spec import Distributions, Freshness, RowCheck, RowCount, TableValidation

    types = {"id": "string", **{f"f{i}": "float64" for i in range(10)}, **{f"n{i}": "int32" for i in range(3)},
             **{c: "string" for c in CATEGORICAL}, "code": "string", "ts": "timestamp"}
    source = SourceConfig(landing_prefix="x", format="parquet", table="bench.bronze", event_time_column="ts",
                          columns=[ColumnContract(name=n, type=t, required=True) for n, t in types.items()])
    checks = [RowCheck(name="id_unique", kind="unique", column="id"),
              RowCheck(name="id_present", kind="not_null", column="id"),
              *[RowCheck(name=f"f{i}_range", kind="between", column=f"f{i}", min=-1000, max=1000) for i in range(6)],
              *[RowCheck(name=f"n{i}_range", kind="between", column=f"n{i}", min=0, max=999) for i in range(3)],
              *[RowCheck(name=f"{c}_known", kind="in_set", column=c, values=list("abcdefgh")) for c in CATEGORICAL],
              RowCheck(name="code_format", kind="regex", column="code", pattern="^ABC[0-9]$"),
              RowCheck(name="f_order", kind="expression", expression="f9 > f0")]
    spec = TableValidation(accepted_table="bench.silver", row_checks=checks, row_count=RowCount(min=1),
                           freshness=Freshness(column="ts", max_lag_hours=48),
                           distributions=Distributions(numeric=NUMERIC, categorical=CATEGORICAL, reference_days=7))
    ds = DatasetConfig(events=source, validation={"bench.bronze": spec})
    tables = {**config.tables, "bench.bronze": TableConfig(partition_by=["ingest_date"]),
              "bench.silver": TableConfig(partition_by=["ingest_date"])}
    return config.model_copy(update={"tables": tables, "datasets": {"bench": ds}, "default_dataset": "bench"}), spec


def floor_stats(batch, spec, edges):
    """The batch's statistics in one aggregation: rule failures, count, freshness, distinct keys, decile
    histograms of the numeric columns on the reference's edges, category counts."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    from batchml.validation.suite import failing_condition

    cols = list(edges)
    bucketed = Bucketizer(splitsArray=[[-float("inf"), *map(float, edges[c]), float("inf")] for c in cols],
                          inputCols=cols, outputCols=[f"_b_{c}" for c in cols], handleInvalid="keep").transform(batch)
    aggs = [F.count("*"), F.max("ts"), F.countDistinct("id")]
    aggs += [F.sum(F.expr(failing_condition(c)).cast("int")) for c in spec.row_checks if c.kind != "unique"]
    aggs += [F.count_if(F.col(f"_b_{c}") == i) for c in cols for i in range(len(edges[c]) + 1)]
    aggs += [F.count_if(F.col(c) == v) for c in CATEGORICAL for v in "abcdefgh"]
    return bucketed.agg(*aggs).collect()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parse(parser)
    run = Run(args)

    from batchml.spark import get_spark
    from batchml.storage import Lake
    from batchml.validation import gate

    config, home = bench_config()
    config, spec = spec_and_config(config)
    spark = get_spark(config)
    sc = spark.sparkContext
    lake = Lake(config, spark)
    contract = config.dataset().events
    window = [("ingest_date", ">=", RUN - dt.timedelta(days=spec.distributions.reference_days)),
              ("ingest_date", "<", RUN)]  # the gate's drift reference: accepted rows of the days before
    try:
        lake.write(frame(spark, 1_000_000, 100, RUN - dt.timedelta(days=1)), "bench.silver")  # the reference
        lake.write(frame(spark, args.rows, 1, RUN), "bench.bronze")
        lake.read("bench.bronze").limit(10).collect()  # start Python workers

        jobs: dict = {}
        steps: dict = {k: [] for k in ("read_and_cache_s", "gx_suite_s", "drift_s")}

        def floor():
            sc.setJobGroup("floor", "floor")
            batch = lake.read("bench.bronze", where=[("ingest_date", "=", RUN)])
            probs = [i / 10 for i in range(1, 10)]
            edges = dict(zip(NUMERIC, lake.read("bench.silver", where=window).approxQuantile(NUMERIC, probs, 1e-3)))
            floor_stats(batch, spec, edges)
            jobs["floor"] = len(sc.statusTracker().getJobIdsForGroup("floor"))

        def checks():  # the gate's checks alone, step by step: what the floor computes in one pass
            sc.setJobGroup("checks", "checks")
            step: dict = {}
            with timed(step, "read_and_cache_s"):
                batch = lake.read("bench.bronze", where=[("ingest_date", "=", RUN)]).cache()
                batch.count()
            with timed(step, "gx_suite_s"):
                gate._gx_results(batch, spec, contract, "bench.bronze", RUN)
            with timed(step, "drift_s"):
                gate._drift_results(lake, "bench.bronze", spec, batch, RUN)
            batch.unpersist()
            for key, seconds in step.items():
                steps[key].append(seconds)
            jobs["checks"] = len(sc.statusTracker().getJobIdsForGroup("checks"))

        def gate_total():  # the whole stage: checks, then quarantine, accepted rows, results, report
            sc.setJobGroup("gate", "gate")
            outcome = gate.validate(config, RUN, spark=spark)[0]
            jobs["gate"] = len(sc.statusTracker().getJobIdsForGroup("gate"))
            assert not outcome.blocked and outcome.rows == args.rows, outcome.blocking_checks()

        runs = run.interleaved({"floor_s": floor, "checks_s": checks, "gate_total_s": gate_total})
        t = {key: median(seconds) for key, seconds in (runs | steps).items()}
    finally:
        spark.stop()
        shutil.rmtree(home, ignore_errors=True)

    run.write("validation", ratio=round(t["checks_s"] / t["floor_s"], 3), goal=1.5, higher_is_better=False,
              rows=args.rows, columns=20,
              floor="the reference's decile edges (one approxQuantile job), then one Spark aggregation of the "
                    "batch: rule failures, row count, freshness, distinct ids, histograms, category counts",
              unit="gate check time (read + cache, GX suite, drift) / floor time (lower is better)",
              spark_jobs=jobs, expectations=len(spec.row_checks) + 2 + 20 + 1,
              drift_columns=len(NUMERIC) + len(CATEGORICAL), timings_s=t, runs_s=runs | {"steps": steps},
              gate_total_ratio=round(t["gate_total_s"] / t["floor_s"], 3),
              note="the gate's drift also histograms the reference at percentile buckets (KS, Wasserstein); "
                   "gate_total_s also writes the results, report, quarantine and the accepted (silver) rows")


if __name__ == "__main__":
    main()
