"""The landing zone: listing delivered files, hashing them, reading and copying their bytes.

Bytes are always the file as delivered: nothing here decompresses (pyarrow would, by default,
for ``.gz``), so a file's SHA-256 is the hash of what arrived, and a corrupt archive is found
by the parser, for that one file.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs

from batchml.storage.location import StorageOptions, is_s3, join

_CHUNK = 8 << 20


@dataclass(frozen=True)
class LandedFile:
    uri: str
    name: str
    size: int


def list_files(storage: StorageOptions, folder_uri: str) -> list[LandedFile]:
    """Files directly in ``folder_uri`` (sorted by name); none if the folder does not exist."""
    fs, path = storage.filesystem(folder_uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    prefix = "s3://" if is_s3(folder_uri) else ""
    return sorted((LandedFile(prefix + i.path, i.base_name, i.size) for i in infos
                   if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_"))),
                  key=lambda f: f.name)


def sha256(storage: StorageOptions, uri: str) -> str:
    fs, path = storage.filesystem(uri)
    digest = hashlib.sha256()
    with fs.open_input_stream(path, compression=None) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_bytes(storage: StorageOptions, uri: str) -> bytes:
    fs, path = storage.filesystem(uri)
    with fs.open_input_stream(path, compression=None) as stream:
        return stream.readall()


def copy_hashed(storage: StorageOptions, source_uri: str, folder_uri: str) -> tuple[str, int]:
    """Copy a file into ``folder_uri/<sha256 of the bytes copied>``; return that hash and the size.

    The hash is of exactly the bytes written, whatever happens to the source meanwhile. The copy
    appears under its final name only when complete (written aside, then moved).
    """
    fs, src = storage.filesystem(source_uri)
    target_fs, folder = storage.filesystem(folder_uri)
    target_fs.create_dir(folder, recursive=True)
    partial = f"{folder}/.partial-{uuid.uuid4().hex}"
    digest, size = hashlib.sha256(), 0
    with fs.open_input_stream(src, compression=None) as stream, \
            target_fs.open_output_stream(partial, compression=None) as out:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    target_fs.move(partial, f"{folder}/{digest.hexdigest()}")
    return digest.hexdigest(), size


def write_bytes(storage: StorageOptions, uri: str, data: bytes) -> None:
    """Write a small file whole: it appears under ``uri`` only when complete (written aside, then moved)."""
    fs, path = storage.filesystem(uri)
    folder = path.rsplit("/", 1)[0]
    fs.create_dir(folder, recursive=True)
    partial = f"{folder}/.partial-{uuid.uuid4().hex}"
    with fs.open_output_stream(partial, compression=None) as out:
        out.write(data)
    fs.move(partial, path)


def delete(storage: StorageOptions, uri: str) -> None:
    """Delete a file; one already gone is fine (deletes are repeated after a crash)."""
    fs, path = storage.filesystem(uri)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def copy(storage: StorageOptions, source_uri: str, target_uri: str) -> None:
    fs, src = storage.filesystem(source_uri)
    target_fs, dst = storage.filesystem(target_uri)
    target_fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
    pafs.copy_files(src, dst, source_filesystem=fs, destination_filesystem=target_fs)


def folder(root_uri: str, *parts: str) -> str:
    return join(root_uri, *parts)
