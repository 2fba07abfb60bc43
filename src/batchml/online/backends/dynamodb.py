"""DynamoDB: one item per key (``pk``), the value as binary ``v``, and ``expires_at`` as the table's TTL
attribute, so DynamoDB deletes expired items itself (within about two days of the time).

Writes go in ``BatchWriteItem`` calls of 25 items on ``write_threads`` threads; reads in
``BatchGetItem`` calls of 100 keys. Throttling is retried twice over: botocore's standard retry mode
retries throttled calls with backoff, and items or keys DynamoDB leaves unprocessed (partial
throttling) are re-sent with exponential backoff, up to ``max_attempts``, then the write fails loudly.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from batchml.online.backends import BackendUnavailable, Record

WRITE_BATCH = 25  # BatchWriteItem's limit
READ_BATCH = 100  # BatchGetItem's limit
BASE_DELAY = 0.05  # seconds; doubled per attempt, with jitter


class Unprocessed(RuntimeError):
    """DynamoDB kept refusing part of a batch (throttling) after every attempt."""


def client(settings, region: str):
    import boto3
    from botocore.config import Config as BotoConfig

    retries = {"max_attempts": settings.max_attempts, "mode": "standard"}
    return boto3.client("dynamodb", region_name=region, endpoint_url=settings.endpoint_url,
                        config=BotoConfig(retries=retries, max_pool_connections=max(10, settings.write_threads * 2)))


def create_table(settings, region: str) -> None:
    """The table as infra/terraform/modules/online_store declares it (tests and benchmarks on moto)."""
    db = client(settings, region)
    db.create_table(TableName=settings.table, BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    db.get_waiter("table_exists").wait(TableName=settings.table)
    db.update_time_to_live(TableName=settings.table,
                           TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


class DynamoDbBackend:
    name = "dynamodb"

    def __init__(self, settings, region: str, db=None):
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (BotoCoreError, ClientError)
        self.table, self.settings = settings.table, settings
        self.db = db or client(settings, region)
        self._pool = ThreadPoolExecutor(max_workers=settings.write_threads, thread_name_prefix="dynamodb-write")

    def put(self, records: Sequence[Record]) -> None:
        requests = [{"PutRequest": {"Item": {"pk": {"S": r.key}, "v": {"B": r.value},
                                             "expires_at": {"N": str(r.expires_at)}}}} for r in records]
        self._write(requests)

    def delete(self, keys: Sequence[str]) -> None:
        self._write([{"DeleteRequest": {"Key": {"pk": {"S": k}}}} for k in dict.fromkeys(keys)])

    def _write(self, requests: list[dict]) -> None:
        batches = [requests[i:i + WRITE_BATCH] for i in range(0, len(requests), WRITE_BATCH)]
        list(self._pool.map(self._write_batch, batches))  # re-raises the first failure

    def _write_batch(self, batch: list[dict]) -> None:
        pending = {self.table: batch}
        for attempt in range(self.settings.max_attempts):
            pending = self.db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                return
            _backoff(attempt)
        raise Unprocessed(f"DynamoDB {self.table}: {len(pending[self.table])} item(s) still unprocessed after "
                          f"{self.settings.max_attempts} attempts (throttled; raise the table's capacity or "
                          "lower online.dynamodb.write_threads)")

    def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        unique, out = list(dict.fromkeys(keys)), {}
        for i in range(0, len(unique), READ_BATCH):
            pending = {self.table: {"Keys": [{"pk": {"S": k}} for k in unique[i:i + READ_BATCH]],
                                    "ProjectionExpression": "pk, v",
                                    "ConsistentRead": self.settings.consistent_reads}}
            for attempt in range(self.settings.max_attempts):
                try:
                    answer = self.db.batch_get_item(RequestItems=pending)
                except self._errors as exc:  # unreachable, no such table, throttled past the retries
                    raise BackendUnavailable(f"DynamoDB table {self.table}: {exc}") from None
                out.update({item["pk"]["S"]: item["v"]["B"] for item in answer["Responses"].get(self.table, [])})
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise Unprocessed(f"DynamoDB {self.table}: keys still unprocessed after "
                                  f"{self.settings.max_attempts} attempts (throttled reads)")
        return out

    def purge(self, before: int) -> int:
        return 0  # the table's TTL on expires_at deletes expired items

    def ping(self) -> None:
        try:
            status = self.db.describe_table(TableName=self.table)["Table"]["TableStatus"]
        except self._errors as exc:
            raise BackendUnavailable(f"DynamoDB table {self.table}: {exc}") from None
        if status not in ("ACTIVE", "UPDATING"):
            raise BackendUnavailable(f"DynamoDB table {self.table} is {status}")

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _backoff(attempt: int) -> None:
    time.sleep(BASE_DELAY * 2 ** attempt * (0.5 + random.random() / 2))  # jitter: throttled writers spread out
