"""Typed online-store settings: the top-level ``online:`` section of the config (docs/online.md).

Kept free of ``batchml.config`` imports (that module imports this one).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqliteSettings(_Strict):
    path: str | None = None  # default: <home>/online/features.sqlite (one file, WAL mode)


class RedisSettings(_Strict):
    url: str = "redis://127.0.0.1:6379/0"
    batch: int = Field(1000, gt=0)  # commands per pipeline round trip when writing


class DynamoDbSettings(_Strict):
    table: str = "batchml-online-features"  # created by infra/terraform (modules/online_store)
    region: str | None = None  # default: storage.s3.region
    endpoint_url: str | None = None  # tests and benchmarks: the loopback moto server
    write_threads: int = Field(8, gt=0)  # concurrent BatchWriteItem calls (25 items each)
    max_attempts: int = Field(10, gt=0)  # per call, throttling and unprocessed items included
    consistent_reads: bool = False  # strongly consistent reads cost twice the read units


class ServeSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8765, gt=0, lt=65536)
    access_log: str | None = None  # JSONL, one line per request; default: <home>/online/access.jsonl; "-": stdout
    max_ids: int = Field(1000, gt=0)  # most IDs or entity keys one request may ask for


class OnlineConfig(_Strict):
    """Where ``batchml run materialize`` writes and ``batchml serve-features`` reads."""

    backend: Literal["sqlite", "redis", "dynamodb"] = "sqlite"
    ttl_days: int = Field(90, gt=0)  # records expire this many days after the end of their run date
    # write only the entity states a night changes (docs/online.md): fewer records, not a faster SQLite night
    incremental_states: bool = False
    sqlite: SqliteSettings = SqliteSettings()
    redis: RedisSettings = RedisSettings()
    dynamodb: DynamoDbSettings = DynamoDbSettings()
    serve: ServeSettings = ServeSettings()
    batch_rows: int = Field(20_000, gt=0)  # rows encoded and written per batch while materializing

