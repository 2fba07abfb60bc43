"""The Delta storage layer on real Spark and real Delta tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from batchml.config import TableConfig
from batchml.storage import Lake, SchemaMismatch
from tests.conftest import make_config

TABLES = {
    "test.events": TableConfig(partition_by=["d"]),
    "test.flat": TableConfig(),
    "test.evolving": TableConfig(allow_schema_evolution=True),
}


@pytest.fixture
def lake(base_config, tmp_path, spark) -> Lake:
    return Lake(make_config(base_config, tmp_path, TABLES), spark)


def events(spark, n=3000, x_offset=0.0):
    return spark.range(n).select(
        F.col("id"),
        (F.col("id") * 0.5 + x_offset).alias("x"),
        F.expr("date_add(date'2024-01-01', cast(id % 3 as int))").alias("d"),
        F.expr("timestamp'2024-01-01 00:00:00' + make_interval(0, 0, 0, 0, 0, 0, id)").alias("ts"),
    )


def by_day(df):
    return {r["d"]: (r["n"], r["lo"]) for r in df.groupBy("d").agg(F.count("*").alias("n"), F.min("x").alias("lo")).collect()}


def test_append_creates_a_real_delta_table_readable_by_other_engines(lake, spark):
    result = lake.write(events(spark), "test.events")
    assert (result.version, result.rows_written, result.skipped) == (0, 3000, False)
    lake.write(events(spark, 30), "test.events")
    # Independent reader: delta-rs sees the same data and the partitioning.
    table = DeltaTable(lake.uri("test.events"))
    assert table.version() == 1
    assert table.metadata().partition_columns == ["d"]
    assert table.to_pyarrow_table().num_rows == 3030
    assert lake.read("test.events").count() == 3030


def test_timestamps_are_utc_and_types_round_trip(lake, spark):
    lake.write(events(spark, 10), "test.events")
    row = lake.read("test.events").where("id = 3").collect()[0]
    assert row["ts"] == dt.datetime(2024, 1, 1, 0, 0, 3)  # session time zone is UTC
    schema = DeltaTable(lake.uri("test.events")).schema().to_arrow()
    assert "timestamp" in str(pa.schema(schema).field("ts").type) and "UTC" in str(pa.schema(schema).field("ts").type)


def test_overwrite_replaces_everything(lake, spark):
    lake.write(events(spark), "test.events")
    lake.write(events(spark, 30), "test.events", mode="overwrite")
    assert lake.read("test.events").count() == 30
    assert lake.read("test.events", version=0).count() == 3000


def test_replace_where_on_a_partition_touches_only_that_partition(lake, spark):
    lake.write(events(spark), "test.events")
    day2 = events(spark).where("d = date'2024-01-02'").withColumn("x", F.lit(-1.0))
    result = lake.write(day2, "test.events", mode="overwrite", replace_where=[("d", "=", dt.date(2024, 1, 2))])
    assert result.files_removed >= 1
    counts = by_day(lake.read("test.events"))
    assert counts[dt.date(2024, 1, 2)] == (1000, -1.0)
    assert counts[dt.date(2024, 1, 1)] == (1000, 0.0) and counts[dt.date(2024, 1, 3)] == (1000, 1.0)


def test_replace_where_on_a_data_column_rewrites_only_matching_rows(lake, spark):
    lake.write(events(spark), "test.events")
    lake.write(events(spark, 10, x_offset=-1000.0), "test.events", mode="overwrite", replace_where=[("id", "<", 10)])
    out = lake.read("test.events")
    assert out.count() == 3000
    assert out.where("id < 10 and x >= 0").count() == 0
    assert out.where("id >= 10 and x < 0").count() == 0


def test_replace_where_rejects_rows_outside_the_predicate_and_changes_nothing(lake, spark):
    lake.write(events(spark), "test.events")
    with pytest.raises(Exception, match="replace_where"):
        lake.write(events(spark), "test.events", mode="overwrite", replace_where=[("d", "=", dt.date(2024, 1, 2))])
    assert lake.version("test.events") == 0
    assert lake.read("test.events").count() == 3000


def test_time_travel_by_version_and_timestamp(lake, spark):
    lake.write(events(spark, 10), "test.events")
    lake.write(events(spark, 20), "test.events", mode="overwrite")
    assert lake.read("test.events", version=0).count() == 10
    assert lake.read("test.events", version=1).count() == 20
    first_commit_ms = lake.history("test.events")[-1]["timestamp"]
    at = dt.datetime.fromtimestamp(first_commit_ms / 1000, tz=dt.timezone.utc)
    assert lake.read("test.events", timestamp=at).count() == 10


def test_same_transaction_id_is_a_no_op(lake, spark):
    first = lake.write(events(spark), "test.events", txn=("ingest/2024-01-01", 1))
    again = lake.write(events(spark), "test.events", txn=("ingest/2024-01-01", 1))
    assert again.skipped and again.version == first.version == 0
    assert lake.read("test.events").count() == 3000
    rerun = lake.write(events(spark), "test.events", mode="overwrite", txn=("ingest/2024-01-01", 2))
    assert not rerun.skipped and lake.read("test.events").count() == 3000 and lake.version("test.events") == 1


def test_a_duplicate_txn_found_only_at_commit_time_is_discarded(lake, spark, tmp_path):
    """Two writers race with one txn id: the loser's files are deleted, not committed, and it reports
    the version of the winner's commit."""
    from batchml.storage import commit as committer
    from batchml.storage.files import write_files

    lake.write(events(spark, 5), "test.events")
    schema = pa.schema(DeltaTable(lake.uri("test.events")).schema().to_arrow())
    plan = lake._plan("test.events", schema, "append", None, ("job", 1), None, read_version=0)
    winner = lake.write(events(spark, 5), "test.events", txn=("job", 1))  # commits after the plan's read
    data = DeltaTable(lake.uri("test.events")).to_pyarrow_table().select(plan.schema.names)
    files = write_files(data.to_batches(), plan.schema, plan.table_uri, ["d"], lake.storage, 100)
    result = committer.commit(plan, files)
    assert result.skipped and result.version == winner.version == 1 and lake.version("test.events") == 1
    assert not any((Path(lake.uri("test.events")) / f["path"]).exists() for f in files)


@pytest.mark.parametrize("change, message", [
    (lambda df: df.drop("x"), r"missing columns \['x'\]"),
    (lambda df: df.withColumn("x", F.col("x").cast("string")), r"type changes \['x \(double -> string\)'\]"),
    (lambda df: df.withColumn("extra", F.lit(1)), r"new columns \['extra'\]"),
])
def test_incompatible_writes_fail_naming_the_columns(lake, spark, change, message):
    lake.write(events(spark, 10), "test.events")
    with pytest.raises(SchemaMismatch, match=message):
        lake.write(change(events(spark, 10)), "test.events")
    assert lake.version("test.events") == 0


def test_additive_schema_evolution_only_where_config_allows(lake, spark):
    flat = events(spark, 10).drop("d")
    lake.write(flat, "test.evolving")
    lake.write(flat.withColumn("score", F.lit(0.5)), "test.evolving")
    out = lake.read("test.evolving")
    assert "score" in out.columns
    assert out.where("score is null").count() == 10 and out.where("score = 0.5").count() == 10
    lake.write(flat, "test.flat")
    with pytest.raises(SchemaMismatch, match="schema evolution is off"):
        lake.write(flat.withColumn("score", F.lit(0.5)), "test.flat")


def test_partition_pruning_and_data_skipping_avoid_other_files(lake, spark):
    def read(name, column, op, value):
        return lake.read(name, where=[(column, op, value)])

    lake.write(events(spark), "test.events")
    root = Path(lake.uri("test.events"))
    # Remove every data file outside 2024-01-02: a read that opened them would fail.
    for path in root.glob("d=2024-01-0[13]/*.parquet"):
        path.unlink()
    assert read("test.events", "d", "=", dt.date(2024, 1, 2)).count() == 1000
    # Data skipping on a non-partition column through min/max statistics.
    lake.write(events(spark, 3000), "test.flat")
    assert len(list(Path(lake.uri("test.flat")).glob("*.parquet"))) >= 2
    table = pa.table(DeltaTable(lake.uri("test.flat")).get_add_actions(flatten=True))
    lowest = min(table.to_pylist(), key=lambda e: e["min.id"])
    for entry in table.to_pylist():
        if entry["path"] != lowest["path"]:
            (Path(lake.uri("test.flat")) / entry["path"]).unlink()
    assert read("test.flat", "id", "<=", lowest["max.id"]).count() == lowest["num_records"]


def test_crash_between_writing_files_and_commit_leaves_table_unchanged(lake, spark):
    from batchml.storage.spark_source import encode

    lake.write(events(spark, 100), "test.events")
    schema = pa.schema(DeltaTable(lake.uri("test.events")).schema().to_arrow())
    plan = lake._plan("test.events", schema, "append", None, None, None, read_version=0)
    files_before = set(Path(lake.uri("test.events")).rglob("*.parquet"))
    with pytest.raises(Exception):
        (events(spark, 500).select(*plan.schema.names).write.format("batchml_delta").mode("append")
         .option("plan", encode(plan)).option("batchml.testing.crashBeforeCommit", "true").save(plan.table_uri))
    assert lake.version("test.events") == 0
    assert lake.read("test.events").count() == 100
    # Data files of the crashed write may remain, but no reader sees them; vacuum removes them.
    orphans = set(Path(lake.uri("test.events")).rglob("*.parquet")) - files_before
    assert all(str(o) not in DeltaTable(lake.uri("test.events")).file_uris() for o in orphans)


def test_history_compaction_and_vacuum_guard(lake, spark):
    for i in range(4):
        lake.write(events(spark, 30), "test.flat", txn=(f"load-{i}", 1))
    before = len(DeltaTable(lake.uri("test.flat")).file_uris())
    metrics = lake.compact("test.flat")
    assert metrics["numFilesRemoved"] == before and len(DeltaTable(lake.uri("test.flat")).file_uris()) == 1
    assert lake.read("test.flat").count() == 120
    history = lake.history("test.flat")
    assert history[0]["operation"] == "OPTIMIZE" and history[-1]["batchml.txn"] == "load-0@1"
    with pytest.raises(ValueError, match="below the guard"):
        lake.vacuum("test.flat", retention_hours=1)
    assert lake.vacuum("test.flat", dry_run=True) == []  # nothing is older than the 168 h default


def test_arrow_writes_share_the_commit_path(lake):
    data = pa.table({"id": pa.array([1, 2], pa.int64()), "x": [0.1, 0.2],
                     "d": pa.array([dt.date(2024, 1, 1)] * 2, pa.date32()),
                     "ts": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)] * 2, pa.timestamp("us", "UTC"))})
    assert lake.write_arrow(data, "test.events", txn=("a", 1)).version == 0
    assert lake.write_arrow(data, "test.events", txn=("a", 1)).skipped
    assert lake.read_arrow("test.events", [("id", "=", 2)]).column("x").to_pylist() == [0.2]


def test_arrow_reads_filter_columns_without_min_max_statistics(lake):
    """Booleans carry no min/max in the log; delta-rs would read that as "matches no file"."""
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "flag": [True, False, None]})
    lake.write_arrow(data, "test.flat")
    assert lake.read_arrow("test.flat", [("flag", "=", True)]).column("id").to_pylist() == [1]
    assert lake.read_arrow("test.flat", [("flag", "=", False), ("id", ">", 1)]).column("id").to_pylist() == [2]


def test_unknown_table_is_a_clear_error(lake):
    with pytest.raises(KeyError, match="not declared under 'tables'"):
        lake.uri("nope.table")


def test_count_from_statistics_matches_a_scan(lake, spark):
    lake.write(events(spark), "test.events")
    day2 = [("d", ">=", dt.date(2024, 1, 2))]
    assert lake.count("test.events") == 3000
    assert lake.count("test.events", day2) == lake.read("test.events").where("d >= date'2024-01-02'").count() == 2000
    with pytest.raises(ValueError, match="partition columns"):
        lake.count("test.events", [("id", "<", 5)])
    scanned = {r["d"]: r["n"] for r in lake.read("test.events").where("d >= date'2024-01-02'").groupBy("d")
               .agg(F.count("*").alias("n")).collect()}
    assert lake.counts_by("test.events", "d", day2) == scanned and len(scanned) == 2
    with pytest.raises(ValueError, match="partition columns"):
        lake.counts_by("test.events", "id")


def test_large_files_are_read_in_row_group_splits(lake, monkeypatch):
    """A day stored as one big file is read by several tasks (split by row groups), row for row."""
    from batchml.storage import files, spark_source

    monkeypatch.setattr(files, "ROWS_PER_GROUP", 1000)
    n = 10_000
    data = pa.table({"id": pa.array(range(n), pa.int64()), "x": pa.array([i * 0.5 for i in range(n)]),
                     "d": pa.array([dt.date(2024, 1, 1)] * n, pa.date32()),
                     "ts": pa.array([dt.datetime(2024, 1, 1)] * n, pa.timestamp("us"))})
    lake.write_arrow(data, "test.events")
    (path,) = DeltaTable(lake.uri("test.events")).file_uris()
    assert pq.ParquetFile(path).metadata.num_row_groups == 10

    monkeypatch.setattr(spark_source, "TARGET_SPLIT_BYTES", 1)  # every row group is "large"
    options = {"path": lake.uri("test.events"), "storage": spark_source.encode(lake.storage)}
    reader = spark_source.DeltaReader(options, pa.schema(DeltaTable(lake.uri("test.events")).schema().to_arrow()))
    splits = reader.partitions()
    assert len(splits) == 10 and all(len(s.files) == 1 for s in splits)
    ids = [i for s in splits for b in reader.read(s) for i in b.column("id").to_pylist()]
    assert sorted(ids) == list(range(n))  # each row exactly once
    assert lake.read("test.events").count() == n  # through Spark as well


class _Doubled:
    """A read-task transform: keeps the id and doubles x (Arrow batch in, Arrow batch out)."""

    schema = pa.schema([("id", pa.int64()), ("x2", pa.float64())])

    def __init__(self):
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        return pa.RecordBatch.from_arrays([batch.column("id"), pc.multiply(batch.column("x"), 2.0)],
                                          schema=self.schema)


def test_where_and_transform_run_inside_the_read_task(lake):
    """``where`` keeps exactly the matching rows and skips files; the transform sees only those rows."""
    from batchml.storage import spark_source

    days = [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]
    for i, day in enumerate(days):
        lake.write_arrow(pa.table({"id": pa.array(range(i * 100, i * 100 + 100), pa.int64()),
                                   "x": pa.array([float(v) for v in range(100)]),
                                   "d": pa.array([day] * 100, pa.date32()),
                                   "ts": pa.array([dt.datetime(2024, 1, 1)] * 100, pa.timestamp("us"))}),
                         "test.events")
    options = {"path": lake.uri("test.events"), "storage": spark_source.encode(lake.storage)}
    schema = pa.schema(DeltaTable(lake.uri("test.events")).schema().to_arrow())
    where = [("d", "=", days[1]), ("x", ">=", 90.0)]
    doubled = _Doubled()
    reader = spark_source.DeltaReader(options, schema, where, doubled)
    splits = reader.partitions()
    assert sum(len(s.files) for s in splits) == 1  # the other day's file is skipped
    out = pa.Table.from_batches([b for s in splits for b in reader.read(s)])
    assert out.schema == _Doubled.schema and doubled.calls >= 1
    assert out.column("id").to_pylist() == list(range(190, 200))
    assert out.column("x2").to_pylist() == [2.0 * v for v in range(90, 100)]
    plain = lake.read("test.events", columns=["id", "d"], where=[("d", "=", days[0])])
    assert sorted(r.id for r in plain.collect()) == list(range(100))  # through Spark as well


class _FrozenCount:
    """A read-task transform: how many objects its Python worker has frozen, once per row."""

    schema = pa.schema([("frozen", pa.int64())])

    def __call__(self, batch):
        import gc

        return pa.RecordBatch.from_arrays([pa.array([gc.get_freeze_count()] * batch.num_rows, pa.int64())],
                                          schema=self.schema)


class _RowsPerTask:
    """A whole-task transform (``map_task``): one row per task, the rows it read."""

    schema = pa.schema([("rows", pa.int64())])

    def map_task(self, batches):
        yield pa.RecordBatch.from_arrays([pa.array([sum(b.num_rows for b in batches)], pa.int64())],
                                         schema=self.schema)


def test_whole_task_transforms_run_on_both_engines(lake, spark):
    """A ``map_task`` transform sees every row once, inside the read tasks and as the native engine's
    ``mapInArrow`` (``NativeDeltaEngine.narrow``, on a plain DataFrame: no delta-spark JARs here)."""
    from batchml.storage.native import NativeDeltaEngine

    lake.write(events(spark), "test.events")
    in_tasks = [r.rows for r in lake.read("test.events", transform=_RowsPerTask()).collect()]
    as_native = [r.rows for r in NativeDeltaEngine.narrow(events(spark).repartition(3), None, _RowsPerTask())
                 .collect()]
    assert sum(in_tasks) == sum(as_native) == 3000 and len(as_native) == 3


def test_read_workers_freeze_what_their_imports_created(lake):
    """Spark's reused Python workers run a full ``gc.collect()`` after every task; the data source's
    module moves its imports' objects (pandas, pyarrow, deltalake) out of those collections."""
    lake.write_arrow(pa.table({"id": pa.array(range(10), pa.int64()), "x": pa.array([0.5] * 10),
                               "d": pa.array([dt.date(2024, 1, 1)] * 10, pa.date32()),
                               "ts": pa.array([dt.datetime(2024, 1, 1)] * 10, pa.timestamp("us"))}), "test.events")

    counts = [r.frozen for r in lake.read("test.events", transform=_FrozenCount()).collect()]
    assert len(counts) == 10 and min(counts) > 50_000
