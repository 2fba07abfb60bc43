"""Concurrent writers on one Delta table: conflicting overwrites fail alone, disjoint ones and appends
never conflict, duplicate transaction ids commit once, and every write reports its own version.

The first tests fix one interleaving each: a write is planned (``Lake._plan`` records the version
it read), another writer commits, then the first one commits. The Jepsen-style tests at the end
run several processes at once and check the whole history (tests/storage/jepsen.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from batchml.config import TableConfig
from batchml.storage import Lake, PartiallyCommitted, WriteConflict
from batchml.storage import commit as committer
from batchml.storage.files import write_files
from tests.conftest import REPO, make_config
from tests.storage import jepsen

SCHEMA = pa.schema([("p", pa.string()), ("id", pa.int64())])


@pytest.fixture
def lake(base_config, tmp_path) -> Lake:
    return Lake(make_config(base_config, tmp_path, {"test.t": TableConfig(partition_by=["p"]),
                                                    "test.flat": TableConfig()}))


def rows(p: str, *ids: int) -> pa.Table:
    return pa.table({"p": [p] * len(ids), "id": pa.array(ids, pa.int64())}, schema=SCHEMA)


def planned(lake: Lake, data: pa.Table, mode="append", replace_where=None, txn=None, name="test.t"):
    """A write planned now and committed later by ``finish``: its files are written at once."""
    table = lake._delta(name)
    plan = lake._plan(name, data.schema, mode, replace_where, txn, None, None if table is None else table.version())
    files = write_files(data.to_batches(), plan.schema, plan.table_uri, plan.partition_by, lake.storage, 100,
                        plan.replace_where)
    return plan, files


def finish(write) -> committer.WriteResult:
    return committer.commit(*write)


def content(lake: Lake, version=None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in lake.read_arrow("test.t", version=version).to_pylist():
        out.setdefault(r["p"], []).append(r["id"])
    return {p: sorted(ids) for p, ids in out.items()}


def exists(lake: Lake, files) -> list[bool]:
    return [(Path(lake.uri("test.t")) / f["path"]).exists() for f in files]


def test_overlapping_overwrites_of_a_fresh_partition_conflict(lake):
    """The reported case: two overwrites of a new partition used to both commit (a union)."""
    lake.write_arrow(rows("x", 0), "test.t")
    first = planned(lake, rows("p1", 1, 2), "overwrite", [("p", "=", "p1")])
    second = planned(lake, rows("p1", 3), "overwrite", [("p", "=", "p1")])
    assert finish(first).version == 1
    with pytest.raises(WriteConflict, match=r"version 1 \(WRITE.*added p=p1/.*replace_where \[p = 'p1'\]"):
        finish(second)
    assert content(lake) == {"x": [0], "p1": [1, 2]} and lake.version("test.t") == 1
    assert not any(exists(lake, second[1]))  # the loser's files are gone


def test_overwrites_of_disjoint_partitions_both_commit_at_their_own_versions(lake):
    lake.write_arrow(rows("p1", 1), "test.t")
    lake.write_arrow(rows("p2", 2), "test.t")
    writes = [planned(lake, rows(p, 10 + i), "overwrite", [("p", "=", p)]) for i, p in enumerate(["p1", "p2"])]
    append = planned(lake, rows("p3", 30))
    results = [finish(w) for w in [*writes, append]]
    assert [r.version for r in results] == [2, 3, 4] and [r.files_removed for r in results] == [1, 1, 0]
    assert content(lake) == {"p1": [10], "p2": [11], "p3": [30]}
    assert content(lake, 2) == {"p1": [10], "p2": [2]}  # each reported version holds that write


def test_an_overwrite_conflicts_with_a_concurrent_append_into_what_it_replaces(lake):
    lake.write_arrow(rows("p1", 1), "test.t")
    overwrite = planned(lake, rows("p1", 10), "overwrite", [("p", "=", "p1")])
    elsewhere = planned(lake, rows("p1", 20), "overwrite", [("p", "=", "p1")])
    lake.write_arrow(rows("p2", 2), "test.t")  # another partition: no conflict
    assert finish(overwrite).version == 2
    lake.write_arrow(rows("p1", 3), "test.t")  # into p1, after `elsewhere` read
    with pytest.raises(WriteConflict):
        finish(elsewhere)
    assert content(lake) == {"p1": [3, 10], "p2": [2]}


def test_a_plain_overwrite_reads_the_whole_table(lake):
    lake.write_arrow(rows("p1", 1), "test.t")
    everything = planned(lake, rows("p9", 9), "overwrite")
    lake.write_arrow(rows("p2", 2), "test.t")
    with pytest.raises(WriteConflict, match="the whole table"):
        finish(everything)
    assert content(lake) == {"p1": [1], "p2": [2]}


def test_appends_never_conflict_and_report_their_own_versions(lake):
    lake.write_arrow(rows("p1", 0), "test.t")
    appends = [planned(lake, rows("p1", i)) for i in range(1, 4)]
    lake.write_arrow(rows("p1", 9), "test.t", mode="overwrite", replace_where=[("p", "=", "p1")])  # version 1
    assert [finish(a).version for a in appends] == [2, 3, 4]
    assert content(lake) == {"p1": [1, 2, 3, 9]}


def test_compaction_is_not_a_conflict(lake):
    """OPTIMIZE rewrites files without changing data (dataChange=false): an overwrite still replaces them."""
    for i in range(3):
        lake.write_arrow(rows("p1", i), "test.t")
    overwrite = planned(lake, rows("p1", 7), "overwrite", [("p", "=", "p1")])
    lake.compact("test.t")
    assert finish(overwrite).version == 4
    assert content(lake) == {"p1": [7]}


def test_racing_table_creators(lake):
    """Both planned before the table existed: the append commits after the creator, the overwrite conflicts."""
    creator = planned(lake, rows("p1", 1))
    append = planned(lake, rows("p1", 2))
    overwrite = planned(lake, rows("p1", 3), "overwrite", [("p", "=", "p1")])
    assert creator[0].read_version is None
    assert finish(creator).version == 0
    assert finish(append).version == 1
    with pytest.raises(WriteConflict, match="table did not exist"):
        finish(overwrite)
    assert content(lake) == {"p1": [1, 2]}


def test_a_transaction_committed_concurrently_is_a_no_op_even_for_an_overwrite(lake):
    """The same txn id wins over the conflict rule: a racing duplicate is 'already committed'."""
    lake.write_arrow(rows("p1", 1), "test.t")
    mine = planned(lake, rows("p1", 2), "overwrite", [("p", "=", "p1")], txn=("job", 1))
    theirs = lake.write_arrow(rows("p1", 3), "test.t", mode="overwrite", replace_where=[("p", "=", "p1")],
                              txn=("job", 1))
    lake.write_arrow(rows("p2", 4), "test.t")
    result = finish(mine)
    assert result.skipped and result.version == theirs.version == 1
    assert content(lake) == {"p1": [3], "p2": [4]} and not any(exists(lake, mine[1]))


def test_a_list_of_transactions_commits_together_or_not_at_all(lake):
    lake.write_arrow(rows("p1", 1), "test.t", txn=[("a", 1), ("b", 1)])
    assert lake.write_arrow(rows("p1", 2), "test.t", txn=[("a", 1), ("b", 1)]).skipped
    racing = planned(lake, rows("p1", 3), txn=[("c", 1), ("d", 1)])
    lake.write_arrow(rows("p1", 4), "test.t", txn=("c", 1))
    with pytest.raises(PartiallyCommitted, match=r"\[\('c', 1\)\] are committed but \[\('d', 1\)\] are not"):
        finish(racing)
    with pytest.raises(PartiallyCommitted):
        lake.write_arrow(rows("p1", 5), "test.t", txn=[("c", 1), ("d", 1)])
    assert content(lake) == {"p1": [1, 4]}


def test_a_commit_that_landed_unseen_is_recognised_as_its_own(lake):
    """A commit whose success response was lost (S3) is found by its write id when re-checked, not redone."""
    lake.write_arrow(rows("p1", 1), "test.t")
    write = planned(lake, rows("p1", 2), "overwrite", [("p", "=", "p1")])
    first = finish(write)
    again = finish(write)  # the same plan and files once more: it finds its own commit
    assert (again.version, again.skipped) == (first.version, False) and lake.version("test.t") == first.version
    assert all(exists(lake, write[1])) and content(lake) == {"p1": [2]}


def test_a_version_of_a_txn_is_the_commit_that_recorded_it(lake):
    lake.write_arrow(rows("p1", 1), "test.t", txn=("app", 1))
    lake.write_arrow(rows("p1", 2), "test.t")
    lake.write_arrow(rows("p1", 3), "test.t", txn=("app", 2))
    lake.write_arrow(rows("p1", 4), "test.t")
    assert lake.write_arrow(rows("p1", 5), "test.t", txn=("app", 1)).version == 0
    assert lake.write_arrow(rows("p1", 5), "test.t", txn=("app", 2)).version == 2


class _CommitsDuringTheJob:
    """mapInArrow: the Spark write's task commits to the same table through the lake, as a
    concurrent writer would, while the Spark write is between its plan and its commit."""

    def __init__(self, config, partition: str, txn=None):
        self.config, self.partition, self.txn = config, partition, txn

    def __call__(self, batches):
        result = Lake(self.config).write_arrow(rows(self.partition, 99), "test.t", mode="overwrite",
                                               replace_where=[("p", "=", self.partition)], txn=self.txn)
        Path(self.config.storage.lake_uri, "concurrent.json").write_text(json.dumps(result.version))
        yield from batches


def test_the_spark_path_detects_conflicts_and_reports_exact_versions(lake, spark):
    lake = Lake(lake.config, spark)
    lake.write_arrow(rows("p1", 1), "test.t")
    lake.write_arrow(rows("p2", 2), "test.t")
    df = spark.createDataFrame([("p1", 10)], "p string, id long").coalesce(1)
    concurrent = Path(lake.config.storage.lake_uri, "concurrent.json")

    def spark_overwrite(other: str, txn=None):
        job = df.mapInArrow(_CommitsDuringTheJob(lake.config, other, txn), df.schema)
        return lake.write(job, "test.t", mode="overwrite", replace_where=[("p", "=", "p1")], txn=txn)

    result = spark_overwrite("p2")  # disjoint: commits after the concurrent write
    assert result.version == json.loads(concurrent.read_text()) + 1 == 3
    assert content(lake) == {"p1": [10], "p2": [99]}
    with pytest.raises(WriteConflict, match="replace_where"):
        spark_overwrite("p1")  # the same partition: the Spark write must not commit
    assert content(lake) == {"p1": [99], "p2": [99]} and lake.version("test.t") == 4
    skipped = spark_overwrite("p1", txn=("spark-job", 1))  # the concurrent writer held the same txn
    assert skipped.skipped and skipped.version == json.loads(concurrent.read_text()) == 5
    assert not list(Path(lake.uri("test.t"), committer.STAGING_DIR).iterdir())


# -- Jepsen-style: N processes x M writes ----------------------------------------------------------------
def run_history(tmp_path: Path, workers: int, writes: int, seed: int, **storage) -> dict:
    home = tmp_path / "jepsen"
    home.mkdir()
    spec = {"home": str(home), "ops": jepsen.plan_ops(workers, writes, seed), "go": str(home / "go"),
            "ready": str(home), "results": str(home / "results-{worker}.jsonl"), **storage}
    (home / "spec.json").write_text(json.dumps(spec))
    procs = [subprocess.Popen([sys.executable, "-m", "tests.storage.jepsen", str(home / "spec.json"), str(w)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(workers)]
    deadline = time.monotonic() + 120
    while not all((home / str(w)).exists() for w in range(workers)):  # every worker imported and waiting
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
        time.sleep(0.05)
    (home / "go").touch()
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    summary = jepsen.check(spec)
    print(f"jepsen {workers}x{writes}: {summary}")
    return summary


def test_jepsen_history_on_local_disk(tmp_path):
    summary = run_history(tmp_path, workers=4, writes=30, seed=1)
    # The writers interleaved (how many hot overwrites conflicted depends on the scheduling; the
    # checks above hold either way), and of each duplicated txn id all but one write was skipped.
    assert summary["raced"] > 0 and summary["hot"].get("committed", 0) > 0
    dups = [op["txn"][0] for ops in jepsen.plan_ops(4, 30, 1) for op in ops if op["kind"] == "dup"]
    assert summary["dup"] == {"committed": len(set(dups)), "skipped": len(dups) - len(set(dups))}
    assert summary["versions"] == sum(k.get("committed", 0) for k in summary.values() if isinstance(k, dict))


@pytest.fixture(scope="module")
def serial_s3():
    """moto's S3 on loopback, serving one request at a time. moto checks If-None-Match and then
    stores the object in two steps, so its threaded server lets two racing conditional puts both
    succeed; real S3 does not. Serialised, the test checks batchml, not that race in moto."""
    import socket

    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = ("import sys; from werkzeug.serving import run_simple; "
            "from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app; "
            "run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), "
            "threaded=False)")
    server = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "moto server did not start"
            time.sleep(0.2)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="jepsen")
    yield endpoint
    server.terminate()
    server.wait(10)


@pytest.mark.s3
def test_jepsen_history_on_s3_with_conditional_puts(tmp_path, serial_s3):
    """The same history on S3, where the commit's put-if-absent is an etag-conditional PUT."""
    s3 = {"endpoint_url": serial_s3, "allow_http": True, "access_key_id": "test", "secret_access_key": "test"}
    summary = run_history(tmp_path, workers=3, writes=15, seed=2, s3=s3, lake_uri="s3://jepsen/lake")
    assert summary["raced"] > 0 and summary["dup"]["skipped"] > 0 and summary["hot"].get("committed", 0) > 0
