"""The lake: every table read and write in batchml goes through this facade.

Jobs name tables (``bronze.card_transactions``); the lake knows where they live, how they
are partitioned, whether their schema may evolve, and which engine commits to them.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import TYPE_CHECKING, Iterable, Iterator

import pyarrow as pa
from deltalake import DeltaTable

from batchml.config import Config, TableConfig
from batchml.storage import commit as committer
from batchml.storage import predicates
from batchml.storage.files import FileWriter, write_files
from batchml.storage.location import StorageOptions, join

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
WriteResult = committer.WriteResult
Txn = committer.Txn


class UnknownTable(KeyError):
    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class Lake:
    def __init__(self, config: Config, spark: "SparkSession | None" = None):
        self.config = config
        self.spark = spark
        self.storage = StorageOptions.from_config(config.storage.s3)
        if config.storage.engine == "delta-spark":
            from batchml.storage.native import NativeDeltaEngine

            self._native = NativeDeltaEngine(self)
        else:
            self._native = None

    # -- naming ---------------------------------------------------------------
    def table_config(self, name: str) -> TableConfig:
        try:
            return self.config.tables[name]
        except KeyError:
            raise UnknownTable(f"table {name!r} is not declared under 'tables' in conf/") from None

    def uri(self, name: str) -> str:
        self.table_config(name)
        return join(self.config.storage.lake_uri, *name.split("."))

    def _delta(self, name: str, version=None) -> DeltaTable | None:
        return committer.open_table(self.uri(name), self.storage, version)

    # -- inspection -----------------------------------------------------------
    def exists(self, name: str) -> bool:
        return self._delta(name) is not None

    def version(self, name: str) -> int | None:
        table = self._delta(name)
        return None if table is None else table.version()

    def schema(self, name: str, version: int | None = None) -> pa.Schema:
        """The table's schema as Arrow, with each column's metadata (``comment``: its description)."""
        table = self._delta(name, version)
        if table is None:
            raise FileNotFoundError(f"table {name} does not exist yet at {self.uri(name)}")
        return pa.schema(table.schema().to_arrow())

    def committed(self, name: str, txn: tuple[str, int]) -> bool:
        return committer.already_committed(self._delta(name), txn)

    def last_change(self, name: str, where) -> int:
        """The version of the newest commit that added or removed data files that may hold rows matching
        ``where``: the snapshot of those rows a reader of the current version sees was made then. When the
        log no longer reaches that far back (cleaned up), the oldest version it still holds."""
        from batchml.storage import conflicts

        table = self._require(name)
        schema = pa.schema(table.schema().to_arrow())
        terms = predicates.check(where, schema.names)
        partitions = table.metadata().partition_columns
        version = table.version()
        while version >= 0:
            commit = conflicts.read_commit(table.table_uri, self.storage, version)
            if commit is None:
                return version + 1
            if conflicts.overlap(terms, schema, partitions, commit):
                return version
            version -= 1
        return 0

    def count(self, name: str, where=None) -> int:
        """Rows matching a partition-column predicate, from the snapshot's statistics (no scan)."""
        return sum(e["num_records"] or 0 for e in self._partition_files(name, where))

    def counts_by(self, name: str, column: str, where=None) -> dict:
        """Rows per value of the partition column ``column`` (typed) matching a partition-column predicate,
        from the snapshot's statistics (no scan)."""
        counts: dict = {}
        for e in self._partition_files(name, where, column):
            value = e[f"partition.{column}"]
            counts[value] = counts.get(value, 0) + (e["num_records"] or 0)
        return counts

    def _partition_files(self, name: str, where, *columns: str) -> list[dict]:
        """The snapshot's files whose partition values satisfy ``where``; ``where`` and ``columns`` must be
        partition columns (the statistics answer nothing finer)."""
        table = self._require(name)
        partitions = set(table.metadata().partition_columns)
        terms = predicates.check(where or [], pa.schema(table.schema().to_arrow()).names)
        asked = [*columns, *(c for c, _, _ in terms)]
        if any(col not in partitions for col in asked):
            raise ValueError(f"answered from statistics only: {asked} must be partition columns {partitions}")
        return [e for e in pa.table(table.get_add_actions(flatten=True)).to_pylist()
                if predicates.file_fully_matches(e, terms, partitions)]

    def file_stats(self, name: str) -> list[dict]:
        """The snapshot's data files from the Delta log alone: ``partition.<col>``, ``num_records``,
        ``min.<col>`` and ``max.<col>`` per file (no data is read)."""
        return pa.table(self._require(name).get_add_actions(flatten=True)).to_pylist()

    def history(self, name: str, limit: int | None = None) -> list[dict]:
        table = self._require(name)
        return table.history(limit)

    # -- Spark I/O ------------------------------------------------------------
    def read(self, name: str, columns: list[str] | None = None, version: int | None = None,
             timestamp: dt.datetime | str | None = None, where=None, transform=None) -> "DataFrame":
        """A DataFrame over one snapshot. Filters on the result prune files before reading.

        ``where`` (``[(column, op, value)]``) keeps only matching rows, inside the read task.
        ``transform`` is a picklable callable, Arrow ``RecordBatch`` in and out, with its output
        ``schema`` attribute: it runs inside the read task too, so only its output crosses into
        Spark (scoring uses it: the model's inputs never leave Python). One with a ``map_task``
        method gets the task's whole batch iterator instead (drift summaries, scoring's file writes);
        under the native engine it runs as a ``mapInArrow`` over the read partitions.
        """
        table = self._require(name)
        if self._native:
            df = self._native.read(name, columns, version, timestamp)
            return self._native.narrow(df, where, transform)
        reader = self._spark().read.format("batchml_delta").option("storage", _encode(self.storage))
        if where:
            names = columns or pa.schema(table.schema().to_arrow()).names
            reader = reader.option("where", _encode(predicates.check(where, names)))
        if transform is not None:
            reader = reader.option("transform", _encode(transform))
        if version is not None:
            reader = reader.option("versionAsOf", str(version))
        elif timestamp is not None:
            reader = reader.option("timestampAsOf", timestamp.isoformat() if isinstance(timestamp, dt.datetime)
                                   else timestamp)
        if columns:
            reader = reader.option("columns", ",".join(columns))
        return reader.load(self.uri(name))

    def read_tasks(self, name: str, version: int | None = None, where=None) -> int:
        """How many tasks a Spark read of this snapshot (with ``where``) runs, planned here without Spark."""
        if self._native:
            return self.read(name, version=version, where=where).rdd.getNumPartitions()
        from batchml.storage.spark_source import DeltaReader

        options = {"path": self.uri(name), "storage": _encode(self.storage)}
        if version is not None:
            options["versionAsOf"] = str(version)
        names = pa.schema(self._require(name).schema().to_arrow()).names
        return len(DeltaReader(options, pa.schema([]), predicates.check(where, names) if where else []).partitions())

    def write(self, df: "DataFrame", name: str, mode: str = "append", replace_where=None,
              txn: Txn | list[Txn] | None = None, metadata: dict | None = None,
              options: dict[str, str] | None = None, files: list[dict] | None = None) -> WriteResult:
        """Append, overwrite, or overwrite only the rows matching ``replace_where``.

        ``txn=(app_id, version)`` (or a list of them) makes the write idempotent: if the table
        already recorded that transaction (or a later version of it), nothing is written. An
        overwrite fails with ``WriteConflict`` when a concurrent commit changed the data it
        replaces (docs/storage.md). ``options`` are extra writer options (tests use
        ``batchml.testing.crashBeforeCommit``). ``files``: Parquet files already written for this
        write by read tasks (``file_writer`` with the same schema), committed in the same version.
        """
        from batchml.spark import arrow_schema

        plan, early = self._begin(name, arrow_schema(df.schema), mode, replace_where, txn, metadata)
        if early:
            return early
        if self._native:
            if files:
                raise ValueError("the native Delta engine writes its own files; tasks cannot add any")
            return self._native.write(df, name, plan)
        (df.write.format("batchml_delta").mode("overwrite" if mode == "overwrite" else "append")
         .option("plan", _encode(plan)).option("storage", _encode(self.storage)).options(**(options or {}))
         .save(plan.table_uri))
        return committer.commit(plan, committer.take_staged(plan) + (files or []))

    @property
    def tasks_write_files(self) -> bool:
        """Whether Spark tasks may write a table's Parquet files themselves (``file_writer``): not under
        the native Delta engine, which writes and commits its own."""
        return self._native is None

    def file_writer(self, name: str, schema: pa.Schema, replace_where=None) -> FileWriter:
        """Files that a later ``write(df, name, mode="overwrite", replace_where=..., files=...)`` of a
        DataFrame with ``schema`` commits; read tasks write them (``read(transform=)`` with ``map_task``).
        Files of a write that never commits stay invisible; ``vacuum`` deletes them."""
        if not self.tasks_write_files:
            raise ValueError("the native Delta engine writes its own files; tasks cannot add any")
        mode = "append" if replace_where is None else "overwrite"
        return FileWriter.of(self._plan(name, schema, mode, replace_where, None, None, None))

    # -- driver-side I/O for small tables (manifests, results, audit rows) ------
    def write_arrow(self, data: pa.Table, name: str, mode: str = "append", replace_where=None,
                    txn: Txn | list[Txn] | None = None, metadata: dict | None = None) -> WriteResult:
        plan, early = self._begin(name, data.schema, mode, replace_where, txn, metadata)
        if early:
            return early
        files = write_files(data.to_batches(), plan.schema, plan.table_uri, plan.partition_by, plan.storage,
                            plan.target_file_rows, plan.replace_where)
        return committer.commit(plan, files)

    def read_arrow(self, name: str, filters: Iterable | None = None, columns: list[str] | None = None,
                   version: int | None = None) -> pa.Table:
        dataset, expression, terms, needed = self._arrow_scan(name, filters, columns, version)
        if not terms:
            return dataset.to_table(columns=columns)
        result = dataset.to_table(columns=needed, filter=expression)
        result = result.filter(predicates.row_mask(result, terms))
        return result.select(columns) if columns else result

    def read_batches(self, name: str, filters: Iterable | None = None, columns: list[str] | None = None,
                     version: int | None = None, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """``read_arrow`` a record batch at a time, for driver-side reads too large to hold at once."""
        dataset, expression, terms, needed = self._arrow_scan(name, filters, columns, version)
        for batch in dataset.to_batches(columns=needed if terms else columns, filter=expression,
                                        batch_size=batch_rows):
            if terms:
                batch = batch.filter(predicates.row_mask(batch, terms))
                batch = batch.select(columns) if columns else batch
            if batch.num_rows:
                yield batch

    def _arrow_scan(self, name, filters, columns, version):
        """(dataset, pruning expression, checked terms, columns to read) of a driver-side read."""
        table = self._delta(name, version)
        if table is None:
            raise FileNotFoundError(f"table {name} does not exist yet at {self.uri(name)}")
        dataset = table.to_pyarrow_dataset()
        if not filters:
            return dataset, None, [], columns
        terms = predicates.check(filters, dataset.schema.names)
        needed = None if columns is None else sorted(set(columns) | {c for c, _, _ in terms})
        # The expression skips partitions and row groups; row_mask keeps SQL null semantics exact.
        # delta-rs turns a file's missing min/max into "x >= null", which matches nothing, so only
        # partition columns and columns every file bounds may prune (and not by an infinite value:
        # the log holds infinities as the largest double).
        partitions = set(table.metadata().partition_columns)
        bounded = _bounded_columns(table, {c for c, _, _ in terms} - partitions)
        prunable = [t for t in terms if t[0] in partitions or (t[0] in bounded and predicates.finite(t[2]))]
        return dataset, predicates.pruning_expression(prunable, dataset.schema), terms, needed

    # -- maintenance -----------------------------------------------------------
    def rewrite(self, name: str, convert, schema: pa.Schema, metadata: dict | None = None) -> int:
        """Rewrite the whole table in one commit with a new ``schema`` (a migration); returns the new version.

        ``convert`` maps each Arrow batch of the current snapshot to a batch of ``schema``; batches stream
        through, so the table never has to fit in memory. Older versions keep their layout (time travel).
        Not for concurrent use: run it while nothing else writes the table.
        """
        from deltalake import write_deltalake
        from deltalake.transaction import CommitProperties

        if self._native:
            raise ValueError("rewrite works on delta-rs tables only (storage.engine: delta-rs)")
        table = self._require(name)
        batches = (convert(b) for b in table.to_pyarrow_dataset().to_batches())
        write_deltalake(self.uri(name), pa.RecordBatchReader.from_batches(schema, batches), mode="overwrite",
                        schema_mode="overwrite", partition_by=list(self.table_config(name).partition_by) or None,
                        storage_options=self.storage.delta_rs(self.uri(name)),
                        commit_properties=CommitProperties(custom_metadata={
                            "batchml.table": name, **{f"batchml.{k}": str(v) for k, v in (metadata or {}).items()}}))
        self._describe(name, self._require(name))  # the rewrite drops column descriptions: set them again
        return self.version(name)

    def compact(self, name: str, partition_filters=None, target_size: int | None = None) -> dict:
        """Rewrite small files into larger ones (one new version; data unchanged)."""
        table = self._require(name)
        return table.optimize.compact(partition_filters=partition_filters, target_size=target_size)

    def vacuum(self, name: str, retention_hours: int | None = None, dry_run: bool = True) -> list[str]:
        """Delete files no longer referenced by versions newer than the retention window.

        The guard: retention below ``storage.vacuum_min_retention_hours`` is refused, because
        readers of older versions (time travel, running jobs) would lose their files.
        """
        floor = self.config.storage.vacuum_min_retention_hours
        hours = floor if retention_hours is None else retention_hours
        if hours < floor:
            raise ValueError(f"vacuum retention {hours}h is below the guard of {floor}h "
                             "(storage.vacuum_min_retention_hours); time travel would break")
        table = self._require(name)
        return table.vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False)

    # -- internals -------------------------------------------------------------
    def _require(self, name: str) -> DeltaTable:
        table = self._delta(name)
        if table is None:
            raise FileNotFoundError(f"table {name} does not exist yet at {self.uri(name)}")
        return table

    def _spark(self) -> "SparkSession":
        if self.spark is None:
            from batchml.spark import get_spark

            self.spark = get_spark(self.config)
        return self.spark

    def _begin(self, name, schema, mode, replace_where, txn,
               metadata) -> tuple[committer.WritePlan, WriteResult | None]:
        """The plan against the table's current version, and the result if there is nothing to write."""
        table = self._delta(name)
        if table is not None and not self._native and self._describe(name, table):
            table = self._delta(name)
        plan = self._plan(name, schema, mode, replace_where, txn, metadata, None if table is None else table.version())
        return plan, self._preflight(plan, table)

    def _describe(self, name: str, table: DeltaTable) -> bool:
        """Bring the table's description and column descriptions in line with config; True when it committed.

        They live in the Delta metadata (the table's ``description``, each column's ``comment``), where any
        Delta reader, catalog or ``DESCRIBE`` finds them. A change is its own commit, made only when config
        differs from the table.
        """
        cfg = self.table_config(name)
        changed = False
        if cfg.description and table.metadata().description != cfg.description:
            table.alter.set_table_description(cfg.description)
            changed = True
        fields = {f.name: dict(f.metadata) for f in table.schema().fields}
        for column, text in cfg.columns.items():
            if column in fields and fields[column].get("comment") != text:
                table.alter.set_column_metadata(column, {**fields[column], "comment": text})
                changed = True
        return changed

    def _plan(self, name, schema, mode, replace_where, txn, metadata, read_version: int | None) -> committer.WritePlan:
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
        if replace_where is not None and mode != "overwrite":
            raise ValueError("replace_where needs mode='overwrite'")
        cfg = self.table_config(name)
        # Spark's nullability inference is unreliable (a literal is NOT NULL), so tables store every
        # column as nullable; required-ness is enforced by contracts and the validation gate.
        schema = pa.schema([_described(f.with_nullable(True), cfg.columns.get(f.name)) for f in schema])
        if replace_where is not None:
            replace_where = predicates.check(replace_where, schema.names)
        return committer.WritePlan(
            table_uri=self.uri(name), mode=mode, schema=schema, partition_by=list(cfg.partition_by),
            storage=self.storage, target_file_rows=self.config.storage.target_file_rows,
            replace_where=replace_where, txn=txn, allow_schema_evolution=cfg.allow_schema_evolution,
            metadata={"table": name, "writeId": uuid.uuid4().hex, **(metadata or {})}, read_version=read_version,
            description=cfg.description)

    def _preflight(self, plan: committer.WritePlan, table: DeltaTable | None) -> WriteResult | None:
        missing = [c for c in plan.partition_by if c not in plan.schema.names]
        if missing:
            raise committer.SchemaMismatch(f"write to {plan.table_uri} lacks partition columns {missing}")
        if committer.already_committed(table, plan.txn):
            log.info("%s: transaction %s already committed; nothing to do", plan.table_uri, plan.txn)
            return WriteResult(plan.table_uri, committer.version_of_txn(table, plan.txn, self.storage), skipped=True)
        committer.check_schema(plan, table)
        return None


def _described(field: pa.Field, text: str | None) -> pa.Field:
    """The field with its description as Delta column metadata (``comment``), which a new table starts with."""
    return field.with_metadata({**(field.metadata or {}), b"comment": text.encode()}) if text else field


def _bounded_columns(table: DeltaTable, columns: set[str]) -> set[str]:
    """The columns among ``columns`` that have min/max statistics in every file holding a value."""
    if not columns:
        return set()
    entries = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    return {c for c in columns if all(e.get(f"min.{c}") is not None or e.get(f"null_count.{c}") == e["num_records"]
                                      for e in entries)}


def _encode(obj) -> str:
    from batchml.storage.spark_source import encode

    return encode(obj)

