"""The materialize stage on real Spark, Delta and SQLite: online answers equal the offline tables bit for
bit, entity states reproduce the next day's features, re-runs write the same records, backfills go in
date order, and a rebuilt partition's dropped events leave the store."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import sqlite3
import struct
from decimal import Decimal

import pyarrow as pa
import pytest

from batchml.config import TableConfig
from batchml.features.build import build_features, feature_spec
from batchml.online import records as R
from batchml.online.backends import Record
from batchml.online.backends.sqlite import SqliteBackend
from batchml.online.client import OnlineStore
from batchml.online.materialize import Materialized, StateWriter, materialize, materialize_events, transactions
from batchml.online.state import event_features
from batchml.stages import run_stage
from batchml.storage import Lake
from tests.conftest import make_config
from tests.features.helpers import BRONZE_SCHEMA, at, event, random_events

D = dt.date(2024, 3, 10)
SILVER = "silver.card_transactions"
TABLE = "features.card_transactions"


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def with_online(config, path):
    online = config.online.model_copy(update={"sqlite": config.online.sqlite.model_copy(update={"path": str(path)})})
    return config.model_copy(update={"online": online})


def source_rows() -> list[dict]:
    """Event days D-33 .. D+1; redeliveries only up to D (the state cannot take back an old delivery),
    plus a late arrival: an event of D ingested on D+1, which only ``earlier`` can bring in."""
    rows = [r for r in random_events(day(-33), 35, 25, seed=27, customers=8, merchants=4)
            if not (r["ingest_date"] == day(1) and r["event_time"] < at(day(1)))]
    late = event("late_1", at(D, 23.5), "c1", "m1", 77.25, ingest=day(1), device_id="d1", country="FR")
    new = [event(f"new_{i}", at(day(1), 5 + i), "c_new", f"m{i}", 12.5 * i, device_id="d_new") for i in (1, 2)]
    return rows + [late] + new  # c_new and d_new have no state as of D


@pytest.fixture(scope="module")
def built(base_config, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    config = with_online(make_config(base_config, root, tables={"features.online_copy": TableConfig(
        partition_by=["event_date"])}), root / "online" / "features.sqlite")
    lake = Lake(config, spark)
    rows = source_rows()
    for ingest in sorted({r["ingest_date"] for r in rows}):
        lake.write_arrow(pa.Table.from_pylist([r for r in rows if r["ingest_date"] == ingest], BRONZE_SCHEMA), SILVER)
    build_features(config, D, spark=spark, end=day(1))
    assert run_stage("materialize", config, D, spark=spark) == 0  # the registered stage: batchml run materialize
    return {"config": config, "lake": lake, "rows": rows, "store": OnlineStore(config)}


def offline(lake: Lake, partition: dt.date) -> list[dict]:
    return lake.read_arrow(TABLE, [("event_date", "=", partition)]).to_pylist()


def same(a, b) -> bool:
    """Equal values of equal types; floats compared as their 64-bit patterns."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


def test_event_records_equal_the_offline_rows_bit_for_bit(built):
    lake, store = built["lake"], built["store"]
    rows = offline(lake, D)
    assert len(rows) >= 20
    version = lake.last_change(TABLE, [("event_date", "=", D)])
    answers = store.get_features([r["transaction_id"] for r in rows] + ["no_such_event"])
    assert answers[-1] == {"id": "no_such_event", "status": "not_found"}
    for row, got in zip(rows, answers):
        assert got["status"] == "found" and got["run_date"] == str(D) and got["table_version"] == version
        assert list(got["features"]) == list(row)
        diff = {k: (v, got["features"][k]) for k, v in row.items() if not same(v, got["features"][k])}
        assert not diff, f"{row['transaction_id']}: {diff}"
    nulls = sum(v is None for r in rows for v in r.values())
    floats = sum(isinstance(v, float) and v != int(v) for r in rows for v in r.values())
    assert nulls and floats > 100  # the comparison covered nulls and non-integral floats
    later = offline(lake, day(1))[0]["transaction_id"]  # built offline, not materialized
    assert store.get_features([later]) == [{"id": later, "status": "not_found"}]


def test_entity_states_reproduce_the_next_days_features(built):
    """For every event of D+1: the states as of D plus the events ingested on D+1 before it give the
    offline row the D+1 build wrote, bit for bit (docs/online.md, "What is exact")."""
    lake, store, rows = built["lake"], built["store"], built["rows"]
    spec = feature_spec(built["config"])[1]
    by_id = {r["transaction_id"]: r for r in rows}
    todays = [r for r in rows if r["ingest_date"] == day(1)]
    targets = offline(lake, day(1))
    assert len(targets) >= 20 and by_id["late_1"] in todays
    found = missing = 0
    mismatched_without_late = 0
    for row in targets:
        source = by_id[row["transaction_id"]]
        states = {}
        for name, entity in spec.entities.items():
            key = [source[k] for k in entity.keys]
            if None not in key:
                answer = store.get_entity_state(name, [key])[0]
                found += answer["status"] == "found"
                missing += answer["status"] == "not_found"
                states[name] = answer.get("state")
        merged = event_features(spec, D, states, source, todays)
        diff = {f: (row[f], merged[f]) for f in spec.feature_names() if not same(row[f], merged[f])}
        assert not diff, f"{row['transaction_id']}: {diff}"
        without = event_features(spec, D, states, source, [r for r in todays if r["transaction_id"] != "late_1"])
        mismatched_without_late += without != merged
        assert store.features_for_event(source, todays) == merged
    assert found > 50 and missing  # states were used, and some keys are new on D+1
    assert mismatched_without_late  # the late arrival counts: the comparison is not vacuous


def test_a_state_serves_only_the_next_day(built):
    spec = feature_spec(built["config"])[1]
    source = built["rows"][0] | {"event_time": at(day(2), 1)}
    with pytest.raises(ValueError, match="only"):
        event_features(spec, D, {}, source)


def _records(config) -> list[tuple]:
    with sqlite3.connect(config.online.sqlite.path) as db:
        return db.execute("SELECT key, value, expires_at FROM records ORDER BY key").fetchall()


def test_rematerializing_a_date_writes_the_same_records(built):
    config, lake = built["config"], built["lake"]
    before = _records(config)
    again = materialize(config, D, spark=lake.spark)
    assert again.skipped_days == [D] and again.events == 0 and again.entities == {}
    assert _records(config) == before
    backend = SqliteBackend(config.online.sqlite.path)  # forget that D was done: everything is rewritten
    backend.delete([R.meta_key("card_transactions", f"run/{D}"), R.meta_key("card_transactions", "state")])
    backend.close()
    rewritten = materialize(config, D, spark=lake.spark)
    assert rewritten.events == len(offline(lake, D)) and sum(rewritten.entities.values()) > 20
    assert _records(config) == before
    entity = [json.loads(v) for k, v, _ in before if "/entity/" in k][0]
    assert entity["run_date"] == str(D) and entity["table"] == SILVER and isinstance(entity["table_version"], int)
    assert {e for k, v, e in before if "/event/" in k} == {R.expiry(D, 90)}


def test_a_backfill_goes_in_date_order_and_states_only_move_forward(built, tmp_path):
    config = with_online(built["config"], tmp_path / "backfill.sqlite")
    spark = built["lake"].spark
    done = materialize(config, D, spark=spark, end=day(1))
    assert done.state_as_of == day(1) and done.events == sum(len(offline(built["lake"], day(n))) for n in (0, 1))
    # where the time went, in the log line: the store's writes of states are a part of the states' time
    assert set(done.seconds) == {"events", "states", "state_writes", "purge"}
    assert 0 < done.seconds["state_writes"] < done.seconds["states"] and "(seconds: events " in done.line()
    daily = {k: v for k, v, _ in _records(built["config"]) if "/event/" in k}
    backfill = {k: v for k, v, _ in _records(config) if "/event/" in k}
    assert {k: backfill[k] for k in daily} == daily  # D's records: the same bytes as the daily run's
    states_before = [r for r in _records(config) if "/entity/" in r[0] or r[0].endswith("/meta/state")]
    older = materialize(config, D, spark=spark)  # an older date again: events kept, states untouched
    assert older.skipped_days == [D] and older.state_as_of == day(1) and not older.entities
    assert "states" not in older.seconds
    assert [r for r in _records(config) if "/entity/" in r[0] or r[0].endswith("/meta/state")] == states_before
    store = OnlineStore(config)
    assert store.status()["latest_run_date"] == str(day(1)) and store.status()["state_as_of"] == str(day(1))


def test_stale_states_and_expired_records_are_not_served(built, tmp_path):
    """States written before the last full run are stale; those written since serve as the current states
    (a night rewrites only the states it changes); expired records are purged."""
    config = with_online(built["config"], tmp_path / "stale.sqlite")
    backend = SqliteBackend(str(tmp_path / "stale.sqlite"), create=True)
    ds = "card_transactions"

    def state(key: str, written: dt.date) -> R.Record:
        doc = {"run_date": str(written), "table": SILVER, "table_version": 1, "entity": "customer",
               "key": {"customer_id": key}, "state": {"last": 1}}
        return R.Record(R.entity_key(ds, "customer", [key]), json.dumps(doc).encode(), R.expiry(D, 90))

    meta = {"as_of": str(D), "base": str(day(-5)), "table": SILVER, "table_version": 9}
    backend.put([state("gone", day(-6)), state("kept", day(-3)),
                 R.Record(R.meta_key(ds, "state"), json.dumps(meta).encode(), R.NEVER),
                 R.Record(R.event_key(ds, "old"), b"{}", R.expiry(day(-100), 90))])
    store = OnlineStore(config, backend=backend)
    gone, kept = store.get_entity_state("customer", ["gone", "kept"])
    assert gone["status"] == "not_found"  # before the full run of D-5, which had no state for it
    assert kept["status"] == "found" and (kept["as_of"], kept["table_version"]) == (str(D), 9)
    assert backend.purge(R.end_of(D)) == 1 and backend.get([R.event_key(ds, "old")]) == {}


def test_a_rebuilt_partition_drops_its_missing_events(built, tmp_path):
    """A new version of a partition without an event: re-materializing deletes that event's record."""
    lake = built["lake"]
    name, spec = feature_spec(built["config"])
    copy = spec.model_copy(update={"table": "features.online_copy"})
    rows = lake.read_arrow(TABLE, [("event_date", "=", D)])
    lake.write_arrow(rows, copy.table)
    backend = SqliteBackend(str(tmp_path / "rebuilt.sqlite"), create=True)
    online = built["config"].online
    first = Materialized(name, [D])
    materialize_events(lake, backend, name, copy, D, online, first)
    dropped = rows.column("transaction_id")[0].as_py()
    lake.write_arrow(rows.slice(1), copy.table, mode="overwrite", replace_where=[("event_date", "=", D)])
    second = Materialized(name, [D])
    materialize_events(lake, backend, name, copy, D, online, second)
    assert first.events == rows.num_rows and second.events == rows.num_rows - 1 and second.deleted == 1
    assert backend.get([R.event_key(name, dropped)]) == {}
    kept = json.loads(backend.get([R.event_key(name, rows.column("transaction_id")[1].as_py())]).popitem()[1])
    assert kept["table_version"] == lake.version(copy.table)


def test_states_need_the_dates_tiles(base_config, spark, tmp_path):
    """States come from the features stage's tiles: a date whose ingest is not tiled yet is refused by name."""
    config = with_online(make_config(base_config, tmp_path), tmp_path / "untiled.sqlite")
    lake, rows = Lake(config, spark), source_rows()
    for ingest in (day(-1), D, day(1)):
        lake.write_arrow(pa.Table.from_pylist([r for r in rows if r["ingest_date"] == ingest], BRONZE_SCHEMA), SILVER)
    build_features(config, D, spark=spark)
    with pytest.raises(FileNotFoundError, match=f"ingest dates {day(1)}..{day(1)} are not tiled"):
        materialize(config, day(1), spark=spark)


def test_state_records_spelled_by_arrow_equal_json_dumps():
    """The writer's vectorized records: byte for byte what json.dumps spells, for plain keys, several key
    columns and several entities in one batch; keys that need escapes take the row-at-a-time path."""
    writer = StateWriter.__new__(StateWriter)
    writer.dataset, writer.expires = "ds", 7
    writer.keys = {"customer": ["customer_id"], "customer_device": ["customer_id", "device_id"]}
    writer.prefix = json.dumps({"run_date": str(D), "table": SILVER, "table_version": 3}, separators=(",", ":"))[:-1]
    plain = [{"entity": "customer", "key": ["c1"], "state": '{"last":1}'},
             {"entity": "customer_device", "key": ["c1", "dé-1"], "state": '{"edges":[]}'},
             {"entity": "customer", "key": ["c2"], "state": '{"last":2}'}]
    escaped = [{"entity": "customer_device", "key": ['c"3', "d\\n"], "state": "{}"}]
    schema = pa.schema([("entity", pa.string()), ("key", pa.list_(pa.string())), ("state", pa.string())])
    for rows, row_at_a_time in ((plain, None), (escaped, writer._record)):
        expected = sorted((writer._record(row) for row in rows), key=lambda r: r.key)
        writer.__dict__["_record"] = row_at_a_time  # None: the plain rows must take the vectorized path
        assert sorted(writer.records(pa.RecordBatch.from_pylist(rows, schema)), key=lambda r: r.key) == expected
        del writer.__dict__["_record"]
    doc = json.loads(writer._record(plain[1]).value)
    assert doc["key"] == {"customer_id": "c1", "device_id": "dé-1"} and doc["state"] == {"edges": []}


def test_state_writes_are_bounded_in_bytes_as_well_as_rows():
    """A store transaction holds SQLite's write lock while the other write tasks wait (30 s at most): at 1M
    events a day, 20,000 merchant states of up to 1.6 MB each held it for longer and failed the other task."""
    sizes = [10, 10, 60, 10, 200, 5, 5, 5, 5, 5, 30, 30, 30]
    records = [Record(f"k{i}", b"x" * n, 0) for i, n in enumerate(sizes)]
    parts = list(transactions(records, rows=4, max_bytes=64))
    assert [r for part in parts for r in part] == records  # in order, none lost or repeated
    assert [[len(r.value) for r in part] for part in parts] == [
        [10, 10], [60], [10], [200], [5, 5, 5, 5], [5, 30], [30, 30]]
    assert list(transactions([], rows=4)) == []


def test_non_finite_floats_and_times_round_trip():
    table = pa.table({"id": ["a"], "x": [math.inf], "y": [math.nan], "t": pa.array(
        [dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.timezone.utc)], pa.timestamp("us", "UTC")),
        "d": pa.array([D], pa.date32()), "m": pa.array([Decimal("-1E-12")], pa.decimal128(38, 12))})
    schema_id, doc = R.schema_doc(table.schema)
    record = R.encode_events(table.to_batches()[0], "ds", "id", {"schema": schema_id}, 0)[0]
    row = R.decode_row(json.loads(doc), json.loads(record.value)["values"])
    assert row["x"] == math.inf and math.isnan(row["y"]) and row["t"] == table.column("t")[0].as_py()
    assert row["m"] == table.column("m")[0].as_py() and row["d"] == D
    assert R.jsonable(row) == {"id": "a", "x": "Infinity", "y": "NaN", "t": "2024-01-01T00:00:00.000001Z",
                               "d": str(D), "m": "-1E-12"}
    with pytest.raises(ValueError, match="does not hold"):
        R.schema_doc(pa.schema([("l", pa.list_(pa.int64()))]))


def test_redis_serves_what_sqlite_serves(built, tmp_path):
    """The same run date materialized into Redis: a random sample of events and entity states answers the same."""
    from tests.servers import redis_server

    lake, sqlite_store = built["lake"], built["store"]
    with redis_server(tmp_path) as url:
        online = built["config"].online.model_copy(update={"backend": "redis", "redis": built["config"].online.redis
                                                           .model_copy(update={"url": url})})
        config = built["config"].model_copy(update={"online": online})
        done = materialize(config, D, spark=lake.spark)
        assert done.events == len(offline(lake, D)) and done.entities == sqlite_store.state_meta()["entities"]
        redis_store = OnlineStore(config)
        rng = random.Random(27)
        ids = rng.sample([r["transaction_id"] for r in offline(lake, D)], 10) + ["no_such_event"]
        assert redis_store.get_features(ids) == sqlite_store.get_features(ids)
        customers = sorted({r["customer_id"] for r in built["rows"]})
        keys = rng.sample(customers, 5) + ["nobody"]
        assert redis_store.get_entity_state("customer", keys) == sqlite_store.get_entity_state("customer", keys)
        redis_store.close()
