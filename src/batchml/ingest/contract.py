"""Apply a schema contract to one landed file: typed rows plus a reason for every bad row.

Pure functions over bytes and Arrow data; they run inside Spark tasks. Nothing is dropped: each
record becomes exactly one output row, accepted (``_error`` null) or not. A file that cannot be
read at all raises ``UnreadableFile`` and is quarantined whole. The rules (docs/ingest.md):

- compression by name suffix (``.gz``, ``.bz2``, ``.zst``, ``.lz4``); a corrupt or truncated
  stream makes the file unreadable;
- text is UTF-8, with or without a BOM; invalid bytes make their record bad; NUL bytes or a
  UTF-16/32 byte-order mark make the file unreadable;
- CSV follows RFC 4180: a quoted field may hold line breaks; a record ends at CRLF, LF or a lone
  CR (U+2028, U+0085 and form feeds are data). ``_row_number`` is the physical line where the
  record starts and ``_raw_record`` its exact text;
- JSON Lines: records end at LF only (a trailing CR is dropped).
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import json
import re
import sys
import zlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from batchml.config import ColumnContract, SourceConfig
from batchml.ingest.convert import ARROW_TYPES, Column, convert

csv.field_size_limit(sys.maxsize)  # a huge field is data, not an error: the file is in memory anyway

META_FIELDS = [
    pa.field("_row_number", pa.int64()),  # physical line where the record starts (CSV/JSONL), or 1-based row
    pa.field("_raw_record", pa.string()),  # the record's exact text, kept only for rejected rows
    pa.field("_error", pa.string()),  # null = accepted
    pa.field("_coerced", pa.string()),  # columns converted under `coerce: true`, comma-separated
]


class UnreadableFile(ValueError):
    """The whole file cannot be read under the contract; it is quarantined as one unit."""


class _NotJson(ValueError):
    """Valid for Python's json module, not for JSON (NaN, Infinity, duplicate names)."""


# What a file's bytes can make parsing raise (UnreadableFile and whatever a case not foreseen here
# raises: decompression, decoding, Arrow casts). ingest catches exactly these at the file boundary,
# so one file can never fail another file or the run date.
CONTENT_ERRORS = (UnreadableFile, csv.Error, UnicodeError, ValueError, OverflowError, RecursionError,
                  EOFError, zlib.error, OSError, pa.ArrowException)
_DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, ValueError)  # ArrowInvalid is a ValueError
_PYTHON_CODECS = {".gz": gzip.decompress, ".bz2": bz2.decompress}  # both read concatenated members
_ARROW_CODECS = {".zst": "zstd", ".lz4": "lz4"}
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_TERMINATOR = re.compile(r"(?:\r\n|\r|\n)\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes (surrogateescape) or a JSON "\ud800"
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass
class Parsed:
    table: pa.Table  # contract columns + META_FIELDS, one row per record


def output_schema(source: SourceConfig) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in source.columns] + META_FIELDS)


def parse(data: bytes, source: SourceConfig, name: str = "") -> Parsed:
    """Parse one file's bytes (``name``: the delivered file name, for its compression suffix)."""
    data = _decompress(data, name.lower())
    if source.format == "parquet":
        return _parse_parquet(data, source)
    text = _decode(data)
    return _parse_csv(text, source) if source.format == "csv" else _parse_jsonl(text, source)


def _decompress(data: bytes, name: str) -> bytes:
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in _PYTHON_CODECS and suffix not in _ARROW_CODECS:
        return data
    try:
        if suffix in _PYTHON_CODECS:
            return _PYTHON_CODECS[suffix](data)
        with pa.CompressedInputStream(pa.BufferReader(data), _ARROW_CODECS[suffix]) as stream:
            return stream.read()
    except _DECOMPRESSION_ERRORS as exc:
        raise UnreadableFile(f"corrupt or truncated {suffix} compression: {exc}") from None


def _decode(data: bytes) -> str:
    for bom, encoding in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                          (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if data.startswith(bom):
            raise UnreadableFile(f"not UTF-8 text: it starts with a {encoding} byte-order mark")
    if b"\x00" in data:
        raise UnreadableFile("binary content (NUL bytes) in a text file")
    text = data.decode("utf-8", "surrogateescape")  # invalid bytes are found per record
    return text[1:] if text.startswith("\ufeff") else text


class _Lines:
    """Physical lines for csv.reader, counting how many it consumed (records may span lines)."""

    def __init__(self, lines: list[str]):
        self.lines, self.next_index, self.ran_out = lines, 0, False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.next_index >= len(self.lines):
            self.ran_out = True
            raise StopIteration
        self.next_index += 1
        return self.lines[self.next_index - 1]


def _parse_csv(text: str, source: SourceConfig) -> Parsed:
    lines = _LINE.findall(text)
    undecodable = {i for i, line in enumerate(lines) if _SURROGATE.search(line)} if _SURROGATE.search(text) else set()
    src = _Lines(lines)
    reader = csv.reader(src, strict=True)
    header = _csv_header(reader, src, undecodable, source)
    if header is None:
        return _assemble({}, [], lambda i: "", [], source)  # empty or blank file
    index = {name: i for i, name in enumerate(header)}
    wanted = [c.name for c in source.columns]
    values = {name: [] for name in wanted}
    spans, errors = [], []
    while True:
        start, src.ran_out = src.next_index, False
        try:
            row, err = next(reader), None
        except StopIteration:
            break
        except csv.Error as exc:
            row, err = None, f"malformed CSV: {exc}"
            if src.ran_out:  # a quote never closed: reject its first line only, go on after it
                err, src.next_index = "malformed CSV: a quoted field is never closed", start + 1
                reader = csv.reader(src, strict=True)
        if row == []:
            continue  # a blank line is not a record
        end = src.next_index
        if err is None and undecodable.intersection(range(start, end)):
            err = "not valid UTF-8 (undecodable bytes, shown as \\x.. in the raw record)"
        if err is None and len(row) != len(header):
            err = f"wrong column count: expected {len(header)}, got {len(row)}"
        spans.append((start, end))
        errors.append(err)
        for name in wanted:
            values[name].append(None if err or row[index[name]] == "" else row[index[name]])
    columns = {name: Column(pa.array(v, pa.string())) for name, v in values.items()}
    raw = lambda i: _TERMINATOR.sub("", "".join(lines[spans[i][0]:spans[i][1]]))  # noqa: E731
    return _assemble(columns, [s + 1 for s, _ in spans], raw, errors, source)


def _csv_header(reader, src: _Lines, undecodable: set[int], source: SourceConfig) -> list[str] | None:
    """The first non-blank record, checked against the contract; None for an empty file."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise UnreadableFile(f"header is not valid CSV: {exc}") from None
        if row:
            break
    if undecodable.intersection(range(src.next_index)):
        raise UnreadableFile("header is not valid UTF-8")
    _check_columns(row, source)
    return row


def _parse_jsonl(text: str, source: SourceConfig) -> Parsed:
    contracts = {c.name: c for c in source.columns}
    cells = {name: [] for name in contracts}
    problems = {name: {} for name in contracts}
    coerced = {name: set() for name in contracts}
    numbers, raws, errors = [], [], []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip(" \t\r"):
            continue  # blank (JSON whitespace only)
        record, err = _json_record(line, source, contracts)
        row = len(numbers)
        numbers.append(number)
        raws.append(line)
        errors.append(err)
        for name, contract in contracts.items():
            text_value, problem, was_coerced = _json_cell(record.get(name) if err is None else None, contract)
            cells[name].append(text_value)
            if problem:
                problems[name][row] = problem
            if was_coerced:
                coerced[name].add(row)
    columns = {name: Column(pa.array(cells[name], pa.string()), problems[name], coerced[name]) for name in contracts}
    return _assemble(columns, numbers, raws.__getitem__, errors, source)


class _JsonNumber(str):
    """A JSON number kept as its literal text: exact, and never an int with 5,000 digits."""


def _no_constant(name: str):
    raise _NotJson(f"{name} is not a JSON value")


def _no_duplicates(pairs: list) -> dict:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set = set()
        duplicated = sorted({k for k, _ in pairs if k in seen or seen.add(k)})
        raise _NotJson(f"duplicate field names {duplicated}")
    return record


def _json_record(line: str, source: SourceConfig, contracts: dict) -> tuple[dict, str | None]:
    """The record of one line, or {} and the reason it is bad."""
    if _SURROGATE.search(line):
        return {}, "not valid UTF-8 (undecodable bytes, shown as \\x.. in the raw record)"
    try:
        record = json.loads(line, parse_int=_JsonNumber, parse_float=_JsonNumber, parse_constant=_no_constant,
                            object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        return {}, f"malformed JSON: {exc.msg} at column {exc.colno}"
    except _NotJson as exc:
        return {}, f"malformed JSON: {exc}"
    except RecursionError:
        return {}, "malformed JSON: nested deeper than the parser's limit"
    if not isinstance(record, dict):
        return {}, "malformed JSON: a record must be an object"
    extra = sorted(set(record) - set(contracts))
    if extra and not source.allow_extra_columns:
        return {}, f"unexpected fields {extra}"
    if _ESCAPED_SURROGATE.search(line):
        for name in contracts:
            value = record.get(name)
            if isinstance(value, str) and _SURROGATE.search(value):
                return {}, f"{name}: a lone UTF-16 surrogate escape (not valid Unicode)"
    return record, None


def _json_cell(value, contract: ColumnContract) -> tuple[str | None, str | None, bool]:
    """(text to parse, a type problem, coerced?) for one JSON value under its column's contract.

    Strings are parsed into the column's type, as CSV fields are. A number or boolean must match
    the column's type, or the column must set ``coerce``. Objects and arrays never fit a column.
    """
    if value is None:
        return None, None, False
    if isinstance(value, _JsonNumber):
        kind, text, fits = "number", str(value), contract.type in ("int32", "int64", "float64")
    elif isinstance(value, bool):
        kind, text, fits = "boolean", "true" if value else "false", contract.type == "bool"
    elif isinstance(value, str):
        return value, None, False
    else:
        kind = "object" if isinstance(value, dict) else "array"
        return None, f"{contract.name}: a JSON {kind} where the contract says {contract.type}", False
    if fits:
        return text, None, False
    if contract.coerce:
        return text, None, True
    return None, (f"{contract.name}: a JSON {kind} ({text[:40]}) where the contract says {contract.type} "
                  "(set coerce: true to convert it)"), False


def _parse_parquet(data: bytes, source: SourceConfig) -> Parsed:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableFile(f"not a readable Parquet file: {exc}") from None
    _check_columns(table.column_names, source)
    n = table.num_rows
    columns = {c.name: Column(table.column(c.name).combine_chunks()) for c in source.columns}
    return _assemble(columns, list(range(1, n + 1)), lambda i: _row_json(table, i), [None] * n, source)


def _row_json(table: pa.Table, i: int) -> str:
    """A Parquet row as JSON text, for the quarantine (binary shown with \\x escapes)."""
    row = {name: _plain(table.column(name)[i]) for name in table.column_names}
    try:
        return json.dumps(row, default=_json_default)
    except (RecursionError, ValueError):
        return str(row)


def _plain(scalar: pa.Scalar):
    try:
        return scalar.as_py()
    except (ValueError, OverflowError):  # e.g. a timestamp beyond Python's years 1-9999
        return pa.array([scalar]).to_string(window=1, skip_new_lines=True).strip("[] ")


def _json_default(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)  # dates, times, decimals


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


def _assemble(columns: dict[str, Column], numbers: list[int], raw_of, errors: list, source: SourceConfig) -> Parsed:
    """Convert every column; a row's reasons are its structural error, else its bad values."""
    n = len(numbers)
    problems = [[] if e is None else [e] for e in errors]
    coerced: list[list[str]] = [[] for _ in range(n)]
    arrays = []
    for contract in source.columns:
        typed, bad, converted = convert(columns.get(contract.name, Column(pa.nulls(n, pa.string()))), contract)
        for i, reason in bad.items():
            if errors[i] is None:  # a structural error already explains the whole row
                problems[i].append(reason)
        for i in converted:
            coerced[i].append(contract.name)
        arrays.append(typed)
    reasons = [safe_text("; ".join(p)) if p else None for p in problems]
    raws = [safe_text(raw_of(i)) if reasons[i] else None for i in range(n)]
    notes = [",".join(c) if c and not reasons[i] else None for i, c in enumerate(coerced)]
    arrays += [pa.array(numbers, pa.int64()), pa.array(raws, pa.string()), pa.array(reasons, pa.string()),
               pa.array(notes, pa.string())]
    return Parsed(pa.Table.from_arrays(arrays, schema=output_schema(source)))


def safe_text(text: str) -> str:
    """Text that Arrow can store: undecodable bytes as \\xNN, lone surrogates as \\udNNN."""
    if not _SURROGATE.search(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that did not come from an undecodable byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
