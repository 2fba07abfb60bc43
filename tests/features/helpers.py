"""Synthetic bronze rows and a brute-force reference for the feature tests."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa

UTC = dt.timezone.utc
BRONZE_SCHEMA = pa.schema([
    ("transaction_id", pa.string()), ("event_time", pa.timestamp("us", "UTC")), ("customer_id", pa.string()),
    ("merchant_id", pa.string()), ("merchant_category", pa.string()), ("amount", pa.float64()),
    ("currency", pa.string()), ("channel", pa.string()), ("device_type", pa.string()), ("device_id", pa.string()),
    ("country", pa.string()), ("customer_country", pa.string()), ("card_present", pa.bool_()),
    ("customer_tenure_days", pa.int32()), ("_source_file", pa.string()), ("_source_sha256", pa.string()),
    ("_row_number", pa.int64()), ("ingest_date", pa.date32()),
])


def at(day: dt.date, hours: float = 0.0, micros: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(hours=hours, microseconds=micros)


def event(tx, when, customer="c1", merchant="m1", amount=10.0, ingest=None, **extra) -> dict:
    row = {"transaction_id": tx, "event_time": when, "customer_id": customer, "merchant_id": merchant,
           "merchant_category": "grocery", "amount": amount, "currency": "EUR", "channel": "ecom",
           "device_type": "mobile", "device_id": f"d-{customer}", "country": "DE", "customer_country": "DE",
           "card_present": False, "customer_tenure_days": 100, "_source_file": f"f-{tx}", "_source_sha256": "x",
           "_row_number": 1, "ingest_date": ingest or when.date()}
    row.update(extra)
    return row


def random_events(start: dt.date, days: int, per_day: int, seed: int = 1, customers: int = 6,
                  merchants: int = 3) -> list[dict]:
    """Events on a coarse clock (many exact ties), a few without a device, and a few redeliveries."""
    rng = random.Random(seed)
    rows = []
    for d in range(days):
        day = start + dt.timedelta(days=d)
        for i in range(per_day):
            when = at(day) + dt.timedelta(minutes=rng.randrange(0, 24 * 60, 20))
            rows.append(event(f"tx_{d}_{i}", when, f"c{rng.randrange(customers)}", f"m{rng.randrange(merchants)}",
                              round(rng.uniform(1, 200), 2), country=rng.choice(["DE", "FR", "US"]),
                              channel=rng.choice(["ecom", "pos", "atm"]),
                              device_id=None if rng.random() < 0.2 else f"d{rng.randrange(4)}"))
    for row in rng.sample(rows, max(1, len(rows) // 50)):  # redelivered with new content a day later
        rows.append({**row, "amount": row["amount"] + 1000, "_source_file": "redelivery",
                     "ingest_date": row["ingest_date"] + dt.timedelta(days=1)})
    return rows


def bronze_frame(spark, rows: list[dict]):
    return spark.createDataFrame(pa.Table.from_pylist(rows, BRONZE_SCHEMA)).coalesce(2)


def reference(rows: list[dict], spec, day: dt.date, timezone: str = "UTC",
              known_since: str = "ingest_date") -> dict[str, dict]:
    """Brute force, straight from the definition: {id: {feature: value}} for the events of run date ``day``
    (its local day in ``timezone``), from the rows known by ``day`` (``known_since``: ingest_date, or
    event_time: every row)."""
    from zoneinfo import ZoneInfo

    from batchml.features.spec import window_seconds

    known = [r for r in rows if known_since == "event_time" or r["ingest_date"] <= day]
    latest: dict[str, dict] = {}
    for r in known:
        key = (r["ingest_date"], r["_source_file"], r["_source_sha256"], r["_row_number"])
        if r["transaction_id"] not in latest or key > latest[r["transaction_id"]][0]:
            latest[r["transaction_id"]] = (key, r)
    events = [r for _, r in latest.values()]
    out = {}
    for t in (r for r in events if r["event_time"].astimezone(ZoneInfo(timezone)).date() == day):
        lo = at(t["event_time"].astimezone(UTC).date()) - dt.timedelta(days=spec.lookback())  # tiles: UTC days
        feats = {}
        for name, entity in spec.entities.items():
            keyed = all(t[k] is not None for k in entity.keys)
            same = [r for r in events if all(r[k] == t[k] for k in entity.keys) and r["event_time"] >= lo]
            for feature, owner, agg, label in spec.window_features():
                if owner != name:
                    continue
                w = dt.timedelta(seconds=window_seconds(label))
                win = [r for r in same if t["event_time"] - w <= r["event_time"] < t["event_time"]]
                vals = [r[agg.column] for r in win] if agg.column else []
                fn = agg.function
                feats[feature] = None if not keyed else (
                    len(win) if fn == "count" else round(sum(vals), 6) if fn == "sum"
                    else (sum(vals) / len(vals) if vals else None) if fn == "mean"
                    else (max(vals) if vals else None) if fn == "max" else len(set(vals)))
            if entity.time_since_last:
                before = [r["event_time"] for r in same if r["event_time"] < t["event_time"]]
                feats[f"{name}_seconds_since_last"] = (
                    (t["event_time"] - max(before)).total_seconds() if keyed and before else None)
        out[t["transaction_id"]] = feats
    return out
