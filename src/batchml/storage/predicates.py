"""Simple conjunctive predicates, ``[(column, op, value), ...]``, used three ways:

* to prune files from a Delta snapshot (partition values and min/max statistics),
* to test rows (the replace-where check and copy-on-write rewrites),
* to describe a write in the Delta log.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

Predicate = Sequence[tuple[str, str, Any]]
OPS = {"=", "!=", "<", "<=", ">", ">=", "in", "not in"}
# Delta statistics for timestamps are kept at millisecond precision.
_STATS_SLACK = dt.timedelta(milliseconds=1)


def check(predicate: Predicate, columns: Iterable[str]) -> list[tuple[str, str, Any]]:
    known = set(columns)
    out = []
    for item in predicate:
        if len(item) != 3:
            raise ValueError(f"predicate terms are (column, op, value), got {item!r}")
        col, op, value = item
        if op not in OPS:
            raise ValueError(f"unsupported operator {op!r} in {item!r}; use one of {sorted(OPS)}")
        if col not in known:
            raise ValueError(f"predicate column {col!r} is not in the table schema {sorted(known)}")
        if op in ("in", "not in"):
            value = list(value)
        out.append((col, op, value))
    return out


def describe(predicate: Predicate) -> str:
    def lit(v):
        return repr(v.isoformat()) if isinstance(v, (dt.date, dt.datetime)) else repr(v)

    parts = []
    for col, op, value in predicate:
        rendered = "(" + ", ".join(lit(v) for v in value) + ")" if op in ("in", "not in") else lit(value)
        parts.append(f"{col} {op.upper() if ' ' in op or op == 'in' else op} {rendered}")
    return " AND ".join(parts) or "TRUE"


def pruning_expression(predicate: Predicate, schema: pa.Schema):
    """A pyarrow dataset filter implied by the terms (``!=`` and ``not in`` are left to ``row_mask``), or None."""
    import pyarrow.dataset as ds

    expr = None
    for col, op, value in predicate:
        field, kind = ds.field(col), schema.field(col).type
        if op == "in":
            term = field.isin(pa.array(value, type=kind))
        elif op in ("=", "<", "<=", ">", ">="):
            scalar = pa.scalar(value, type=kind)
            term = {"=": field == scalar, "<": field < scalar, "<=": field <= scalar,
                    ">": field > scalar, ">=": field >= scalar}[op]
        else:
            continue
        expr = term if expr is None else expr & term
    return expr


def row_mask(table: pa.Table | pa.RecordBatch, predicate: Predicate) -> pa.ChunkedArray | pa.Array:
    """Rows that satisfy every term (nulls count as not satisfying, as in SQL)."""
    mask = None
    for col, op, value in predicate:
        arr = table.column(col)
        if op in ("in", "not in"):
            term = pc.is_in(arr, value_set=pa.array(value, type=arr.type))
            term = pc.invert(term) if op == "not in" else term
            term = pc.and_kleene(term, pc.is_valid(arr))
        else:
            scalar = pa.scalar(value, type=arr.type)
            fn = {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
                  ">": pc.greater, ">=": pc.greater_equal}[op]
            term = fn(arr, scalar)
        term = pc.fill_null(term, False)
        mask = term if mask is None else pc.and_(mask, term)
    if mask is None:
        return pa.array([True] * table.num_rows)
    return mask


def _compare(op: str, lo: Any, hi: Any, value: Any) -> bool:
    """Can some value v with lo <= v <= hi satisfy ``v op value``? Unknown bounds mean yes."""
    lo, hi = (None if _infinite(lo) else lo), (None if _infinite(hi) else hi)
    if isinstance(hi, dt.datetime):
        hi = hi + _STATS_SLACK
    if isinstance(lo, dt.datetime):
        lo = lo - _STATS_SLACK
    try:
        if op == "=":
            return (lo is None or lo <= value) and (hi is None or value <= hi)
        if op == "<":
            return lo is None or lo < value
        if op == "<=":
            return lo is None or lo <= value
        if op == ">":
            return hi is None or hi > value
        if op == ">=":
            return hi is None or hi >= value
        if op == "in":
            return any(_compare("=", lo, hi, v) for v in value)
    except TypeError:  # incomparable stats (e.g. mixed types): keep the file
        return True
    return True  # "!=", "not in": statistics cannot rule a file out safely


def _infinite(bound: Any) -> bool:
    """The statistics log an infinity as the largest double (JSON has no infinity): an open bound."""
    return isinstance(bound, float) and abs(bound) == sys.float_info.max


def finite(value: Any) -> bool:
    """False for a NaN or infinite filter value (or list of values): statistics cannot judge those."""
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def file_may_match(entry: dict, predicate: Predicate, partition_columns: set[str]) -> bool:
    """False only when the file's partition values or statistics prove no row matches."""
    for col, op, value in predicate:
        if col in partition_columns:
            if not _value_matches(entry.get(f"partition.{col}"), op, value):
                return False
            continue
        if entry.get("num_records") is not None and entry.get(f"null_count.{col}") == entry["num_records"]:
            return False  # all null: no comparison can be true
        if not _compare(op, entry.get(f"min.{col}"), entry.get(f"max.{col}"), value):
            return False
    return True


def file_fully_matches(entry: dict, predicate: Predicate, partition_columns: set[str]) -> bool:
    """True when every row of the file matches, judged from partition values alone."""
    return all(col in partition_columns and _value_matches(entry.get(f"partition.{col}"), op, value)
               for col, op, value in predicate)


def _value_matches(actual: Any, op: str, value: Any) -> bool:
    if actual is None:
        return False
    return {
        "=": lambda: actual == value, "!=": lambda: actual != value, "<": lambda: actual < value,
        "<=": lambda: actual <= value, ">": lambda: actual > value, ">=": lambda: actual >= value,
        "in": lambda: actual in value, "not in": lambda: actual not in value,
    }[op]()
