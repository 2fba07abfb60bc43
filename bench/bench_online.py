"""Online store benchmark: lookup latency by ID, and materialization throughput against the backend's floor.

A feature partition of ``--rows`` synthetic events is written to the dataset's feature table, with its
columns (the declared window features, passthrough columns, ``--extra-columns`` more floats standing in
for the derived SQL columns), and then, for each backend (``sqlite``, the embedded default, and
``dynamodb`` on moto's server, a separate process on loopback):

* **materialize**: ``--repeat`` interleaved runs (median), each into an empty store, of the stage's by-ID half (read the partition, encode, write, run marker) against the
  **floor**: the same records, already encoded, written with the backend's own bulk API (one
  ``executemany`` transaction for SQLite; ``BatchWriteItem`` calls of 25 on the same threads for DynamoDB).
  ``ratio`` is the SQLite stage's rows/s over its floor's;
* **latency**: ``--clients`` concurrent clients for ``--seconds`` each, single IDs and batches of 100
  (random IDs, 10% unknown), from the Python client (``OnlineStore.get_features``, threads in this
  process) and over HTTP (``batchml serve-features`` in its own process; one keep-alive connection per
  client thread). p50/p95/p99 in milliseconds. Goal: p99 < 50 ms for single lookups over HTTP on SQLite.

    .venv/bin/python bench/bench_online.py                          # 1M events, both backends
    .venv/bin/python bench/bench_online.py --rows 20000 --seconds 3 --dry-run   # check the script

moto keeps every item in Python objects: 1M items take several GB of memory and minutes to write; pass
``--dynamodb-rows`` to materialize fewer there (lookups then draw from those).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from common import Run, bench_config, median, parse, timed

DAY = dt.date(2024, 3, 10)
REPO_CONF = Path(__file__).resolve().parent.parent / "conf"


def feature_partition(spec, contract, n: int, extra: int, seed: int = 7) -> pa.Table:
    """``n`` rows with the feature table's declared columns: counts as int64, the rest float64 with nulls."""
    rng = np.random.default_rng(seed)
    start = int(dt.datetime(DAY.year, DAY.month, DAY.day, tzinfo=dt.timezone.utc).timestamp() * 1e6)
    types = {"string": pa.string(), "float64": pa.float64(), "int32": pa.int32(), "bool": pa.bool_()}
    cols = {spec.id_column: pa.array([f"ev{i:08d}" for i in range(n)]),
            spec.event_time_column: pa.array(np.sort(rng.integers(start, start + 86_400_000_000, n)),
                                              pa.timestamp("us", "UTC")),
            spec.date_column: pa.array([DAY] * n, pa.date32())}
    for c in contract.columns:
        if c.name in spec.passthrough and c.name not in cols:
            values = {"string": lambda: [f"v{x}" for x in rng.integers(0, 5000, n)],
                      "float64": lambda: rng.gamma(2.0, 40.0, n).round(2), "int32": lambda: rng.integers(0, 3650, n),
                      "bool": lambda: rng.random(n) < 0.5}[c.type]()
            cols[c.name] = pa.array(values, types[c.type])
    for name, _, agg, _ in spec.window_features():
        if agg.function in ("count", "distinct_count"):
            cols[name] = pa.array(rng.poisson(3.0, n), pa.int64())
        else:
            values = rng.gamma(2.0, 50.0, n)
            cols[name] = pa.array(values, pa.float64(), mask=rng.random(n) < 0.1)
    for name in [f for f in spec.feature_names() if f not in cols]:
        cols[name] = pa.array(rng.exponential(3600.0, n), pa.float64(), mask=rng.random(n) < 0.05)
    for i in range(extra):
        cols[f"derived_{i:02d}"] = pa.array(rng.random(n), pa.float64())
    return pa.table(cols)


def percentiles(samples: list[float]) -> dict:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(q[49], 3), "p95_ms": round(q[94], 3), "p99_ms": round(q[98], 3), "requests": len(samples)}


def run_clients(clients: int, seconds: float, one_request) -> dict:
    """``clients`` threads calling ``one_request(rng)`` until the time is up; latency percentiles."""
    samples: list[float] = []
    lock = threading.Lock()

    def loop(seed: int):
        rng, mine = random.Random(seed), []
        call = one_request()
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            call(rng)
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return percentiles(samples)


def pick(ids: list[str], rng: random.Random, k: int) -> list[str]:
    return [rng.choice(ids) if rng.random() >= 0.1 else f"unknown{rng.randrange(10**9)}" for _ in range(k)]


def client_latency(store, ids, clients, seconds, batch) -> dict:
    def single():
        return lambda rng: store.get_features(pick(ids, rng, 1))

    def batched():
        return lambda rng: store.get_features(pick(ids, rng, batch))

    return {"single": run_clients(clients, seconds, single), f"batch_{batch}": run_clients(clients, seconds, batched)}


def http_latency(port: int, ids, clients, seconds, batch) -> dict:
    def caller(k: int):
        def make():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

            def call(rng):
                conn.request("POST", "/v1/features", body=json.dumps({"ids": pick(ids, rng, k)}),
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
            return call
        return make

    return {"single": run_clients(clients, seconds, caller(1)),
            f"batch_{batch}": run_clients(clients, seconds, caller(batch))}


def conf_folder(home: Path, online: dict) -> Path:
    """conf/base from the repository plus a ``bench`` overlay with this run's online store settings."""
    conf = home / "conf"
    shutil.copytree(REPO_CONF / "base", conf / "base")
    (conf / "bench").mkdir()
    (conf / "bench" / "batchml.yaml").write_text(json.dumps({"online": online}))
    return conf


def serve(home: Path, conf: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "BATCHML_HOME": str(home), "BATCHML_CONF_DIR": str(conf), "BATCHML_ENV": "bench"}
    exe = Path(sys.executable).parent / "batchml"
    proc = subprocess.Popen([str(exe), "serve-features", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"serve-features did not come up: {proc.stderr.read().decode()[-2000:]}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def materialize_rows(config, lake, spec, name) -> tuple[float, int]:
    from batchml.online.backends import open_backend
    from batchml.online.materialize import Materialized, materialize_events

    store = open_backend(config, create=True)
    done = Materialized(name, [DAY])
    t0 = time.perf_counter()
    materialize_events(lake, store, name, spec, DAY, config.online, done)
    seconds = time.perf_counter() - t0
    store.close()
    return seconds, done.events


def empty_store(config, folder: Path) -> None:
    """The backend with no records: SQLite's files (the stage's and the floor's) removed, the DynamoDB table
    dropped and created again."""
    if config.online.backend == "sqlite":
        for path in [Path(config.online.sqlite.path), folder / "floor.sqlite"]:
            for extra in ("", "-wal", "-shm"):
                Path(f"{path}{extra}").unlink(missing_ok=True)
        return
    from batchml.online.backends.dynamodb import client, create_table

    db = client(config.online.dynamodb, "eu-west-1")
    db.delete_table(TableName=config.online.dynamodb.table)
    db.get_waiter("table_not_exists").wait(TableName=config.online.dynamodb.table)
    create_table(config.online.dynamodb, "eu-west-1")


def encoded(lake, spec, name, config) -> list:
    from batchml.online import records as R

    schema_id, _ = R.schema_doc(lake.schema(spec.table))
    header = {"run_date": str(DAY), "table_version": 0, "schema": schema_id}
    out = []
    for batch in lake.read_batches(spec.table, [(spec.date_column, "=", DAY)], batch_rows=config.online.batch_rows):
        out += R.encode_events(batch, name, spec.id_column, header, R.expiry(DAY, 90))
    return out


def sqlite_floor(records, folder: Path) -> float:
    """The same records with SQLite's own bulk path: one executemany in one transaction, same table and WAL."""
    from batchml.online.backends.sqlite import SCHEMA

    db = sqlite3.connect(folder / "floor.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    t0 = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", [(r.key, r.value, r.expires_at) for r in records])
    db.execute("COMMIT")
    seconds = time.perf_counter() - t0
    db.close()
    return seconds


def dynamodb_floor(records, settings, region: str) -> float:
    """The same records as raw BatchWriteItem calls of 25 on the same number of threads (no retries needed)."""
    from concurrent.futures import ThreadPoolExecutor

    from batchml.online.backends.dynamodb import client

    db = client(settings, region)
    items = [{"PutRequest": {"Item": {"pk": {"S": r.key}, "v": {"B": r.value}, "expires_at": {"N": str(r.expires_at)}}}}
             for r in records]
    batches = [items[i:i + 25] for i in range(0, len(items), 25)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(settings.write_threads) as pool:
        list(pool.map(lambda b: db.batch_write_item(RequestItems={settings.table: b}), batches))
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dynamodb-rows", type=int, help="rows materialized into moto (default: --rows)")
    p.add_argument("--extra-columns", type=int, default=15, help="float columns standing in for derived SQL columns")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20.0, help="per latency measurement")
    p.add_argument("--backends", default="sqlite,dynamodb")
    p.add_argument("--dry-run", action="store_true", help="print the result, do not write bench/results/online.json")
    args = parse(p)
    run = Run(args)
    backends = args.backends.split(",")

    base, home = bench_config()
    from batchml.features.build import feature_spec
    from batchml.storage import Lake

    name, spec = feature_spec(base)
    subset = spec.model_copy(update={"table": "features.online_bench_subset"})  # --dynamodb-rows of the rows
    base = base.model_copy(update={"tables": {**base.tables, subset.table: base.tables[spec.table]}})
    contract = base.dataset(name).events
    lake = Lake(base)
    t: dict = {}
    with timed(t, "write_partition_s"):
        data = feature_partition(spec, contract, args.rows, args.extra_columns)
        lake.write_arrow(data, spec.table)
        if args.dynamodb_rows and args.dynamodb_rows < args.rows:
            lake.write_arrow(data.slice(0, args.dynamodb_rows), subset.table)
    all_ids = data.column(spec.id_column).to_pylist()
    del data
    result: dict = {"timings_s": t, "columns": len(lake.schema(spec.table)), "clients": args.clients}
    for backend in backends:
        rows = args.rows if backend == "sqlite" else (args.dynamodb_rows or args.rows)
        result[backend] = bench_backend(backend, args, base, home, lake, spec if rows == args.rows else subset, name,
                                        all_ids[:rows])
    s = result["sqlite"] if "sqlite" in result else None
    fields = dict(
        ratio=s["materialize"]["ratio"] if s else None, goal=0.5, higher_is_better=True, rows=args.rows,
        floor="the same encoded records written with the backend's bulk API (SQLite executemany in one "
              "transaction; DynamoDB BatchWriteItem on the same threads)",
        latency_goal="p99 < 50 ms, single ID over HTTP, sqlite",
        latency_goal_met=(s["http"]["single"]["p99_ms"] < 50) if s else None, **result)
    if args.dry_run:
        print(json.dumps(fields, indent=2, default=str))
    else:
        run.write("online", **fields)
    shutil.rmtree(home, ignore_errors=True)
    return 0


def bench_backend(backend: str, args, base, home: Path, lake, spec, name: str, ids: list[str]) -> dict:
    """Materialize ``spec.table``'s partition into ``backend`` (against the floor), then measure lookups."""
    from batchml.config import load_config
    from batchml.online.client import OnlineStore

    online = {"backend": backend, "sqlite": {"path": str(home / "online" / "features.sqlite")}}
    moto = None
    if backend == "dynamodb":
        port = free_port()
        moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true")
        online["dynamodb"] = {"table": "bench-online", "endpoint_url": f"http://127.0.0.1:{port}",
                              "region": "eu-west-1"}
    conf = conf_folder(home / backend, online)
    config = load_config("bench", conf, environ={"BATCHML_HOME": str(home)})
    config = config.model_copy(update={"storage": base.storage, "tables": base.tables})
    out: dict = {"rows": len(ids)}
    server = None
    try:
        if moto is not None:
            from batchml.online.backends.dynamodb import create_table

            _wait_for(f"http://127.0.0.1:{port}/moto-api/")
            create_table(config.online.dynamodb, "eu-west-1")
        records = encoded(lake, spec, name, config)
        runs: dict[str, list[float]] = {"floor": [], "stage": []}
        events = 0
        for _ in range(args.repeat):  # interleaved, each into an empty store (a filled one skips the day)
            empty_store(config, home / backend)
            runs["floor"].append(sqlite_floor(records, home / backend) if backend == "sqlite"
                                 else dynamodb_floor(records, config.online.dynamodb, "eu-west-1"))
            empty_store(config, home / backend)
            seconds, events = materialize_rows(config, lake, spec, name)
            runs["stage"].append(seconds)
        del records
        seconds, floor = median(runs["stage"]), median(runs["floor"])
        out["materialize"] = {"rows_per_s": round(events / seconds), "floor_rows_per_s": round(events / floor),
                              "seconds": seconds, "floor_seconds": floor, "ratio": round(floor / seconds, 3),
                              "runs_s": runs}
        store = OnlineStore(config)
        out["python"] = client_latency(store, ids, args.clients, args.seconds, args.batch)
        store.close()
        http_port = free_port()
        server = serve(home, conf, http_port)
        out["http"] = http_latency(http_port, ids, args.clients, args.seconds, args.batch)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
    print(f"{backend}: {json.dumps(out)}", flush=True)
    return out


def _wait_for(url: str) -> None:
    import urllib.error
    import urllib.request

    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


if __name__ == "__main__":
    sys.exit(main())
