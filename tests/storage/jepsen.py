"""A Jepsen-style history test of the storage layer: N processes write to one Delta table at once,
each recording what the lake acknowledged; ``check`` then holds the history against the table.

Run as a worker: ``python -m tests.storage.jepsen <spec.json> <worker index>``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa

SCHEMA = pa.schema([("p", pa.string()), ("op", pa.string()), ("row", pa.int64())])
TABLE = "test.jepsen"
HOT = 2  # partitions every worker overwrites ("o0", "o1"): these conflict


def plan_ops(workers: int, writes: int, seed: int) -> list[list[dict]]:
    """Each worker's operations. The duplicate-transaction ones use the same txn ids, in the same
    order, in every worker, so that all of them race for each."""
    plans = []
    for w in range(workers):
        rng = random.Random(seed * 1000 + w)
        kinds = ["append", "dup", "hot", "hot", "own", "dup_hot"] * (writes // 6 + 1)
        rng.shuffle(kinds)
        ops, counters = [], defaultdict(int)
        for i, kind in enumerate(kinds[:writes]):
            n = counters[kind]
            counters[kind] += 1
            op = {"id": f"w{w}-{i}", "kind": kind, "rows": rng.randint(1, 3)}
            if kind == "append":
                op.update(p=f"a{rng.randrange(2)}")
            elif kind == "dup":  # an append whose txn id every worker also uses
                op.update(p="d", txn=[f"dup-{n}", 1])
            elif kind == "hot":
                op.update(p=f"o{rng.randrange(HOT)}")
            elif kind == "own":  # disjoint: this worker's partition only
                op.update(p=f"w{w}")
            else:  # an overwrite of one partition per txn id, raced by every worker
                op.update(p=f"t{n}", txn=[f"dup-hot-{n}", 1])
            ops.append(op)
        plans.append(ops)
    return plans


def payload(op: dict) -> pa.Table:
    return pa.table({"p": [op["p"]] * op["rows"], "op": [op["id"]] * op["rows"],
                     "row": pa.array(range(op["rows"]), pa.int64())}, schema=SCHEMA)


def _lake(spec: dict):
    from batchml.config import TableConfig, load_config
    from batchml.storage import Lake
    from tests.conftest import REPO, make_config

    base = load_config("test", conf_dir=REPO / "conf", environ={"BATCHML_HOME": spec["home"]})
    config = make_config(base, Path(spec["home"]), {TABLE: TableConfig(partition_by=["p"])})
    if spec.get("s3"):
        s3 = config.storage.s3.model_copy(update=spec["s3"])
        config = config.model_copy(update={"storage": config.storage.model_copy(
            update={"s3": s3, "lake_uri": spec["lake_uri"]})})
    return Lake(config)


def run_worker(spec: dict, worker: int) -> None:
    from batchml.storage import PartiallyCommitted, WriteConflict

    lake = _lake(spec)
    ops = spec["ops"][worker]
    go = Path(spec["go"])
    Path(spec["ready"]).joinpath(str(worker)).touch()
    while not go.exists():  # start together: as much contention as possible
        time.sleep(0.005)
    with open(spec["results"].format(worker=worker), "w") as out:
        for op in ops:
            txn = [tuple(op["txn"])] if op.get("txn") else None
            overwrite = op["kind"] in ("hot", "own", "dup_hot")
            record = {"id": op["id"]}
            try:
                result = lake.write_arrow(payload(op), TABLE, mode="overwrite" if overwrite else "append",
                                          replace_where=[("p", "=", op["p"])] if overwrite else None,
                                          txn=txn, metadata={"op": op["id"]})
                record.update(ok=True, version=result.version, skipped=result.skipped)
            except (WriteConflict, PartiallyCommitted) as exc:
                record.update(ok=False, error=type(exc).__name__, message=str(exc))
            out.write(json.dumps(record) + "\n")
            out.flush()


def check(spec: dict) -> dict:
    """Hold the acknowledged history against the table and its log; returns counts for the report."""
    from deltalake import DeltaTable

    from batchml.storage import conflicts

    lake = _lake(spec)
    ops = {op["id"]: op for worker in spec["ops"] for op in worker}
    results = {}
    for w in range(len(spec["ops"])):
        for line in Path(spec["results"].format(worker=w)).read_text().splitlines():
            record = json.loads(line)
            results[record["id"]] = record
    assert set(results) == set(ops), "every worker ran every operation"

    # Only overwrites of the hot partitions may fail, and only with a conflict.
    for op_id, r in results.items():
        if not r["ok"]:
            assert ops[op_id]["kind"] == "hot" and r["error"] == "WriteConflict", (op_id, r)

    # The log: every commit is one acknowledged, not skipped write, at the version it reported.
    uri = lake.uri(TABLE)
    latest = DeltaTable(uri, storage_options=lake.storage.delta_rs(uri)).version()
    commits = [conflicts.read_commit(uri, lake.storage, v) for v in range(latest + 1)]
    committed = {}
    for c in commits:
        op_id = c.info.get("batchml.op")
        assert op_id in results and results[op_id]["ok"] and not results[op_id]["skipped"], (c.version, op_id)
        assert results[op_id]["version"] == c.version, (op_id, results[op_id], c.version)
        assert op_id not in committed, f"{op_id} committed twice"
        committed[op_id] = c
    acked = {i for i, r in results.items() if r["ok"] and not r["skipped"]}
    assert acked == set(committed), acked ^ set(committed)

    # Each transaction id is held by exactly one commit; every other writer of it skipped, naming that version.
    holders = defaultdict(list)
    for c in commits:
        for app in c.txns:
            holders[app].append(c.version)
    for op_id, r in results.items():
        if ops[op_id].get("txn"):
            app = ops[op_id]["txn"][0]
            assert len(holders[app]) == 1, (app, holders[app])
            if r["skipped"]:
                assert r["version"] == holders[app][0], (op_id, r, holders[app])
    for app in {op["txn"][0] for op in ops.values() if op.get("txn")}:
        assert sum(1 for i in committed if (ops[i].get("txn") or [None])[0] == app) == 1, app

    # The table: appended rows exactly once; each overwritten partition is exactly its last writer's payload.
    table = lake.read_arrow(TABLE).to_pylist()
    rows_by_op = defaultdict(list)
    for row in table:
        rows_by_op[row["op"]].append(row)
    assert set(rows_by_op) <= acked, "no row of a failed or skipped write"
    last_overwrite = {}
    for op_id in sorted(committed, key=lambda i: committed[i].version):
        if ops[op_id]["kind"] in ("hot", "own", "dup_hot"):
            last_overwrite[ops[op_id]["p"]] = op_id
    for op_id in acked:
        op = ops[op_id]
        expected = op["rows"] if op["kind"] in ("append", "dup") or last_overwrite[op["p"]] == op_id else 0
        assert len(rows_by_op[op_id]) == expected, (op_id, rows_by_op[op_id])
        assert sorted(r["row"] for r in rows_by_op[op_id]) == list(range(expected))

    # Every acknowledged overwrite won alone: at its own version its partition is exactly its payload.
    overwrites = [i for i in acked if ops[i]["kind"] in ("hot", "own", "dup_hot")]
    for op_id in overwrites:
        at = lake.read_arrow(TABLE, [("p", "=", ops[op_id]["p"])], version=results[op_id]["version"])
        assert set(at.column("op").to_pylist()) == {op_id} and at.num_rows == ops[op_id]["rows"], op_id

    # Serializable overwrites: no commit between an overwrite's read version and its own touched its partition.
    for op_id in overwrites:
        c, p = committed[op_id], ops[op_id]["p"]
        for between in commits[c.info.get("readVersion", -1) + 1:c.version]:
            touched = {unquote(a["path"]).split("/")[0] for a in between.adds + between.removes}
            assert f"p={p}" not in touched, (op_id, c.version, between.version)

    # Failed and skipped writes deleted their files: every data file is in the log.
    import pyarrow.fs as pafs

    fs, root = lake.storage.filesystem(uri)
    on_disk = {i.path[len(root):].lstrip("/") for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
               if i.type == pafs.FileType.File and i.path.endswith(".parquet") and "/_delta_log/" not in i.path}
    logged = {unquote(a["path"]) for c in commits for a in c.adds}
    assert on_disk <= logged, sorted(on_disk - logged)[:5]

    kinds = defaultdict(lambda: defaultdict(int))
    for op_id, r in results.items():
        outcome = "conflict" if not r["ok"] else ("skipped" if r["skipped"] else "committed")
        kinds[ops[op_id]["kind"]][outcome] += 1
    # Commits that landed after others committed during their write: the processes really interleaved.
    raced = sum(1 for c in commits if c.version - c.info.get("readVersion", -1) > 1)
    return {"versions": latest + 1, "raced": raced, **{k: dict(v) for k, v in kinds.items()}}


if __name__ == "__main__":
    run_worker(json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2]))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: deltalake's runtime threads can abort it (exit 134)
