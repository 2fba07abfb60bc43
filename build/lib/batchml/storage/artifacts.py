"""Artifacts (reports and other files people read) under ``storage.artifacts_uri``, local or S3."""

from __future__ import annotations

from batchml.storage.location import StorageOptions, join


def write_text(storage: StorageOptions, artifacts_uri: str, relative: str, text: str) -> str:
    uri = join(artifacts_uri, relative)
    fs, path = storage.filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode("utf-8"))
    return uri


def read_text(storage: StorageOptions, uri: str) -> str:
    fs, path = storage.filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return stream.readall().decode("utf-8")
