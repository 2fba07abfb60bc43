"""Where bytes live: local paths or ``s3://`` URIs, and the options each engine needs.

Options travel to Spark executors as a plain dict (``StorageOptions.as_dict``), so this
module must stay importable and cheap on workers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs


@dataclass(frozen=True)
class StorageOptions:
    endpoint_url: str | None = None
    region: str = "us-east-1"
    allow_http: bool = False
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @classmethod
    def from_config(cls, s3) -> "StorageOptions":
        return cls(**s3.model_dump())

    def as_dict(self) -> dict:
        return asdict(self)

    def delta_rs(self, uri: str) -> dict[str, str] | None:
        """Storage options for delta-rs (object_store names)."""
        if not is_s3(uri):
            return None
        opts = {"AWS_REGION": self.region, "conditional_put": "etag"}
        if self.endpoint_url:
            opts["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.allow_http:
            opts["AWS_ALLOW_HTTP"] = "true"
        key, secret = self._credentials()
        if key and secret:
            opts["AWS_ACCESS_KEY_ID"], opts["AWS_SECRET_ACCESS_KEY"] = key, secret
        return opts

    def filesystem(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the path within it."""
        if is_s3(uri):
            parsed = urlparse(uri)
            key, secret = self._credentials()
            kwargs = {"region": self.region, "access_key": key, "secret_key": secret}
            if self.endpoint_url:
                endpoint = urlparse(self.endpoint_url)
                kwargs["endpoint_override"] = endpoint.netloc or self.endpoint_url
                kwargs["scheme"] = endpoint.scheme or ("http" if self.allow_http else "https")
            return pafs.S3FileSystem(**kwargs), f"{parsed.netloc}{parsed.path}".rstrip("/")
        return pafs.LocalFileSystem(), local_path(uri)

    def _credentials(self) -> tuple[str | None, str | None]:
        return (self.access_key_id or os.environ.get("AWS_ACCESS_KEY_ID"),
                self.secret_access_key or os.environ.get("AWS_SECRET_ACCESS_KEY"))


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def local_path(uri: str) -> str:
    path = urlparse(uri).path if uri.startswith("file://") else uri
    return os.path.abspath(path)


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])
