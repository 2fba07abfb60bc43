"""Redis: one string value per key, and a sorted set of keys by expiry time.

Expiry is by run date, not by Redis's own clock: ``EXPIREAT`` with a run date's expiry would delete a
backfilled past date at once. ``purge`` (run by ``materialize``) removes what the sorted set says expired.
"""

from __future__ import annotations

from typing import Sequence

from batchml.online.backends import BackendUnavailable, Record

EXPIRY = "batchml:online:expiry"  # sorted set: key -> expires_at


class RedisBackend:
    name = "redis"

    def __init__(self, url: str, batch: int = 1000):
        import redis

        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self.url, self.batch = url, batch
        self.client = redis.Redis.from_url(url)

    def put(self, records: Sequence[Record]) -> None:
        for i in range(0, len(records), self.batch):
            pipe = self.client.pipeline(transaction=False)
            part = records[i:i + self.batch]
            pipe.mset({r.key: r.value for r in part})
            pipe.zadd(EXPIRY, {r.key: r.expires_at for r in part})
            pipe.execute()

    def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        try:
            values = self.client.mget(unique)
        except self._errors as exc:
            raise BackendUnavailable(f"online store {self.url}: {exc}") from None
        return {k: v for k, v in zip(unique, values) if v is not None}

    def delete(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), self.batch):
            part = list(keys[i:i + self.batch])
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(*part)
            pipe.zrem(EXPIRY, *part)
            pipe.execute()

    def purge(self, before: int) -> int:
        expired = [k.decode() for k in self.client.zrangebyscore(EXPIRY, "-inf", before)]
        self.delete(expired)
        return len(expired)

    def ping(self) -> None:
        try:
            self.client.ping()
        except self._errors as exc:
            raise BackendUnavailable(f"online store {self.url}: {exc}") from None

    def close(self) -> None:
        self.client.close()
