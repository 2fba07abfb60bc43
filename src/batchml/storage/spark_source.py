"""Delta tables for Spark without JARs: a Python Data Source backed by delta-rs.

* Read: ``partitions()`` plans from the Delta snapshot (time travel, partition pruning and
  min/max data skipping from pushed filters and the ``where`` option); executors read Parquet
  with pyarrow. An optional ``transform`` maps each batch inside the read task, so only its
  output crosses into Spark (scoring: 30 feature columns in, the scored columns out). A transform
  with a ``map_task`` method gets the task's whole batch iterator instead (scoring writes most of
  its rows to Parquet there: ``files.FileWriter``).
* Write: executors write Parquet (``files.write_files``); the driver's ``commit()`` stages their
  list for the process that called ``Lake.write``, which makes them one Delta version
  (``commit.commit``); ``abort()`` deletes them.

Options are strings; the ``plan`` option carries a pickled :class:`WritePlan` from the
storage facade so the workers see exactly what the driver validated.
"""

from __future__ import annotations

import base64
import os
import pickle
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow as pa
from pyspark.sql.datasource import (DataSource, DataSourceArrowWriter, DataSourceReader, InputPartition,
                                    WriterCommitMessage)
from pyspark.sql.pandas.types import from_arrow_schema

from batchml.spark import freeze_worker_imports
from batchml.storage import commit as committer
from batchml.storage import predicates
from batchml.storage.files import FileWriter
from batchml.storage.location import StorageOptions, join

freeze_worker_imports()  # this module is what a data source worker unpickles first

FORMAT = "batchml_delta"
# Read tasks of about this size: small files are packed together, large files split by row groups
# (so a day stored as one big file still keeps every core busy).
TARGET_SPLIT_BYTES = 32 << 20


def encode(obj) -> str:
    return base64.b64encode(pickle.dumps(obj)).decode()


def decode(text: str):
    return pickle.loads(base64.b64decode(text))


def _snapshot(options) -> tuple:
    storage = decode(options["storage"])
    version = options.get("versionAsOf") or options.get("timestampAsOf")
    dt = committer.open_table(options["path"], storage, int(version) if version and version.isdigit() else version)
    if dt is None:
        raise FileNotFoundError(f"no Delta table at {options['path']}")
    return dt, storage


class DeltaDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return FORMAT

    def _arrow_schema(self) -> pa.Schema:
        dt, _ = _snapshot(self.options)
        schema = pa.schema(dt.schema().to_arrow())
        if self.options.get("columns"):
            schema = pa.schema([schema.field(c) for c in self.options["columns"].split(",")])
        return schema

    def _transform(self):
        return decode(self.options["transform"]) if self.options.get("transform") else None

    def schema(self):
        transform = self._transform()
        return from_arrow_schema(transform.schema if transform else self._arrow_schema())

    def reader(self, schema):
        where = decode(self.options["where"]) if self.options.get("where") else []
        return DeltaReader(self.options, self._arrow_schema(), where, self._transform())

    def writer(self, schema, overwrite: bool):
        return DeltaWriter(decode(self.options["plan"]), self.options.get("batchml.testing.crashBeforeCommit"))


@dataclass
class _Split(InputPartition):
    files: list  # [(relative path, {partition column: typed value}, row groups or None for all)]


class DeltaReader(DataSourceReader):
    """``where`` skips files (partition values, min/max statistics) and filters rows exactly, before
    ``transform``. Spark's own filters are not pushed here (``spark.sql.python.filterPushdown.enabled``
    is off: Spark 4.1+ reuses one pushed plan per scanned relation, so a filter of one query pruned the
    files another query of the same DataFrame needed; Spark 4.0 has no pushdown at all)."""

    def __init__(self, options: dict, schema: pa.Schema, where: list | None = None, transform=None):
        self.options = options  # keeps Spark's case-insensitive keys
        self.schema = schema
        self.where = where or []
        self.transform = transform

    def partitions(self):
        dt, storage = _snapshot(self.options)
        partition_columns = set(dt.metadata().partition_columns)
        entries = [e for e in pa.table(dt.get_add_actions(flatten=True)).to_pylist()
                   if predicates.file_may_match(e, self.where, partition_columns)]
        splits, current, size = [], [], 0
        for e in entries:
            e["path"] = unquote(e["path"])  # the log holds paths URI-encoded
            pv = {c: e[f"partition.{c}"] for c in partition_columns}
            if e["size_bytes"] > 2 * TARGET_SPLIT_BYTES:
                splits += [_Split([(e["path"], pv, groups)]) for groups in self._row_group_splits(storage, e["path"])]
                continue
            current.append((e["path"], pv, None))
            size += e["size_bytes"]
            if size >= TARGET_SPLIT_BYTES:
                splits.append(_Split(current))
                current, size = [], 0
        if current or not splits:
            splits.append(_Split(current))
        return splits

    def _row_group_splits(self, storage: StorageOptions, path: str) -> list[list[int]]:
        import pyarrow.parquet as pq

        fs, root = storage.filesystem(self.options["path"])
        meta = pq.ParquetFile(join(root, path), filesystem=fs).metadata  # the footer only
        out, current, size = [], [], 0
        for i in range(meta.num_row_groups):
            current.append(i)
            size += meta.row_group(i).total_byte_size
            if size >= TARGET_SPLIT_BYTES:
                out.append(current)
                current, size = [], 0
        return out + [current] if current else out

    def read(self, partition: _Split):
        batches = self._batches(partition)
        yield from batches if self.transform is None else transformed(self.transform, batches)

    def _batches(self, partition: _Split):
        import pyarrow.parquet as pq

        storage: StorageOptions = decode(self.options["storage"])
        fs, root = storage.filesystem(self.options["path"])
        for path, partition_values, row_groups in partition.files:
            data_cols = [f.name for f in self.schema if f.name not in partition_values]
            pf = pq.ParquetFile(join(root, path), filesystem=fs)
            present = set(pf.schema_arrow.names)
            for batch in pf.iter_batches(batch_size=65536, row_groups=row_groups,
                                         columns=[c for c in data_cols if c in present]):
                batch = _complete(batch, self.schema, partition_values)
                if self.where:
                    batch = batch.filter(predicates.row_mask(batch, self.where))
                    if not batch.num_rows:
                        continue
                yield batch


def transformed(transform, batches):
    """``Lake.read``'s ``transform`` over one task's batches: its ``map_task`` when it has one (the whole
    iterator at once: it may aggregate or write files), else called batch by batch."""
    if hasattr(transform, "map_task"):
        yield from transform.map_task(batches)
        return
    for batch in batches:
        batch = transform(batch)
        if batch.num_rows:
            yield batch


def _complete(batch: pa.RecordBatch, schema: pa.Schema, partition_values: dict) -> pa.RecordBatch:
    """Add partition columns and columns added by schema evolution; order and type as the table."""
    arrays = []
    for f in schema:
        if f.name in partition_values:
            arrays.append(pa.array([partition_values[f.name]] * batch.num_rows, f.type))
        elif f.name in batch.schema.names:
            col = batch.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.nulls(batch.num_rows, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


@dataclass
class _Written(WriterCommitMessage):
    files: list


class DeltaWriter(DataSourceArrowWriter):
    def __init__(self, plan: committer.WritePlan, crash_before_commit: str | None):
        self.plan = plan
        self.crash_before_commit = crash_before_commit == "true"

    def write(self, iterator):
        return _Written(FileWriter.of(self.plan).write(iterator))

    def commit(self, messages):
        """Hand the files to the process that called ``Lake.write``: it commits them (``commit.commit``)."""
        if self.crash_before_commit:  # test hook: die like a killed driver after files are written
            os._exit(137)
        committer.stage(self.plan, [f for m in messages if m is not None for f in m.files])

    def abort(self, messages):
        from batchml.storage.files import delete_files

        files = [f["path"] for m in messages if isinstance(m, _Written) for f in m.files]
        delete_files(self.plan.table_uri, self.plan.storage, files)
