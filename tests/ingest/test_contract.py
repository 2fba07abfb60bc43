"""The schema contract on single files: every record is accepted or rejected with a reason."""

from __future__ import annotations

import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchml.config import ColumnContract, SourceConfig
from batchml.ingest.contract import UnreadableFile, parse

SOURCE = SourceConfig(
    landing_prefix="x", format="csv", table="bronze.x", event_time_column="ts",
    columns=[ColumnContract(name="id", type="string", required=True),
             ColumnContract(name="ts", type="timestamp", required=True),
             ColumnContract(name="amount", type="float64", required=True),
             ColumnContract(name="n", type="int32"),
             ColumnContract(name="flag", type="bool")])
HEADER = "id,ts,amount,n,flag"


def rows(text: str, source=SOURCE):
    return parse(text.encode(), source).table.select(["id", "ts", "amount", "_row_number", "_error"]).to_pylist()


def test_good_csv_rows_are_typed_and_timestamps_stored_in_utc():
    out = rows(f"{HEADER}\na,2024-03-01T14:05:09+01:00,1.5,3,true\nb,2024-03-01T00:00:00Z,2,,")
    assert [r["_error"] for r in out] == [None, None]
    assert out[0]["ts"] == dt.datetime(2024, 3, 1, 13, 5, 9, tzinfo=dt.timezone.utc)
    assert [r["_row_number"] for r in out] == [2, 3]


@pytest.mark.parametrize("line, reason", [
    ("a,2024-03-01T10:00:00Z,abc,1,true", "amount: not a valid float64 ('abc')"),
    (",2024-03-01T10:00:00Z,1.0,1,true", "missing required field 'id'"),
    ("a,2024-02-30T25:61:00+00:00,1.0,1,true", "ts: not a valid timestamp"),
    ("a,2024-03-01T10:00:00,1.0,1,true", "ts: not a valid timestamp"),  # no offset: time zone unknown
    ("a,2024-03-01T10:00:00Z,1.0,1", "wrong column count: expected 5, got 4"),
    ("a,2024-03-01T10:00:00Z,1.0,x1,true", "n: not a valid int32 ('x1')"),
    ("a,2024-03-01T10:00:00Z,1.0,1,maybe", "flag: not a valid bool ('maybe')"),
])
def test_each_bad_csv_record_names_its_rule_line_and_raw_text(line, reason):
    out = parse(f"{HEADER}\na,2024-03-01T10:00:00Z,1,1,true\n{line}".encode(), SOURCE).table.to_pylist()
    assert out[0]["_error"] is None
    assert reason in out[1]["_error"]
    assert out[1]["_row_number"] == 3 and out[1]["_raw_record"] == line


def test_naive_timestamps_accepted_only_with_a_declared_time_zone():
    columns = [c if c.name != "ts" else ColumnContract(name="ts", type="timestamp", required=True,
                                                      naive_timezone="Europe/Berlin") for c in SOURCE.columns]
    out = rows(f"{HEADER}\na,2024-03-01T10:00:00,1,1,true", SOURCE.model_copy(update={"columns": columns}))
    assert out[0]["ts"] == dt.datetime(2024, 3, 1, 9, 0, tzinfo=dt.timezone.utc)


def test_jsonl_bad_records():
    source = SOURCE.model_copy(update={"format": "jsonl"})
    lines = [json.dumps({"id": "a", "ts": "2024-03-01T10:00:00Z", "amount": 1.5, "n": 2, "flag": True}),
             '{"id": "b", "ts": "2024-03-01T10:00:00Z", "amount": 1.5',
             json.dumps({"ts": "2024-03-01T10:00:00Z", "amount": 2}),
             json.dumps({"id": "c", "ts": "2024-03-01T10:00:00Z", "amount": 2, "zzz": 1}),
             "", json.dumps([1, 2])]
    out = parse("\n".join(lines).encode(), source).table.to_pylist()
    assert [r["_row_number"] for r in out] == [1, 2, 3, 4, 6]  # blank line 5 is not a record
    assert out[0]["_error"] is None and out[0]["amount"] == 1.5
    assert out[1]["_error"].startswith("malformed JSON")
    assert out[2]["_error"] == "missing required field 'id'"
    assert out[3]["_error"] == "unexpected fields ['zzz']"
    assert "must be an object" in out[4]["_error"]


def test_parquet_nulls_in_required_columns_and_type_mismatch():
    source = SOURCE.model_copy(update={"format": "parquet"})
    table = pa.table({"id": ["a", None], "ts": pa.array([dt.datetime(2024, 1, 1)] * 2, pa.timestamp("us", "UTC")),
                      "amount": ["1.5", "oops"], "n": pa.array([1, 2], pa.int64()), "flag": [True, False]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    out = parse(buf.getvalue(), source).table.to_pylist()
    assert out[0]["_error"] is None and out[0]["amount"] == 1.5 and out[0]["_raw_record"] is None
    assert "missing required field 'id'" in out[1]["_error"] and "amount: not a valid float64" in out[1]["_error"]
    assert json.loads(out[1]["_raw_record"])["amount"] == "oops"


@pytest.mark.parametrize("data, fmt, message", [
    (b"\x00\x01\x02\x03", "csv", "binary content"),
    (b"\xff\xfe\xfa bad utf8", "jsonl", "not UTF-8"),
    (b"PAR1 truncated", "parquet", "not a readable Parquet file"),
    (b"id,amount\n1,2", "csv", "missing columns ['ts', 'n', 'flag']"),
    (f"{HEADER},extra\n".encode(), "csv", "unexpected columns ['extra']"),
])
def test_unreadable_files_are_rejected_whole(data, fmt, message):
    with pytest.raises(UnreadableFile, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(data, SOURCE.model_copy(update={"format": fmt}))


def test_empty_and_header_only_files_have_no_records():
    assert parse(b"", SOURCE).table.num_rows == 0
    assert parse(f"{HEADER}\n".encode(), SOURCE).table.num_rows == 0


# -- RFC 4180 CSV: records, physical line numbers and raw records ----------------------------------

GOOD = "2024-03-01T10:00:00Z,1.5,1,true"


def records(text: str, source=SOURCE) -> list[dict]:
    return parse(text.encode("utf-8", "surrogateescape"), source).table.to_pylist()


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_csv_line_endings_lf_crlf_and_old_mac_cr_are_all_readable(newline):
    out = records(newline.join([HEADER, f"a,{GOOD}", f"b,{GOOD}", "c,bad,1,1,true"]) + newline)
    assert [(r["id"], r["_row_number"], r["_error"] is None) for r in out] == [
        ("a", 2, True), ("b", 3, True), ("c", 4, False)]
    assert out[2]["_raw_record"] == "c,bad,1,1,true"  # the exact text, without its line break


def test_csv_unicode_separators_and_form_feeds_are_data_not_line_breaks():
    weird = "x\u2028y\x0cz\x85w\x1c\x1d\x1e\x0b"
    out = records(f"{HEADER}\n{weird},{GOOD}\nb,{GOOD}\nc,{GOOD},extra\n")
    assert [r["_row_number"] for r in out] == [2, 3, 4]
    assert out[0]["id"] == weird and out[0]["_error"] is None and out[1]["id"] == "b"
    assert out[2]["_raw_record"] == f"c,{GOOD},extra" and "wrong column count" in out[2]["_error"]


def test_csv_quoted_newlines_stay_in_one_record_and_line_numbers_are_physical():
    field = "line\n" * 1000 + "end"
    text = f'{HEADER}\r\n"{field}",{GOOD}\r\nb,{GOOD}\r\n"q\r\n""x""",bad,1,1,true\r\nd,{GOOD}\r\n'
    out = records(text)
    assert [r["_row_number"] for r in out] == [2, 1003, 1004, 1006]
    assert out[0]["id"] == field and out[1]["id"] == "b" and out[3]["id"] == "d"
    assert out[2]["_raw_record"] == '"q\r\n""x""",bad,1,1,true' and "ts: not a valid timestamp" in out[2]["_error"]


def test_csv_malformed_quotes_reject_only_their_record():
    text = f'{HEADER}\na,{GOOD}\n"b"x,{GOOD}\nc,{GOOD}\n"never closed,{GOOD}\ne,{GOOD}\n'
    out = records(text)
    assert [(r["id"], r["_row_number"]) for r in out] == [("a", 2), (None, 3), ("c", 4), (None, 5), ("e", 6)]
    assert out[1]["_error"].startswith("malformed CSV") and out[1]["_raw_record"] == f'"b"x,{GOOD}'
    assert "never closed" in out[3]["_error"] and out[3]["_raw_record"] == f'"never closed,{GOOD}'


def test_csv_undecodable_bytes_reject_their_record_and_show_as_escapes():
    data = f"\ufeff{HEADER}\na,{GOOD}\n".encode() + b"b\xff\xfe,x,1,1,true\n" + f"c,{GOOD}\n".encode()
    out = parse(data, SOURCE).table.to_pylist()
    assert [r["id"] for r in out] == ["a", None, "c"]  # a BOM before the header is fine
    assert "not valid UTF-8" in out[1]["_error"] and out[1]["_raw_record"] == "b\\xff\\xfe,x,1,1,true"


def test_csv_huge_field_is_data():
    out = records(f"{HEADER}\n{'x' * 300_000},{GOOD}\n")
    assert out[0]["_error"] is None and len(out[0]["id"]) == 300_000


# -- JSON Lines -----------------------------------------------------------------------------------

JSONL = SOURCE.model_copy(update={"format": "jsonl"})


def line(**fields) -> str:
    return json.dumps({"id": "a", "ts": "2024-03-01T10:00:00Z", "amount": 1.5, **fields}, ensure_ascii=False)


def test_jsonl_splits_only_on_newline_and_strips_a_trailing_cr():
    text = "\r\n".join([line(id="a\u2028b\x85c\x0cd"), line(id="e"), "\u2028", line(id="f")]) + "\r\n"
    out = records(text, JSONL)
    assert [(r["id"], r["_row_number"]) for r in out] == [("a\u2028b\x85c\x0cd", 1), ("e", 2), (None, 3), ("f", 4)]
    assert out[2]["_error"].startswith("malformed JSON") and out[2]["_raw_record"] == "\u2028"


@pytest.mark.parametrize("bad, reason", [
    ('{"id": "\\ud800", "ts": "2024-03-01T10:00:00Z", "amount": 1}', "lone UTF-16 surrogate"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper"),
    ('{"id": "a", "ts": "2024-03-01T10:00:00Z", "amount": 1, "n": ' + "9" * 5000 + "}", "n: not a valid int32"),
    ('{"id": "a", "ts": "2024-03-01T10:00:00Z", "amount": NaN}', "NaN is not a JSON value"),
    ('{"id": "a", "ts": "2024-03-01T10:00:00Z", "amount": -Infinity}', "-Infinity is not a JSON value"),
    ('{"id": "a", "ts": "2024-03-01T10:00:00Z", "amount": 1e400}', "amount: not a finite float64"),
    ('{"id": "a", "id": "b", "ts": "2024-03-01T10:00:00Z", "amount": 1}', "duplicate field names ['id']"),
    ('{"id": {"x": 1}, "ts": "2024-03-01T10:00:00Z", "amount": 1}', "id: a JSON object"),
    ('{"id": "a", "ts": "2024-03-01T10:00:00Z", "amount": 1, "flag": 1}', "flag: a JSON number (1)"),
])
def test_jsonl_hostile_records_are_rejected_alone(bad, reason):
    out = records("\n".join([line(id="ok1"), bad, line(id="ok2")]), JSONL)
    assert [r["_row_number"] for r in out] == [1, 2, 3] and [r["id"] for r in (out[0], out[2])] == ["ok1", "ok2"]
    assert reason in out[1]["_error"] and out[1]["_raw_record"] == bad
    assert out[0]["_error"] is None and out[2]["_error"] is None


def test_jsonl_valid_surrogate_pairs_and_negative_zero_are_accepted():
    out = records(line(id="\U0001F600", amount=-0.0) + "\n"
                  + '{"id": "\\ud83d\\ude00", "ts": "2024-03-01T10:00:00Z", "amount": -0}', JSONL)
    assert [r["id"] for r in out] == ["\U0001F600", "\U0001F600"] and all(r["_error"] is None for r in out)
    assert str(out[0]["amount"]) == "-0.0"


def test_a_number_where_a_string_is_declared_is_rejected_unless_coerce_is_declared():
    """Issue 21, case 8: never silently."""
    text = '{"id": 12345, "ts": "2024-03-01T10:00:00Z", "amount": 1}\n{"id": "x", "ts": "2024-03-01T10:00:00Z", "amount": 1}'
    strict = records(text, JSONL)
    assert "id: a JSON number (12345) where the contract says string" in strict[0]["_error"]
    assert strict[0]["id"] is None and strict[1]["_coerced"] is None
    columns = [c.model_copy(update={"coerce": True}) if c.name == "id" else c for c in SOURCE.columns]
    coerced = records(text, JSONL.model_copy(update={"columns": columns}))
    assert [(r["id"], r["_coerced"], r["_error"]) for r in coerced] == [("12345", "id", None), ("x", None, None)]


# -- compression and encodings -------------------------------------------------------------------------

def test_compressed_files_by_suffix_and_corrupt_archives_are_unreadable():
    import bz2
    import gzip

    text = f"{HEADER}\na,{GOOD}\n".encode()
    assert parse(gzip.compress(text), SOURCE, "day.csv.gz").table.column("id").to_pylist() == ["a"]
    assert parse(gzip.compress(text) + gzip.compress(text[len(HEADER) + 1:]), SOURCE, "x.CSV.GZ").table.num_rows == 2
    assert parse(bz2.compress(text), SOURCE, "day.csv.bz2").table.num_rows == 1
    for codec, suffix in (("zstd", ".zst"), ("lz4", ".lz4")):
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, codec) as out:
            out.write(text)
        assert parse(sink.getvalue().to_pybytes(), SOURCE, "day.csv" + suffix).table.num_rows == 1
    for data, name in ((gzip.compress(text)[:-12], "cut.csv.gz"), (b"\x1f\x8b\x08junk", "junk.csv.gz"),
                       (bz2.compress(text)[:20], "cut.csv.bz2")):
        with pytest.raises(UnreadableFile, match="corrupt or truncated"):
            parse(data, SOURCE, name)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_text_is_unreadable_with_its_reason(encoding):
    data = f"{HEADER}\na,{GOOD}\n".encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    with pytest.raises(UnreadableFile, match="not UTF-8 text: it starts with a UTF-(16|32) byte-order mark"):
        parse(data, SOURCE)
