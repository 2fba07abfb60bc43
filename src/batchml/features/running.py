"""Window aggregates over an entity's stream in one vectorised pass (numpy over Arrow), for ``compute``.

The stream arrives hash-partitioned by the entity's keys and sorted by (keys, time) within each partition
(``window_pass``). Each frame of a row is then a contiguous run of its key's rows, ``[a, b)`` in that order,
so counts and sums are differences of prefix sums (exact: 64-bit integers), maxima are range-maximum
look-ups in a sparse table, and a distinct count over a sliding window counts disjoint validity intervals
(``_distinct``). Spark evaluated the same frames row by row in its window operator; this is the same
result, with no per-row interpretation. The frames, for a row at time ``t`` and rows of the same key at
``t'``:

* ``prefix``: ``t' < t``; ``at_or_after``: ``t' >= t``; ``whole``: every row of the key;
* ``suffix``: ``t' >= t - width``; ``last``: ``t - width <= t' < t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FRAMES = ("prefix", "at_or_after", "whole", "suffix", "last")
CHUNK_ROWS = 500_000  # rows a worker holds at once (a key's rows are never split, so a chunk may grow past it)


@dataclass(frozen=True)
class Aggregate:
    """``fn`` (count, sum, max or distinct) of ``column`` ("*": rows) over the stream rows tagged one of
    ``tags`` in ``frame`` (``width`` µs for ``suffix`` and ``last``), written as ``alias``."""

    fn: str
    column: str
    tags: tuple[int, ...]
    frame: str
    width: int
    alias: str

    def __post_init__(self):
        if self.fn not in ("count", "sum", "max", "distinct") or self.frame not in FRAMES:
            raise ValueError(f"unknown aggregate {self.fn!r} or frame {self.frame!r}")
        if self.fn == "distinct" and self.frame != "last":
            raise ValueError("a distinct count is computed over a sliding (last) frame only")


def window_pass(stream, keys: list[str], carry: list[str], aggregates: list[Aggregate], keep: int = 0):
    """The rows of ``stream`` tagged ``keep`` (``__src``) with ``keys``, ``__t``, ``carry`` and every aggregate.

    ``stream`` has ``keys``, ``__t`` (µs, not null), ``__src`` and the aggregates' columns."""
    from pyspark.sql.types import IntegerType, LongType, StructField, StructType

    from batchml.spark import arrow_schema

    kind = {"count": LongType(), "sum": LongType(), "distinct": IntegerType()}
    fields = [stream.schema[c] for c in (*keys, "__t", *carry)]
    fields += [StructField(a.alias, kind.get(a.fn) or stream.schema[a.column].dataType) for a in aggregates]
    schema = StructType(fields)
    ordered = stream.repartition(*keys).sortWithinPartitions(*keys, "__t")
    return ordered.mapInArrow(WindowPass(keys, carry, aggregates, keep, arrow_schema(schema)), schema)


class WindowPass:
    """``mapInArrow`` function: batches of a partition sorted by (keys, ``__t``) in, its kept rows with their
    aggregates out, a chunk of whole keys at a time."""

    def __init__(self, keys: list[str], carry: list[str], aggregates: list[Aggregate], keep: int,
                 schema: pa.Schema, chunk_rows: int = CHUNK_ROWS):
        self.keys, self.carry, self.aggregates, self.keep = keys, carry, aggregates, keep
        self.schema, self.chunk_rows = schema, chunk_rows

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pending: list[pa.RecordBatch] = []
        rows, limit = 0, self.chunk_rows
        for batch in batches:
            pending.append(batch)
            rows += batch.num_rows
            if rows >= limit:
                table = pa.Table.from_batches(pending).combine_chunks()
                cut = int(np.flatnonzero(_starts(table, self.keys))[-1])  # the last key may go on in later batches
                if cut:
                    yield from self.chunk(table.slice(0, cut)).to_batches()
                    pending, rows, limit = table.slice(cut).to_batches(), table.num_rows - cut, self.chunk_rows
                else:  # one key fills the chunk: look again at twice the rows (linear copying in all)
                    pending, limit = table.to_batches(), 2 * rows
        if rows:
            yield from self.chunk(pa.Table.from_batches(pending).combine_chunks()).to_batches()

    def chunk(self, table: pa.Table) -> pa.Table:
        """Whole keys' rows, sorted by (keys, ``__t``) -> their kept rows with the aggregates."""
        src = _column(table, "__src", np.int64)
        kept = np.flatnonzero(src == self.keep)
        frames = Frames(_starts(table, self.keys), _column(table, "__t", np.int64), kept)
        out = {c: table.column(c).take(pa.array(kept)) for c in (*self.keys, "__t", *self.carry)}
        tagged, valid = {}, {}  # masks shared by the aggregates
        for agg in self.aggregates:
            mask = tagged.get(agg.tags)
            if mask is None:
                mask = tagged[agg.tags] = np.isin(src, agg.tags)
            values = None
            if agg.column != "*":
                values = table.column(agg.column).combine_chunks()
                if agg.column not in valid:
                    valid[agg.column] = _column(pc.is_valid(values), None, bool)
                mask = mask & valid[agg.column]
            out[agg.alias] = _aggregate(agg, frames, mask, values)
        return pa.table([out[f.name] for f in self.schema], schema=self.schema)


class Frames:
    """Each row's key and tie run in a chunk sorted by (key, time), and ``[a, b)`` of any frame for the
    kept ``rows``. Times are compared per key through their rank among the chunk's distinct times."""

    def __init__(self, starts: np.ndarray, t: np.ndarray, rows: np.ndarray):
        n = len(t)
        self.t, self.rows = t, rows
        self.group = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        self.start = first[self.group]
        self.end = np.append(first[1:], n)[self.group]
        ties = starts.copy()
        ties[1:] |= t[1:] != t[:-1]
        self.tie = np.maximum.accumulate(np.where(ties, np.arange(n), 0))  # first row at the same (key, time)
        self.times = np.unique(t)
        self.span = len(self.times) + 2
        self.order = self.group * self.span + np.searchsorted(self.times, t)  # increasing by (key, time)
        self.cache: dict = {}

    def bounds(self, frame: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``[a, b)`` of ``frame`` for each kept row."""
        if (frame, width) in self.cache:
            return self.cache[(frame, width)]
        rows = self.rows
        if frame in ("suffix", "last"):  # from the first row of the key at or after t - width
            wanted = self.group[rows] * self.span + np.searchsorted(self.times, self.t[rows] - width, "left")
            a = np.searchsorted(self.order, wanted, "left")
        else:
            a = self.tie[rows] if frame == "at_or_after" else self.start[rows]
        b = self.tie[rows] if frame in ("prefix", "last") else self.end[rows]
        self.cache[(frame, width)] = a, b
        return a, b


def _aggregate(agg: Aggregate, frames: Frames, mask: np.ndarray, values) -> pa.Array:
    a, b = frames.bounds(agg.frame, agg.width)
    counts = _prefix(mask.astype(np.int64))
    if agg.fn == "count":
        return pa.array(counts[b] - counts[a], pa.int64())
    if agg.fn == "sum":
        total = _prefix(np.where(mask, _column(values, None, np.int64, fill=0), 0))
        return pa.array(total[b] - total[a], pa.int64())
    if agg.fn == "distinct":
        return pa.array(_distinct(frames, mask, values, agg.width), pa.int32())
    x = frames.t if agg.column == "__t" else _column(values, None, None, fill=0)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    top = _range_max(np.where(mask, x, low), a, b)
    return pa.array(top, type=pa.from_numpy_dtype(x.dtype), mask=counts[b] == counts[a])


def _prefix(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x) + 1, dtype=x.dtype)
    np.cumsum(x, out=out[1:])
    return out


def _range_max(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max(x[a:b]) per query (a sparse table; empty ranges give anything: the caller masks them)."""
    length = np.maximum(b - a, 1)
    level = np.floor(np.log2(length)).astype(np.int64)
    out = np.empty(len(a), dtype=x.dtype)
    table, k = x, 0
    while True:
        at = level == k
        if at.any():
            lo = np.minimum(a[at], len(table) - 1)
            hi = np.clip(b[at] - (1 << k), 0, len(table) - 1)
            out[at] = np.maximum(table[lo], table[hi])
        if not (level > k).any():
            return out
        half = 1 << k
        table = np.maximum(table[:-half], table[half:])  # entry i: max(x[i : i + 2^(k+1)])
        k += 1


def _distinct(frames: Frames, mask: np.ndarray, values, width: int) -> np.ndarray:
    """Distinct masked values of the key in ``[t - width, t)`` per kept row. A value is in that window iff one
    of its times s has ``s < t <= s + width``; per value, the intervals ``(s, min(s + width, next s)]`` are
    disjoint with the same union, so the count is #{s < t} - #{interval ends < t} over the key's rows."""
    seen = np.flatnonzero(mask)
    s, group = frames.t[seen], frames.group[seen]
    codes = _column(pc.dictionary_encode(values.take(pa.array(seen))).indices, None, np.int64)
    by_value = np.lexsort((s, codes, group))
    s, group, codes = s[by_value], group[by_value], codes[by_value]
    same = np.append((group[1:] == group[:-1]) & (codes[1:] == codes[:-1]), False)
    ends = np.where(same, np.minimum(s + width, np.append(s[1:], 0)), s + width)
    rows = frames.rows
    started = _prefix(mask.astype(np.int64))
    before = started[frames.tie[rows]] - started[frames.start[rows]]  # masked rows of the key at times < t
    # an end e < t iff (distinct times <= e) <= (distinct times < t), t being one of them
    order = np.sort(group * frames.span + np.searchsorted(frames.times, ends, "right"))
    rank = np.searchsorted(frames.times, frames.t[rows])
    key = frames.group[rows]
    earlier_keys = _prefix(np.bincount(group, minlength=int(frames.group[-1]) + 1))[key]
    ended = np.searchsorted(order, key * frames.span + rank + 1, "left") - earlier_keys
    return (before - ended).astype(np.int32)


def _starts(table: pa.Table, keys: list[str]) -> np.ndarray:
    """True where a row's keys differ from the row before (and on the first row); nulls equal nulls."""
    n = table.num_rows
    out = np.zeros(n, dtype=bool)
    if n:
        out[0] = True
    for key in keys:
        col = table.column(key)
        now, before = col.slice(1), col.slice(0, n - 1)
        differ = pc.fill_null(pc.not_equal(now, before), True)
        both_null = pc.and_(pc.is_null(now), pc.is_null(before))
        out[1:] |= _column(pc.and_not(differ, both_null), None, bool)
    return out


def _column(data, name: str | None, dtype, fill=None) -> np.ndarray:
    """A column (by ``name`` of a table, or an array) as numpy, nulls as ``fill`` (none allowed when None)."""
    col = data.column(name) if name is not None else data
    if fill is not None:
        col = pc.fill_null(col, fill)
    elif col.null_count:
        raise ValueError(f"unexpected nulls in {name or 'a column'} of the window stream")
    out = col.to_numpy() if isinstance(col, pa.ChunkedArray) else col.to_numpy(zero_copy_only=False)
    return out if dtype is None else out.astype(dtype, copy=False)
