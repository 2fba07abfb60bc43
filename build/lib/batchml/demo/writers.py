"""Serialisation of simulated rows (CSV / JSON lines / Parquet), bad-record injection and
unreadable "bad files". Text is assembled with Arrow compute kernels, never row by row."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from . import entities as E
from .simulate import REASON_CODES

TX_COLUMNS = (
    "transaction_id", "event_time", "customer_id", "merchant_id", "merchant_category", "amount",
    "currency", "channel", "device_type", "device_id", "country", "customer_country",
    "card_present", "customer_tenure_days",
)  # fmt: skip
CB_COLUMNS = ("chargeback_id", "transaction_id", "reported_at", "reason_code", "amount")
TEXT_KINDS = ("bad_amount", "missing_field", "bad_timestamp", "wrong_column_count", "bad_tenure")
PARQUET_KINDS = ("null_required",)
_REQUIRED = ("transaction_id", "event_time", "customer_id", "merchant_id", "amount")
_BAD_AMOUNTS = ("N/A", "abc", "12.3.4", "1O.00")
_DROP = "\x01DROP"  # CSV sentinel: the field holding it is removed with its delimiter
_TS_UTC = pa.timestamp("us", tz="UTC")
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}

_HMS: pa.Array | None = None


def _hms_table() -> pa.Array:
    global _HMS
    if _HMS is None:
        _HMS = pc.cast(pa.array(np.arange(86400, dtype=np.int32), pa.time32("s")), pa.string())
    return _HMS


def _date_str(ordinal: int) -> str:
    return dt.date.fromordinal(ordinal).isoformat()


def _ids(prefix: str, values: np.ndarray, width: int, null_mask: np.ndarray | None = None) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(values, mask=null_mask), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _take(table: pa.Array, idx: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    return table.take(pa.array(idx.astype(np.int32), mask=null_mask))


def _money(values: np.ndarray) -> pa.Array:
    """Fixed two-decimal text, e.g. 1234.50."""
    cents = np.rint(values * 100).astype(np.int64)
    whole = pc.cast(pa.array(cents // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


def _iso_local(ordinal: int, sod: np.ndarray, offset_min: np.ndarray) -> pa.Array:
    """ISO-8601 local time with explicit offset, e.g. 2024-03-01T14:05:09+01:00."""
    local = sod + offset_min * 60
    dates = pa.array([_date_str(ordinal + d) + "T" for d in (-1, 0, 1)])
    offsets, inverse = np.unique(offset_min, return_inverse=True)
    labels = pa.array([f"{'+-'[o < 0]}{abs(o) // 60:02d}:{abs(o) % 60:02d}" for o in offsets.tolist()])
    return pc.binary_join_element_wise(
        _take(dates, local // 86400 + 1), _take(_hms_table(), local % 86400), _take(labels, inverse), ""
    )


def _iso_utc(epoch_s: np.ndarray) -> pa.Array:
    days = epoch_s // 86400
    uniq, inverse = np.unique(days, return_inverse=True)
    dates = pa.array([_date_str(int(d) + E.EPOCH_ORDINAL) + "T" for d in uniq])
    return pc.binary_join_element_wise(_take(dates, inverse), _take(_hms_table(), epoch_s % 86400), "Z", "")


def transaction_arrays(rows: dict, ordinal: int, first_index: int) -> dict[str, pa.Array | np.ndarray]:
    """Format-independent Arrow columns; ``event_time`` and ``amount`` stay numpy for now."""
    n = len(rows["sod"])
    no_device = rows["device_type"] < 0
    return {
        "transaction_id": _ids(f"tx_{ordinal}_", np.arange(first_index, first_index + n), 7),
        "event_time": rows["sod"],
        "customer_id": _ids("cus_", rows["customer"], 8),
        "merchant_id": _ids("mer_", rows["merchant"], 7),
        "merchant_category": _take(E.CATEGORY_PA, rows["category"]),
        "amount": rows["amount"],
        "currency": _take(E.CURRENCY_PA, rows["country"]),
        "channel": _take(E.CHANNEL_PA, rows["channel"]),
        "device_type": _take(E.DEVICE_TYPE_PA, np.maximum(rows["device_type"], 0), no_device),
        "device_id": _ids("dev_", rows["device_id"], 12, no_device),
        "country": _take(E.COUNTRY_PA, rows["country"]),
        "customer_country": _take(E.COUNTRY_PA, rows["home"]),
        "card_present": pa.array(rows["card_present"]),
        "customer_tenure_days": pa.array(rows["tenure"], pa.int32()),
    }


def _patch(arr: pa.Array, n: int, idx: np.ndarray, values) -> pa.Array:
    """Replace positions ``idx`` (ascending) with ``values`` (None -> null)."""
    if idx.size == 0:
        return arr
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    if values is None:
        values = pa.nulls(idx.size, arr.type)
    return pc.replace_with_mask(arr, pa.array(mask), pa.array(values, arr.type))


def _pick(rng: np.random.Generator, n: int, rate: float, n_kinds: int) -> tuple[np.ndarray, ...]:
    """Rows to corrupt, their kind and a variant number (deterministic given rng)."""
    idx = np.flatnonzero(rng.random(n) < rate) if rate > 0 else np.zeros(0, np.int64)
    return idx, rng.integers(0, n_kinds, idx.size), rng.integers(0, 1 << 16, idx.size)


def _bad_timestamps(cols: dict, idx: np.ndarray, variant: np.ndarray) -> list[str]:
    good = cols["event_time"].take(pa.array(idx)).to_pylist()
    return [
        f"{s[:4]}-02-30T{s[11:19]}{s[19:]}" if v % 2 else f"{s[:10]}T25:61:00+00:00"
        for s, v in zip(good, variant)
    ]


def _bad_tenure(cols: dict, idx: np.ndarray, variant: np.ndarray, json: bool) -> list[str]:
    days = cols["customer_tenure_days"].take(pa.array(idx)).to_pylist()
    text = '"unknown"' if json else "unknown"
    return [f"{d}.5" if v % 2 else text for d, v in zip(days, variant)]


def _with_text_time_and_amount(cols: dict, day_ordinal: int, offset_min: np.ndarray) -> dict:
    event_time = _iso_local(day_ordinal, cols["event_time"], offset_min)
    return dict(cols, event_time=event_time, amount=_money(cols["amount"]))


def to_csv(cols: dict, day_ordinal: int, offset_min: np.ndarray, rng, bad_rate: float) -> tuple[bytes, dict]:
    n = len(cols["transaction_id"])
    cols = _with_text_time_and_amount(cols, day_ordinal, offset_min)
    idx, kind, var = _pick(rng, n, bad_rate, len(TEXT_KINDS))
    counts = {k: int((kind == i).sum()) for i, k in enumerate(TEXT_KINDS)}
    sel = {k: (idx[kind == i], var[kind == i]) for i, k in enumerate(TEXT_KINDS)}
    i, v = sel["bad_amount"]
    cols["amount"] = _patch(cols["amount"], n, i, [_BAD_AMOUNTS[x % 4] for x in v])
    i, v = sel["missing_field"]
    for col, parity in (("customer_id", 0), ("merchant_id", 1)):
        cols[col] = _patch(cols[col], n, i[v % 2 == parity], None)
    i, v = sel["bad_timestamp"]
    cols["event_time"] = _patch(cols["event_time"], n, i, _bad_timestamps(cols, i, v))
    i, v = sel["wrong_column_count"]
    cols["currency"] = _patch(cols["currency"], n, i, [_DROP] * i.size)
    i, v = sel["bad_tenure"]
    if i.size:
        tenure = pc.cast(cols["customer_tenure_days"], pa.string())
        cols["customer_tenure_days"] = _patch(tenure, n, i, _bad_tenure(cols, i, v, json=False))
    body = _csv_bytes(pa.table({c: cols[c] for c in TX_COLUMNS}))
    if counts["wrong_column_count"]:
        body = body.replace(("," + _DROP).encode(), b"")
    return body, counts


def _csv_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    sink.write((",".join(table.column_names) + "\n").encode())
    pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    return sink.getvalue().to_pybytes()


def _json_field(key: str, text: pa.Array, quote: bool) -> pa.Array:
    if quote:
        text = pc.binary_join_element_wise('"', text, '"', "")
    return pc.binary_join_element_wise(f'"{key}":', text.fill_null("null"), "")


def _lines_bytes(lines: pa.Array) -> bytes:
    """Concatenation of a null-free string array (each element already ends in a newline)."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    _, offsets_buf, data = lines.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=len(lines) + 1, offset=4 * lines.offset)
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes()


def to_jsonl(cols: dict, day_ordinal: int, offset_min: np.ndarray, rng, bad_rate: float) -> tuple[bytes, dict]:
    n = len(cols["transaction_id"])
    text = _with_text_time_and_amount(cols, day_ordinal, offset_min)
    text["card_present"] = pc.if_else(cols["card_present"], "true", "false")
    text["customer_tenure_days"] = pc.cast(cols["customer_tenure_days"], pa.string())
    raw = {"amount", "card_present", "customer_tenure_days"}
    fields = {c: _json_field(c, text[c], c not in raw) for c in TX_COLUMNS}
    idx, kind, var = _pick(rng, n, bad_rate, len(TEXT_KINDS))
    counts = {k: int((kind == i).sum()) for i, k in enumerate(TEXT_KINDS)}
    sel = {k: (idx[kind == i], var[kind == i]) for i, k in enumerate(TEXT_KINDS)}
    i, v = sel["bad_amount"]
    fields["amount"] = _patch(fields["amount"], n, i, [f'"amount":"{_BAD_AMOUNTS[x % 4]}"' for x in v])
    i, v = sel["missing_field"]
    for col, parity in (("customer_id", 0), ("merchant_id", 1)):
        fields[col] = _patch(fields[col], n, i[v % 2 == parity], None)  # key absent
    i, v = sel["bad_timestamp"]
    fields["event_time"] = _patch(
        fields["event_time"], n, i, [f'"event_time":"{s}"' for s in _bad_timestamps(text, i, v)]
    )
    i, v = sel["bad_tenure"]
    fields["customer_tenure_days"] = _patch(
        fields["customer_tenure_days"], n, i,
        [f'"customer_tenure_days":{s}' for s in _bad_tenure(cols, i, v, json=True)],
    )  # fmt: skip
    body = pc.binary_join_element_wise(*fields.values(), ",", null_handling="skip")
    lines = pc.binary_join_element_wise("{", body, "}\n", "")
    i, v = sel["wrong_column_count"]
    if i.size:
        cut = [s[: max(1, len(s) // 2)] + "\n" for s in lines.take(pa.array(i)).to_pylist()]
        lines = _patch(lines, n, i, cut)
    return _lines_bytes(lines), counts


def to_parquet(cols: dict, day_ordinal: int, rng, bad_rate: float) -> tuple[bytes, dict]:
    n = len(cols["transaction_id"])
    start_s = (day_ordinal - E.EPOCH_ORDINAL) * 86400
    cols = dict(cols)
    cols["event_time"] = pa.array((start_s + cols["event_time"]) * 1_000_000, _TS_UTC)
    cols["amount"] = pa.array(cols["amount"], pa.float64())
    idx, _, var = _pick(rng, n, bad_rate, 1)
    for j, col in enumerate(_REQUIRED):
        cols[col] = _patch(cols[col], n, idx[var % len(_REQUIRED) == j], None)
    return _parquet_bytes(pa.table({c: cols[c] for c in TX_COLUMNS})), {"null_required": int(idx.size)}


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def chargebacks(cb: dict, fmt: str) -> bytes:
    """Chargeback file for one delivery date; ``cb`` holds numpy columns
    reported_s, tx_ordinal, tx_index, mode, amount."""
    order = np.lexsort((cb["tx_index"], cb["tx_ordinal"], cb["reported_s"]))
    cb = {k: v[order] for k, v in cb.items()}
    suffix = pc.binary_join_element_wise(
        pc.cast(pa.array(cb["tx_ordinal"]), pa.string()),
        pc.utf8_lpad(pc.cast(pa.array(cb["tx_index"]), pa.string()), 7, "0"),
        "_",
    )
    cols = {
        "chargeback_id": pc.binary_join_element_wise("cb_", suffix, ""),
        "transaction_id": pc.binary_join_element_wise("tx_", suffix, ""),
        "reported_at": None,
        "reason_code": _take(pa.array(REASON_CODES), cb["mode"]),
        "amount": None,
    }
    if fmt == "parquet":
        cols["reported_at"] = pa.array(cb["reported_s"] * 1_000_000, _TS_UTC)
        cols["amount"] = pa.array(cb["amount"], pa.float64())
        return _parquet_bytes(pa.table(cols))
    cols["reported_at"], cols["amount"] = _iso_utc(cb["reported_s"]), _money(cb["amount"])
    if fmt == "csv":
        return _csv_bytes(pa.table(cols))
    fields = [_json_field(c, cols[c], c != "amount") for c in CB_COLUMNS]
    lines = pc.binary_join_element_wise("{", pc.binary_join_element_wise(*fields, ","), "}\n", "")
    return _lines_bytes(lines)


def bad_file(rng: np.random.Generator, fmt: str, sample: bytes) -> bytes:
    """Unreadable content with the right extension: binary junk, or for Parquet possibly a
    file cut off before its footer (``sample`` is a valid Parquet file)."""
    if fmt == "parquet" and rng.random() < 0.5 and len(sample) > 16:
        return sample[: int(len(sample) * rng.uniform(0.2, 0.8))]
    junk = rng.bytes(int(rng.integers(512, 8192)))
    # JPEG magic (invalid UTF-8), then lines with inconsistent field counts and NUL bytes
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\n" + junk + b"\n\x00,\x00,\x00\n\x00\n" + junk[:256]
