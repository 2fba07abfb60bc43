"""As-of join benchmark against duckdb's ``ASOF JOIN`` (issue 25): ``asof.json``.

The data (written once, untimed, as Parquet files both sides read): ``--events`` events over one UTC
day ``D`` across ``--keys`` keys (uniform; 5% of them exactly on a whole hour, so ``t - tolerance``
ties a reference row's valid time), and an hourly reference series per key over days ``D - 1`` and
``D`` with 15% of the hours missing (so ``max_age`` gives nulls), 5% of the rows redelivered later
(a correction: ingested by ``D`` it wins, ingested on ``D + 1`` it is invisible) and 2% of day
``D``'s hours delivered only on ``D + 1`` (invisible). The join: 3 columns (double, int, string),
``tolerance: 1h``, ``max_age: 3h``.

batchml: ``features.compute.as_of_features``, the function the features stage calls, on Spark
local[2] (``batchml.spark.get_spark`` on ``bench_config()``), timed from the Parquet files (events
read as the stage's edge rows with their ``__t``; reference rows filtered as ``build._references``
reads them: valid time within the join's reach, ingested by ``D``) to the result collected as an
Arrow table (``DataFrame.toArrow``). The floor: duckdb, 2 threads, in the same process: the same
filter, the latest delivery per (key, valid time), ``ASOF LEFT JOIN`` on ``valid_from <= t - 1h``
and the max-age rule as a ``CASE``, from the same Parquet files to an Arrow table. Every joined
column of the two outputs must be equal, exactly and with the same nulls, or no result is written.
``spark_scan`` (reported, not the ratio) is Spark reading the events' columns from the same file
into Arrow: the part of batchml's time that is not the join.

    .venv/bin/python bench/bench_asof.py [--events 1000000] [--keys 300]
    # trial runs on a busy machine: --events 20000 --force --results /tmp/bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from pathlib import Path

from common import Run, bench_config, median, parse

D = dt.date(2024, 3, 1)
JOIN = {"feed": "weather", "keys": {"key": "key"}, "columns": ["temp_c", "wind_kt", "sky"],
        "tolerance": "1h", "max_age": "3h"}
HOUR_US = 3_600_000_000


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def write_data(folder: Path, events: int, keys: int, seed: int = 25) -> dict:
    """events.parquet and reference.parquet in ``folder``; returns counts of what the data exercises."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = np.array([f"k{i:04d}" for i in range(keys)])
    d0 = int(_midnight(D).timestamp()) * 1_000_000
    t = d0 + rng.integers(0, 24 * HOUR_US, events)
    on_hour = rng.random(events) < 0.05
    t[on_hour] = t[on_hour] // HOUR_US * HOUR_US
    pq.write_table(pa.table({"id": pa.array(rng.permutation(events), pa.int64()),
                             "key": pa.array(names[rng.integers(0, keys, events)]),
                             "event_time": pa.array(t, pa.timestamp("us", "UTC"))}), folder / "events.parquet")
    hours = d0 - 24 * HOUR_US + np.arange(48) * HOUR_US
    key, valid = np.repeat(names, len(hours)), np.tile(hours, keys)
    kept = rng.random(len(key)) >= 0.15
    key, valid = key[kept], valid[kept]
    on = (valid // (24 * HOUR_US)).astype("datetime64[D]")  # delivered on its valid date
    late = (on == np.datetime64(D)) & (rng.random(len(key)) < 0.02)  # day D's row delivered on D + 1 only
    on[late] += 1
    fix = rng.random(len(key)) < 0.05  # a correction, delivered the same day or the next
    rows = {"key": np.concatenate([key, key[fix]]), "valid_from": np.concatenate([valid, valid[fix]]),
            "ingest_date": np.concatenate([on, on[fix] + rng.integers(0, 2, int(fix.sum()))]),
            "_source_file": np.array(["a"] * len(key) + ["b"] * int(fix.sum()))}  # b: the later file of a day
    n = len(rows["key"])
    files = np.char.add(np.char.add("weather-", rows["ingest_date"].astype(str)), np.char.add("-", rows["_source_file"]))
    pq.write_table(pa.table({
        "key": pa.array(rows["key"]), "valid_from": pa.array(rows["valid_from"], pa.timestamp("us", "UTC")),
        "temp_c": pa.array(np.round(rng.normal(10, 8, n), 1)), "wind_kt": pa.array(rng.integers(0, 60, n), pa.int32()),
        "sky": pa.array(np.array(["clear", "cloudy", "rain", "snow", "fog"])[rng.integers(0, 5, n)]),
        "ingest_date": pa.array(rows["ingest_date"], pa.date32()), "_source_file": pa.array(files),
        "_source_sha256": pa.array(["0" * 64] * n), "_row_number": pa.array(np.arange(n), pa.int64())}),
        folder / "reference.parquet")
    return {"events": events, "keys": keys, "events_on_the_hour": int(on_hour.sum()), "reference_rows": n,
            "reference_corrections": int(fix.sum()), "reference_delivered_late": int(late.sum())}


def floor_sql(folder: Path, spec) -> str:
    """duckdb: the rows ingested by D within the reach, the latest delivery per (key, valid time), then
    ``ASOF LEFT JOIN`` (the latest ``valid_from <= t - tolerance``) and max age as a CASE."""
    first = _midnight(D) - dt.timedelta(seconds=spec.as_of_reach_seconds("weather"))
    order = ", ".join(f"{c} DESC" for c in ("ingest_date", "_source_file", "_source_sha256", "_row_number"))
    fresh = "ev.event_time - ref.valid_from <= INTERVAL 3 HOUR"
    return f"""
        WITH ref AS (
            SELECT key, valid_from, temp_c, wind_kt, sky FROM read_parquet('{folder / "reference.parquet"}')
            WHERE ingest_date <= DATE '{D}' AND valid_from >= TIMESTAMPTZ '{first}'
              AND valid_from < TIMESTAMPTZ '{_midnight(D + dt.timedelta(days=1))}'
            QUALIFY row_number() OVER (PARTITION BY key, valid_from ORDER BY {order}) = 1),
        ev AS (SELECT id, key, event_time FROM read_parquet('{folder / "events.parquet"}') WHERE key IS NOT NULL)
        SELECT ev.id, CASE WHEN {fresh} THEN ref.temp_c END AS weather_temp_c,
               CASE WHEN {fresh} THEN ref.wind_kt END AS weather_wind_kt,
               CASE WHEN {fresh} THEN ref.sky END AS weather_sky
        FROM ev ASOF LEFT JOIN ref ON ev.key = ref.key AND ev.event_time - INTERVAL 1 HOUR >= ref.valid_from"""


def batchml_frame(spark, folder: Path, spec):
    """The stage's join on Spark: edge rows from the events file, reference rows as ``build._references``
    filters them."""
    from pyspark.sql import functions as F

    from batchml.features.compute import as_of_features

    edges = spark.read.parquet(str(folder / "events.parquet")).withColumn("__t", F.unix_micros("event_time"))
    first = _midnight(D) - dt.timedelta(seconds=spec.as_of_reach_seconds("weather"))
    reference = spark.read.parquet(str(folder / "reference.parquet")).where(
        (F.col("valid_from") >= F.lit(first)) & (F.col("valid_from") < F.lit(_midnight(D + dt.timedelta(days=1))))
        & (F.col("ingest_date") <= F.lit(D)))
    return as_of_features(edges, (reference, "valid_from"), spec, "weather", D, run_date=D)


def compare(ours, theirs, columns: list[str]) -> list[str]:
    """Differences on every joined column: values exactly, nulls in the same rows."""
    a, b = ours.sort_by("id"), theirs.sort_by("id")
    if a.num_rows != b.num_rows or not a.column("id").equals(b.column("id").cast(a.schema.field("id").type)):
        return [f"different events: {a.num_rows} rows vs {b.num_rows}"]
    problems = []
    for col in columns:
        x, y = a.column(col).combine_chunks(), b.column(col).cast(a.schema.field(col).type).combine_chunks()
        if not x.equals(y):
            bad = [i for i, (u, v) in enumerate(zip(x.to_pylist(), y.to_pylist())) if u != v]
            problems.append(f"{col}: {len(bad)} row(s) differ, e.g. id {a.column('id')[bad[0]]}: "
                            f"{x[bad[0]]} vs {y[bad[0]]}")
    return problems


def main() -> None:
    import duckdb

    from batchml.features.spec import FeatureSpec
    from batchml.spark import get_spark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=300)
    args = parse(parser)
    run = Run(args)
    spec = FeatureSpec.model_validate({"table": "features.bench", "id_column": "id", "event_time_column": "event_time",
                                       "entities": {}, "as_of": {"weather": JOIN}})
    config, home = bench_config()
    data = write_data(home, args.events, args.keys)
    spark = get_spark(config)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 2")
    sql, out = floor_sql(home, spec), {}
    try:
        times = run.interleaved({
            "duckdb": lambda: out.__setitem__("duckdb", con.sql(sql).to_arrow_table()),
            "batchml": lambda: out.__setitem__("batchml", batchml_frame(spark, home, spec).toArrow()),
            "spark_scan": lambda: spark.read.parquet(str(home / "events.parquet")).toArrow()})
    finally:
        spark.stop()
        con.close()
        shutil.rmtree(home, ignore_errors=True)
    columns = [c for c in out["duckdb"].column_names if c != "id"]
    problems = compare(out["batchml"], out["duckdb"], columns)
    if problems:
        raise SystemExit("batchml and duckdb disagree; no result written:\n  " + "\n  ".join(problems))
    nulls = out["duckdb"].column("weather_temp_c").null_count
    if not nulls or nulls == out["duckdb"].num_rows:
        raise SystemExit(f"the data does not exercise max_age ({nulls} nulls); no result written")
    join_s, floor_s = median(times["batchml"]), median(times["duckdb"])
    run.write("asof", ratio=round(join_s / floor_s, 3), goal=2.0, higher_is_better=False,
              unit="batchml as-of join seconds over duckdb's ASOF JOIN seconds, same files to Arrow (lower is better)",
              floor="duckdb 2 threads, same Parquet files: rows ingested by D, latest delivery per (key, valid time), "
                    "ASOF LEFT JOIN (valid_from <= t - 1h), max age 3h as CASE, to Arrow; outputs equal on every "
                    "joined column (exact, same nulls)",
              batchml_s=join_s, floor_s=floor_s, spark_scan_s=median(times["spark_scan"]), runs_s=times,
              rows=out["batchml"].num_rows, compared_columns=len(columns), nulls_by_max_age=nulls,
              batchml_rows_per_s=round(out["batchml"].num_rows / join_s), join=JOIN, run_date=str(D), **data,
              driver_memory=config.spark.driver_memory, shuffle_partitions=config.spark.shuffle_partitions)


if __name__ == "__main__":
    main()
