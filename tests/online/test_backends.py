"""Every backend against its real store on loopback: SQLite, a redis-server process, DynamoDB on moto's server.

The same contract for all three: upserts, missing keys absent (never empty values), deletes, expiry by
run date; and for DynamoDB: batch limits, the TTL attribute, and throttling retried until written.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import threading

import pytest

from batchml.online.backends import BackendUnavailable, Record
from batchml.online.backends.sqlite import SqliteBackend
from batchml.online.spec import DynamoDbSettings
from tests.servers import free_port, moto_server, redis_server


def _records(n: int, expires: int = 1_000, tag: str = "v") -> list[Record]:
    return [Record(f"ds/event/{i}", f"{tag}{i}".encode() * 3, expires + i % 2) for i in range(n)]


@pytest.fixture(params=["sqlite", "redis", "dynamodb"])
def backend(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        from batchml.online.backends.sqlite import SqliteBackend

        store = SqliteBackend(str(tmp_path / "s.sqlite"), create=True)
        yield store
        store.close()
    elif request.param == "redis":
        from batchml.online.backends.redis import RedisBackend

        with redis_server(tmp_path) as url:
            store = RedisBackend(url, batch=40)
            yield store
            store.close()
    else:
        from batchml.online.backends.dynamodb import DynamoDbBackend, create_table

        with moto_server(monkeypatch) as endpoint:
            settings = DynamoDbSettings(table="online-test", endpoint_url=endpoint, write_threads=3)
            create_table(settings, "eu-west-1")
            store = DynamoDbBackend(settings, "eu-west-1")
            yield store
            store.close()


def test_the_backend_contract(backend):
    backend.ping()
    backend.put(_records(130))  # more than one write batch (25 for DynamoDB, 40 for this Redis)
    keys = [f"ds/event/{i}" for i in range(0, 140, 3)]  # some beyond what was written
    got = backend.get(keys + keys[:5])  # duplicates asked twice come back once
    assert got == {k: f"v{k.rsplit('/', 1)[1]}".encode() * 3 for k in keys if int(k.rsplit("/", 1)[1]) < 130}
    backend.put(_records(10, tag="w"))  # overwrite
    assert backend.get(["ds/event/3"]) == {"ds/event/3": b"w3" * 3}
    backend.delete(["ds/event/3", "ds/event/never"])
    assert backend.get(["ds/event/3", "ds/event/4"]) == {"ds/event/4": b"w4" * 3}
    assert backend.get([]) == {}
    purged = backend.purge(before=1_000)  # expiry 1000 (even i) and 1001 (odd i)
    left = backend.get([f"ds/event/{i}" for i in range(130)])
    if backend.name == "dynamodb":
        assert purged == 0 and len(left) == 129  # DynamoDB's TTL deletes them, not us
    else:
        assert purged == 65 and sorted(left) == sorted(f"ds/event/{i}" for i in range(1, 130, 2) if i != 3)


def test_dynamodb_table_has_the_ttl_attribute_and_many_keys_per_read(monkeypatch):
    from batchml.online.backends.dynamodb import DynamoDbBackend, client, create_table

    with moto_server(monkeypatch) as endpoint:
        settings = DynamoDbSettings(table="online-ttl", endpoint_url=endpoint)
        create_table(settings, "eu-west-1")
        ttl = client(settings, "eu-west-1").describe_time_to_live(TableName="online-ttl")["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
        store = DynamoDbBackend(settings, "eu-west-1")
        store.put(_records(250))
        assert len(store.get([f"ds/event/{i}" for i in range(250)])) == 250  # three BatchGetItem calls
        item = client(settings, "eu-west-1").get_item(TableName="online-ttl", Key={"pk": {"S": "ds/event/7"}})["Item"]
        assert item["expires_at"] == {"N": "1001"}
        store.close()


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


def _inject(db, answers: list[tuple[int, dict]], operation: str = "BatchWriteItem"):
    """Answer the next calls of ``operation`` with these (status, JSON body) instead of the server: a
    throttling error, or a partial success that leaves items unprocessed, as DynamoDB does under load."""
    from botocore.awsrequest import AWSResponse

    calls = []

    def before_send(request, **_):
        if request.headers.get("X-Amz-Target", b"").decode().endswith(operation):
            calls.append(json.loads(request.body))
            if len(calls) <= len(answers):
                status, body = answers[len(calls) - 1]
                return AWSResponse(request.url, status, {"x-amzn-requestid": "injected"},
                                   _Body(json.dumps(body).encode()))
        return None

    db.meta.events.register("before-send.dynamodb", before_send)
    return calls


def test_dynamodb_retries_throttling_and_unprocessed_items(monkeypatch):
    from batchml.online.backends import dynamodb as D

    monkeypatch.setattr(D, "BASE_DELAY", 0.001)
    with moto_server(monkeypatch) as endpoint:
        settings = DynamoDbSettings(table="online-throttle", endpoint_url=endpoint, write_threads=1, max_attempts=4)
        D.create_table(settings, "eu-west-1")
        store = D.DynamoDbBackend(settings, "eu-west-1")
        throttled = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                     "message": "Rate of requests exceeds the allowed throughput."}
        records = _records(3)
        unprocessed = {"UnprocessedItems": {"online-throttle": [
            {"PutRequest": {"Item": {"pk": {"S": r.key}, "v": {"B": base64.b64encode(r.value).decode()},
                                     "expires_at": {"N": str(r.expires_at)}}}} for r in records[1:]]}}
        store.put(records[:1])  # what the partial success below wrote before it left the others unprocessed
        calls = _inject(store.db, [(400, throttled), (400, throttled), (200, unprocessed)])
        store.put(records)  # throttled twice (botocore retries), then 2 of 3 left unprocessed (we re-send)
        assert len(calls) == 4 and [len(c["RequestItems"]["online-throttle"]) for c in calls] == [3, 3, 3, 2]
        assert store.get([r.key for r in records]) == {r.key: r.value for r in records}

        _inject(store.db, [(200, unprocessed)] * 10)  # never processed: fails loudly after max_attempts
        with pytest.raises(D.Unprocessed, match="still unprocessed after 4 attempts"):
            store.put(records)
        store.close()


def test_unreachable_stores_say_so(tmp_path):
    from batchml.online.backends.redis import RedisBackend
    from batchml.online.backends.sqlite import SqliteBackend

    with pytest.raises(BackendUnavailable, match="run `batchml run materialize"):
        SqliteBackend(str(tmp_path / "missing.sqlite"))
    with pytest.raises(BackendUnavailable, match="online store redis://"):
        RedisBackend(f"redis://127.0.0.1:{free_port()}/0").ping()


def test_sqlite_batch_writers_take_turns(tmp_path):
    """One writer at a time holds the turn; the next waits for it, and a holder that dies releases it."""
    path = str(tmp_path / "turns.sqlite")
    first, second, order = SqliteBackend(path, create=True), SqliteBackend(path), []

    def later():
        with second.sole_writer():
            order.append("second")
    with first.sole_writer():
        waiter = threading.Thread(target=later)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # waiting for its turn
        order.append("first")
    waiter.join(10)
    assert order == ["first", "second"]
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from batchml.online.backends.sqlite import SqliteBackend
with SqliteBackend({path!r}).sole_writer():
    print("holding", flush=True)
    time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        holder.kill()
        holder.wait(10)
        done = threading.Thread(target=later)
        done.start()
        done.join(10)
        assert not done.is_alive() and order == ["first", "second", "second"]
    finally:
        holder.kill()


def test_the_writer_moves_a_store_of_the_first_layout_to_a_rowid_table(tmp_path):
    """Values of a megabyte in a WITHOUT ROWID table made every key search read them (73 s against 0.6 s for
    small inserts after 600 of them): the writer moves an old store's records once; readers leave it."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE records (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at INTEGER NOT NULL) "
                   "WITHOUT ROWID")
        db.executemany("INSERT INTO records VALUES (?, ?, ?)", [("b", b"2" * 5000, 7), ("a", b"1", 9)])

    def layout() -> str:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT sql FROM sqlite_master WHERE name = 'records'").fetchone()[0].upper()
    reader = SqliteBackend(str(path))
    assert "WITHOUT ROWID" in layout() and reader.get(["a"]) == {"a": b"1"}
    reader.close()
    writer = SqliteBackend(str(path), create=True)
    assert "WITHOUT ROWID" not in layout()
    assert writer.get(["a", "b", "c"]) == {"a": b"1", "b": b"2" * 5000} and writer.purge(7) == 1
    writer.close()
