"""The landing zone: listing delivered files, hashing them, reading their bytes."""

from __future__ import annotations

import hashlib
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
    with fs.open_input_stream(path) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_bytes(storage: StorageOptions, uri: str) -> bytes:
    fs, path = storage.filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return stream.readall()


def copy(storage: StorageOptions, source_uri: str, target_uri: str) -> None:
    fs, src = storage.filesystem(source_uri)
    target_fs, dst = storage.filesystem(target_uri)
    target_fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
    pafs.copy_files(src, dst, source_filesystem=fs, destination_filesystem=target_fs)


def folder(root_uri: str, *parts: str) -> str:
    return join(root_uri, *parts)
