"""What the online store holds, as bytes under string keys (docs/online.md, "Records").

Keys, per dataset ``<ds>``:

* ``<ds>/event/<id>``: one event's feature row, exactly as the offline table holds it;
* ``<ds>/entity/<entity>/<JSON list of key values as text>``: an entity's window state (``batchml.online.state``);
* ``<ds>/meta/schema/<id>``: the column names and types that event rows of that schema id use;
* ``<ds>/meta/run/<date>``: what materializing that run date wrote (the idempotency marker);
* ``<ds>/meta/state``: the date the current entity states are as of.

An event row is stored as JSON, ``{"run_date", "table_version", "schema", "values": [...]}``, values in
schema order: floats in their shortest exact form (Arrow's, like ``repr``: decoding gives the same 64-bit value),
timestamps as integer microseconds, dates as integer days, decimals as their exact digits, so decoding
gives back the offline value bit for bit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from decimal import Decimal
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from batchml.online.backends import Record

CONTRACT = "batchml.online/v1"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
EPOCH_DAY = dt.date(1970, 1, 1)
NEVER = 2 ** 40  # expiry of records that must outlive every run (epoch seconds, year ~36800)


def event_key(dataset: str, event_id: Any) -> str:
    return f"{dataset}/event/{event_id}"


def entity_key(dataset: str, entity: str, values: list) -> str:
    texts = [key_text(v) for v in values]
    return f"{dataset}/entity/{entity}/{json.dumps(texts, separators=(',', ':'), ensure_ascii=False)}"


def key_text(value: Any) -> str:
    """A key value as entity keys spell it: as Spark casts it to a string (strings, integers, booleans, dates)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def meta_key(dataset: str, name: str) -> str:
    return f"{dataset}/meta/{name}"


def end_of(day: dt.date) -> int:
    """Epoch seconds at the end of ``day`` (UTC): expiry times count from here."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) + 86_400


def expiry(day: dt.date, ttl_days: int) -> int:
    return end_of(day) + ttl_days * 86_400


# -- schemas ----------------------------------------------------------------------------------------
def type_tag(field: pa.Field) -> str:
    """The online type of a column; the types a feature table can hold, anything else is refused."""
    t = field.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_date32(t):
        return "date"
    if pa.types.is_timestamp(t) and t.unit == "us":
        return "timestamp" if t.tz else "timestamp_ntz"
    raise ValueError(f"column {field.name!r} has type {t}, which the online store does not hold "
                     "(strings, booleans, integers, floats, decimals, dates and microsecond timestamps)")


def schema_doc(schema: pa.Schema) -> tuple[str, bytes]:
    """(schema id, the stored schema record): the id is a hash of the names and types."""
    columns = [[f.name, type_tag(f)] for f in schema]
    text = json.dumps(columns, separators=(",", ":")).encode()
    return hashlib.sha256(text).hexdigest()[:16], text


def needs_escapes(text: pa.Array) -> bool:
    """Whether any string of ``text`` holds a character JSON must escape (quote, backslash, control)."""
    return pc.any(pc.match_substring_regex(text, r'["\\\x00-\x1f]')).as_py()


def _json_texts(column: pa.Array, tag: str) -> pa.Array:
    """Each value of ``column`` as its JSON text (null stays null), computed by Arrow, not row by row."""
    if tag in ("int", "bool"):
        return pc.cast(column, pa.string())
    if tag in ("timestamp", "timestamp_ntz"):
        return pc.cast(pc.cast(column, pa.int64()), pa.string())
    if tag == "date":
        return pc.cast(pc.cast(column, pa.int32()), pa.string())
    if tag == "float":  # Arrow writes the shortest text that reads back as the same double
        text = pc.cast(pc.cast(column, pa.float64()), pa.string())
        # integral values read back as ints ("3"; decode_value makes them floats again), except -0.0
        for arrow, token in (("-0", "-0.0"), ("nan", "NaN"), ("inf", "Infinity"), ("-inf", "-Infinity")):
            text = pc.if_else(pc.equal(text, arrow), token, text)
        return text
    text = column if tag == "string" else pc.cast(column, pa.string())  # decimals: exact digits, quoted
    if needs_escapes(text):  # let json do it
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in text.to_pylist()],
                        pa.string())
    return pc.binary_join_element_wise('"', text, '"', "")


def encode_events(batch: pa.RecordBatch, dataset: str, id_column: str, header: dict, expires_at: int) -> list[Record]:
    """One record per row of ``batch``: the row's values under ``<ds>/event/<id>``."""
    texts = [_json_texts(batch.column(i), type_tag(f)) for i, f in enumerate(batch.schema)]
    row = pc.binary_join_element_wise(*texts, ",", null_handling="replace", null_replacement="null")
    prefix = json.dumps(header, separators=(",", ":"))[:-1] + ',"values":['
    values = pc.cast(pc.binary_join_element_wise(prefix, row, "]}", ""), pa.binary()).to_pylist()
    ids = pc.cast(batch.column(batch.schema.get_field_index(id_column)), pa.string()).to_pylist()
    return [Record(event_key(dataset, i), v, expires_at) for i, v in zip(ids, values)]


# -- decoding ---------------------------------------------------------------------------------------
def decode_value(tag: str, value: Any) -> Any:
    if value is None:
        return None
    if tag == "timestamp":
        return EPOCH + dt.timedelta(microseconds=value)
    if tag == "timestamp_ntz":
        return (EPOCH + dt.timedelta(microseconds=value)).replace(tzinfo=None)
    if tag == "date":
        return EPOCH_DAY + dt.timedelta(days=value)
    if tag == "decimal":
        return Decimal(value)
    if tag == "float":
        return float(value)  # integral floats are stored as "3"
    return value


def decode_row(columns: list[list[str]], values: list) -> dict[str, Any]:
    return {name: decode_value(tag, v) for (name, tag), v in zip(columns, values)}


def json_value(value: Any) -> Any:
    """A decoded value as the HTTP contract writes it: ISO 8601 times, and non-finite floats as strings."""
    if isinstance(value, dt.datetime):
        text = value.replace(tzinfo=None).isoformat(timespec="microseconds")
        return text + "Z" if value.tzinfo else text
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # exact; a JSON number would be read back as a float by most clients
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def jsonable(doc: Any) -> Any:
    """``doc`` with every value made JSON-safe by ``json_value`` (dicts and lists walked)."""
    if isinstance(doc, dict):
        return {k: jsonable(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [jsonable(v) for v in doc]
    return json_value(doc)


def batches_of(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
