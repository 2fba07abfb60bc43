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
