"""Convert one column of a landed file to its contract type, with a reason for every bad value.

Input is text (CSV fields, JSON strings, Parquet string columns: parsed) or a typed Arrow array
(Parquet, JSON numbers and booleans: accepted when the type matches or widens losslessly). A typed
value of another type is a mismatch, converted through its text only when the column sets
``coerce`` (and counted). Pure Arrow; runs inside Spark tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchml.config import ColumnContract

UTC_US = pa.timestamp("us", tz="UTC")
ARROW_TYPES = {
    "string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(),
    "bool": pa.bool_(), "date": pa.date32(), "timestamp": UTC_US,
}
# What Spark, Python and the Delta statistics can hold: years 1-9999 (in UTC for timestamps).
MIN_US, MAX_US = -62135596800 * 10**6, 253402300800 * 10**6 - 1
MIN_DAY, MAX_DAY = -719162, 2932896
_PATTERNS = {  # RE2 (Arrow): \d is ASCII only
    "int32": r"^\s*[+-]?\d+\s*$",
    "int64": r"^\s*[+-]?\d+\s*$",
    "float64": r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$",
    "bool": r"^(?i:true|false|1|0)$",
}
_OFFSET = r"([zZ]|[+-]\d{2}(:?\d{2})?)$"
_SUB_US = r"\.\d{6}\d*[1-9]"  # a fraction with a non-zero digit after the sixth
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError)


@dataclass
class Column:
    """One column's raw values: ``values`` text or typed; ``problems`` {row: reason} found while
    reading (type mismatches); ``coerced`` rows converted under ``coerce: true``."""

    values: pa.Array
    problems: dict[int, str] = field(default_factory=dict)
    coerced: set[int] = field(default_factory=set)


def convert(column: Column, contract: ColumnContract) -> tuple[pa.Array, dict[int, str], set[int]]:
    """Typed array (bad values null), {row: reason} and the coerced rows."""
    arr = column.values.combine_chunks() if isinstance(column.values, pa.ChunkedArray) else column.values
    problems, coerced = dict(column.problems), set(column.coerced)
    arr = _decoded(arr)
    if not _is_text(arr.type) and not pa.types.is_null(arr.type) and not _native(arr.type, contract.type):
        arr = _mismatch(arr, contract, problems, coerced)
    if pa.types.is_null(arr.type):
        typed, bad = pa.nulls(len(arr), ARROW_TYPES[contract.type]), {}
    elif _is_text(arr.type):
        typed, bad = _from_text(arr.cast(pa.string()), contract)
    else:
        typed, bad = _from_typed(arr, contract)
    for i, reason in bad.items():
        problems.setdefault(i, reason)
    typed, out_of_range = _in_range(typed, contract)
    for i, reason in out_of_range.items():
        problems.setdefault(i, reason)
    if contract.required:
        for i in np.flatnonzero(pc.is_null(typed).to_numpy(zero_copy_only=False)):
            problems.setdefault(int(i), f"missing required field '{contract.name}'")
    if problems:
        typed = _null_at(typed, problems)
    return typed, problems, coerced - set(problems)


def _decoded(arr: pa.Array) -> pa.Array:
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)


def _native(t: pa.DataType, target: str) -> bool:
    """Arrow types that hold the contract type without a change of kind."""
    return {
        "string": _is_binary(t),
        "int32": pa.types.is_integer(t), "int64": pa.types.is_integer(t),
        "float64": pa.types.is_floating(t) or pa.types.is_integer(t),
        "bool": pa.types.is_boolean(t),
        "date": pa.types.is_date(t),
        "timestamp": pa.types.is_timestamp(t),
    }[target]


def _scalar(t: pa.DataType) -> bool:
    return not (pa.types.is_nested(t) or pa.types.is_union(t) or pa.types.is_dictionary(t))


def _mismatch(arr: pa.Array, contract: ColumnContract, problems: dict, coerced: set) -> pa.Array:
    """A typed column of another kind: its text under ``coerce``, otherwise every value is bad."""
    present = np.flatnonzero(pc.is_valid(arr).to_numpy(zero_copy_only=False))
    if contract.coerce and _scalar(arr.type):
        try:
            text = pc.cast(arr, pa.string())
        except _ARROW_ERRORS:
            pass
        else:
            coerced.update(int(i) for i in present)
            return text
    hint = " (set coerce: true to convert it)" if _scalar(arr.type) else ""
    for i in present:
        problems.setdefault(int(i), f"{contract.name}: holds {arr.type} where the contract says {contract.type}{hint}")
    return pa.nulls(len(arr), pa.null())


def _from_text(text: pa.Array, contract: ColumnContract) -> tuple[pa.Array, dict[int, str]]:
    if contract.type == "string":
        return text, {}
    if contract.type == "timestamp":
        return _text_timestamps(text, contract)
    pattern = _PATTERNS.get(contract.type)
    bad: dict[int, str] = {}
    if pattern:
        ok = pc.fill_null(pc.match_substring_regex(text, pattern), True)
        for i in np.flatnonzero(~ok.to_numpy(zero_copy_only=False)):
            bad[int(i)] = _not_valid(contract, text[int(i)].as_py())
        text = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    if contract.type == "bool":
        truthy = pc.is_in(pc.utf8_lower(text), value_set=pa.array(["true", "1"]))
        return pc.if_else(pc.is_null(text), pa.scalar(None, pa.bool_()), truthy), bad
    clean = pc.replace_substring_regex(pc.utf8_trim_whitespace(text), r"^\+", "")  # Arrow rejects "+5"
    typed, failed = isolate(clean, lambda a: pc.cast(a, ARROW_TYPES[contract.type]))
    for i in failed:
        bad.setdefault(i, _not_valid(contract, text[i].as_py()))
    return typed, bad


def _from_typed(arr: pa.Array, contract: ColumnContract) -> tuple[pa.Array, dict[int, str]]:
    if contract.type == "timestamp":
        return _typed_timestamps(arr, contract)
    target = ARROW_TYPES[contract.type]
    typed, failed = isolate(arr, lambda a: pc.cast(a, target))
    what = "not valid UTF-8" if contract.type == "string" else f"not a valid {contract.type}"
    return typed, {i: f"{contract.name}: {what} ({_show(arr[i])})" for i in failed}


def _text_timestamps(text: pa.Array, contract: ColumnContract) -> tuple[pa.Array, dict[int, str]]:
    text = pc.utf8_trim_whitespace(text)
    bad: dict[int, str] = {}
    finer = pc.fill_null(pc.match_substring_regex(text, _SUB_US), False)
    round_up = pc.fill_null(pc.match_substring_regex(text, r"\.\d{6}[5-9]"), False)
    if contract.sub_microsecond == "reject":
        for i in np.flatnonzero(finer.to_numpy(zero_copy_only=False)):
            bad[int(i)] = (f"{contract.name}: finer than a microsecond ({_clip(repr(text[int(i)].as_py()))}); "
                           "set sub_microsecond: floor or round to accept it")
        text = pc.if_else(finer, pa.scalar(None, pa.string()), text)
    text = pc.replace_substring_regex(text, r"(\.\d{6})\d+", r"\1")  # only zeros or a declared rounding left
    aware = pc.fill_null(pc.match_substring_regex(text, _OFFSET), False)
    typed, failed = isolate(pc.if_else(aware, text, pa.scalar(None, pa.string())), lambda a: pc.cast(a, UTC_US))
    for i in failed:
        bad.setdefault(i, _not_valid(contract, text[i].as_py()))
    naive = pc.and_(pc.invert(aware), pc.is_valid(text))
    if contract.naive_timezone:
        local, failed = isolate(pc.if_else(naive, text, pa.scalar(None, pa.string())),
                                lambda a: pc.cast(a, pa.timestamp("us")))
        for i in failed:
            bad.setdefault(i, _not_valid(contract, text[i].as_py()))
        localized, bad_local = _localize(local, contract)
        bad.update({i: r for i, r in bad_local.items() if i not in bad})
        typed = pc.if_else(aware, typed, localized)
    else:
        for i in np.flatnonzero(naive.to_numpy(zero_copy_only=False)):
            bad.setdefault(int(i), _not_valid(contract, text[int(i)].as_py())
                           + ": no UTC offset, and the contract declares no naive_timezone")
    if contract.sub_microsecond == "round":
        typed = pc.add(typed, pc.if_else(pc.and_(finer, round_up), pa.scalar(1, pa.duration("us")),
                                         pa.scalar(0, pa.duration("us"))))
    return typed, bad


def _typed_timestamps(arr: pa.Array, contract: ColumnContract) -> tuple[pa.Array, dict[int, str]]:
    """Any Arrow timestamp unit and time zone to microseconds in UTC (``sub_microsecond`` for ns)."""
    values = pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy(zero_copy_only=False)
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    bad: dict[int, str] = {}
    unit = arr.type.unit
    if unit in ("s", "ms"):
        factor = 10**6 if unit == "s" else 10**3
        fits = (values >= MIN_US // factor) & (values <= MAX_US // factor)
        for i in np.flatnonzero(valid & ~fits):
            bad[int(i)] = f"{contract.name}: outside years 1-9999 ({int(values[i])} {unit} since 1970)"
        us = np.where(fits, values, 0) * factor
    elif unit == "ns":
        remainder = values % 1000
        us = values // 1000
        finer = valid & (remainder != 0)
        if contract.sub_microsecond == "reject":
            for i in np.flatnonzero(finer):
                bad[int(i)] = (f"{contract.name}: finer than a microsecond ({int(values[i])} ns since 1970); "
                               "set sub_microsecond: floor or round to accept it")
        elif contract.sub_microsecond == "round":
            us = us + (remainder >= 500)
    else:
        us = values
    typed = pa.array(us, pa.timestamp("us"), mask=~valid)
    if arr.type.tz is not None:
        return typed.cast(UTC_US), bad
    if not contract.naive_timezone:
        for i in np.flatnonzero(valid):
            bad.setdefault(int(i), f"{contract.name}: a timestamp without time zone, and the contract "
                                   "declares no naive_timezone")
        return pa.nulls(len(arr), UTC_US), bad
    localized, bad_local = _localize(typed, contract)
    bad.update({i: r for i, r in bad_local.items() if i not in bad})
    return localized, bad


def _localize(local: pa.Array, contract: ColumnContract) -> tuple[pa.Array, dict[int, str]]:
    """Wall-clock times in ``naive_timezone`` to UTC; DST gaps and repeated hours are bad values."""
    typed, failed = isolate(local, lambda a: pc.assume_timezone(a, contract.naive_timezone).cast(UTC_US))
    return typed, {i: (f"{contract.name}: {_show(local[i])} does not exist or is ambiguous in "
                       f"{contract.naive_timezone} (a daylight-saving change)") for i in failed}


def _in_range(typed: pa.Array, contract: ColumnContract) -> tuple[pa.Array, dict[int, str]]:
    """Values that Spark, Python or the Delta log cannot hold: out of years 1-9999, NaN, infinities."""
    if contract.type == "float64":
        finite = pc.fill_null(pc.is_finite(typed), True).to_numpy(zero_copy_only=False)
        return typed, {int(i): f"{contract.name}: not a finite float64 ({typed[int(i)].as_py()})"
                       for i in np.flatnonzero(~finite)}
    if contract.type not in ("timestamp", "date"):
        return typed, {}
    low, high = (MIN_US, MAX_US) if contract.type == "timestamp" else (MIN_DAY, MAX_DAY)
    raw = pc.cast(typed, pa.int64() if contract.type == "timestamp" else pa.int32())
    outside = pc.fill_null(pc.or_(pc.less(raw, low), pc.greater(raw, high)), False)
    where = "in UTC " if contract.type == "timestamp" else ""
    return typed, {int(i): f"{contract.name}: outside years 1-9999 {where}({_show(typed[int(i)])})"
                   for i in np.flatnonzero(outside.to_numpy(zero_copy_only=False))}


def isolate(arr: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> tuple[pa.Array, list[int]]:
    """``fn`` over ``arr``; when Arrow rejects some values, bisect to find exactly which
    (about bad x log n calls, not one per value). Failed values become null."""
    try:
        return fn(arr), []
    except _ARROW_ERRORS:
        pass
    out_type = fn(pa.nulls(1, arr.type)).type
    pieces: list[pa.Array] = []
    bad: list[int] = []
    _bisect(arr, fn, 0, pieces, bad, out_type)
    return pa.concat_arrays(pieces), bad


def _bisect(arr: pa.Array, fn, offset: int, pieces: list, bad: list, out_type: pa.DataType) -> None:
    """``arr`` is known to fail as a whole: try each half."""
    mid = len(arr) // 2
    for part, start in ((arr.slice(0, mid), offset), (arr.slice(mid), offset + mid)):
        if not len(part):
            continue
        try:
            pieces.append(fn(part))
            continue
        except _ARROW_ERRORS:
            pass
        if len(part) == 1:
            bad.append(start)
            pieces.append(pa.nulls(1, out_type))
        else:
            _bisect(part, fn, start, pieces, bad, out_type)


def _null_at(arr: pa.Array, rows: dict[int, str]) -> pa.Array:
    mask = np.zeros(len(arr), dtype=bool)
    mask[list(rows)] = True
    return pc.if_else(pa.array(mask), pa.scalar(None, arr.type), arr)


def _not_valid(contract: ColumnContract, value) -> str:
    return f"{contract.name}: not a valid {contract.type} ({_clip(repr(value))})"


def _clip(text: str, limit: int = 80) -> str:
    """Reasons name the value, not all of it (the raw record keeps it whole)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _show(scalar: pa.Scalar) -> str:
    """A value for a reason text; never raises (timestamps beyond Python's range, binary)."""
    try:
        value = scalar.as_py()
    except (ValueError, OverflowError):
        return str(pc.cast(pa.array([scalar]), pa.string())[0])
    return _clip(repr(value) if isinstance(value, (str, bytes)) else str(value))
