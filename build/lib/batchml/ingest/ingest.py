"""Ingest: land one run date's delivered files into bronze Delta tables.

For each feed of a dataset (events, labels):

1. list ``<landing>/<prefix>/<run date>/`` and SHA-256 every file;
2. skip content already in the manifest (a redelivery of the same bytes is a no-op), flag
   a known file name whose content changed;
3. parse the new files in Spark tasks under the schema contract (``contract.parse``);
4. append accepted rows to the bronze table, rejected rows and unreadable files to
   ``ops.quarantine``, and one row per file to ``ops.ingest_manifest``.

All three writes carry the same transaction id, derived from the new files' hashes, so a
crash-restart or re-run never lands the same file twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field

import pyarrow as pa

from batchml.config import Config, SourceConfig
from batchml.ingest import contract
from batchml.spark import default_parallelism, freeze_worker_imports
from batchml.storage import Lake, landing
from batchml.storage.location import StorageOptions

freeze_worker_imports()  # file parsing runs in Python workers (mapInArrow)

log = logging.getLogger(__name__)
MANIFEST = "ops.ingest_manifest"
QUARANTINE = "ops.quarantine"

MANIFEST_SCHEMA = pa.schema([
    ("run_date", pa.date32()), ("dataset", pa.string()), ("feed", pa.string()), ("path", pa.string()),
    ("file_name", pa.string()), ("size_bytes", pa.int64()), ("sha256", pa.string()), ("status", pa.string()),
    ("rows_read", pa.int64()), ("rows_accepted", pa.int64()), ("rows_quarantined", pa.int64()),
    ("redelivered", pa.bool_()), ("previous_sha256", pa.string()), ("reason", pa.string()),
    ("batch_id", pa.string()), ("target_table", pa.string()), ("target_version", pa.int64()),
    ("quarantine_version", pa.int64()),
])


@dataclass
class FeedReport:
    feed: str
    files_seen: int = 0
    files_new: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    files_quarantined: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    target_version: int | None = None

    def summary(self) -> str:
        return (f"{self.feed}: {self.files_new}/{self.files_seen} new file(s), {self.rows_accepted} row(s) accepted, "
                f"{self.rows_quarantined} row(s) and {len(self.files_quarantined)} file(s) quarantined"
                + (f", {len(self.redelivered)} redelivered with new content" if self.redelivered else ""))


def ingest(config: Config, run_date: dt.date, dataset: str | None = None, spark=None) -> list[FeedReport]:
    name = dataset or config.default_dataset
    ds = config.dataset(name)
    lake = Lake(config, spark)
    reports = []
    for feed, source in (("events", ds.events), ("labels", ds.labels)):
        if source is not None:
            report = _ingest_feed(lake, name, feed, source, run_date)
            log.info("ingest %s %s %s", name, run_date, report.summary())
            reports.append(report)
    return reports


def _ingest_feed(lake: Lake, dataset: str, feed: str, source: SourceConfig, run_date: dt.date) -> FeedReport:
    storage = lake.storage
    folder = landing.folder(lake.config.storage.landing_uri, source.landing_prefix, run_date.isoformat())
    files = landing.list_files(storage, folder)
    report = FeedReport(feed, files_seen=len(files))
    seen_sha, sha_by_path = _manifest_index(lake, dataset, feed)
    new = []
    for f in files:
        digest = landing.sha256(storage, f.uri)
        if digest in seen_sha:
            log.info("skip %s: same content already ingested from %s", f.uri, seen_sha[digest])
            continue
        previous = sha_by_path.get(f.uri)
        if previous:
            log.warning("%s was delivered again with new content (sha256 %s… -> %s…); ingesting it as a new version",
                        f.uri, previous[:12], digest[:12])
            report.redelivered.append(f.uri)
        new.append((f, digest, previous))
    report.files_new = len(new)
    if not new:
        return report

    batch_id = hashlib.sha256("".join(sorted(d for _, d, _ in new)).encode()).hexdigest()[:20]
    txn = (f"ingest/{dataset}/{feed}/{batch_id}", 1)
    spark = lake._spark()
    parsed = _parse(spark, new, source, storage).persist()
    try:
        counts = _per_file_counts(parsed)
        bronze = _accepted(parsed, source, run_date)
        target = lake.write(bronze, source.table, txn=txn, metadata={"job": "ingest", "runDate": run_date})
        quarantined = _rejected(parsed, dataset, feed, source.table, run_date)
        quarantine = lake.write(quarantined, QUARANTINE, txn=txn, metadata={"job": "ingest", "runDate": run_date})
    finally:
        parsed.unpersist()

    rows = []
    for f, digest, previous in new:
        c = counts.get(f.uri, {"read": 0, "accepted": 0, "quarantined": 0, "file_error": None})
        status = "quarantined_file" if c["file_error"] else ("empty" if c["read"] == 0 else "ingested")
        if c["file_error"]:
            report.files_quarantined.append(f.uri)
            landing.copy(storage, f.uri, _quarantined_copy(lake, run_date, digest, f.name))
        report.rows_accepted += c["accepted"]
        report.rows_quarantined += c["quarantined"]
        rows.append({"run_date": run_date, "dataset": dataset, "feed": feed, "path": f.uri, "file_name": f.name,
                     "size_bytes": f.size, "sha256": digest, "status": status, "rows_read": c["read"],
                     "rows_accepted": c["accepted"], "rows_quarantined": c["quarantined"],
                     "redelivered": previous is not None, "previous_sha256": previous, "reason": c["file_error"],
                     "batch_id": batch_id, "target_table": source.table, "target_version": target.version,
                     "quarantine_version": quarantine.version})
    lake.write_arrow(pa.Table.from_pylist(rows, MANIFEST_SCHEMA), MANIFEST, txn=txn,
                     metadata={"job": "ingest", "runDate": run_date})
    report.target_version = target.version
    return report


def _manifest_index(lake: Lake, dataset: str, feed: str) -> tuple[dict[str, str], dict[str, str]]:
    """{sha256: path} of all ingested content, and {path: latest sha256}."""
    if not lake.exists(MANIFEST):
        return {}, {}
    rows = lake.read_arrow(MANIFEST, [("dataset", "=", dataset), ("feed", "=", feed)],
                           columns=["path", "sha256", "run_date"]).sort_by("run_date").to_pylist()
    return {r["sha256"]: r["path"] for r in rows}, {r["path"]: r["sha256"] for r in rows}


def _quarantined_copy(lake: Lake, run_date: dt.date, digest: str, name: str) -> str:
    return landing.folder(lake.config.storage.lake_uri, "ops", "quarantine_files", run_date.isoformat(),
                          f"{digest[:16]}-{name}")


def _parse(spark, new: list, source: SourceConfig, storage: StorageOptions):
    """One row per record of every new file, typed under the contract, with ``_error`` reasons."""
    schema = contract.output_schema(source).append(pa.field("_source_file", pa.string())) \
        .append(pa.field("_source_sha256", pa.string()))
    files = spark.createDataFrame([(f.uri, d) for f, d, _ in new], "uri string, sha256 string")
    files = files.repartition(min(len(new), default_parallelism(spark) * 2))

    def parse_files(batches):
        for batch in batches:
            for uri, digest in zip(batch.column("uri").to_pylist(), batch.column("sha256").to_pylist()):
                yield from _parse_one(uri, digest, source, storage, schema)

    from pyspark.sql.pandas.types import from_arrow_schema

    return files.mapInArrow(parse_files, from_arrow_schema(schema))


def _parse_one(uri: str, digest: str, source: SourceConfig, storage: StorageOptions, schema: pa.Schema):
    try:
        table = contract.parse(landing.read_bytes(storage, uri), source).table
    except contract.UnreadableFile as exc:
        row = {name: None for name in schema.names}
        row["_error"] = f"unreadable file: {exc}"
        table = pa.Table.from_pylist([row], contract.output_schema(source))
    table = table.append_column("_source_file", pa.array([uri] * table.num_rows, pa.string()))
    table = table.append_column("_source_sha256", pa.array([digest] * table.num_rows, pa.string()))
    yield from table.to_batches(max_chunksize=65536)


def _per_file_counts(parsed) -> dict[str, dict]:
    from pyspark.sql import functions as F

    rows = parsed.groupBy("_source_file").agg(
        F.count("_row_number").alias("read"),
        F.sum(F.when(F.col("_error").isNull(), 1).otherwise(0)).alias("accepted"),
        F.sum(F.when(F.col("_error").isNotNull() & F.col("_row_number").isNotNull(), 1).otherwise(0))
        .alias("quarantined"),
        F.max(F.when(F.col("_row_number").isNull(), F.col("_error"))).alias("file_error"),
    ).collect()
    return {r["_source_file"]: r.asDict() for r in rows}


def _accepted(parsed, source: SourceConfig, run_date: dt.date):
    from pyspark.sql import functions as F

    return parsed.where(F.col("_error").isNull()).select(
        *[c.name for c in source.columns], "_source_file", "_source_sha256", "_row_number",
        F.lit(run_date).alias("ingest_date"))


def _rejected(parsed, dataset: str, feed: str, table: str, run_date: dt.date):
    from pyspark.sql import functions as F

    return parsed.where(F.col("_error").isNotNull()).select(
        F.lit(run_date).alias("run_date"), F.lit(dataset).alias("dataset"), F.lit(feed).alias("feed"),
        F.lit(table).alias("target_table"), F.col("_source_file").alias("source_file"),
        F.col("_source_sha256").alias("source_sha256"), F.col("_row_number").alias("row_number"),
        F.col("_raw_record").alias("raw_record"), F.col("_error").alias("reason"))
