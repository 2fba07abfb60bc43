"""A generated corpus of hostile landing files, each with the rows it must yield.

Every file plants known good rows (ids ``<fmt><file>g<k>``) and known bad rows, and says what
ingest must do with each: good rows land in bronze exactly once; bad rows land in quarantine
with their exact raw record (CSV/JSONL) and a reason naming the rule; a file that cannot be
read is quarantined whole. Nothing here is committed as a blob: it is all built from seeds.
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import json
import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = ["transaction_id", "event_time", "customer_id", "merchant_id", "merchant_category", "amount", "currency",
           "channel", "device_type", "device_id", "country", "customer_country", "card_present",
           "customer_tenure_days"]
BASE = {"transaction_id": None, "event_time": "2024-03-01T10:00:00+01:00", "customer_id": "cus_1",
        "merchant_id": "mer_1", "merchant_category": "grocery", "amount": "12.50", "currency": "EUR",
        "channel": "pos", "device_type": "", "device_id": "", "country": "DE", "customer_country": "DE",
        "card_present": "true", "customer_tenure_days": "100"}


@dataclass
class Bad:
    line: int | None  # row number ingest must report (None: the file is quarantined whole)
    raw: str | None  # exact raw record (None: not checked exactly, e.g. Parquet's JSON rendering)
    reason: str  # a substring of the reason
    marker: str | None = None  # Parquet: the row's device_id, found in its JSON raw record


@dataclass
class Planted:
    name: str
    data: bytes
    good: list[str] = field(default_factory=list)  # transaction ids that must land in bronze
    bad: list[Bad] = field(default_factory=list)
    file_error: str | None = None  # the file is quarantined whole with this reason
    duplicate_of: str | None = None  # same bytes as that file: recorded, not ingested again
    changes: str | None = None  # "before_staging" | "after_staging" | "vanishes": the landing zone changes mid-run
    later: "Planted | None" = None  # what the file holds after its change


# -- edge values: (column overrides) for good rows, (overrides, reason) for bad rows ------------------------

GOOD_TEXT = [
    {"merchant_category": "a\u2028b\u2029c\x85d\x0ce\x0bf\x1cg"},
    {"merchant_category": 'quote " and, comma'},
    {"merchant_category": "l1\nl2\r\nl3\rl4"},
    {"merchant_category": "n\n" * 1000},
    {"amount": "-0"}, {"amount": "1e-400"}, {"amount": " 7.25 "}, {"amount": "1.5E3"},
    {"customer_tenure_days": "+5"}, {"customer_tenure_days": "-0"},
    {"event_time": "2024-03-31T02:30:00+01:00"}, {"event_time": "2024-10-27T02:30:00+02:00"},
    {"event_time": "2024-01-01T00:00:00+14:00"}, {"event_time": "2024-01-01T00:00:00-12:00"},
    {"event_time": "2024-01-01T00:00:00+05:45"}, {"event_time": "2024-01-01T00:00:00.123Z"},
    {"event_time": "2024-01-01 00:00:00Z"}, {"event_time": "0001-01-01T00:00:00Z"},
    {"event_time": "9999-12-31T23:59:59.999Z"}, {"event_time": "2024-02-29T12:00:00+0530"},
    {"customer_id": "客户\U0001F600"}, {"device_type": "", "device_id": ""},
]
BAD_TEXT = [
    ({"amount": "NaN"}, "amount: not a valid float64"),
    ({"amount": "Infinity"}, "amount: not a valid float64"),
    ({"amount": "1e400"}, "amount: not a finite float64"),
    ({"customer_tenure_days": "99999999999"}, "customer_tenure_days: not a valid int32"),
    ({"customer_tenure_days": "9" * 5000}, "customer_tenure_days: not a valid int32"),
    ({"event_time": "2024-03-01T10:00:00"}, "no UTC offset"),
    ({"event_time": "0000-01-01T00:00:00Z"}, "outside years 1-9999"),
    ({"event_time": "9999-12-31T23:30:00-01:00"}, "outside years 1-9999"),
    ({"event_time": "2024-01-01T00:00:00.1234567Z"}, "finer than a microsecond"),
    ({"event_time": "2024-02-30T00:00:00Z"}, "event_time: not a valid timestamp"),
    ({"event_time": "2024-12-31T23:59:60Z"}, "event_time: not a valid timestamp"),
    ({"card_present": "yes"}, "card_present: not a valid bool"),
    ({"transaction_id": ""}, "missing required field 'transaction_id'"),
]


def _row(tid: str, overrides: dict) -> dict:
    return {**BASE, "transaction_id": tid, **overrides}


# -- CSV -------------------------------------------------------------------------------------------------

def _field(value: str, quote_all: bool) -> str:
    if value == "" and not quote_all:
        return ""
    if quote_all or any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _csv(records: list[str], newline: str) -> str:
    return newline.join(records) + newline


def csv_file(n: int, *, newline: str = "\n", bom: bool = False, quote_all: bool = False, compress: str = "",
             columns: list[str] = COLUMNS, huge: bool = False) -> Planted:
    """Good rows with edge values, bad rows of each kind; line numbers are found in the final text."""
    good_edges = GOOD_TEXT[n % len(GOOD_TEXT)], GOOD_TEXT[(n * 7 + 3) % len(GOOD_TEXT)]
    bad_edge, reason = BAD_TEXT[n % len(BAD_TEXT)]
    rows: list[tuple[str, str | None, str | None]] = [(",".join(_field(c, quote_all) for c in columns), None, None)]
    good = []
    for k, edge in enumerate([{}, *good_edges, {"device_id": "x" * 1_000_000} if huge else {}]):
        tid = f"c{n:03d}g{k}"
        rows.append((",".join(_field(_row(tid, edge)[c], quote_all) for c in columns), tid, None))
        good.append(tid)
    bad_values = _row(f"c{n:03d}b0", bad_edge)
    rows.insert(2, (",".join(_field(bad_values[c], quote_all) for c in columns), None, reason))
    short = ",".join(_field(_row(f"c{n:03d}b1", {})[c], quote_all) for c in columns[:-1])
    rows.append((short, None, f"wrong column count: expected {len(columns)}, got {len(columns) - 1}"))
    broken = ",".join(['"b2"x'] + [_field(_row("b2", {})[c], quote_all) for c in columns[1:]])
    rows.insert(3, (broken, None, "malformed CSV"))
    text = _csv([r for r, _, _ in rows], newline)
    bad, offset = [], 0
    for record, _, why in rows:
        if why:
            bad.append(Bad(_line_of(text, offset), record, why))
        offset += len(record) + len(newline)
    data = (("\ufeff" if bom else "") + text).encode()
    return Planted(f"c{n:03d}.csv" + compress, _compress(data, compress), good, bad)


def _line_of(text: str, offset: int) -> int:
    return 1 + len(re.findall(r"\r\n|\r|\n", text[:offset]))


def _compress(data: bytes, suffix: str) -> bytes:
    return {"": data, ".gz": gzip.compress(data) if suffix == ".gz" else b"",
            ".bz2": bz2.compress(data) if suffix == ".bz2" else b""}[suffix]


def csv_specials(start: int) -> list[Planted]:
    header = ",".join(COLUMNS)
    good_line = ",".join(_row("ok", {})[c] for c in COLUMNS)
    n = itertools.count(start)
    out = []

    def named(i: int, suffix: str = ".csv") -> str:
        return f"c{i:03d}{suffix}"

    i = next(n)
    out.append(Planted(named(i), f"{header}\n{good_line}\n".encode("utf-16"), file_error="UTF-16 byte-order mark"))
    i = next(n)  # Latin-1: rows with non-ASCII letters are rejected alone, the ASCII ones land
    latin = f"{header}\n" + ",".join(_row(f"c{i:03d}g0", {})[c] for c in COLUMNS) + "\n"
    bad_raw = ",".join(_row(f"c{i:03d}b0", {"merchant_category": "café"})[c] for c in COLUMNS)
    data = (latin + bad_raw + "\n").encode("latin-1")
    out.append(Planted(named(i), data, [f"c{i:03d}g0"],
                       [Bad(3, bad_raw.replace("é", "\\xe9"), "not valid UTF-8")]))
    whole = csv_file(i + 1000)
    for suffix, cut, why in ((".gz", lambda d: d[: len(d) // 2], "corrupt or truncated .gz"),
                             (".gz", lambda d: b"\x1f\x8b\x08\x00" + d[4:40], "corrupt or truncated .gz"),
                             (".bz2", lambda d: d[:30], "corrupt or truncated .bz2")):
        i = next(n)
        out.append(Planted(named(i, ".csv" + suffix), cut(_compress(whole.data, suffix)), file_error=why))
    i = next(n)  # two gzip members back to back: one file
    first, second = csv_file(i), csv_file(i + 2000)
    body = second.data.decode().split("\n", 1)[1]  # its header dropped, rows continue the first
    shift = first.data.decode().count("\n")
    out.append(Planted(named(i, ".csv.gz"), gzip.compress(first.data) + gzip.compress(body.encode()),
                       first.good + second.good,
                       first.bad + [Bad(b.line + shift - 1, b.raw, b.reason) for b in second.bad]))
    i = next(n)
    out.append(Planted(named(i), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
                       file_error="binary content"))
    for head, why in ((header + ",extra", "unexpected columns ['extra']"),
                      (header.replace(",amount", ""), "missing columns ['amount']"),
                      (header + ",amount", "duplicated columns ['amount']"),
                      ('"transaction_id"x,' + header, "header is not valid CSV")):
        i = next(n)
        out.append(Planted(named(i), f"{head}\n{good_line}\n".encode(), file_error=why))
    for body in ("", f"{header}\n", "\n\n", f"\ufeff{header}\r\n\r\n"):
        i = next(n)
        out.append(Planted(named(i), body.encode()))  # empty or header only: no records
    i = next(n)  # blank lines between records are not records
    rows = [",".join(_row(f"c{i:03d}g{k}", {})[c] for c in COLUMNS) for k in range(3)]
    out.append(Planted(named(i), f"\n{header}\n\n{rows[0]}\n\n\n{rows[1]}\r\n\r\n{rows[2]}".encode(),
                       [f"c{i:03d}g{k}" for k in range(3)]))
    i = next(n)  # a quote never closed, on the last record: rejected alone
    tail = f'"c{i:03d}b0,' + ",".join(_row("x", {})[c] for c in COLUMNS[1:])
    ok = ",".join(_row(f"c{i:03d}g0", {})[c] for c in COLUMNS)
    out.append(Planted(named(i), f"{header}\n{ok}\n{tail}\n".encode(), [f"c{i:03d}g0"],
                       [Bad(3, tail, "a quoted field is never closed")]))
    return out


def csv_corpus() -> list[Planted]:
    files = []
    variants = itertools.product(["\n", "\r\n", "\r"], [False, True], ["", ".gz", ".bz2"], [False, True],
                                 [COLUMNS, COLUMNS[::-1]])  # column order is free
    for n, (newline, bom, compress, quote_all, columns) in enumerate(variants):
        files.append(csv_file(n, newline=newline, bom=bom, compress=compress, quote_all=quote_all,
                              columns=columns, huge=n in (7, 40)))
    files += csv_specials(len(files))
    return files + _duplicates_and_changes(files, "c", csv_file)


# -- JSON Lines ---------------------------------------------------------------------------------------------

def _json_value(column: str, text: str):
    if column == "amount":
        return float(text) if text.strip() not in ("-0",) else -0.0
    if column == "card_present":
        return text == "true"
    if column == "customer_tenure_days":
        return int(text)
    return text or None


GOOD_JSON = [
    {"merchant_category": "a\u2028b\u2029c\x85d\x0ce"},
    {"customer_id": "\\ud83d\\ude00 escaped pair"},
    {"amount": "12.5"},  # a JSON string is parsed, as CSV text is
    {"card_present": "true", "customer_tenure_days": "7"},
    {"amount": -0.0}, {"amount": 12}, {"device_type": None},
    {"event_time": "2024-03-31T02:30:00+01:00"}, {"event_time": "0001-01-01T00:00:00Z"},
    {"merchant_category": "x" * 200_000},
]
BAD_JSON = [  # (line text builder, reason)
    (lambda tid: _obj(tid, transaction_id=12345), "transaction_id: a JSON number (12345) where the contract says string"),
    (lambda tid: _obj(tid).replace('"amount": 12.5', '"amount": NaN'), "NaN is not a JSON value"),
    (lambda tid: _obj(tid).replace('"amount": 12.5', '"amount": -Infinity'), "-Infinity is not a JSON value"),
    (lambda tid: _obj(tid).replace('"amount": 12.5', '"amount": 1e400'), "amount: not a finite float64"),
    (lambda tid: _obj(tid).replace('"customer_tenure_days": 100', '"customer_tenure_days": ' + "7" * 5000),
     "customer_tenure_days: not a valid int32"),
    (lambda tid: _obj(tid, customer_tenure_days=1.5), "customer_tenure_days: not a valid int32 ('1.5')"),
    (lambda tid: _obj(tid, card_present=1), "card_present: a JSON number (1) where the contract says bool"),
    (lambda tid: _obj(tid, event_time=1709283600), "event_time: a JSON number"),
    (lambda tid: _obj(tid, merchant_category={"nested": [1, {"deeper": True}]}), "merchant_category: a JSON object"),
    (lambda tid: _obj(tid, customer_id="\ud800"), "customer_id: a lone UTF-16 surrogate"),
    (lambda tid: "[" * 50_000 + "]" * 50_000, "nested deeper"),
    (lambda tid: _obj(tid)[:-1] + f', "transaction_id": "{tid}x"}}', "duplicate field names ['transaction_id']"),
    (lambda tid: _obj(tid)[:40], "malformed JSON"),
    (lambda tid: "[1, 2]", "a record must be an object"),
    (lambda tid: _obj(tid, surprise=1), "unexpected fields ['surprise']"),
    (lambda tid: _obj(tid, event_time="2024-03-01T10:00:00"), "no UTC offset"),
]


def _obj(tid: str, **overrides) -> str:
    values = {c: _json_value(c, BASE[c]) for c in COLUMNS}
    values.update({"transaction_id": tid, "amount": 12.5, "customer_tenure_days": 100, **overrides})
    return json.dumps(values)


def _good_json(tid: str, edge: dict) -> str:
    values = {c: _json_value(c, BASE[c]) for c in COLUMNS}
    values.update(transaction_id=tid, **edge)
    text = json.dumps(values, ensure_ascii=False)
    return text.replace("\\\\ud83d\\\\ude00", "\\ud83d\\ude00")  # a real escaped surrogate pair


def jsonl_file(n: int, *, newline: str = "\n", compress: str = "", blank_lines: bool = False) -> Planted:
    lines, good, bad = [], [], []
    for k, edge in enumerate([{}, GOOD_JSON[n % len(GOOD_JSON)], GOOD_JSON[(n * 3 + 1) % len(GOOD_JSON)]]):
        tid = f"j{n:03d}g{k}"
        lines.append(_good_json(tid, edge))
        good.append(tid)
    for k in range(2):
        build, reason = BAD_JSON[(2 * n + k) % len(BAD_JSON)]
        lines.insert(1 + 2 * k, build(f"j{n:03d}b{k}"))
        bad.append((lines[1 + 2 * k], reason))
    if blank_lines:
        lines.insert(2, "  \t")
        lines.append("")
    text = newline.join(lines) + newline
    physical = text.split("\n")
    found = []
    for raw, reason in bad:
        number = next(i for i, p in enumerate(physical, 1) if (p[:-1] if p.endswith("\r") else p) == raw)
        found.append(Bad(number, raw, reason))
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate only ever appears escaped
    return Planted(f"j{n:03d}.jsonl" + compress, _compress(data, compress), good, found)


def jsonl_specials(start: int) -> list[Planted]:
    n = itertools.count(start)
    out = []
    i = next(n)  # old-Mac CR line ends are not JSON Lines: one record, rejected whole, nothing lost
    lines = [_good_json(f"j{i:03d}x{k}", {}) for k in range(3)]
    out.append(Planted(f"j{i:03d}.jsonl", "\r".join(lines).encode(), [],
                       [Bad(1, "\r".join(lines), "malformed JSON: Extra data")]))
    i = next(n)
    good = _good_json(f"j{i:03d}g0", {})
    raw = b'{"transaction_id": "j' + str(i).encode() + b'b0", "merchant_category": "caf\xe9"}'
    out.append(Planted(f"j{i:03d}.jsonl", good.encode() + b"\n" + raw + b"\n", [f"j{i:03d}g0"],
                       [Bad(2, raw.decode("latin-1").replace("é", "\\xe9"), "not valid UTF-8")]))
    whole = jsonl_file(i + 1000)
    i = next(n)
    out.append(Planted(f"j{i:03d}.jsonl.gz", gzip.compress(whole.data)[:-9], file_error="corrupt or truncated .gz"))
    i = next(n)
    out.append(Planted(f"j{i:03d}.jsonl", whole.data.decode().encode("utf-16"), file_error="UTF-16 byte-order mark"))
    i = next(n)
    out.append(Planted(f"j{i:03d}.jsonl", b"\x00\x01\x02garbage\x00", file_error="binary content"))
    for body in (b"", b"\n\n  \n", "\ufeff".encode()):
        i = next(n)
        out.append(Planted(f"j{i:03d}.jsonl", body))
    return out


def jsonl_corpus() -> list[Planted]:
    files = []
    for n, (newline, compress, blank) in enumerate(itertools.product(["\n", "\r\n"], ["", ".gz"], [False, True])):
        files.append(jsonl_file(n, newline=newline, compress=compress, blank_lines=blank))
    for n in range(len(files), 48):  # every good and bad edge, several times
        files.append(jsonl_file(n, newline="\r\n" if n % 2 else "\n"))
    files += jsonl_specials(len(files))
    return files + _duplicates_and_changes(files, "j", jsonl_file)


# -- Parquet ------------------------------------------------------------------------------------------------

BASE_S = 1_709_283_600  # 2024-03-01T09:00:00Z
SCALE = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def parquet_file(n: int, unit: str, tz: str | None, *, strings: str = "plain", ints: pa.DataType = pa.int32(),
                 floats: pa.DataType = pa.float64(), row_group_size: int | None = None) -> Planted:
    """Six rows: three good, a null id, a non-finite amount, and a sixth that breaks what this file's
    types can break (nanoseconds, a year past 9999, an int too wide); ``device_id`` marks each row."""
    marks = [f"p{n:03d}g{k}" for k in range(3)] + [f"p{n:03d}b{k}" for k in range(3)]
    ids = [m if k != 3 else None for k, m in enumerate(marks)]
    times = [(BASE_S + k) * SCALE[unit] for k in range(6)]
    amounts = [12.5, -0.0, 1e-300, 1.0, float("nan") if n % 2 else float("inf"), 1.0]
    tenure = [100, 0, 5, 1, 1, 1]
    bad = [Bad(4, None, "missing required field 'transaction_id'", marks[3]),
           Bad(5, None, "amount: not a finite float64", marks[4])]
    if unit == "ns":
        times[5] += 7
        bad.append(Bad(6, None, "finer than a microsecond", marks[5]))
    elif unit in ("s", "ms"):
        times[5] = 10**12 * SCALE[unit]  # year 33658
        bad.append(Bad(6, None, "outside years 1-9999", marks[5]))
    elif pa.types.is_int64(ints):
        tenure[5] = 2**40
        bad.append(Bad(6, None, "customer_tenure_days: not a valid int32", marks[5]))
    good = [ids[k] for k in range(3)] + ([ids[5]] if len(bad) == 2 else [])
    if tz is None:  # naive: the demo contract declares no naive_timezone, so every row is rejected
        sixth = bad[2].reason if len(bad) == 3 else "without time zone"  # a unit's own problem comes first
        good, bad = [], [Bad(k + 1, None, "without time zone" if k < 5 else sixth, marks[k]) for k in range(6)]
    table = pa.table({
        "transaction_id": _strings(ids, strings), "event_time": pa.array(times, pa.timestamp(unit, tz)),
        "customer_id": ["cus_1"] * 6, "merchant_id": ["mer_1"] * 6, "merchant_category": ["grocery"] * 6,
        "amount": pa.array(amounts, floats), "currency": ["EUR"] * 6, "channel": ["pos"] * 6,
        "device_type": pa.nulls(6, pa.string()), "device_id": marks, "country": ["DE"] * 6,
        "customer_country": ["DE"] * 6, "card_present": [True] * 6, "customer_tenure_days": pa.array(tenure, ints),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size)
    return Planted(f"p{n:03d}.parquet", buf.getvalue(), good, bad)


def _strings(values: list, kind: str) -> pa.Array:
    if kind == "dictionary":
        return pa.array(values).dictionary_encode()
    if kind == "large":
        return pa.array(values, pa.large_string())
    if kind == "binary":
        return pa.array([None if v is None else v.encode() for v in values], pa.binary())
    return pa.array(values, pa.string())


def parquet_specials(start: int) -> list[Planted]:
    n = itertools.count(start)
    out = []
    base = parquet_file(900, "us", "UTC")
    table = pq.read_table(io.BytesIO(base.data))
    markers = table.column("device_id").to_pylist()

    def variant(i: int, table: pa.Table, good: list, bad: list, suffix: str = ".parquet", **kw) -> Planted:
        buf = io.BytesIO()
        pq.write_table(table, buf, **kw)
        data = buf.getvalue()
        return Planted(f"p{i:03d}{suffix}", gzip.compress(data) if suffix.endswith(".gz") else data, good, bad)

    def renamed(i: int) -> pa.Table:
        ids = [None if t is None else t.replace("p900", f"p{i:03d}") for t in table.column("transaction_id").to_pylist()]
        marks = [m.replace("p900", f"p{i:03d}") for m in markers]
        return table.set_column(0, "transaction_id", pa.array(ids)).set_column(9, "device_id", pa.array(marks))

    def expected(i: int) -> tuple[list, list]:
        return ([g.replace("p900", f"p{i:03d}") for g in base.good],
                [Bad(b.line, None, b.reason, b.marker.replace("p900", f"p{i:03d}")) for b in base.bad])

    i = next(n)  # list where the contract says string: every non-null row is rejected alone
    t = renamed(i)
    lists = pa.array([[x] if x else None for x in t.column("transaction_id").to_pylist()])
    out.append(variant(i, t.set_column(0, "transaction_id", lists), [],
                       [Bad(k + 1, None, "missing required field" if k == 3 else "holds list<",
                            t.column("device_id")[k].as_py()) for k in range(6)]))
    i = next(n)  # invalid UTF-8 binary in a string column
    t = renamed(i)
    ids = [None if x is None else (x.encode() if k != 2 else b"\xff\xfe") for k, x in
           enumerate(t.column("transaction_id").to_pylist())]
    good, bad = expected(i)
    out.append(variant(i, t.set_column(0, "transaction_id", pa.array(ids, pa.binary())),
                       [g for g in good if not g.endswith("g2")],
                       bad + [Bad(3, None, "transaction_id: not valid UTF-8", t.column("device_id")[2].as_py())]))
    i = next(n)  # a struct where the contract says string
    t = renamed(i)
    structs = pa.array([{"a": 1}] * 6)
    out.append(variant(i, t.set_column(4, "merchant_category", structs), [],
                       [Bad(k + 1, None, "holds struct<", t.column("device_id")[k].as_py()) for k in range(6)]))
    i = next(n)  # an integer column where the contract says bool: a mismatch without coerce
    t = renamed(i)
    out.append(variant(i, t.set_column(12, "card_present", pa.array([1] * 6, pa.int8())), [],
                       [Bad(k + 1, None, "holds int8 where the contract says bool", t.column("device_id")[k].as_py())
                        for k in range(6)]))
    i = next(n)  # gzip-compressed Parquet and many row groups
    good, bad = expected(i)
    out.append(variant(i, renamed(i), good, bad, suffix=".parquet.gz", row_group_size=1))
    i = next(n)  # columns in another order, plus dictionary pages
    good, bad = expected(i)
    t = renamed(i)
    out.append(variant(i, t.select(t.column_names[::-1]), good, bad, use_dictionary=True))
    for i, data, why in ((next(n), base.data[: len(base.data) // 2], "not a readable Parquet file"),
                         (next(n), b"PAR1" + b"\x00" * 64 + b"PAR1", "not a readable Parquet file"),
                         (next(n), None, "unexpected columns ['extra']"),
                         (next(n), None, "missing columns ['amount']")):
        if data is None:
            t = renamed(i)
            t = t.append_column("extra", pa.array([1] * 6)) if "extra" in why else t.drop_columns(["amount"])
            buf = io.BytesIO()
            pq.write_table(t, buf)
            data = buf.getvalue()
        out.append(Planted(f"p{i:03d}.parquet", data, file_error=why))
    i = next(n)
    out.append(variant(i, renamed(i).slice(0, 0), [], []))  # no rows: "empty"
    return out


def parquet_corpus() -> list[Planted]:
    files = []
    units, zones = ["s", "ms", "us", "ns"], ["UTC", "Europe/Berlin", "+05:30", "America/New_York", None]
    kinds = ["plain", "dictionary", "large", "binary"]
    for n, (unit, tz, _) in enumerate(itertools.product(units, zones, range(2))):
        files.append(parquet_file(n, unit, tz, strings=kinds[n % 4], ints=[pa.int32(), pa.int64(), pa.int16()][n % 3],
                                  floats=[pa.float64(), pa.float32()][n % 5 % 2], row_group_size=2 if n % 3 == 0 else None))
    files += parquet_specials(len(files))
    return files + _duplicates_and_changes(files, "p", lambda i: parquet_file(i, "us", "UTC"))


# -- the same bytes under two names; files that change while ingest reads them ------------------------------

def _duplicates_and_changes(files: list[Planted], prefix: str, make) -> list[Planted]:
    """Two duplicates (same bytes, later names); one file replaced before staging, one after, one
    deleted after the listing."""
    extra = []
    for original in (files[0], files[3]):
        extra.append(Planted("z-copy-of-" + original.name, original.data, duplicate_of=original.name))
    before, after, gone = make(700), make(701), make(704)
    before.changes, before.later = "before_staging", make(702)
    after.changes, after.later = "after_staging", make(703)
    gone.changes = "vanishes"
    return extra + [before, after, gone]
