"""The hostile corpus (tests/ingest/corpus.py, 211 files) through the real ingest stage on Spark.

One run date per format. For every file and row: accepted + quarantined = read; each planted good
row is in bronze exactly once; each bad row is in quarantine with its raw record and a reason
naming the rule; unreadable files are quarantined whole; the stage exits 0 (issue 21, cases 1-8).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from batchml.ingest import staging
from batchml.ingest.ingest import MANIFEST, QUARANTINE, ingest
from batchml.stages import run_stage
from batchml.storage import Lake, landing
from tests.ingest import corpus

CORPORA = {"csv": corpus.csv_corpus, "jsonl": corpus.jsonl_corpus, "parquet": corpus.parquet_corpus}
DAY = dt.date(2024, 5, 1)


def with_format(config, fmt: str):
    ds = config.dataset()
    events = ds.events.model_copy(update={"format": fmt})
    return config.model_copy(update={"datasets": {config.default_dataset: ds.model_copy(update={"events": events})}})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_corpus_is_large_and_varied():
    files = [f for make in CORPORA.values() for f in make()]
    assert len(files) >= 200 and len({f.name for f in files}) == len(files)
    ids = [g for f in files for g in f.good + (f.later.good if f.later else [])]
    assert len(ids) == len(set(ids)) >= 400
    suffixes = {Path(f.name).suffix for f in files}
    assert {".csv", ".jsonl", ".parquet", ".gz", ".bz2"} <= suffixes
    assert sum(1 for f in files if f.file_error) >= 15 and sum(len(f.bad) for f in files) >= 400


@pytest.mark.parametrize("fmt", sorted(CORPORA))
def test_every_planted_row_is_accounted_for_exactly_once(config, spark, monkeypatch, fmt):
    config = with_format(config, fmt)
    files = CORPORA[fmt]()
    folder = Path(config.storage.landing_uri, "transactions", DAY.isoformat())
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).write_bytes(f.data)
    _change_files_mid_run(monkeypatch, folder, files)

    assert run_stage("ingest", config, DAY, spark=spark) == 0  # never a traceback, never a failed date

    lake = Lake(config, spark)
    manifest = {r["path"]: r for r in lake.read_arrow(MANIFEST).to_pylist()}
    bronze = lake.read_arrow("bronze.card_transactions",
                             columns=["transaction_id", "_source_file", "_source_sha256", "_row_number"]).to_pylist()
    quarantine = lake.read_arrow(QUARANTINE).to_pylist()
    gone = [f for f in files if f.changes == "vanishes"]
    assert len(manifest) == len(files) - len(gone) and not any(str(folder / f.name) in manifest for f in gone)
    for f in files:
        if f not in gone:
            _check_file(f, str(folder / f.name), manifest, bronze, quarantine)
    ids = [b["transaction_id"] for b in bronze]
    assert len(ids) == len(set(ids)) == sum(len(_landed(f).good) for f in files if not f.duplicate_of
                                            and f not in gone)
    keys = [(q["source_sha256"], q["row_number"]) for q in quarantine]
    assert len(keys) == len(set(keys))
    assert staging.pending(lake.storage, staging.root(config.storage.lake_uri, "card_transactions", "events")) == []

    # The file replaced after it was staged landed as staged; its new bytes are the next run's redelivery.
    after = next(f for f in files if f.changes == "after_staging")
    report = ingest(config, DAY, spark=spark)[0]
    assert report.redelivered == [str(folder / after.name)] and report.files_new == 1
    landed = {b["transaction_id"] for b in lake.read_arrow("bronze.card_transactions",
                                                           columns=["transaction_id"]).to_pylist()}
    assert set(after.later.good) <= landed and set(after.good) <= landed


def _change_files_mid_run(monkeypatch, folder: Path, files: list[corpus.Planted]) -> None:
    """One file is rewritten between hashing and staging, one after its batch is recorded, one is
    deleted after the listing."""
    before = {str(folder / f.name): f for f in files if f.changes == "before_staging"}
    after = [f for f in files if f.changes == "after_staging"]
    gone = {str(folder / f.name) for f in files if f.changes == "vanishes"}
    real_sha, real_copy, real_record = landing.sha256, landing.copy_hashed, staging.record

    def sha256(storage, uri):
        if uri in gone:
            Path(uri).unlink()
        return real_sha(storage, uri)

    def copy_hashed(storage, source_uri, folder_uri):
        if source_uri in before:
            Path(source_uri).write_bytes(before.pop(source_uri).later.data)
        return real_copy(storage, source_uri, folder_uri)

    def record(storage, root_uri, batch):
        real_record(storage, root_uri, batch)
        for f in after:
            (folder / f.name).write_bytes(f.later.data)

    monkeypatch.setattr(landing, "sha256", sha256)
    monkeypatch.setattr(landing, "copy_hashed", copy_hashed)
    monkeypatch.setattr(staging, "record", record)


def _landed(f: corpus.Planted) -> corpus.Planted:
    """What ingest must land for a file: the bytes it hashed and staged."""
    return f.later if f.changes == "before_staging" else f


def _check_file(f: corpus.Planted, path: str, manifest: dict, bronze: list, quarantine: list) -> None:
    row = manifest[path]
    expected = _landed(f)
    accepted = sorted(b["transaction_id"] for b in bronze if b["_source_file"] == path)
    rejected = [q for q in quarantine if q["source_file"] == path]
    if f.duplicate_of:
        assert (row["status"], row["sha256"], accepted, rejected) == ("duplicate", sha(f.data), [], []), f.name
        assert row["reason"].startswith(f"same content as {Path(path).parent / f.duplicate_of}")
        return
    assert row["sha256"] == sha(expected.data), f.name
    assert row["rows_accepted"] + row["rows_quarantined"] == row["rows_read"], f.name
    if expected.file_error:
        assert row["status"] == "quarantined_file" and expected.file_error in row["reason"], (f.name, row["reason"])
        assert accepted == [] and len(rejected) == 1 and rejected[0]["row_number"] is None
        assert expected.file_error in rejected[0]["reason"]
        return
    assert row["status"] == ("ingested" if expected.good or expected.bad else "empty"), f.name
    assert accepted == sorted(expected.good), f.name
    assert (row["rows_accepted"], row["rows_quarantined"]) == (len(expected.good), len(expected.bad)), f.name
    by_line = {q["row_number"]: q for q in rejected}
    assert len(by_line) == len(rejected) == len(expected.bad), (f.name, sorted(by_line))
    for bad in expected.bad:
        q = by_line[bad.line]
        assert bad.reason in q["reason"], (f.name, bad.line, q["reason"])
        if bad.raw is not None:
            assert q["raw_record"] == bad.raw, (f.name, bad.line)
        if bad.marker is not None:
            assert f'"device_id": "{bad.marker}"' in q["raw_record"], (f.name, bad.line)
