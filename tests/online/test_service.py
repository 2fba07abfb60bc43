"""``batchml serve-features`` over real HTTP on loopback (uvicorn), and the Python client.

The store is filled by the materialize stage's by-ID half from a small Delta feature table (no Spark).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

import batchml.online
from batchml.features.build import feature_spec
from batchml.online import records as R
from batchml.online.backends import Record
from batchml.online.backends.redis import RedisBackend
from batchml.online.backends.sqlite import SqliteBackend
from batchml.online.client import OnlineStore
from batchml.online.materialize import Materialized, materialize_events
from batchml.online.service import AccessLog, create_app
from batchml.storage import Lake
from tests.conftest import REPO
from tests.servers import free_port

D = dt.date(2024, 3, 10)
UTC = dt.timezone.utc


def feature_rows() -> pa.Table:
    return pa.table({
        "transaction_id": ["t1", "t2", "t3"],
        "event_time": pa.array([dt.datetime(2024, 3, 10, h, 0, 0, 123456, tzinfo=UTC) for h in (1, 2, 3)],
                               pa.timestamp("us", "UTC")),
        "event_date": pa.array([D] * 3, pa.date32()),
        "customer_id": ["c1", "c2", None],
        "customer_count_24h": pa.array([0, 3, None], pa.int64()),
        "customer_mean_amount_30d": [None, 0.1 + 0.2, 1e-300],
        "share": pa.array([Decimal("0.5"), None, Decimal("1E-12")], pa.decimal128(38, 12)),
    })


@pytest.fixture
def served(config, tmp_path):
    import uvicorn

    lake = Lake(config)
    name, spec = feature_spec(config)
    lake.write_arrow(feature_rows(), spec.table)
    backend = SqliteBackend(str(tmp_path / "online.sqlite"), create=True)
    materialize_events(lake, backend, name, spec, D, config.online, Materialized(name, [D]))
    state = {"run_date": str(D), "table": "silver.x", "table_version": 4, "entity": "customer",
             "key": {"customer_id": "c1"}, "state": {"last": 1710032400000000, "edges": []}}
    backend.put([Record(R.entity_key(name, "customer", ["c1"]), json.dumps(state).encode(), R.NEVER),
                 Record(R.meta_key(name, "state"), json.dumps({"as_of": str(D), "base": str(D), "table": "silver.x",
                                                                   "table_version": 4}).encode(), R.NEVER),
                 Record(R.meta_key(name, "latest"), json.dumps({"run_date": str(D), "table_version": 0}).encode(),
                        R.NEVER)])
    store = OnlineStore(config, backend=backend)
    log_path = tmp_path / "access.jsonl"
    log = AccessLog(str(log_path))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store, log, max_ids=5), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield {"port": port, "log": log_path, "store": store, "config": config, "lake": lake}
    server.should_exit = True
    thread.join(timeout=10)
    log.close()
    store.close()


def call(port: int, method: str, path: str, body=None, headers=None) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                 headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    return response.status, payload, dict(response.getheaders())


def test_lookup_by_id_found_and_missing(served):
    status, body, headers = call(served["port"], "POST", "/v1/features", {"ids": ["t2", "nope", "t3"]},
                                 {"X-Request-ID": "req-42"})
    assert status == 200 and headers["x-request-id"] == "req-42"
    assert body["contract"] == "batchml.online/v1" and body["found"] == 2 and body["missing"] == 1
    t2, nope, t3 = body["results"]
    assert nope == {"id": "nope", "status": "not_found"}  # explicit, no zeros, no empty row
    assert t2["status"] == "found" and t2["run_date"] == str(D) and isinstance(t2["table_version"], int)
    assert t2["features"] == {"transaction_id": "t2", "event_time": "2024-03-10T02:00:00.123456Z",
                              "event_date": "2024-03-10", "customer_id": "c2", "customer_count_24h": 3,
                              "customer_mean_amount_30d": 0.1 + 0.2, "share": None}
    assert t3["features"]["customer_mean_amount_30d"] == 1e-300 and t3["features"]["share"] == "1E-12"
    assert t3["features"]["customer_id"] is None and t3["features"]["customer_count_24h"] is None

    status, single, _ = call(served["port"], "GET", "/v1/features/t1")
    assert status == 200 and single["features"]["share"] == "0.500000000000"
    assert call(served["port"], "GET", "/v1/features/nope")[:2] == (404, {"id": "nope", "status": "not_found"})


def test_bad_requests_are_refused_with_a_reason(served):
    port = served["port"]
    assert call(port, "POST", "/v1/features", {"ids": []})[0] == 400
    status, body, _ = call(port, "POST", "/v1/features", {"ids": ["a"] * 6})
    assert status == 400 and "at most 5" in body["error"]
    assert call(port, "POST", "/v1/features", {"ids": [{"x": 1}]})[0] == 400
    assert call(port, "POST", "/v1/features", {"id": "t1"})[0] == 400
    status, body, _ = call(port, "POST", "/v1/entities/planet", {"keys": ["x"]})
    assert status == 404 and "customer" in body["error"]
    status, body, _ = call(port, "POST", "/v1/entities/customer_device", {"keys": ["only-one-part"]})
    assert status == 400 and "customer_id" in body["error"]


def test_entity_states_and_health(served):
    status, body, _ = call(served["port"], "POST", "/v1/entities/customer", {"keys": ["c1", {"customer_id": "c9"}]})
    assert status == 200 and body["found"] == 1 and body["missing"] == 1
    found, missing = body["results"]
    assert found["status"] == "found" and found["as_of"] == str(D) and found["state"]["last"] == 1710032400000000
    assert missing == {"entity": "customer", "key": {"customer_id": "c9"}, "status": "not_found"}
    status, health, _ = call(served["port"], "GET", "/health")
    assert status == 200 and health == {"status": "ok", "contract": "batchml.online/v1", "backend": "sqlite",
                                        "dataset": "card_transactions", "latest_run_date": str(D),
                                        "table_version": 0, "state_as_of": str(D)}


def test_access_log_has_one_json_line_per_request(served):
    call(served["port"], "POST", "/v1/features", {"ids": ["t1", "zz"]}, {"X-Request-ID": "abc"})
    call(served["port"], "GET", "/v1/features/zz")
    call(served["port"], "GET", "/health")
    lines = [json.loads(line) for line in Path(served["log"]).read_text().splitlines()]
    assert [(e["method"], e["path"], e["status"], e["found"], e["missing"]) for e in lines] == [
        ("POST", "/v1/features", 200, 1, 1), ("GET", "/v1/features/zz", 404, 0, 1), ("GET", "/health", 200, None, None)]
    assert lines[0]["request_id"] == "abc" and len(lines[1]["request_id"]) == 32
    assert all(e["latency_ms"] > 0 and e["time"].endswith("+00:00") for e in lines)


def test_python_client_returns_typed_offline_values(served):
    online = served["config"].online
    path = str(served["store"].backend.path)
    config = served["config"].model_copy(update={"online": online.model_copy(update={"sqlite": online.sqlite.model_copy(
        update={"path": path})})})
    answers = batchml.online.get_features(["t1", "missing"], config=config)
    row = served["lake"].read_arrow("features.card_transactions").to_pylist()[0]
    assert answers[0]["features"] == row and answers[1] == {"id": "missing", "status": "not_found"}
    assert batchml.online.get_entity_state("customer", ["c1"], config=config)[0]["status"] == "found"
    assert batchml.online.store(config) is batchml.online.store(config)  # opened once per process


def test_health_reports_an_unreachable_store(config, tmp_path):
    import uvicorn

    store = OnlineStore(config, backend=RedisBackend(f"redis://127.0.0.1:{free_port()}/0"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store, AccessLog(str(tmp_path / "a.jsonl"))), host="127.0.0.1",
                                           port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        status, body, _ = call(port, "GET", "/health")
        assert status == 503 and body["status"] == "unavailable" and "redis://127.0.0.1" in body["error"]
        assert call(port, "POST", "/v1/features", {"ids": ["t1"]})[0] == 503  # never an empty "not found"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_cli_refuses_to_serve_a_store_that_does_not_exist(tmp_path):
    out = subprocess.run([sys.executable, "-m", "batchml.cli", "--env", "test", "serve-features"], cwd=REPO,
                         capture_output=True, text=True, env={"BATCHML_HOME": str(tmp_path), "PATH": "/usr/bin"},
                         timeout=120)
    assert out.returncode == 1 and out.stderr.strip().startswith("batchml: error: online store")
    assert "run `batchml run materialize" in out.stderr and "Traceback" not in out.stderr


def test_docs_describe_the_contract():
    text = (REPO / "docs" / "online.md").read_text()
    for needle in ("batchml.online/v1", "/v1/features", "/v1/entities/", "/health", "not_found", "X-Request-ID",
                   "What is exact"):
        assert needle in text, needle


def test_materialize_is_a_nightly_stage_with_its_job_file():
    from batchml.orchestration.operators import JOBS
    from batchml.stages import NIGHTLY_STAGES, STAGES

    assert NIGHTLY_STAGES[-1] == "materialize" and "materialize" in STAGES  # after features, score and monitor
    assert JOBS["materialize"] == "materialize.py"
    assert 'run_job("materialize"' in (REPO / "jobs" / "materialize.py").read_text()
