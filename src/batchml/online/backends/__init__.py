"""Online store backends behind one small interface: keys to opaque bytes, each with an expiry time.

What a record means (event features, entity state, run markers) is decided in ``batchml.online.records``;
a backend only stores, fetches, deletes and expires bytes by key. ``online.backend`` picks one:

* ``sqlite`` (default): one file, no server (``sqlite.SqliteBackend``);
* ``redis``: a Redis server (``redis.RedisBackend``);
* ``dynamodb``: an AWS DynamoDB table (``dynamodb.DynamoDbBackend``), created by infra/terraform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from batchml.config import Config


class BackendUnavailable(RuntimeError):
    """The store cannot be reached or opened (the health check reports it; lookups raise it)."""


@dataclass(frozen=True)
class Record:
    key: str
    value: bytes
    expires_at: int  # epoch seconds; derived from the run date, never from the clock


class Backend(Protocol):
    name: str

    def put(self, records: Sequence[Record]) -> None:
        """Insert or overwrite every record (idempotent)."""

    def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored value of each key that exists; missing keys are absent from the result."""

    def delete(self, keys: Sequence[str]) -> None:
        """Remove the keys (absent keys are fine)."""

    def purge(self, before: int) -> int:
        """Remove records whose expiry is at or before ``before`` (epoch seconds); how many went.
        DynamoDB expires records itself through its TTL attribute."""

    def ping(self) -> None:
        """Raise BackendUnavailable when the store cannot serve."""

    def close(self) -> None:
        """Release connections."""


def open_backend(config: "Config", create: bool = False) -> Backend:
    """The configured backend. ``create``: make the SQLite file if missing (the writer); readers need it."""
    online = config.online
    if online.backend == "sqlite":
        from batchml.online.backends.sqlite import SqliteBackend

        path = online.sqlite.path or f"{config.home}/online/features.sqlite"
        return SqliteBackend(path, create=create)
    if online.backend == "redis":
        from batchml.online.backends.redis import RedisBackend

        return RedisBackend(online.redis.url, online.redis.batch)
    from batchml.online.backends.dynamodb import DynamoDbBackend

    settings = online.dynamodb
    return DynamoDbBackend(settings, region=settings.region or config.storage.s3.region)
