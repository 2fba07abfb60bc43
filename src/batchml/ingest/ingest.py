"""Ingest: land one run date's delivered files into bronze Delta tables, each file exactly once.

For each feed of a dataset (events, labels):

1. finish any batch an interrupted run left in the staging area (``staging.pending``);
2. list ``<landing>/<prefix>/<run date>/`` and SHA-256 every file; skip content already in the
   manifest (a redelivery of the same bytes is a no-op); flag a known path with new content;
3. stage the new files (a copy named by its hash) and record the batch: from here on the batch
   is fixed, and a crash is finished by the next run from the staged copies;
4. parse the staged copies in Spark tasks under the schema contract (``contract.parse``); any
   error from one file's bytes quarantines that file, never the run;
5. append accepted rows to the bronze table, rejected rows and unreadable files to
   ``ops.quarantine``, and one row per file to ``ops.ingest_manifest``; all three commits carry
   the batch's transaction id, so each is skipped when it already happened;
6. delete the batch's staging.

Details and guarantees: docs/ingest.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field

import pyarrow as pa

from batchml.config import Config, SourceConfig
from batchml.ingest import contract, staging
from batchml.ingest.staging import Batch, StagedFile
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
    ("quarantine_version", pa.int64()), ("rows_coerced", pa.int64()),
])


class LandingChanged(RuntimeError):
    """A replay (``batchml rebuild``) found the landing zone unlike the manifest recorded it."""


class StagedCopyChanged(RuntimeError):
    """A staged copy no longer hashes to its name: the staging area was modified."""


@dataclass
class FeedReport:
    feed: str
    files_seen: int = 0
    files_new: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    files_quarantined: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    resumed_batches: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    target_version: int | None = None

    def summary(self) -> str:
        return (f"{self.feed}: {self.files_new}/{self.files_seen} new file(s), {self.rows_accepted} row(s) accepted, "
                f"{self.rows_quarantined} row(s) and {len(self.files_quarantined)} file(s) quarantined"
                + (f", {len(self.redelivered)} redelivered with new content" if self.redelivered else "")
                + (f", {len(self.duplicates)} duplicate(s) of another file" if self.duplicates else "")
                + (f", finished {len(self.resumed_batches)} interrupted batch(es)" if self.resumed_batches else "")
                + (f", {len(self.vanished)} vanished before they could be read" if self.vanished else ""))


def ingest(config: Config, run_date: dt.date, dataset: str | None = None, spark=None,
           recorded: dict[str, dict[str, str]] | None = None) -> list[FeedReport]:
    """``recorded`` (a replay): ``{feed: {path: sha256}}``, the files another lake's manifest recorded for
    this run date; only those are ingested, and each must still have the recorded content."""
    name = dataset or config.default_dataset
    ds = config.dataset(name)
    lake = Lake(config, spark)
    reports = []
    for feed, source in ds.feeds():
        report = _ingest_feed(lake, name, feed, source, run_date, None if recorded is None else recorded.get(feed, {}))
        log.info("ingest %s %s %s", name, run_date, report.summary())
        reports.append(report)
    return reports


def _ingest_feed(lake: Lake, dataset: str, feed: str, source: SourceConfig, run_date: dt.date,
                 recorded: dict[str, str] | None = None) -> FeedReport:
    report = FeedReport(feed)
    root = staging.root(lake.config.storage.lake_uri, dataset, feed)
    for batch in staging.pending(lake.storage, root):
        log.warning("%s/%s: finishing batch %s of run date %s, left by an interrupted ingest",
                    dataset, feed, batch.batch_id, batch.run_date)
        report.resumed_batches.append(batch.batch_id)
        _land(lake, dataset, feed, source, root, batch, report)
    folder = landing.folder(lake.config.storage.landing_uri, source.landing_prefix, run_date.isoformat())
    files = landing.list_files(lake.storage, folder)
    if recorded is not None:
        files = _recorded_files(files, recorded, folder)
    report.files_seen = len(files)
    batch = _stage(lake, dataset, feed, root, run_date, files, report, recorded)
    if batch is not None:
        _land(lake, dataset, feed, source, root, batch, report)
    return report


def _recorded_files(files: list[landing.LandedFile], recorded: dict[str, str], folder: str) -> list:
    """The listed files a replay ingests: those the manifest recorded, all of which must still be there."""
    listed = {f.uri for f in files}
    gone = sorted(set(recorded) - listed)
    if gone:
        more = f" and {len(gone) - 1} more file(s)" if len(gone) > 1 else ""
        raise LandingChanged(f"{gone[0]}{more} in the manifest but no longer in {folder}; a rebuild needs "
                             "every recorded file in the landing zone")
    return [f for f in files if f.uri in recorded]


def _stage(lake: Lake, dataset: str, feed: str, root: str, run_date: dt.date, files: list[landing.LandedFile],
           report: FeedReport, recorded: dict[str, str] | None = None) -> Batch | None:
    """Copy the files with new content to the staging area and record them as one batch."""
    storage = lake.storage
    known, latest_by_path = _manifest_index(lake, dataset, feed)
    staged: dict[str, StagedFile] = {}  # sha256 -> the first file with that content
    duplicates = []
    for f in files:
        try:
            listed = landing.sha256(storage, f.uri)
            if recorded is not None and listed != recorded[f.uri]:
                raise LandingChanged(f"{f.uri} has sha256 {listed[:12]}… but the manifest recorded "
                                     f"{recorded[f.uri][:12]}… for run date {run_date}; a rebuild needs the bytes "
                                     "that were ingested")
            if listed in known:
                log.info("skip %s: same content already ingested from %s", f.uri, known[listed])
                continue
            digest, size = landing.copy_hashed(storage, f.uri, staging.objects(root))
        except FileNotFoundError:  # withdrawn by its producer after the listing: nothing to ingest
            log.warning("%s vanished between listing and reading; not ingested", f.uri)
            report.vanished.append(f.uri)
            continue
        if digest != listed:  # the file changed after it was hashed: what was copied is what lands
            log.warning("%s changed while being read (sha256 %s… -> %s…); ingesting the bytes read",
                        f.uri, listed[:12], digest[:12])
            if digest in known:
                landing.delete(storage, staging.object_uri(root, digest))
                continue
        previous = latest_by_path.get(f.uri)
        if digest in staged:
            log.warning("%s has the same content as %s: ingested once, recorded as a duplicate",
                        f.uri, staged[digest].path)
            duplicates.append(StagedFile(digest, f.uri, f.name, size, previous, duplicate_of=staged[digest].path))
            report.duplicates.append(f.uri)
            continue
        if previous:
            log.warning("%s was delivered again with new content (sha256 %s… -> %s…); ingesting it as a new version",
                        f.uri, previous[:12], digest[:12])
            report.redelivered.append(f.uri)
        staged[digest] = StagedFile(digest, f.uri, f.name, size, previous)
    if not staged:
        return None
    batch = staging.new_batch(run_date, list(staged.values()), duplicates)
    staging.record(storage, root, batch)
    return batch


def _land(lake: Lake, dataset: str, feed: str, source: SourceConfig, root: str, batch: Batch,
          report: FeedReport) -> None:
    """The batch's three commits, each skipped if an earlier run made it; then its staging goes."""
    txn = (f"ingest/{dataset}/{feed}/{batch.batch_id}", 1)
    meta = {"job": "ingest", "runDate": batch.run_date, "batch": batch.batch_id}
    if lake.committed(MANIFEST, txn):  # interrupted after its last commit: only the cleanup is left
        staging.finish(lake.storage, root, batch)
        return
    report.files_new += len(batch.files)
    parsed = _parse(lake._spark(), batch, source, root, lake.storage).persist()
    try:
        counts = _per_file_counts(parsed)
        bronze = lake.write(_accepted(parsed, source, batch.run_date), source.table, txn=txn, metadata=meta)
        quarantine = lake.write(_rejected(parsed, dataset, feed, source.table, batch.run_date), QUARANTINE,
                                txn=txn, metadata=meta)
    finally:
        parsed.unpersist()
    rows = _manifest_rows(lake, dataset, feed, source, root, batch, counts, bronze.version, quarantine.version,
                          report)
    lake.write_arrow(pa.Table.from_pylist(rows, MANIFEST_SCHEMA), MANIFEST, txn=txn, metadata=meta)
    report.target_version = bronze.version
    staging.finish(lake.storage, root, batch)


def _manifest_rows(lake: Lake, dataset: str, feed: str, source: SourceConfig, root: str, batch: Batch,
                   counts: dict, bronze_version: int | None, quarantine_version: int | None,
                   report: FeedReport) -> list[dict]:
    """One row per file of the batch (duplicates included); copies of unreadable files are kept."""
    common = {"run_date": batch.run_date, "dataset": dataset, "feed": feed, "batch_id": batch.batch_id,
              "target_table": source.table, "target_version": bronze_version,
              "quarantine_version": quarantine_version}
    rows = []
    for f in batch.files:
        c = counts.get(f.sha256) or {"read": 0, "accepted": 0, "quarantined": 0, "file_error": None,
                                     "coerced": 0, "coerced_columns": []}
        status = "quarantined_file" if c["file_error"] else ("empty" if c["read"] == 0 else "ingested")
        if c["file_error"]:
            report.files_quarantined.append(f.path)
            landing.copy(lake.storage, staging.object_uri(root, f.sha256),
                         _quarantined_copy(lake, batch.run_date, f.sha256, f.name))
        report.rows_accepted += c["accepted"]
        report.rows_quarantined += c["quarantined"]
        note = (f"coerced under the contract: {', '.join(sorted(c['coerced_columns']))} in {c['coerced']} row(s)"
                if c["coerced"] else None)
        rows.append({**common, **_file_fields(f), "sha256": f.sha256, "status": status, "rows_read": c["read"],
                     "rows_accepted": c["accepted"], "rows_quarantined": c["quarantined"],
                     "reason": c["file_error"] or note, "rows_coerced": c["coerced"]})
    for d in batch.duplicates:
        rows.append({**common, **_file_fields(d), "sha256": d.sha256, "status": "duplicate", "rows_read": 0,
                     "rows_accepted": 0, "rows_quarantined": 0, "rows_coerced": 0,
                     "reason": f"same content as {d.duplicate_of}, delivered in the same batch: ingested once"})
    return rows


def _file_fields(f: StagedFile) -> dict:
    return {"path": f.path, "file_name": f.name, "size_bytes": f.size, "redelivered": f.previous_sha256 is not None,
            "previous_sha256": f.previous_sha256}


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


def _parse(spark, batch: Batch, source: SourceConfig, root: str, storage: StorageOptions):
    """One row per record of every file of the batch, typed under the contract, with ``_error`` reasons."""
    schema = contract.output_schema(source).append(pa.field("_source_file", pa.string())) \
        .append(pa.field("_source_sha256", pa.string()))
    files = spark.createDataFrame([(staging.object_uri(root, f.sha256), f.path, f.name, f.sha256)
                                   for f in batch.files], "staged string, path string, name string, sha256 string")
    files = files.repartition(min(len(batch.files), default_parallelism(spark) * 2))

    def parse_files(batches):
        for b in batches:
            for staged, path, name, digest in zip(*(b.column(c).to_pylist() for c in ("staged", "path", "name",
                                                                                        "sha256"))):
                yield from _parse_one(staged, path, name, digest, source, storage, schema)

    from pyspark.sql.pandas.types import from_arrow_schema

    return files.mapInArrow(parse_files, from_arrow_schema(schema))


def _parse_one(staged: str, path: str, name: str, digest: str, source: SourceConfig, storage: StorageOptions,
               schema: pa.Schema):
    data = landing.read_bytes(storage, staged)  # outside the try: a storage failure fails the run loudly
    if hashlib.sha256(data).hexdigest() != digest:
        raise StagedCopyChanged(f"staged copy {staged} of {path} no longer has sha256 {digest}")
    try:
        table = contract.parse(data, source, name).table
    except contract.CONTENT_ERRORS as exc:  # whatever one file's bytes cause stays with that file
        table = _unreadable(exc, source)
    table = table.append_column("_source_file", pa.array([path] * table.num_rows, pa.string()))
    table = table.append_column("_source_sha256", pa.array([digest] * table.num_rows, pa.string()))
    yield from table.to_batches(max_chunksize=65536)


def _unreadable(exc: Exception, source: SourceConfig) -> pa.Table:
    """The one row that stands for a file quarantined whole (no row number)."""
    detail = str(exc) if isinstance(exc, contract.UnreadableFile) else f"{type(exc).__name__}: {exc}"
    row = {name: None for name in contract.output_schema(source).names}
    row["_error"] = contract.safe_text(f"unreadable file: {detail}")
    return pa.Table.from_pylist([row], contract.output_schema(source))


def _per_file_counts(parsed) -> dict[str, dict]:
    from pyspark.sql import functions as F

    accepted = F.col("_error").isNull()
    rows = parsed.groupBy("_source_sha256").agg(
        F.count("_row_number").alias("read"),
        F.sum(F.when(accepted, 1).otherwise(0)).alias("accepted"),
        F.sum(F.when(~accepted & F.col("_row_number").isNotNull(), 1).otherwise(0)).alias("quarantined"),
        F.max(F.when(F.col("_row_number").isNull(), F.col("_error"))).alias("file_error"),
        F.sum(F.when(accepted & F.col("_coerced").isNotNull(), 1).otherwise(0)).alias("coerced"),
        F.collect_set("_coerced").alias("coerced_sets"),
    ).collect()
    out = {}
    for r in rows:
        c = r.asDict()
        c["coerced_columns"] = sorted({col for s in c.pop("coerced_sets") for col in s.split(",")})
        out[r["_source_sha256"]] = c
    return out


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
