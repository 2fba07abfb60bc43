"""The vectorised window pass against Spark's own window frames on random streams.

Coarse clocks make many ties, a few keys hold most rows, values are sometimes null, and the chunk size
is tiny, so keys run across Arrow batches and chunks."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from batchml.features.running import Aggregate, WindowPass, window_pass

HOUR = 3_600_000_000
AGGREGATES = [
    Aggregate("count", "*", (0,), "prefix", 0, "n_pre"),
    Aggregate("count", "v", (0, 1), "last", 2 * HOUR, "n_last"),
    Aggregate("count", "*", (2,), "at_or_after", 0, "n_after"),
    Aggregate("sum", "v", (1,), "suffix", 5 * HOUR, "s_suf"),
    Aggregate("sum", "v", (0,), "prefix", 0, "s_pre"),
    Aggregate("max", "x", (0, 1), "last", 3 * HOUR, "mx_last"),
    Aggregate("max", "x", (1,), "suffix", 4 * HOUR, "mx_suf"),
    Aggregate("max", "__t", (0,), "prefix", 0, "last_t"),
    Aggregate("max", "c", (2,), "whole", 0, "c_whole"),
    Aggregate("distinct", "d", (0, 1), "last", 2 * HOUR, "dc_last"),
    Aggregate("distinct", "d", (1,), "last", 7 * HOUR, "dc_long"),
]


def stream_rows(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    keys = [("a", 1), ("a", 2), ("b", 1)] + [(f"k{i}", i % 3) for i in range(12)]
    rows = []
    for i in range(n):
        k1, k2 = keys[0] if rng.random() < 0.4 else rng.choice(keys)  # one busy key
        rows.append({"k1": k1, "k2": k2, "__t": rng.randrange(0, 48) * HOUR // 4, "__src": rng.choice([0, 0, 1, 2]),
                     "id": f"e{i}", "v": None if rng.random() < 0.1 else rng.randrange(-50, 1000),
                     "x": None if rng.random() < 0.1 else rng.choice([0.5, -2.0, 7.25, float(i)]),
                     "c": rng.randrange(0, 5), "d": None if rng.random() < 0.1 else rng.choice("pqrstu")})
    return rows


def spark_reference(df):
    """The same aggregates with Spark's window frames (how ``compute`` evaluated them before)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    asc = Window.partitionBy("k1", "k2").orderBy("__t")
    desc = Window.partitionBy("k1", "k2").orderBy(F.desc("__t"))
    cols = []
    for a in AGGREGATES:
        frame = {"prefix": asc.rangeBetween(Window.unboundedPreceding, -1),
                 "last": asc.rangeBetween(-a.width, -1),
                 "at_or_after": desc.rangeBetween(Window.unboundedPreceding, 0),
                 "suffix": desc.rangeBetween(Window.unboundedPreceding, a.width),
                 "whole": asc.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)}[a.frame]
        value = F.when(F.col("__src").isin(*a.tags), F.col(a.column) if a.column != "*" else F.lit(1))
        out = {"count": F.count, "sum": F.sum, "max": F.max, "distinct": F.collect_set}[a.fn](value).over(frame)
        out = {"sum": F.coalesce(out, F.lit(0)), "distinct": F.size(out)}.get(a.fn, out)
        cols.append(out.alias(a.alias))
    return df.select("id", *cols).where("__src = 0")


def by_id(df) -> dict:
    return {r["id"]: r.asDict() for r in df.collect()}


@pytest.mark.parametrize("seed", [1, 2])
def test_the_window_pass_equals_sparks_window_frames(spark, seed):
    df = spark.createDataFrame(stream_rows(seed, 700), "k1 string, k2 long, __t long, __src int, id string, "
                                                       "v long, x double, c long, d string")
    want = by_id(spark_reference(df))
    got = by_id(window_pass(df, ["k1", "k2"], ["id"], AGGREGATES).drop("k1", "k2", "__t"))
    assert got.keys() == want.keys()
    for i, row in want.items():
        assert got[i] == row, i
    # whole keys per chunk even when a key spans many batches and chunks
    ordered = sorted(stream_rows(seed, 700), key=lambda r: (r["k1"], r["k2"], r["__t"]))
    table = pa.Table.from_pylist(ordered, schema=pa.schema([
        ("k1", pa.string()), ("k2", pa.int64()), ("__t", pa.int64()), ("__src", pa.int32()), ("id", pa.string()),
        ("v", pa.int64()), ("x", pa.float64()), ("c", pa.int64()), ("d", pa.string())]))
    schema = pa.schema([table.schema.field(c) for c in ("k1", "k2", "__t", "id")] + [
        pa.field(a.alias, {"count": pa.int64(), "sum": pa.int64(), "distinct": pa.int32()}.get(a.fn) or
                 table.schema.field(a.column).type) for a in AGGREGATES])
    small = WindowPass(["k1", "k2"], ["id"], AGGREGATES, 0, schema, chunk_rows=25)
    chunked = pa.Table.from_batches(list(small(table.to_batches(max_chunksize=9))), schema=schema)
    assert {r["id"]: {k: r[k] for k in want[r["id"]]} for r in chunked.to_pylist()} == want


def test_an_unknown_frame_or_a_distinct_count_over_a_running_frame_is_refused():
    with pytest.raises(ValueError, match="unknown aggregate"):
        Aggregate("count", "*", (0,), "preceding", 0, "n")
    with pytest.raises(ValueError, match="sliding"):
        Aggregate("distinct", "d", (0,), "prefix", 0, "n")
