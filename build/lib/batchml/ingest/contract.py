"""Apply a schema contract to one landed file: typed rows plus a reason for every bad row.

Pure functions over bytes and Arrow data; they run inside Spark tasks. Nothing is dropped:
each physical record becomes exactly one output row, accepted (``_error`` null) or not.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchml.config import ColumnContract, SourceConfig

ARROW_TYPES = {
    "string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(),
    "bool": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"),
}
META_FIELDS = [
    pa.field("_row_number", pa.int64()),  # physical line (CSV/JSONL) or 1-based row (Parquet)
    pa.field("_raw_record", pa.string()),  # kept only for rejected rows
    pa.field("_error", pa.string()),  # null = accepted
]
_PATTERNS = {
    "int32": re.compile(r"^\s*[+-]?\d+\s*$"),
    "int64": re.compile(r"^\s*[+-]?\d+\s*$"),
    "float64": re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"),
    "bool": re.compile(r"^(?i:true|false|1|0)$"),
}


class UnreadableFile(ValueError):
    """The whole file cannot be read under the contract; it is quarantined as one unit."""


@dataclass
class Parsed:
    table: pa.Table  # contract columns + META_FIELDS, one row per record


def output_schema(source: SourceConfig) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in source.columns] + META_FIELDS)


def parse(data: bytes, source: SourceConfig) -> Parsed:
    """Parse one file's bytes; raise UnreadableFile when no row can be trusted."""
    if source.format == "parquet":
        return _parse_parquet(data, source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if "\x00" in text:
        raise UnreadableFile("binary content (NUL bytes) in a text file")
    return _parse_csv(text, source) if source.format == "csv" else _parse_jsonl(text, source)


def _parse_csv(text: str, source: SourceConfig) -> Parsed:
    lines = text.splitlines()
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return _assemble({}, [], [], [], source)  # empty file
    except csv.Error as exc:
        raise UnreadableFile(f"header is not valid CSV: {exc}") from None
    _check_columns(header, source)
    index = {name: i for i, name in enumerate(header)}
    wanted = [c.name for c in source.columns]
    values = {name: [] for name in wanted}
    numbers, raws, errors = [], [], []
    previous_end = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row, err = None, f"malformed CSV: {exc}"
        else:
            err = None
        start, end = previous_end + 1, reader.line_num
        previous_end = end
        if row == []:
            continue  # blank line: not a record
        raw = "\n".join(lines[start - 1:end])
        if err is None and len(row) != len(header):
            err = f"wrong column count: expected {len(header)}, got {len(row)}"
        numbers.append(start)
        raws.append(raw)
        errors.append(err)
        for name in wanted:
            values[name].append(None if err or row[index[name]] == "" else row[index[name]])
    return _assemble(values, numbers, raws, errors, source)


def _parse_jsonl(text: str, source: SourceConfig) -> Parsed:
    wanted = [c.name for c in source.columns]
    allowed = set(wanted)
    values = {name: [] for name in wanted}
    numbers, raws, errors = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        err, record = None, {}
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                err, record = "malformed JSON: a record must be an object", {}
        except json.JSONDecodeError as exc:
            err = f"malformed JSON: {exc.msg} at column {exc.colno}"
        extra = sorted(set(record) - allowed)
        if extra and not source.allow_extra_columns:
            err = f"unexpected fields {extra}"
        numbers.append(number)
        raws.append(line)
        errors.append(err)
        for name in wanted:
            values[name].append(_json_text(record.get(name)))
    return _assemble(values, numbers, raws, errors, source)


def _json_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _parse_parquet(data: bytes, source: SourceConfig) -> Parsed:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise UnreadableFile(f"not a readable Parquet file: {exc}") from None
    _check_columns(table.column_names, source)
    n = table.num_rows
    values = {c.name: table.column(c.name) for c in source.columns}
    return _assemble(values, list(range(1, n + 1)), None, [None] * n, source, table)


def _check_columns(names: list[str], source: SourceConfig) -> None:
    wanted = [c.name for c in source.columns]
    missing = [c for c in wanted if c not in names]
    extra = [c for c in names if c not in wanted]
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if missing or duplicated or (extra and not source.allow_extra_columns):
        parts = [f"missing columns {missing}" if missing else "",
                 f"unexpected columns {extra}" if extra and not source.allow_extra_columns else "",
                 f"duplicated columns {duplicated}" if duplicated else ""]
        raise UnreadableFile("header does not match the contract: " + "; ".join(p for p in parts if p))


def _assemble(values: dict, numbers: list[int], raws: list | None, errors: list, source: SourceConfig,
              original: pa.Table | None = None) -> Parsed:
    n = len(numbers)
    columns, problems = [], [[] if e is None else [e] for e in errors]
    for contract in source.columns:
        raw = values.get(contract.name, pa.nulls(n, pa.string()))
        array, bad = coerce(raw, contract)
        for i in bad:
            if errors[i] is None:  # a structural error already explains the whole row
                problems[i].append(bad[i])
        columns.append(array)
    reasons = ["; ".join(p) if p else None for p in problems]
    if raws is None and original is not None:  # Parquet: raw record only for rejected rows
        raws = [None] * n
        for i in (i for i, r in enumerate(reasons) if r):
            raws[i] = json.dumps(original.slice(i, 1).to_pylist()[0], default=str)
    raws = [r if reasons[i] else None for i, r in enumerate(raws or [])]
    arrays = columns + [pa.array(numbers, pa.int64()), pa.array(raws, pa.string()), pa.array(reasons, pa.string())]
    return Parsed(pa.Table.from_arrays(arrays, schema=output_schema(source)))


def coerce(raw, contract: ColumnContract) -> tuple[pa.Array, dict[int, str]]:
    """Typed array (bad values null) and {row: reason} for values that break the contract."""
    target = ARROW_TYPES[contract.type]
    arr = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else (
        raw if isinstance(raw, pa.Array) else pa.array(raw, pa.string()))
    bad: dict[int, str] = {}
    if arr.type != target:
        arr, bad = _cast(arr, contract)
    if contract.required:
        missing = pc.is_null(arr).to_numpy(zero_copy_only=False)
        for i in missing.nonzero()[0]:
            bad.setdefault(int(i), f"missing required field '{contract.name}'")
    return arr, bad


def _cast(arr: pa.Array, contract: ColumnContract) -> tuple[pa.Array, dict[int, str]]:
    text = arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())
    pattern = _PATTERNS.get(contract.type)
    ok = pc.match_substring_regex(text, pattern.pattern) if pattern else pc.is_null(text, nan_is_null=False)
    ok = pc.fill_null(ok, True) if pattern else pc.or_(ok, pc.is_valid(text))  # nulls: the required check
    candidate = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    try:
        typed = _convert(candidate, contract)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        typed, ok = _convert_each(candidate, contract, ok)
    bad = {int(i): f"{contract.name}: not a valid {contract.type} ({text[int(i)].as_py()!r})"
           for i in pc.invert(ok).to_numpy(zero_copy_only=False).nonzero()[0]}
    return typed, bad


def _convert(text: pa.Array, contract: ColumnContract) -> pa.Array:
    if contract.type == "bool":
        truthy = pc.is_in(pc.utf8_lower(text), value_set=pa.array(["true", "1"]))
        return pc.if_else(pc.is_null(text), pa.scalar(None, pa.bool_()), truthy)
    if contract.type == "timestamp" and contract.naive_timezone:
        naive = pc.cast(text, pa.timestamp("us"))
        return pc.cast(pc.assume_timezone(naive, contract.naive_timezone), ARROW_TYPES["timestamp"])
    return pc.cast(pc.utf8_trim_whitespace(text), ARROW_TYPES[contract.type])


def _convert_each(text: pa.Array, contract: ColumnContract, ok: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Slow path after a bulk cast failed: find exactly which values do not convert."""
    out, flags = [], ok.to_pylist()
    for i, value in enumerate(text.to_pylist()):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(_convert(pa.array([value]), contract)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            out.append(None)
            flags[i] = False
    return pa.array(out, ARROW_TYPES[contract.type]), pa.array(flags)
