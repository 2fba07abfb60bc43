"""What concurrent commits did, read from the Delta log, and whether a write may commit after them.

batchml commits optimistically: a write records the table version it planned against, and commits
at exactly the next version (delta-rs's put-if-absent makes that atomic). When another writer took
that version first, the write reads the commits it missed and decides here:

* an append reads nothing, so data never conflicts with it;
* an overwrite reads what it replaces: the rows matching its ``replace_where`` predicate, or the
  whole table. A missed commit that added or removed data files that may hold such rows is a
  conflict (Delta's Serializable level): the payload was computed without them.
  Files it cannot judge count as overlapping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa

from batchml.storage import predicates
from batchml.storage.location import StorageOptions, join


class WriteConflict(RuntimeError):
    """A concurrent commit changed data this write reads; the write changed nothing."""


@dataclass(frozen=True)
class LogCommit:
    """The actions of one Delta commit that matter to a concurrent writer."""

    version: int
    info: dict  # commitInfo, including batchml's custom metadata
    adds: list[dict] = field(default_factory=list)  # data-changing add actions
    removes: list[dict] = field(default_factory=list)  # data-changing remove actions
    txns: dict[str, int] = field(default_factory=dict)  # app id -> version
    metadata_changed: bool = False

    def describe(self) -> str:
        op = self.info.get("operation", "?")
        who = self.info.get("batchml.writeId")
        return f"version {self.version} ({op}{f', write {who}' if who else ''})"


def read_commit(table_uri: str, storage: StorageOptions, version: int) -> LogCommit | None:
    """The commit file of ``version``, or None when the log no longer holds it."""
    fs, root = storage.filesystem(table_uri)
    try:
        with fs.open_input_stream(join(root, "_delta_log", f"{version:020d}.json")) as stream:
            text = stream.read().decode()
    except FileNotFoundError:
        return None
    info, adds, removes, txns, metadata = {}, [], [], {}, False
    for line in filter(None, text.split("\n")):  # not splitlines(): U+2028 may sit raw inside a JSON string
        action = json.loads(line)
        if "commitInfo" in action:
            info = action["commitInfo"]
        elif "add" in action and action["add"].get("dataChange", True):
            adds.append(action["add"])
        elif "remove" in action and action["remove"].get("dataChange", True):
            removes.append(action["remove"])
        elif "txn" in action:
            txns[action["txn"]["appId"]] = action["txn"]["version"]
        elif "metaData" in action:
            metadata = True
    return LogCommit(version, info, adds, removes, txns, metadata)


def read_commits(table_uri: str, storage: StorageOptions, after: int, last: int) -> list[LogCommit]:
    """Commits ``after + 1 .. last``; WriteConflict when the log no longer holds one of them."""
    commits = []
    for version in range(after + 1, last + 1):
        commit = read_commit(table_uri, storage, version)
        if commit is None:
            raise WriteConflict(f"{table_uri}: version {version} is no longer in the Delta log; cannot check "
                                f"what it changed since version {after}. Re-run the write.")
        commits.append(commit)
    return commits


def overlap(replace_where: predicates.Predicate | None, schema: pa.Schema, partition_columns: list[str],
            commit: LogCommit) -> str | None:
    """Why an overwrite of ``replace_where`` (None: the whole table) overlaps ``commit``, or None."""
    scope = f"replace_where [{predicates.describe(replace_where)}]" if replace_where else "the whole table"
    for kind, actions in (("added", commit.adds), ("removed", commit.removes)):
        for action in actions:
            if replace_where is None or _may_match(action, replace_where, schema, partition_columns):
                return f"{commit.describe()} {kind} {action['path']}, which may hold rows of {scope}"
    return None


def _may_match(action: dict, predicate, schema: pa.Schema, partition_columns: list[str]) -> bool:
    try:
        entry = _entry(action, schema, partition_columns)
    except _Unreadable:
        return True  # cannot judge the file: count it as overlapping
    return predicates.file_may_match(entry, predicate, set(partition_columns))


class _Unreadable(ValueError):
    pass


def _entry(action: dict, schema: pa.Schema, partition_columns: list[str]) -> dict:
    """An add/remove action as the flattened entry ``predicates.file_may_match`` reads."""
    values = action.get("partitionValues")
    if partition_columns and values is None:
        raise _Unreadable(action["path"])
    entry: dict = {}
    for column in partition_columns:
        text = values.get(column)
        entry[f"partition.{column}"] = None if text is None else _typed(text, schema.field(column).type, strict=True)
    stats = json.loads(action["stats"]) if action.get("stats") else {}
    entry["num_records"] = stats.get("numRecords")
    for column, count in (stats.get("nullCount") or {}).items():
        entry[f"null_count.{column}"] = count
    for key, prefix in (("minValues", "min."), ("maxValues", "max.")):
        for column, value in (stats.get(key) or {}).items():
            if column in schema.names and not isinstance(value, dict):
                entry[prefix + column] = _typed(value, schema.field(column).type, strict=False)
    return entry


def _typed(value, arrow_type: pa.DataType, strict: bool):
    """A log value (partition string or JSON statistic) as Python, typed like the column."""
    try:
        return pa.scalar(value).cast(arrow_type).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        if strict:
            raise _Unreadable(value) from None
        return None  # an unknown bound: the file may match
