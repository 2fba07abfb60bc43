"""Driver side of a write: turn files written by executors into exactly one Delta commit.

The commit is the only point where data becomes visible. Before it, a crash leaves the
table as it was (orphan files are invisible to readers and removed by vacuum).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, Field, Schema
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import (AddAction, CommitProperties, RemoveAction, Transaction,
                                   create_table_with_add_actions)

from batchml.storage import predicates
from batchml.storage.files import delete_files, write_files
from batchml.storage.location import StorageOptions, join

log = logging.getLogger(__name__)


class SchemaMismatch(ValueError):
    """A write does not match the table schema."""


@dataclass(frozen=True)
class WritePlan:
    """Everything the commit needs to know about one write (pickled to Spark workers)."""

    table_uri: str
    mode: str  # "append" | "overwrite"
    schema: pa.Schema
    partition_by: list[str]
    storage: StorageOptions
    target_file_rows: int = 1_000_000
    replace_where: list | None = None
    txn: tuple[str, int] | None = None  # (app id, version): skip if already committed
    allow_schema_evolution: bool = False
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WriteResult:
    table_uri: str
    version: int | None
    skipped: bool
    files_added: int = 0
    files_removed: int = 0
    rows_written: int = 0


def open_table(uri: str, storage: StorageOptions, version=None) -> DeltaTable | None:
    try:
        dt = DeltaTable(uri, storage_options=storage.delta_rs(uri))
    except TableNotFoundError:
        return None
    if version is not None:
        dt.load_as_version(version)
    return dt


def already_committed(dt: DeltaTable | None, txn: tuple[str, int] | None) -> bool:
    if dt is None or txn is None:
        return False
    done = dt.transaction_version(txn[0])
    return done is not None and done >= txn[1]


def version_of_txn(dt: DeltaTable, txn: tuple[str, int]) -> int:
    """The version that committed ``txn`` (the latest version if the log no longer shows it)."""
    label = _txn_label(txn)
    for entry in dt.history():
        if entry.get("batchml.txn") == label:
            return entry["version"]
    return dt.version()


def _txn_label(txn: tuple[str, int]) -> str:
    return f"{txn[0]}@{txn[1]}"


def check_schema(plan: WritePlan, dt: DeltaTable | None) -> list[str]:
    """Raise SchemaMismatch for incompatible writes; return columns to add (evolution)."""
    if dt is None:
        return []
    table = pa.schema(dt.schema().to_arrow())
    incoming = {f.name: f for f in plan.schema}
    missing = [f.name for f in table if f.name not in incoming]
    changed = [f"{f.name} ({f.type} -> {incoming[f.name].type})" for f in table
               if f.name in incoming and not _same_type(f.type, incoming[f.name].type)]
    extra = [name for name in incoming if name not in table.names]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if changed:
        problems.append(f"type changes {changed}")
    if extra and not plan.allow_schema_evolution:
        problems.append(f"new columns {extra} (schema evolution is off for this table)")
    if plan.partition_by and dt.metadata().partition_columns != plan.partition_by:
        problems.append(f"partitioning {plan.partition_by} != table's {dt.metadata().partition_columns}")
    if problems:
        raise SchemaMismatch(f"write to {plan.table_uri} rejected: " + "; ".join(problems))
    return extra


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return (a.tz is None) == (b.tz is None)
    return a == b or (pa.types.is_large_string(a) and pa.types.is_string(b)) or (
        pa.types.is_string(a) and pa.types.is_large_string(b))


def commit(plan: WritePlan, files: list[dict]) -> WriteResult:
    """Commit the written files as one Delta version, honouring mode, replace-where and txn."""
    dt = open_table(plan.table_uri, plan.storage)
    rows = sum(json.loads(f["stats"])["numRecords"] for f in files)
    if already_committed(dt, plan.txn):
        log.info("%s: transaction %s already committed; discarding %d new file(s)",
                 plan.table_uri, plan.txn, len(files))
        delete_files(plan.table_uri, plan.storage, [f["path"] for f in files])
        return WriteResult(plan.table_uri, version_of_txn(dt, plan.txn), skipped=True)
    adds = [_to_add(f) for f in files]
    if dt is None:
        props = _commit_properties(plan, rows, len(adds), 0)
        create_table_with_add_actions(
            plan.table_uri, Schema.from_arrow(plan.schema), adds, mode="error",
            partition_by=plan.partition_by or None, storage_options=plan.storage.delta_rs(plan.table_uri),
            configuration={"delta.checkpointInterval": "50"}, commit_properties=props)
        return WriteResult(plan.table_uri, 0, False, len(adds), 0, rows)

    new_columns = check_schema(plan, dt)
    if new_columns:
        dt.alter.add_columns([Field.from_arrow(plan.schema.field(c)) for c in new_columns])
        log.info("%s: schema evolved, added %s", plan.table_uri, new_columns)
    removes, rewritten = _removals(plan, dt)
    props = _commit_properties(plan, rows, len(adds) + len(rewritten), len(removes))
    dt.create_write_transaction(
        adds + rewritten + removes, mode="append", schema=plan.schema,
        partition_by=plan.partition_by or None, commit_properties=props)
    dt.update_incremental()
    return WriteResult(plan.table_uri, dt.version(), False, len(adds) + len(rewritten), len(removes), rows)


def _commit_properties(plan: WritePlan, rows: int, added: int, removed: int) -> CommitProperties:
    meta = {"batchml.mode": plan.mode, "batchml.rows": rows, "batchml.filesAdded": added,
            "batchml.filesRemoved": removed,
            **{f"batchml.{k}": str(v) for k, v in plan.metadata.items()}}
    if plan.txn:
        meta["batchml.txn"] = _txn_label(plan.txn)
    if plan.replace_where:
        meta["batchml.replaceWhere"] = predicates.describe(plan.replace_where)
    txns = [Transaction(app_id=plan.txn[0], version=plan.txn[1])] if plan.txn else None
    return CommitProperties(custom_metadata=meta, app_transactions=txns)


def _to_add(f: dict) -> AddAction:
    return AddAction(f["path"], f["size"], f["partition_values"], f["modification_time"], True, f["stats"])


def _removals(plan: WritePlan, dt: DeltaTable) -> tuple[list[RemoveAction], list[AddAction]]:
    """Files to drop for an overwrite; rows outside a replace-where predicate are rewritten."""
    if plan.mode != "overwrite":
        return [], []
    partition_columns = set(dt.metadata().partition_columns)
    removes, keep_rows = [], []
    for entry in pa.table(dt.get_add_actions(flatten=True)).to_pylist():
        if plan.replace_where and not predicates.file_may_match(entry, plan.replace_where, partition_columns):
            continue
        if plan.replace_where and not predicates.file_fully_matches(entry, plan.replace_where, partition_columns):
            keep_rows.append(entry)
        removes.append(RemoveAction(entry["path"], True, entry["modification_time"], entry["size_bytes"],
                                    _partition_strings(entry)))
    rewritten = _rewrite_without(plan, dt, keep_rows) if keep_rows else []
    return removes, rewritten


def _rewrite_without(plan: WritePlan, dt: DeltaTable, entries: list[dict]) -> list[AddAction]:
    """Copy-on-write: keep the rows of partly matching files that the predicate does not select."""
    fs, root = plan.storage.filesystem(plan.table_uri)
    schema = pa.schema(dt.schema().to_arrow())
    kept = []
    for entry in entries:
        data = pq.read_table(join(root, entry["path"]), filesystem=fs)
        for col in dt.metadata().partition_columns:
            value = entry[f"partition.{col}"]
            data = data.append_column(schema.field(col), pa.array([value] * data.num_rows, schema.field(col).type))
        data = data.select(schema.names).filter(pa.compute.invert(predicates.row_mask(data, plan.replace_where)))
        if data.num_rows:
            kept.append(data)
    if not kept:
        return []
    files = write_files(pa.concat_tables(kept).to_batches(), schema, plan.table_uri,
                        plan.partition_by, plan.storage, plan.target_file_rows)
    return [_to_add(f) for f in files]


def _partition_strings(entry: dict) -> dict[str, str | None]:
    out = {}
    for key, value in entry.items():
        if key.startswith("partition."):
            out[key[len("partition."):]] = None if value is None else (
                value.isoformat() if hasattr(value, "isoformat") else str(value))
    return out
