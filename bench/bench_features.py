"""Feature build benchmark: the daily build of one day of events with 30 days of lookback.

The demo generator writes ``--days`` + 1 days of Parquet (``--rows-per-day`` each); the files are
typed by the ingest contract and written to the accepted events table (``silver.card_transactions``) through ``Lake.write_arrow``
(one commit per ingest date, as ingest would). Then ``build_features`` runs for the last day, with
the stages timed separately on the same snapshot:

* ``floor``: read the 31-day lookback through the lake (the same file skipping) and nothing else;
* ``cache``: persisting the read in memory (what the build does, so the source is scanned once);
* ``dedup``: deduplicating by transaction id, from the cache;
* ``window_aggregates_<entity>``: one entity's aggregates (dedup included), from the cache;
* ``joins_and_sql``: all entities joined onto the day's events plus the SQL layer, minus the above;
* ``build``: the real stage, ``build_features`` (read, dedup, all aggregates, SQL, Delta write),
  timed end to end; ``write_and_rest`` is what it spends beyond the parts above.

    .venv/bin/python bench/bench_features.py [--rows-per-day 1000000] [--days 30] [--driver-memory 16g]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil

from common import bench_config, timed, write_result


def load_events(config, lake, start: dt.date, days: int, rows_per_day: int) -> int:
    from pathlib import Path

    import pyarrow as pa

    from batchml.demo import DemoOptions, generate
    from batchml.features.build import source_table
    from batchml.ingest import contract

    source = config.dataset().events.model_copy(update={"format": "parquet"})
    generate(config.storage.landing_uri, DemoOptions(start=start, days=days, rows_per_day=rows_per_day, seed=7,
                                                     fmt="parquet"))
    total = 0
    for i in range(days):
        day = start + dt.timedelta(days=i)
        parts = []
        for path in sorted(Path(config.storage.landing_uri, source.landing_prefix, day.isoformat()).iterdir()):
            table = contract.parse(path.read_bytes(), source).table
            n = table.num_rows
            table = table.select([c.name for c in source.columns] + ["_row_number"])
            table = table.append_column("_source_file", pa.array([str(path)] * n, pa.string()))
            table = table.append_column("_source_sha256", pa.array(["0" * 64] * n, pa.string()))
            table = table.append_column("ingest_date", pa.array([day] * n, pa.date32()))
            parts.append(table)
        data = pa.concat_tables(parts)
        total += data.num_rows
        lake.write_arrow(data, source_table(config, config.default_dataset))
        shutil.rmtree(Path(config.storage.landing_uri, source.landing_prefix, day.isoformat()))
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows-per-day", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30, help="days of lookback before the built day")
    parser.add_argument("--no-breakdown", action="store_true", help="time only the floor and the build")
    parser.add_argument("--driver-memory", default="16g", help="local mode: the driver JVM holds the executors too")
    args = parser.parse_args()

    from batchml.features import compute as C
    from batchml.features.build import build_features, feature_spec, read_events, source_table
    from batchml.spark import get_spark
    from batchml.storage import Lake

    config, home = bench_config()
    config = config.model_copy(update={"spark": config.spark.model_copy(update={"driver_memory": args.driver_memory})})
    name, spec = feature_spec(config)
    spark = get_spark(config)
    lake = Lake(config, spark)
    start = dt.date(2024, 1, 1)
    day = start + dt.timedelta(days=args.days)
    t: dict = {}
    try:
        with timed(t, "load_events_s"):
            total = load_events(config, lake, start, args.days + 1, args.rows_per_day)
        stop = day + dt.timedelta(days=1)

        def run(df):
            df.write.format("noop").mode("overwrite").save()

        events = read_events(lake, source_table(config, config.default_dataset), spec, day, stop)
        run(events.limit(1000))  # warm up the Python workers
        with timed(t, "read_s"):
            run(events)
        parts = int(spark.conf.get("spark.sql.shuffle.partitions"))
        if not args.no_breakdown:
            cached = events.repartition(parts, spec.id_column).persist()
            with timed(t, "read_cache_s"):
                cached.count()
            prepared = C.prepare(cached, spec, day)
            with timed(t, "dedup_from_cache_s"):
                run(prepared)
            for entity in spec.entities:
                with timed(t, f"entity_{entity}_s"):
                    run(C._entity_features(prepared, spec, entity, C._micros(day)))
            with timed(t, "all_entities_joins_sql_s"):
                out = C.day_features(prepared, spec, day)
                for text in C.load_sql(spec):
                    out = spark.sql(text, features=out)
                run(out)
            cached.unpersist()
        with timed(t, "build_s"):
            result = build_features(config, day, spark=spark)
        built_rows = result.rows_written
        assert built_rows > 0 and lake.read(spec.table).count() == built_rows
    finally:
        spark.stop()
        shutil.rmtree(home, ignore_errors=True)

    if not args.no_breakdown:
        dedup = t["dedup_from_cache_s"]
        windows = {e: round(max(0.0, t[f"entity_{e}_s"] - dedup), 3) for e in spec.entities}
        t["breakdown_s"] = {  # the build's parts, each measured on its own on the same snapshot
            "read": t["read_s"],
            "cache": round(t["read_cache_s"] - t["read_s"], 3),
            "dedup": dedup,
            **{f"window_aggregates_{e}": v for e, v in windows.items()},
            "joins_and_sql": round(t["all_entities_joins_sql_s"] - dedup - sum(windows.values()), 3),
            "write_and_rest": round(t["build_s"] - t["read_cache_s"] - t["all_entities_joins_sql_s"], 3),
        }
    write_result("features_build", ratio=round(t["build_s"] / t["read_s"], 3), goal=None, higher_is_better=False,
                 unit="build time over floor time (lower is better)",
                 floor="reading the 31-day lookback (event_time in [D-30d, D+1d)) through Lake.read, same columns and "
                       "file skipping, into a no-op sink",
                 rows=total, rows_built=built_rows, lookback_days=spec.lookback(), rows_per_day=args.rows_per_day,
                 driver_memory=args.driver_memory, features=len(spec.feature_names()), build_s=t["build_s"], floor_s=t["read_s"],
                 build_rows_per_s=round(total / t["build_s"]), timings_s=t)


if __name__ == "__main__":
    main()
