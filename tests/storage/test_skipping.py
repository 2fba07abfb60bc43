"""Data skipping never changes an answer: the statistics batchml logs bound every value of a file,
and every reader (batchml's own, delta-rs's, Spark through the data source) gets the same rows
as a full scan."""

from __future__ import annotations

import datetime as dt
import json
import random

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from batchml.config import TableConfig
from batchml.storage import Lake, files
from batchml.storage.files import STATS_STRING_PREFIX, _round_up
from tests.conftest import make_config

TABLES = {"test.flat": TableConfig(), "test.parts": TableConfig(partition_by=["p"])}


@pytest.fixture
def lake(base_config, tmp_path) -> Lake:
    return Lake(make_config(base_config, tmp_path, TABLES))


def logged_stats(lake: Lake, name: str) -> list[dict]:
    return [json.loads(a["add"]["stats"]) for a in _log_adds(lake, name)]


def _log_adds(lake: Lake, name: str) -> list[dict]:
    table = DeltaTable(lake.uri(name))
    log = [json.loads(line) for v in range(table.version() + 1)
           for line in open(f"{lake.uri(name)}/_delta_log/{v:020d}.json").read().split("\n") if line]
    return [a for a in log if "add" in a]


def answers(lake: Lake, name: str, column: str, value) -> dict[str, int]:
    """Rows with ``column = value`` through each reader that prunes files with the logged statistics."""
    table = DeltaTable(lake.uri(name))
    out = {
        "Lake.read_arrow": lake.read_arrow(name, [(column, "=", value)]).num_rows,
        "deltalake filters": table.to_pyarrow_table(filters=[(column, "=", value)]).num_rows,
        "deltalake dataset": table.to_pyarrow_dataset().to_table(filter=pads.field(column) == value).num_rows,
    }
    import polars as pl

    out["polars"] = pl.scan_delta(lake.uri(name)).filter(pl.col(column) == value).collect().height
    return out


def test_a_row_group_without_statistics_never_hides_its_rows(lake, monkeypatch):
    """The reported case: three row groups, the middle one holds 999 'b' and a 5 KB string, so the
    Parquet writer drops its statistics; the file's logged range used to be ['a', 'a']."""
    monkeypatch.setattr(files, "ROWS_PER_GROUP", 1000)
    s = ["a"] * 3000
    s[1000:1999] = ["b"] * 999
    s[1999] = "b" + "x" * 5000
    lake.write_arrow(pa.table({"id": pa.array(range(3000), pa.int64()), "s": s}), "test.flat")

    (path,) = DeltaTable(lake.uri("test.flat")).file_uris()
    footer = pq.ParquetFile(path).metadata
    assert [footer.row_group(i).column(1).statistics.has_min_max for i in range(3)] == [True, False, True]
    (stats,) = logged_stats(lake, "test.flat")
    assert stats["minValues"]["s"] == "a" and stats["maxValues"]["s"] >= max(s)
    assert set(answers(lake, "test.flat", "s", "b").values()) == {999}
    assert lake.read_arrow("test.flat", [("s", ">", "a")]).num_rows == 1000


def test_without_a_reader_for_the_values_a_column_gets_no_bounds():
    """Delta's rule, when the values cannot be read back: no min/max rather than a wrong one."""
    sink = pa.BufferOutputStream()
    table = pa.table({"s": ["a", "b" * 5000, "c"]})
    pq.write_table(table, sink, row_group_size=1)
    footer = pq.ParquetFile(pa.BufferReader(sink.getvalue())).metadata
    stats = files.file_stats(footer, table.schema)
    assert "s" not in stats["minValues"] and stats["nullCount"]["s"] == 0


def test_long_strings_are_logged_as_a_rounded_prefix(lake):
    values = ["k" * 40, "k" * 40 + "z", "a" * 33, "\U0010FFFF" * 40]
    lake.write_arrow(pa.table({"id": pa.array(range(3), pa.int64()), "s": values[:3]}), "test.flat")
    lake.write_arrow(pa.table({"id": pa.array([3], pa.int64()), "s": values[3:]}), "test.flat")
    first, second = logged_stats(lake, "test.flat")
    assert first["minValues"]["s"] == "a" * STATS_STRING_PREFIX
    assert first["maxValues"]["s"] == "k" * (STATS_STRING_PREFIX - 1) + "l"
    assert second["maxValues"]["s"] == values[3]  # no string is above a prefix of U+10FFFF: logged whole
    for value in values:
        assert answers(lake, "test.flat", "s", value)["Lake.read_arrow"] == 1
        assert set(answers(lake, "test.flat", "s", value).values()) == {1}
    assert _round_up("a\U0010FFFF") == "b" and _round_up("\uD7FF") == "\uE000"


def test_bounds_hold_for_every_value_and_every_reader_agrees_with_a_scan(lake, monkeypatch):
    """Random files mixing long and short strings, unicode, nulls, all-null row groups and booleans."""
    monkeypatch.setattr(files, "ROWS_PER_GROUP", 50)
    rng = random.Random(7)
    alphabet = ["a", "b", "é", "ß", "\u2028", "\U0001F600", "\U0010FFFF", "z"]

    def text():
        if rng.random() < 0.1:
            return None
        n = rng.choice([0, 1, 2, 31, 32, 33, 40, 5000])
        return "".join(rng.choice(alphabet) for _ in range(n))

    for batch in range(4):
        n = 200
        s = [text() for _ in range(n)]
        if batch == 1:
            s[:50] = [None] * 50  # one all-null row group
        lake.write_arrow(pa.table({"id": pa.array(range(batch * n, (batch + 1) * n), pa.int64()), "s": s,
                                   "flag": [rng.choice([True, False, None]) for _ in range(n)]}), "test.flat")
    data = DeltaTable(lake.uri("test.flat")).to_pyarrow_table()
    for add in _log_adds(lake, "test.flat"):
        stats = json.loads(add["add"]["stats"])
        rows = pq.read_table(f"{lake.uri('test.flat')}/{add['add']['path']}")
        for column in ("s", "flag"):
            present = [v for v in rows.column(column).to_pylist() if v is not None]
            if column in stats["minValues"]:
                assert stats["minValues"][column] <= min(present) and max(present) <= stats["maxValues"][column]
    probes = [v for v in data.column("s").to_pylist()[::37] if v is not None] + ["", "b", "zz", "\U0010FFFF"]
    for value in probes:
        expected = pc.sum(pc.equal(data.column("s"), value)).as_py() or 0
        assert set(answers(lake, "test.flat", "s", value).values()) == {expected}, value
    for flag in (True, False):
        expected = pc.sum(pc.equal(data.column("flag"), flag)).as_py()
        assert set(answers(lake, "test.flat", "flag", flag).values()) == {expected}


def test_files_without_statistics_for_a_column_are_read_not_skipped(lake):
    """Tables written before this fix (or by other engines) may lack min/max in some files; delta-rs
    then guarantees "x >= null" for them, so Lake.read_arrow must not let it prune on that column."""
    from batchml.storage import commit as committer
    from batchml.storage.files import write_files

    lake.write_arrow(pa.table({"id": pa.array([1], pa.int64()), "s": ["m"]}), "test.flat")
    plan = lake._plan("test.flat", pa.schema([("id", pa.int64()), ("s", pa.string())]), "append", None, None,
                      None, read_version=0)
    written = write_files([pa.record_batch({"id": pa.array([2], pa.int64()), "s": ["b"]})], plan.schema,
                          plan.table_uri, [], lake.storage, 100)
    for f in written:
        stats = json.loads(f["stats"])
        stats["minValues"], stats["maxValues"] = {"id": 2}, {"id": 2}  # no bounds for s
        f["stats"] = json.dumps(stats)
    committer.commit(plan, written)
    assert lake.read_arrow("test.flat", [("s", "=", "b")]).column("id").to_pylist() == [2]
    assert lake.read_arrow("test.flat", [("s", "=", "b"), ("id", ">=", 2)]).column("id").to_pylist() == [2]


def test_partition_values_that_need_escaping_are_replaced_and_read(lake, spark):
    """The log holds paths URI-encoded ("p=a%2520b"); removes and Spark reads use the real file names."""
    lake.write_arrow(pa.table({"id": pa.array([1, 2], pa.int64()), "p": ["a b", "c/d%"]}), "test.parts")
    result = lake.write_arrow(pa.table({"id": pa.array([3], pa.int64()), "p": ["a b"]}), "test.parts",
                              mode="overwrite", replace_where=[("p", "=", "a b")])
    assert result.files_removed == 1
    assert sorted(lake.read_arrow("test.parts").column("id").to_pylist()) == [2, 3]
    assert sorted(r.id for r in Lake(lake.config, spark).read("test.parts").collect()) == [2, 3]


def test_spark_filters_on_floats_keep_nan_rows(lake, spark):
    """Spark orders NaN above every number; Parquet statistics leave NaN out, so they must not prune."""
    lake.write_arrow(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "x": [0.5, float("nan"), 1.0]}), "test.flat")
    df = Lake(lake.config, spark).read("test.flat")
    assert df.where(F.col("x") > 5).count() == 1
    assert df.where(F.isnan("x")).count() == 1
    assert lake.read_arrow("test.flat", [("x", ">", 5.0)]).num_rows == 0  # Arrow semantics: NaN > 5 is false


def test_a_timestamp_maximum_is_rounded_up_to_the_logged_millisecond(lake):
    ts = dt.datetime(2024, 1, 1, 0, 0, 0, 999_999, tzinfo=dt.timezone.utc)
    lake.write_arrow(pa.table({"id": pa.array([1], pa.int64()), "ts": pa.array([ts], pa.timestamp("us", "UTC"))}),
                     "test.flat")
    (stats,) = logged_stats(lake, "test.flat")
    assert (stats["minValues"]["ts"], stats["maxValues"]["ts"]) == ("2024-01-01T00:00:00.999Z",
                                                                    "2024-01-01T00:00:01.000Z")
    assert set(answers(lake, "test.flat", "ts", ts).values()) == {1}


def test_infinities_and_nan_keep_the_file_statistics_valid(lake):
    """JSON has no Infinity or NaN: such a token voided a file's whole statistics for delta-rs
    (numRecords included, so Lake.count said 0)."""
    inf = float("inf")
    lake.write_arrow(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "x": [-inf, 1.0, inf]}), "test.flat")
    lake.write_arrow(pa.table({"id": pa.array([4], pa.int64()), "x": [float("nan")]}), "test.flat")
    assert lake.count("test.flat") == 4
    assert lake.read_arrow("test.flat", [("x", ">", 5.0)]).column("id").to_pylist() == [3]
    assert lake.read_arrow("test.flat", [("x", "=", inf)]).column("id").to_pylist() == [3]
    assert lake.read_arrow("test.flat", [("x", "<", -1e308)]).column("id").to_pylist() == [1]
    assert DeltaTable(lake.uri("test.flat")).to_pyarrow_table(filters=[("x", ">", 5.0)]).num_rows == 1
