"""Driver side of a write: turn files written by executors into exactly one Delta commit.

The commit is the only point where data becomes visible. Before it, a crash leaves the
table as it was (orphan files are invisible to readers and removed by vacuum).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, Field, Schema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import (AddAction, CommitProperties, RemoveAction, Transaction,
                                   create_table_with_add_actions)

from batchml.storage import conflicts, predicates
from batchml.storage.files import delete_files, write_files
from batchml.storage.location import StorageOptions, join

log = logging.getLogger(__name__)


class SchemaMismatch(ValueError):
    """A write does not match the table schema."""


class PartiallyCommitted(ValueError):
    """Some, not all, of a write's app transactions are already in the table."""


Txn = tuple[str, int]  # (app id, version)
# A write that keeps losing the race to commit gives up after this many attempts (each lost
# attempt means another writer committed, so the table makes progress).
MAX_ATTEMPTS = 200


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
    txn: Txn | list[Txn] | None = None  # skip the write if the table holds all of them
    allow_schema_evolution: bool = False
    metadata: dict = field(default_factory=dict)
    read_version: int | None = None  # the table version the write was planned against (None: no table)
    description: str = ""  # the table's description (config), given to a table this write creates

    @property
    def write_id(self) -> str:
        return self.metadata["writeId"]


@dataclass(frozen=True)
class WriteResult:
    table_uri: str
    version: int | None  # the version that holds this write (or, skipped, its transaction)
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


def txn_list(txn: Txn | list[Txn] | None) -> list[Txn]:
    """One ``(app_id, version)`` or a list of them, as a list."""
    if txn is None:
        return []
    if isinstance(txn, tuple) and len(txn) == 2 and isinstance(txn[0], str):
        return [txn]
    return [(app, int(version)) for app, version in txn]


def already_committed(dt: DeltaTable | None, txn: Txn | list[Txn] | None) -> bool:
    """True when the table holds every transaction; PartiallyCommitted when it holds only some."""
    wanted = txn_list(txn)
    if dt is None or not wanted:
        return False
    done = [t for t in wanted if (dt.transaction_version(t[0]) or -1) >= t[1]]
    if done and len(done) < len(wanted):
        raise PartiallyCommitted(f"{dt.table_uri}: transactions {done} are committed but "
                                 f"{[t for t in wanted if t not in done]} are not; a write carries all or none")
    return bool(done)


def version_of_txn(dt: DeltaTable, txn: Txn | list[Txn], storage: StorageOptions) -> int | None:
    """The version of the commit that recorded ``txn`` (the latest such commit for a list).

    Scans the log back from the newest commit; None if the log no longer holds it (cleaned up).
    """
    wanted = dict(txn_list(txn))  # app id -> version, until the commit recording it is found
    found: dict[str, int] = {}
    version = dt.version()
    while wanted and version >= 0:
        entry = conflicts.read_commit(dt.table_uri, storage, version)
        if entry is None:
            break
        for app, recorded in entry.txns.items():
            if app in wanted and recorded >= wanted[app]:
                found[app] = version  # an earlier commit may still hold exactly this version
            if app in wanted and recorded <= wanted[app]:
                del wanted[app]  # app versions only grow: nothing earlier can hold it
        version -= 1
    return max(found.values()) if found else None


def _txn_label(txn: Txn) -> str:
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
    """Commit the written files as one new Delta version, or discard them.

    Returns the version this commit created; for a transaction the table already holds, a
    skipped result with the version that holds it. Raises WriteConflict (or SchemaMismatch,
    PartiallyCommitted) when a concurrent commit makes this write invalid; its files are deleted.
    """
    adds = [_to_add(f) for f in files]
    rows = sum(json.loads(f["stats"])["numRecords"] for f in files)
    attempt = _Attempt(plan, adds, rows)
    try:
        result = attempt.run()
    except (conflicts.WriteConflict, SchemaMismatch, PartiallyCommitted):
        attempt.discard()
        raise
    if result.skipped:
        attempt.discard()
    return result


class _Lost(Exception):
    """Another writer committed the version this attempt tried to create."""


class _Attempt:
    """Commit at exactly the version after the newest one checked; on losing that race, check the
    commits that won it and try again."""

    def __init__(self, plan: WritePlan, adds: list[AddAction], rows: int):
        self.plan, self.adds, self.rows = plan, adds, rows
        self.checked = -1 if plan.read_version is None else plan.read_version  # no conflict up to here
        self.rewritten: list[AddAction] = []  # copy-on-write files of the current attempt

    def run(self) -> WriteResult:
        for _ in range(MAX_ATTEMPTS):
            dt = open_table(self.plan.table_uri, self.plan.storage)
            if dt is not None:
                done = self._check_missed(dt)
                if done is not None:
                    return done
            try:
                return self._commit(dt)
            except _Lost:
                continue
        raise conflicts.WriteConflict(f"{self.plan.table_uri}: gave up after {MAX_ATTEMPTS} attempts to commit; "
                                      "other writers kept committing first")

    def discard(self) -> None:
        paths = [a.path for a in self.adds + self.rewritten]
        delete_files(self.plan.table_uri, self.plan.storage, paths)

    def _check_missed(self, dt: DeltaTable) -> WriteResult | None:
        """Check the commits since the last check; a result when this write is already in the table."""
        plan, latest = self.plan, dt.version()
        missed = conflicts.read_commits(plan.table_uri, plan.storage, self.checked, latest)
        for entry in missed:  # a commit that reported failure but landed (a lost response)
            if entry.info.get("batchml.writeId") == plan.write_id:
                return self._result(entry.version, int(entry.info.get("batchml.filesRemoved", 0)))
        if already_committed(dt, plan.txn):
            log.info("%s: transaction %s was committed concurrently; discarding %d new file(s)",
                     plan.table_uri, plan.txn, len(self.adds))
            return WriteResult(plan.table_uri, version_of_txn(dt, plan.txn, plan.storage), skipped=True)
        if any(entry.metadata_changed for entry in missed):
            check_schema(plan, dt)
        if plan.mode == "overwrite":
            schema = pa.schema(dt.schema().to_arrow())
            for entry in missed:
                why = conflicts.overlap(plan.replace_where, schema, dt.metadata().partition_columns, entry)
                if why:
                    read = "table did not exist" if plan.read_version is None else f"read version {plan.read_version}"
                    raise conflicts.WriteConflict(f"overwrite of {plan.table_uri} ({read}) conflicts with a "
                                                  f"concurrent commit: {why}. Nothing was written; re-run the write.")
        self.checked = latest
        return None

    def _commit(self, dt: DeltaTable | None) -> WriteResult:
        plan = self.plan
        if dt is None:
            return self._create()
        new_columns = check_schema(plan, dt)
        if new_columns:
            dt.alter.add_columns([Field.from_arrow(plan.schema.field(c)) for c in new_columns])
            log.info("%s: schema evolved, added %s", plan.table_uri, new_columns)
            raise _Lost  # that was a commit of its own: check it like any other
        delete_files(plan.table_uri, plan.storage, [a.path for a in self.rewritten])
        removes, self.rewritten = _removals(plan, dt)
        props = _commit_properties(plan, self.rows, len(self.adds) + len(self.rewritten), len(removes))
        try:
            dt.create_write_transaction(self.adds + self.rewritten + removes, mode="append", schema=plan.schema,
                                        partition_by=plan.partition_by or None, commit_properties=props)
        except CommitFailedError as exc:  # with no retries: the next version exists already, or a real failure
            if open_table(plan.table_uri, plan.storage).version() == self.checked:
                raise
            raise _Lost from exc
        return self._result(self.checked + 1, len(removes))

    def _create(self) -> WriteResult:
        plan = self.plan
        props = _commit_properties(plan, self.rows, len(self.adds), 0)
        try:
            create_table_with_add_actions(
                plan.table_uri, Schema.from_arrow(plan.schema), self.adds, mode="error",
                partition_by=plan.partition_by or None, storage_options=plan.storage.delta_rs(plan.table_uri),
                name=plan.metadata.get("table"), description=plan.description or None,
                configuration={"delta.checkpointInterval": "50"}, commit_properties=props)
        except DeltaError as exc:  # CommitFailedError, or "table already exists": did another writer create it?
            if open_table(plan.table_uri, plan.storage) is None:
                raise
            raise _Lost from exc
        return self._result(0)

    def _result(self, version: int, removed: int = 0) -> WriteResult:
        return WriteResult(self.plan.table_uri, version, False, len(self.adds) + len(self.rewritten), removed,
                           self.rows)


def _commit_properties(plan: WritePlan, rows: int, added: int, removed: int) -> CommitProperties:
    meta = {"batchml.mode": plan.mode, "batchml.rows": rows, "batchml.filesAdded": added,
            "batchml.filesRemoved": removed,
            **{f"batchml.{k}": str(v) for k, v in plan.metadata.items()}}
    txns = txn_list(plan.txn)
    if txns:
        meta["batchml.txn"] = ",".join(_txn_label(t) for t in txns)
    if plan.replace_where:
        meta["batchml.replaceWhere"] = predicates.describe(plan.replace_where)
    if plan.read_version is not None:
        meta["readVersion"] = plan.read_version
    # No retries inside delta-rs: commit at exactly the next version or fail (_Attempt checks and retries).
    return CommitProperties(custom_metadata=meta, max_commit_retries=0,
                            app_transactions=[Transaction(app_id=a, version=v) for a, v in txns] or None)


# Spark's data source commit runs in a worker process: it stages the list of written files here, and
# the process that called Lake.write commits them (so it gets the exact version, or the conflict).
STAGING_DIR = "_batchml_staged"  # "_" prefix: Delta readers and vacuum ignore it


def stage(plan: WritePlan, files: list[dict]) -> None:
    fs, root = plan.storage.filesystem(plan.table_uri)
    fs.create_dir(join(root, STAGING_DIR), recursive=True)
    with fs.open_output_stream(join(root, STAGING_DIR, f"{plan.write_id}.json")) as out:
        out.write(json.dumps(files).encode())


def take_staged(plan: WritePlan) -> list[dict]:
    """The files staged by ``stage`` for this write (the staging file is removed)."""
    fs, root = plan.storage.filesystem(plan.table_uri)
    path = join(root, STAGING_DIR, f"{plan.write_id}.json")
    with fs.open_input_stream(path) as stream:
        files = json.loads(stream.read())
    fs.delete_file(path)
    return files


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
        removes.append(RemoveAction(unquote(entry["path"]), True, entry["modification_time"], entry["size_bytes"],
                                    _partition_strings(entry)))
    rewritten = _rewrite_without(plan, dt, keep_rows) if keep_rows else []
    return removes, rewritten


def _rewrite_without(plan: WritePlan, dt: DeltaTable, entries: list[dict]) -> list[AddAction]:
    """Copy-on-write: keep the rows of partly matching files that the predicate does not select."""
    fs, root = plan.storage.filesystem(plan.table_uri)
    schema = pa.schema(dt.schema().to_arrow())
    kept = []
    for entry in entries:
        data = pq.read_table(join(root, unquote(entry["path"])), filesystem=fs)  # the log holds it URI-encoded
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
