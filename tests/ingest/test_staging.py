"""The write-ahead staging area on its own (no Spark)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from batchml.ingest import staging
from batchml.storage import landing
from batchml.storage.location import StorageOptions

STORAGE = StorageOptions()
DAY = dt.date(2024, 1, 1)


def stage(tmp_path, name: str, data: bytes) -> tuple[str, staging.StagedFile]:
    root = staging.root(str(tmp_path / "lake"), "ds", "events")
    (tmp_path / name).write_bytes(data)
    digest, size = landing.copy_hashed(STORAGE, str(tmp_path / name), staging.objects(root))
    return root, staging.StagedFile(digest, str(tmp_path / name), name, size)


def test_copies_are_named_by_the_hash_of_the_bytes_copied_and_batches_survive_a_restart(tmp_path):
    root, a = stage(tmp_path, "a.csv.gz", b"\x1f\x8b not really gzip")  # bytes as delivered, never decompressed
    _, b = stage(tmp_path, "b.csv", b"id\n1\n")
    assert a.sha256 == hashlib.sha256(b"\x1f\x8b not really gzip").hexdigest() and a.size == 18
    batch = staging.new_batch(DAY, [a, b], [staging.StagedFile(b.sha256, "c.csv", "c.csv", 5, duplicate_of=b.path)])
    assert staging.new_batch(DAY, [b, a], []).batch_id == batch.batch_id != staging.new_batch(DAY, [a], []).batch_id
    assert staging.pending(STORAGE, root) == []
    staging.record(STORAGE, root, batch)
    assert staging.pending(STORAGE, root) == [batch]
    assert landing.read_bytes(STORAGE, staging.object_uri(root, b.sha256)) == b"id\n1\n"
    staging.finish(STORAGE, root, batch)
    assert staging.pending(STORAGE, root) == [] and not list((tmp_path / "lake").rglob("*/objects/*"))


def test_a_batch_whose_staged_copy_is_gone_fails_loudly(tmp_path):
    root, a = stage(tmp_path, "a.csv", b"id\n1\n")
    staging.record(STORAGE, root, staging.new_batch(DAY, [a], []))
    landing.delete(STORAGE, staging.object_uri(root, a.sha256))
    with pytest.raises(staging.StagingError, match=f"needs staged files \\['{a.sha256}'\\] that are gone"):
        staging.pending(STORAGE, root)
