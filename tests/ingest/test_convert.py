"""Column conversion under the contract: every Arrow type and unit a producer may write."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchml.config import ColumnContract, SourceConfig
from batchml.ingest.contract import parse

UTC = dt.timezone.utc
SOURCE = SourceConfig(
    landing_prefix="x", format="parquet", table="bronze.x", event_time_column="ts",
    columns=[ColumnContract(name="id", type="string", required=True),
             ColumnContract(name="ts", type="timestamp", required=True),
             ColumnContract(name="amount", type="float64"),
             ColumnContract(name="n", type="int32"),
             ColumnContract(name="flag", type="bool"),
             ColumnContract(name="day", type="date")])


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def with_column(name: str, **update) -> SourceConfig:
    return SOURCE.model_copy(update={"columns": [c.model_copy(update=update) if c.name == name else c
                                                 for c in SOURCE.columns]})


def rows(table: pa.Table, source: SourceConfig = SOURCE) -> list[dict]:
    """Parse ``table`` as a Parquet file; contract columns it lacks are added as all-null."""
    for c in source.columns:
        if c.name not in table.column_names:
            table = table.append_column(c.name, pa.nulls(table.num_rows, pa.string()))
    return parse(parquet(table), source).table.to_pylist()


def test_pandas_default_timestamp_ns_utc_is_accepted():
    """Issue 21, case 4: what pandas writes by default."""
    frame = pd.DataFrame({"id": ["a", "b"], "ts": pd.to_datetime(["2024-03-01T10:00:00Z", "2024-03-01T10:00:01.5Z"], format="ISO8601"),
                          "amount": [1.0, 2.0], "n": [1, 2], "flag": [True, False], "day": [None, None]})
    buf = io.BytesIO()
    frame.to_parquet(buf)
    assert "timestamp[ns, tz=UTC]" in str(pq.read_schema(io.BytesIO(buf.getvalue())).field("ts").type)
    out = parse(buf.getvalue(), SOURCE).table.to_pylist()
    assert [r["_error"] for r in out] == [None, None]
    assert out[1]["ts"] == dt.datetime(2024, 3, 1, 10, 0, 1, 500000, tzinfo=UTC)


@pytest.mark.parametrize("unit, tz, value", [
    ("s", "UTC", 1_700_000_000), ("ms", "Europe/Berlin", 1_700_000_000_000),
    ("us", "+05:30", 1_700_000_000_000_000), ("ns", "America/New_York", 1_700_000_000_000_000_000),
])
def test_every_timestamp_unit_and_time_zone_is_the_same_instant_in_utc(unit, tz, value):
    out = rows(pa.table({"id": ["a"], "ts": pa.array([value], pa.timestamp(unit, tz))}))
    assert out[0]["_error"] is None and out[0]["ts"] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize("policy, expected", [
    ("reject", None), ("floor", 123456), ("round", 123457),
])
def test_nanoseconds_need_a_declared_rounding(policy, expected):
    ns = pa.array([1_700_000_000_123_456_789, 1_700_000_000_000_001_000], pa.timestamp("ns", "UTC"))
    out = rows(pa.table({"id": ["a", "b"], "ts": ns}), with_column("ts", sub_microsecond=policy))
    assert out[1]["_error"] is None and out[1]["ts"].microsecond == 1  # whole microseconds always fit
    if expected is None:
        assert "finer than a microsecond" in out[0]["_error"] and "sub_microsecond" in out[0]["_error"]
    else:
        assert out[0]["_error"] is None and out[0]["ts"].microsecond == expected


def test_text_timestamps_with_nanoseconds_follow_the_same_rule():
    source = with_column("ts", sub_microsecond="round").model_copy(update={"format": "csv"})
    text = "id,ts,amount,n,flag,day\na,2024-01-01T00:00:00.1234565Z,,,,\nb,2024-01-01T00:00:00.999999999+01:00,,,,\n"
    out = parse(text.encode(), source).table.to_pylist()
    assert [r["ts"] for r in out] == [dt.datetime(2024, 1, 1, 0, 0, 0, 123457, tzinfo=UTC),
                                      dt.datetime(2023, 12, 31, 23, 0, 1, tzinfo=UTC)]


def test_naive_parquet_timestamps_need_a_time_zone_and_dst_gaps_are_rejected():
    local = pa.array([dt.datetime(2024, 3, 31, 2, 30), dt.datetime(2024, 10, 27, 2, 30), dt.datetime(2024, 6, 1, 12)],
                     pa.timestamp("us"))
    table = pa.table({"id": ["gap", "fold", "ok"], "ts": local})
    assert all("without time zone" in r["_error"] for r in rows(table))
    out = rows(table, with_column("ts", naive_timezone="Europe/Berlin"))
    assert "does not exist or is ambiguous in Europe/Berlin" in out[0]["_error"]
    assert "does not exist or is ambiguous" in out[1]["_error"]
    assert out[2]["_error"] is None and out[2]["ts"] == dt.datetime(2024, 6, 1, 10, tzinfo=UTC)


def test_timestamps_outside_years_1_to_9999_in_utc_are_rejected_not_crashing():
    """Issue 21, case 7: an OverflowError in the Delta statistics used to fail the date."""
    far = pa.array([10**15, 1_700_000_000_000], pa.timestamp("ms", "UTC"))
    out = rows(pa.table({"id": ["far", "ok"], "ts": far}))
    assert "outside years 1-9999" in out[0]["_error"] and out[1]["_error"] is None
    assert '"ts": "' in out[0]["_raw_record"]  # shown, although Python cannot hold the value
    text = ("id,ts,amount,n,flag,day\nlate,9999-12-31T23:00:00-05:00,,,,\nearly,0001-01-01T00:30:00+01:00,,,,\n"
            "ok,9999-12-31T23:59:59.999999Z,,,,\n")
    out = parse(text.encode(), SOURCE.model_copy(update={"format": "csv"})).table.to_pylist()
    assert ["outside years 1-9999 in UTC" in (r["_error"] or "") for r in out] == [True, True, False]


def test_list_and_invalid_utf8_binary_columns_reject_their_rows_only():
    """Issue 21, case 7."""
    ts = pa.array([1, 2, 3], pa.timestamp("s", "UTC"))
    out = rows(pa.table({"id": pa.array([["x"], None, ["y"]]), "ts": ts}))
    assert "id: holds list<" in out[0]["_error"] and "where the contract says string" in out[0]["_error"]
    assert out[1]["_error"] == "missing required field 'id'"
    out = rows(pa.table({"id": pa.array([b"ok", b"\xff\xfe", b"\xc3\xa9"]), "ts": ts}))
    assert [r["id"] for r in out] == ["ok", None, "\u00e9"]
    assert "id: not valid UTF-8" in out[1]["_error"] and "\\\\xff" in out[1]["_raw_record"]


def test_lossless_widening_is_accepted_and_lossy_values_are_rejected():
    ts = pa.array([1, 2, 3], pa.timestamp("s", "UTC"))
    table = pa.table({
        "id": pa.array(["a", "b", "c"]).dictionary_encode(), "ts": ts,
        "amount": pa.array([1.5, float("nan"), float("-inf")], pa.float32()),
        "n": pa.array([7, 2**40, -1], pa.int64()),
        "flag": pa.array([True, None, False]),
        "day": pa.array([dt.date(2024, 1, 1)] * 3, pa.date64()),
    })
    out = rows(table)
    assert out[0]["_error"] is None and (out[0]["id"], out[0]["amount"], out[0]["n"]) == ("a", 1.5, 7)
    assert "amount: not a finite float64 (nan)" in out[1]["_error"] and "n: not a valid int32" in out[1]["_error"]
    assert "amount: not a finite float64 (-inf)" in out[2]["_error"]
    big = rows(pa.table({"id": pa.array(["a"], pa.large_string()), "ts": ts[:1],
                         "amount": pa.array([2**53 + 1], pa.int64())}))
    assert "amount: not a valid float64 (9007199254740993)" in big[0]["_error"]


def test_typed_values_of_another_kind_need_coerce_and_are_counted():
    table = pa.table({"id": pa.array([12345, 7]), "ts": pa.array([1, 2], pa.timestamp("s", "UTC")),
                      "flag": pa.array([1, 0], pa.int8())})
    strict = rows(table)
    assert all("id: holds int64 where the contract says string (set coerce: true" in r["_error"] for r in strict)
    source = with_column("id", coerce=True).model_copy(update={"columns": [
        c.model_copy(update={"coerce": True}) if c.name in ("id", "flag") else c for c in SOURCE.columns]})
    out = rows(table, source)
    assert [(r["id"], r["flag"], r["_coerced"], r["_error"]) for r in out] == [
        ("12345", True, "id,flag", None), ("7", False, "id,flag", None)]


def test_a_parquet_string_column_is_parsed_like_csv_text():
    table = pa.table({"id": ["a", "b"], "ts": ["2024-03-01T10:00:00+01:00", "2024-03-01 10:00"],
                      "n": ["12", "x"], "day": ["2024-02-29", "2023-02-29"]})
    out = rows(table)
    assert out[0]["_error"] is None and out[0]["ts"] == dt.datetime(2024, 3, 1, 9, tzinfo=UTC)
    assert all(f in out[1]["_error"] for f in ("ts: not a valid timestamp", "n: not a valid int32",
                                               "day: not a valid date"))
