"""Feature benchmarks against duckdb (issue 23): ``features_build`` and ``features_backfill``.

The demo generator writes the events (``--rows-per-day`` a day); they are typed by the ingest
contract and written to the accepted events table (``silver.card_transactions``) through
``Lake.write_arrow``, one commit per ingest date, as ingest and validation would.

``--mode build`` (``features_build.json``): ``--days`` days of history, already tiled (the nights
before did that), then the build of the next day is timed: tiling that day's ingest, reading the
tiles and the edge days, the aggregates, the SQL layer and the Delta write. The floor is duckdb,
in the same process, computing the same features of the same day from the same Parquet files of
the silver table (the files of the Delta snapshot): the newest version of each transaction id
ingested by the day, then every window aggregate as a SQL window function over
``[t - window, t)``, generated from the feature definitions in conf (``floor_sql``), then the
dataset's SQL files. Every feature column of the two outputs must agree (integers exactly, floats
to 1e-9 relative) or no result is written. Each timed batchml run builds into a fresh feature
table after removing the day's tiles, so every run does the whole night's work.

``--mode backfill`` (``features_backfill.json``): ``--days`` days from nothing: tiles of the whole
range in one pass, then every day; interleaved with a one-day build after the same history, so
rows/s of the two show whether the cost grows linearly.

    .venv/bin/python bench/bench_features.py --mode build [--rows-per-day 1000000] [--days 30]
    .venv/bin/python bench/bench_features.py --mode backfill [--rows-per-day 1000000] [--days 30]
    # trial runs on a busy machine: --rows-per-day 20000 --force --results /tmp/bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
from pathlib import Path

from common import Run, bench_config, median, parse, with_driver_memory

START = dt.date(2024, 1, 1)
FLOAT_RTOL = 1e-9


def load_events(config, lake, start: dt.date, days: int, rows_per_day: int) -> int:
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


# -- the floor: duckdb SQL generated from the feature definitions ---------------------------------------
def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def floor_sql(spec, files: list[str], day: dt.date, sql_texts: list[str]) -> str:
    """One duckdb query for the features of ``day``: dedupe (latest ingest wins), the lookback, one
    window function per feature over ``[t - window, t)`` (strictly before ``t``), then the SQL files."""
    from batchml.features.spec import window_seconds
    from batchml.features.tiles import VERSION

    lo, hi = day - dt.timedelta(days=spec.lookback()), day + dt.timedelta(days=1)
    t = _q(spec.event_time_column)
    cols = ", ".join(_q(c) for c in dict.fromkeys([*spec.source_columns(), *VERSION]))
    order = ", ".join(f"{_q(c)} DESC" for c in VERSION)
    paths = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    ctes = [f"src AS (SELECT {cols} FROM read_parquet([{paths}], hive_partitioning = true, "
            f"hive_types = {{'ingest_date': DATE}}) WHERE ingest_date <= DATE '{day}')",
            f"known AS (SELECT * FROM src QUALIFY row_number() OVER (PARTITION BY {_q(spec.id_column)} "
            f"ORDER BY {order}) = 1)",
            f"ev AS (SELECT * FROM known WHERE {t} >= TIMESTAMPTZ '{lo} 00:00:00+00' "
            f"AND {t} < TIMESTAMPTZ '{hi} 00:00:00+00')"]
    selects, windows = [], []
    for name, entity in spec.entities.items():
        keys = ", ".join(_q(k) for k in entity.keys)
        keyed = " AND ".join(f"{_q(k)} IS NOT NULL" for k in entity.keys)
        for label in spec.entity_windows(name):
            windows.append(f"w_{name}_{label} AS (PARTITION BY {keys} ORDER BY {t} RANGE BETWEEN "
                           f"INTERVAL {window_seconds(label)} SECOND PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING)")
        for feature, owner, agg, label in spec.window_features():
            if owner != name:
                continue
            w, c = f"w_{name}_{label}", _q(agg.column) if agg.column else None
            expr = {"count": f"count(*) OVER {w}", "sum": f"coalesce(sum({c}) OVER {w}, 0)",
                    "mean": f"avg({c}) OVER {w}", "max": f"max({c}) OVER {w}",
                    "distinct_count": f"count(DISTINCT {c}) OVER {w}"}[agg.function]
            selects.append(f"CASE WHEN {keyed} THEN {expr} END AS {_q(feature)}")
        if entity.time_since_last:
            windows.append(f"w_{name}_last AS (PARTITION BY {keys} ORDER BY {t} RANGE BETWEEN UNBOUNDED PRECEDING "
                           "AND INTERVAL 1 MICROSECOND PRECEDING)")
            selects.append(f"CASE WHEN {keyed} THEN (epoch_us({t}) - epoch_us(max({t}) OVER w_{name}_last)) / 1e6 "
                           f"END AS {_q(name + '_seconds_since_last')}")
    passthrough = ", ".join(_q(c) for c in dict.fromkeys([spec.id_column, spec.event_time_column, *spec.passthrough]))
    ctes.append(f"agg AS (SELECT {passthrough}, DATE '{day}' AS {_q(spec.date_column)}, {', '.join(selects)} "
                f"FROM ev WINDOW {', '.join(windows)})")
    ctes.append(f"features AS (SELECT * FROM agg WHERE {t} >= TIMESTAMPTZ '{day} 00:00:00+00')")
    body = "features"
    for i, text in enumerate(sql_texts):
        ctes.append(f"sql{i} AS ({text.replace('{features}', body)})")
        body = f"sql{i}"
    return "WITH " + ",\n".join(ctes) + f"\nSELECT * FROM {body}"


def duckdb_features(spec, files: list[str], day: dt.date, sql_texts: list[str], memory: str, spill: Path):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 2")
    con.execute(f"SET memory_limit = '{memory}'")
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("CREATE MACRO dayofweek(x) AS extract('dow' FROM x) + 1")  # Spark's: Sunday = 1
    try:
        return con.sql(floor_sql(spec, files, day, sql_texts)).to_arrow_table()
    finally:
        con.close()


def compare(ours, theirs, id_column: str, columns: list[str]) -> list[str]:
    """Differences on every feature column: integers and strings exactly, floats to 1e-9 relative."""
    import pyarrow as pa

    problems = []
    a, b = ours.sort_by(id_column), theirs.sort_by(id_column)
    if a.column(id_column).to_pylist() != b.column(id_column).to_pylist():
        return [f"different events: {a.num_rows} rows vs {b.num_rows}"]
    for col in columns:
        x, y = a.column(col).to_pylist(), b.column(col).to_pylist()
        floating = pa.types.is_floating(a.schema.field(col).type) or pa.types.is_floating(b.schema.field(col).type)
        bad = [i for i, (u, v) in enumerate(zip(x, y))
               if (u is None) != (v is None) or (u is not None and (
                   not math.isclose(u, v, rel_tol=FLOAT_RTOL, abs_tol=FLOAT_RTOL) if floating else u != v))]
        if bad:
            i = bad[0]
            problems.append(f"{col}: {len(bad)} row(s) differ, e.g. {a.column(id_column)[i]}: {x[i]!r} vs {y[i]!r}")
    return problems


# -- the two modes ------------------------------------------------------------------------------------
def with_feature_table(config, table: str):
    from batchml.config import TableConfig
    from batchml.features.build import feature_spec

    name, spec = feature_spec(config)
    ds = config.dataset().model_copy(update={"features": spec.model_copy(update={"table": table})})
    return config.model_copy(update={"datasets": {**config.datasets, name: ds},
                                     "tables": {**config.tables, table: TableConfig(partition_by=[spec.date_column])}})


def untile(lake, store, day: dt.date) -> None:
    """Remove the tiles ``day``'s ingest added, so the next build tiles it again."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    for key, table in store.tables.items():
        if key == "log":
            versions = lake.read_arrow(table)
            lake.write_arrow(versions.filter(pc.field("as_of") != pa.scalar(day, pa.date32())), table, mode="overwrite")
            continue
        column = "superseded_on" if key == "superseded" else "as_of"
        empty = pa.schema(DeltaTable(lake.uri(table)).schema().to_arrow()).empty_table()
        lake.write_arrow(empty, table, mode="overwrite", replace_where=[(column, "=", day)])


def bench_build(args, run: Run, config, home: Path) -> None:
    from deltalake import DeltaTable

    from batchml.features.build import build_features, feature_spec, source_table
    from batchml.features.compute import load_sql
    from batchml.features.store import TileStore
    from batchml.spark import get_spark
    from batchml.storage import Lake

    name, spec = feature_spec(config)
    spark = get_spark(config)
    lake = Lake(config, spark)
    day = START + dt.timedelta(days=args.days)
    source = source_table(config, name)
    total = load_events(config, lake, START, args.days + 1, args.rows_per_day)
    store = TileStore(lake, name, spec, source)
    cache: list = []
    store.ensure(day, day - dt.timedelta(days=1), cache)  # the nights before tiled their ingests
    for df in cache:
        df.unpersist()
    files = DeltaTable(lake.uri(source)).file_uris()
    sql_texts = load_sql(spec)
    outputs: dict = {}
    runs = {"n": 0}

    def floor():
        outputs["duckdb"] = duckdb_features(spec, files, day, sql_texts, args.duckdb_memory, home / "duckdb")

    def fresh():  # every run tiles the day again and builds into a new feature table
        runs["n"] += 1
        if runs["n"] > 1:
            untile(lake, store, day)

    def batchml():
        outputs["rows"] = build_features(with_feature_table(config, f"features.bench_{runs['n']}"), day,
                                         spark=spark).rows_written

    try:
        times = run.interleaved({"duckdb": floor, "batchml": batchml}, setup={"batchml": fresh})
        table = f"features.bench_{runs['n']}"
        outputs["batchml"] = Lake(with_feature_table(config, table), spark).read_arrow(table)
        columns = [c for c in outputs["duckdb"].column_names if c not in (spec.id_column, spec.date_column)]
        problems = compare(outputs["batchml"].select([spec.id_column, *columns]),
                           outputs["duckdb"].select([spec.id_column, *columns]), spec.id_column, columns)
    finally:
        spark.stop()
    if problems:
        raise SystemExit("batchml and duckdb disagree; no result written:\n  " + "\n  ".join(problems))
    build_s, floor_s = median(times["batchml"]), median(times["duckdb"])
    run.write("features_build", ratio=round(build_s / floor_s, 3), goal=2.0, higher_is_better=False,
              unit="batchml build time over duckdb's time for the same features (lower is better)",
              floor="duckdb 2 threads, same silver Parquet files: dedupe, window functions generated from conf, the "
                    "SQL files; outputs equal on every feature column (integers exact, floats 1e-9 relative)",
              first_bar_s=90, build_s=build_s, floor_s=floor_s, runs_s=times, rows=outputs["rows"],
              rows_in_lake=total, rows_per_day=args.rows_per_day, history_days=args.days,
              lookback_days=spec.lookback(), features=len(columns), compared_columns=len(columns),
              build_rows_per_s=round(outputs["rows"] / build_s), driver_memory=args.driver_memory)


def bench_backfill(args, run: Run, config, home: Path) -> None:
    from batchml.features.build import build_features, feature_spec, source_table
    from batchml.features.store import TileStore
    from batchml.spark import get_spark
    from batchml.storage import Lake

    name, spec = feature_spec(config)
    spark = get_spark(config)
    lake = Lake(config, spark)
    last = START + dt.timedelta(days=args.days - 1)
    total = load_events(config, lake, START, args.days + 1, args.rows_per_day)
    store = TileStore(lake, name, spec, source_table(config, name))
    runs, rows = {"n": 0}, {}

    def fresh():  # from nothing: no tiles, a new feature table
        runs["n"] += 1
        for table in store.tables.values():
            shutil.rmtree(lake.uri(table), ignore_errors=True)

    def backfill():
        cfg = with_feature_table(config, f"features.backfill_{runs['n']}")
        rows["backfill"] = build_features(cfg, START, spark=spark, end=last).rows_written

    def one_day():  # the night after the backfill: its tiles and its day
        cfg = with_feature_table(config, f"features.day_{runs['n']}")
        rows["day"] = build_features(cfg, last + dt.timedelta(days=1), spark=spark).rows_written

    try:
        times = run.interleaved({"backfill": backfill, "one_day": one_day}, setup={"backfill": fresh})
    finally:
        spark.stop()
    backfill_s, day_s = median(times["backfill"]), median(times["one_day"])
    backfill_rate, day_rate = rows["backfill"] / backfill_s, rows["day"] / day_s
    run.write("features_backfill", ratio=round(backfill_rate / day_rate, 3), goal=1.0, higher_is_better=True,
              unit="backfill rows/s over one day's build rows/s (1.0: the cost grows linearly with days)",
              floor="one day's build after the same history (tiling its ingest, reading tiles and edges, writing)",
              backfill_s=backfill_s, one_day_s=day_s, runs_s=times, rows=rows["backfill"], rows_one_day=rows["day"],
              rows_in_lake=total, days=args.days, rows_per_day=args.rows_per_day,
              backfill_rows_per_s=round(backfill_rate), one_day_rows_per_s=round(day_rate),
              driver_memory=args.driver_memory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("build", "backfill"), default="build")
    parser.add_argument("--rows-per-day", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30, help="build: days of tiled history; backfill: days built")
    parser.add_argument("--driver-memory", default="12g", help="local mode: the driver JVM holds the executors too")
    parser.add_argument("--duckdb-memory", default="8GB", help="duckdb's memory limit (it spills beyond)")
    args = parse(parser)
    run = Run(args)
    config, home = bench_config()
    config = with_driver_memory(config, args.driver_memory)
    try:
        (bench_build if args.mode == "build" else bench_backfill)(args, run, config, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
