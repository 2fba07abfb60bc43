"""Executor side of a write: Parquet data files plus the Delta statistics that describe them.

Nothing here touches the Delta log; files become visible only when the driver commits them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from batchml.storage import predicates
from batchml.storage.location import StorageOptions, join


class ReplaceWhereViolation(ValueError):
    """A replace-where write carried rows outside the predicate it claims to replace."""


# Row groups are the unit a reader can split a file by (spark_source.DeltaReader).
ROWS_PER_GROUP = 1 << 17


def write_files(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    table_uri: str,
    partition_by: list[str],
    storage: StorageOptions,
    target_file_rows: int,
    replace_where: predicates.Predicate | None = None,
) -> list[dict]:
    """Write batches as Parquet under the table root; return one add-action dict per file."""
    fs, root = storage.filesystem(table_uri)
    checked = _checked(batches, schema, replace_where)
    reader = pa.RecordBatchReader.from_batches(schema, checked)
    written: list[pads.WrittenFile] = []
    data_schema = pa.schema([f for f in schema if f.name not in partition_by])
    pads.write_dataset(
        reader,
        base_dir=root,
        filesystem=fs,
        format="parquet",
        partitioning=pads.partitioning(pa.schema([schema.field(c) for c in partition_by]), flavor="hive")
        if partition_by else None,
        basename_template=f"part-{uuid.uuid4().hex}-{{i}}.snappy.parquet",
        file_options=pads.ParquetFileFormat().make_write_options(
            compression="snappy", use_dictionary=_dictionary_columns(data_schema)),
        max_rows_per_file=target_file_rows,
        min_rows_per_group=min(target_file_rows, ROWS_PER_GROUP),  # not one group per incoming batch
        max_rows_per_group=min(target_file_rows, ROWS_PER_GROUP),
        existing_data_behavior="overwrite_or_ignore",
        file_visitor=written.append,
        use_threads=False,  # one task = one core; Spark parallelises across tasks
    )
    return [_add_action(fs, root, f, partition_by, schema) for f in written]


@dataclass(frozen=True)
class FileWriter:
    """A write's file half, picklable for executors: Parquet files for ``table_uri`` that become visible
    only when a commit of the same schema adds them (``Lake.write``'s ``files``)."""

    table_uri: str
    schema: pa.Schema
    partition_by: list[str]
    storage: StorageOptions
    target_file_rows: int
    replace_where: predicates.Predicate | None = None

    @classmethod
    def of(cls, plan) -> "FileWriter":
        """The files of a ``commit.WritePlan``."""
        return cls(plan.table_uri, plan.schema, plan.partition_by, plan.storage, plan.target_file_rows,
                   plan.replace_where)

    def write(self, batches: Iterable[pa.RecordBatch]) -> list[dict]:
        """Write ``batches``; one add-action dict per file written."""
        return write_files(batches, self.schema, self.table_uri, self.partition_by, self.storage,
                           self.target_file_rows, self.replace_where)


def _checked(batches: Iterable[pa.RecordBatch], schema: pa.Schema, replace_where) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if batch.schema != schema:
            batch = pa.RecordBatch.from_arrays([batch.column(f.name).cast(f.type) for f in schema], schema=schema)
        if replace_where:
            mask = predicates.row_mask(batch, replace_where)
            bad = len(mask) - pa.compute.sum(mask).as_py() if len(mask) else 0
            if bad:
                raise ReplaceWhereViolation(
                    f"{bad} row(s) do not satisfy replace_where [{predicates.describe(replace_where)}]; "
                    "a replace-where write may only contain rows it replaces")
        yield batch


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    # Dictionary encoding makes float columns 3-5x slower to write for no size gain.
    return [f.name for f in schema if not pa.types.is_floating(f.type)]


def _add_action(fs, root: str, written: pads.WrittenFile, partition_by: list[str], schema: pa.Schema) -> dict:
    rel = written.path[len(root):].lstrip("/")
    partition_values = {}
    for segment in rel.split("/")[:-1]:
        key, _, value = segment.partition("=")
        value = unquote(value)
        partition_values[key] = None if value == "__HIVE_DEFAULT_PARTITION__" else value
    return {
        "path": rel,
        "size": fs.get_file_info(written.path).size,
        "partition_values": {c: partition_values.get(c) for c in partition_by},
        "modification_time": int(fs.get_file_info(written.path).mtime_ns // 1_000_000),
        # Raw UTF-8, not \u escapes: delta-rs decodes an escaped surrogate pair (U+10000 and up) wrongly.
        "stats": json.dumps(file_stats(written.metadata, schema, _chunk_reader(fs, written.path)), ensure_ascii=False),
    }


def _chunk_reader(fs, path: str) -> ChunkReader:
    def read(row_group: int, column: str) -> pa.ChunkedArray:
        return pq.ParquetFile(path, filesystem=fs).read_row_group(row_group, columns=[column]).column(0)

    return read


def file_stats(meta: pq.FileMetaData, schema: pa.Schema, read_chunk: ChunkReader | None = None) -> dict:
    """Delta per-file statistics (numRecords, minValues, maxValues, nullCount) from the footer.

    Readers skip the file when a filter value lies outside [min, max], so the bounds must hold for
    every value of the file. The Parquet writer drops the statistics of a row group that holds a
    value over 4 KB: ``read_chunk(row_group, column)`` then reads those values back to bound them;
    without it the column gets no min/max (Delta's rule). Long strings are logged as a prefix
    (the minimum as is, the maximum rounded up).
    """
    mins: dict = {}
    maxs: dict = {}
    nulls: dict = {}
    for i in range(meta.num_columns):
        if "." in meta.schema.column(i).path:
            continue  # a leaf of a nested column (a list or struct): Delta keeps no statistics for it here
        name = meta.schema.column(i).name
        chunks = [meta.row_group(rg).column(i).statistics for rg in range(meta.num_row_groups)]
        if any(st is None or not st.has_null_count for st in chunks):
            continue
        nulls[name] = sum(st.null_count for st in chunks)
        field_type = schema.field(name).type if name in schema.names else None
        bounds = _bounds(meta, chunks, name, read_chunk) if has_min_max_stats(field_type) else None
        if bounds is not None:
            mins[name], maxs[name] = _json_value(bounds[0], floor=True), _json_value(bounds[1], floor=False)
    return {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


ChunkReader = Callable[[int, str], pa.ChunkedArray]


def _bounds(meta: pq.FileMetaData, chunks: list, name: str, read_chunk: ChunkReader | None) -> tuple | None:
    """(min, max) over the row groups, or None when some row group's values cannot be bounded."""
    values = []
    for rg, st in enumerate(chunks):
        if st.has_min_max:
            values += [st.min, st.max]
        elif meta.row_group(rg).num_rows > st.null_count:  # values the footer does not bound
            if read_chunk is None:
                return None
            low_high = pc.min_max(read_chunk(rg, name))
            values += [low_high["min"].as_py(), low_high["max"].as_py()]
    values = [v for v in values if v == v]  # an all-NaN row group reports NaN bounds; no comparison matches NaN
    return (min(values), max(values)) if values else None


def has_min_max_stats(t: pa.DataType | None) -> bool:
    """Types whose min/max batchml records in the Delta log."""
    return t is not None and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t)
                              or pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_boolean(t))


def _json_value(value, floor: bool):
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        ms = value.replace(microsecond=(value.microsecond // 1000) * 1000)
        if not floor and ms != value:  # round the maximum up so it still bounds the data
            ms += dt.timedelta(milliseconds=1)
        return ms.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and math.isinf(value):
        # JSON has no infinity (an invalid token voids the file's statistics for delta-rs): log the
        # largest double; predicates read it as unbounded.
        return math.copysign(sys.float_info.max, value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) > STATS_STRING_PREFIX:
        if floor:
            return value[:STATS_STRING_PREFIX]
        return _round_up(value[:STATS_STRING_PREFIX]) or value  # no prefix rounds up: log it whole
    return value


# Delta's default (dataSkippingStringPrefixLength): long strings are logged as a 32-character prefix.
STATS_STRING_PREFIX = 32


def _round_up(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix`` (None: there is none)."""
    for i in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[i]) + 1
        if code == 0xD800:  # surrogates are not characters
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix[:i] + chr(code)
    return None


def delete_files(table_uri: str, storage: StorageOptions, rel_paths: Iterable[str]) -> None:
    fs, root = storage.filesystem(table_uri)
    for rel in rel_paths:
        try:
            fs.delete_file(join(root, rel))
        except FileNotFoundError:
            pass
