"""Ingest's write-ahead staging: a batch's bytes and file list, kept until its manifest commits.

A batch is fixed before its first commit. Each new file is copied, and hashed while copied, to
``<lake>/ops/ingest_staging/<dataset>/<feed>/objects/<sha256>``; then the batch is recorded in
``batches/<batch id>.json``. Spark parses the staged copies, so what lands is exactly what was
hashed, whatever happens to the landing zone meanwhile. After the manifest commit the batch's
staging is deleted. A batch file found at the start of a run belongs to an interrupted run: it
is finished first, from its staged copies, under its own run date (docs/ingest.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass

import pyarrow.fs as pafs

from batchml.storage import landing
from batchml.storage.location import StorageOptions, is_s3


class StagingError(FileNotFoundError):
    """The staging area lost a file that a recorded batch needs (it was edited by hand)."""


@dataclass(frozen=True)
class StagedFile:
    sha256: str
    path: str  # where it was delivered
    name: str
    size: int
    previous_sha256: str | None = None  # the path's earlier content: a redelivery with new content
    duplicate_of: str | None = None  # the path of the batch's file with the same content


@dataclass(frozen=True)
class Batch:
    batch_id: str
    run_date: dt.date
    files: tuple[StagedFile, ...]  # one per distinct content, parsed and landed
    duplicates: tuple[StagedFile, ...] = ()  # the same content under another name: recorded only


def root(lake_uri: str, dataset: str, feed: str) -> str:
    return landing.folder(lake_uri, "ops", "ingest_staging", dataset, feed)


def objects(root_uri: str) -> str:
    return landing.folder(root_uri, "objects")


def object_uri(root_uri: str, sha256: str) -> str:
    return landing.folder(root_uri, "objects", sha256)


def new_batch(run_date: dt.date, files: list[StagedFile], duplicates: list[StagedFile]) -> Batch:
    """The batch id depends only on the run date and the contents, so a re-run names it the same."""
    key = run_date.isoformat() + ":" + ",".join(sorted(f.sha256 for f in files))
    return Batch(hashlib.sha256(key.encode()).hexdigest()[:20], run_date, tuple(files), tuple(duplicates))


def record(storage: StorageOptions, root_uri: str, batch: Batch) -> None:
    """Make the batch durable: from now on a crash is finished by the next run."""
    doc = {"batch_id": batch.batch_id, "run_date": batch.run_date.isoformat(),
           "files": [asdict(f) for f in batch.files], "duplicates": [asdict(f) for f in batch.duplicates]}
    landing.write_bytes(storage, _batch_uri(root_uri, batch.batch_id), json.dumps(doc, indent=1).encode())


def pending(storage: StorageOptions, root_uri: str) -> list[Batch]:
    """Batches recorded by runs that did not finish them, oldest run date first."""
    fs, path = storage.filesystem(landing.folder(root_uri, "batches"))
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    prefix = "s3://" if is_s3(root_uri) else ""
    batches = [_load(storage, prefix + i.path) for i in infos
               if i.type == pafs.FileType.File and i.base_name.endswith(".json")]
    for batch in batches:
        missing = [f.sha256 for f in batch.files if _missing(storage, object_uri(root_uri, f.sha256))]
        if missing:
            raise StagingError(f"ingest batch {batch.batch_id} ({batch.run_date}) needs staged files "
                               f"{missing} that are gone from {objects(root_uri)}")
    return sorted(batches, key=lambda b: (b.run_date, b.batch_id))


def finish(storage: StorageOptions, root_uri: str, batch: Batch) -> None:
    """Delete a landed batch's staging. The batch file goes first, so a recorded batch always has
    its copies; a crash between the two leaves copies that nothing refers to (harmless)."""
    landing.delete(storage, _batch_uri(root_uri, batch.batch_id))
    for f in batch.files:
        landing.delete(storage, object_uri(root_uri, f.sha256))


def _missing(storage: StorageOptions, uri: str) -> bool:
    fs, path = storage.filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.NotFound


def _batch_uri(root_uri: str, batch_id: str) -> str:
    return landing.folder(root_uri, "batches", f"{batch_id}.json")


def _load(storage: StorageOptions, uri: str) -> Batch:
    doc = json.loads(landing.read_bytes(storage, uri))
    return Batch(doc["batch_id"], dt.date.fromisoformat(doc["run_date"]),
                 tuple(StagedFile(**f) for f in doc["files"]), tuple(StagedFile(**f) for f in doc["duplicates"]))
