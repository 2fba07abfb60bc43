"""Kill ingest at each commit boundary, change the landing zone, re-run: each file lands exactly once.

Boundaries: Spark has written the bronze files but not committed them; after the bronze commit;
after the quarantine commit; after the manifest commit (before the staging is cleaned up).
Arrivals before the re-run: nothing; a late file; the same bytes again under another name; new
bytes at a path of the crashed batch. Most cells crash in-process (a BaseException no code
catches, raised right after the commit returns); two cells kill a real ``batchml run ingest``
process with SIGKILL / os._exit at the boundary (issue 21, case 2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchml.ingest import staging
from batchml.ingest.ingest import MANIFEST, QUARANTINE, ingest
from batchml.storage import Lake
from tests.conftest import REPO
from tests.ingest import corpus

DAY = dt.date(2024, 6, 1)
BRONZE = "bronze.card_transactions"
BOUNDARIES = ["bronze_files_written", "bronze", "quarantine", "manifest"]
ARRIVALS = ["nothing", "late_file", "same_bytes_again", "changed_file"]


class Killed(BaseException):
    """The process died here: nothing in ingest may catch it."""


def land(config, name: str, data: bytes) -> Path:
    folder = Path(config.storage.landing_uri, "transactions", DAY.isoformat())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def crash_at(monkeypatch, boundary: str) -> None:
    write, write_arrow = Lake.write, Lake.write_arrow

    def crashing_write(self, df, name, **kwargs):
        if boundary == "bronze_files_written" and name == BRONZE:
            kwargs["options"] = {"batchml.testing.crashBeforeCommit": "true"}  # the committer dies
        result = write(self, df, name, **kwargs)
        if (boundary, name) in (("bronze", BRONZE), ("quarantine", QUARANTINE)):
            raise Killed(f"after the {name} commit")
        return result

    def crashing_write_arrow(self, data, name, **kwargs):
        result = write_arrow(self, data, name, **kwargs)
        if boundary == "manifest" and name == MANIFEST:
            raise Killed("after the manifest commit")
        return result

    monkeypatch.setattr(Lake, "write", crashing_write)
    monkeypatch.setattr(Lake, "write_arrow", crashing_write_arrow)


def arrive(config, arrival: str, files: dict[str, corpus.Planted]) -> list[corpus.Planted]:
    """Change the landing zone after the crash; return the contents the re-run must add."""
    if arrival == "late_file":
        late = corpus.csv_file(302)
        land(config, "c-late.csv", late.data)
        return [late]
    if arrival == "same_bytes_again":
        land(config, "a-again.csv", files["a.csv"].data)
        return []
    if arrival == "changed_file":
        changed = corpus.csv_file(303)
        land(config, "b.csv", changed.data)
        return [changed]
    return []


@pytest.mark.parametrize("arrival", ARRIVALS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_crash_arrival_rerun_lands_every_file_exactly_once(config, spark, monkeypatch, boundary, arrival):
    files = {"a.csv": corpus.csv_file(300), "b.csv": corpus.csv_file(301)}
    for name, planted in files.items():
        land(config, name, planted.data)
    with monkeypatch.context() as m:
        crash_at(m, boundary)
        with pytest.raises(Killed if boundary != "bronze_files_written" else Exception):
            ingest(config, DAY, spark=spark)
    lake = Lake(config, spark)
    assert lake.exists(BRONZE) == (boundary != "bronze_files_written")
    added = arrive(config, arrival, files)

    report = ingest(config, DAY, spark=spark)[0]
    assert len(report.resumed_batches) == 1  # the crashed batch, finished from its staged copies
    assert report.redelivered == ([str(Path(config.storage.landing_uri, "transactions", DAY.isoformat(), "b.csv"))]
                                  if arrival == "changed_file" else [])
    assert_exactly_once(lake, config, [*files.values(), *added])
    assert ingest(config, DAY, spark=spark)[0].files_new == 0  # and then a re-run is a no-op


def assert_exactly_once(lake: Lake, config, contents: list[corpus.Planted]) -> None:
    """Bronze, quarantine and manifest hold each content's rows once, and nothing else."""
    shas = {hashlib.sha256(c.data).hexdigest(): c for c in contents}
    bronze = lake.read_arrow(BRONZE, columns=["transaction_id", "_source_sha256", "_row_number"]).to_pylist()
    keys = [(b["_source_sha256"], b["_row_number"]) for b in bronze]
    assert len(keys) == len(set(keys))
    assert sorted((b["_source_sha256"], b["transaction_id"]) for b in bronze) == sorted(
        (sha, tid) for sha, c in shas.items() for tid in c.good)
    quarantine = lake.read_arrow(QUARANTINE, columns=["source_sha256", "row_number"]).to_pylist()
    assert sorted((q["source_sha256"], q["row_number"]) for q in quarantine) == sorted(
        (sha, b.line) for sha, c in shas.items() for b in c.bad)
    manifest = [r for r in lake.read_arrow(MANIFEST).to_pylist() if r["status"] != "duplicate"]
    assert sorted(r["sha256"] for r in manifest) == sorted(shas)
    assert all(r["rows_accepted"] == len(shas[r["sha256"]].good) for r in manifest)
    root = staging.root(config.storage.lake_uri, "card_transactions", "events")
    assert staging.pending(lake.storage, root) == []


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from batchml.storage.lake import Lake

    table, how = sys.argv[1], sys.argv[2]
    write = Lake.write

    def dying_write(self, df, name, **kwargs):
        result = write(self, df, name, **kwargs)
        if name == table:  # the commit is in the log: die before anything else happens
            os.kill(os.getpid(), signal.SIGKILL) if how == "sigkill" else os._exit(137)
        return result

    Lake.write = dying_write
    from batchml.cli import main
    sys.exit(main(["--env", "test", "run", "ingest", "--run-date", sys.argv[3]]))
""")


@pytest.mark.parametrize("table, how, arrival", [(BRONZE, "sigkill", "late_file"),
                                                 (QUARANTINE, "os_exit", "changed_file")])
def test_a_real_process_killed_at_a_commit_boundary(config, spark, table, how, arrival):
    files = {"a.csv": corpus.csv_file(300), "b.csv": corpus.csv_file(301)}
    for name, planted in files.items():
        land(config, name, planted.data)
    env = {**os.environ, "BATCHML_CONF_DIR": str(REPO / "conf"), "BATCHML_HOME": str(Path(config.home)),
           "BATCHML_LANDING_URI": config.storage.landing_uri, "BATCHML_LAKE_URI": config.storage.lake_uri,
           "BATCHML_ARTIFACTS_URI": config.storage.artifacts_uri}
    env.pop("BATCHML_SPARK_REMOTE", None)
    died = subprocess.run([sys.executable, "-c", KILL_SCRIPT, table, how, DAY.isoformat()], env=env,
                          capture_output=True, text=True, timeout=600)
    assert died.returncode == (-9 if how == "sigkill" else 137), died.stderr[-2000:]
    lake = Lake(config, spark)
    assert lake.exists(table) and not lake.exists(MANIFEST)
    added = arrive(config, arrival, files)
    report = ingest(config, DAY, spark=spark)[0]
    assert len(report.resumed_batches) == 1
    assert_exactly_once(lake, config, [*files.values(), *added])
