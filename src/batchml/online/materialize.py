"""The materialize stage: a run date's offline features into the online store (docs/online.md).

For run date ``D`` (or each date of a backfill, in date order):

1. **by event ID**: every row of the feature table's ``D`` partition, as the snapshot that last changed
   that partition holds it (its Delta version is recorded on each record, so re-materializing ``D``
   writes the same records). Events that an earlier materialization of ``D`` wrote and the partition no
   longer holds are deleted. A run marker records what was written; a re-run that finds the same
   version and schema writes nothing.
2. **by entity key**: each entity's window state as of the end of the last date (``batchml.online.state``),
   from the tiles the features stage built and the raw rows of the windows' edge days: the history a build
   of the next date sees (rows ingested by the date, the latest delivery of each).
   With ``online.incremental_states``, when the stored states are those of the day before, from the same
   source rows and definitions, only the keys whose state can have changed are recomputed and rewritten,
   and those left without a state deleted (``batchml.online.changes``); otherwise every state is written
   (a full run). Records of states keep serving across nights, from the date of the last full run on
   (``base`` in ``meta/state``).
   States only move forward: materializing a date before the current states' date leaves them alone.
3. Records whose expiry has passed by the end of the last date are purged (DynamoDB: its TTL does it):
   events expire ``online.ttl_days`` after their run date; states that long after the lookback that follows
   the night that wrote them (a state no night rewrites for a lookback is deleted before that).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import reduce
from typing import Iterator

from batchml.config import Config
from batchml.features.build import feature_spec, source_table
from batchml.features.compute import day_edges, edge_days
from batchml.features.spec import FeatureSpec
from batchml.features.store import TileStore
from batchml.features.tiles import chosen
from batchml.online import records as R
from batchml.online.backends import Backend, Record, open_backend
from batchml.online.backends.sqlite import SqliteBackend
from batchml.online.changes import changed_keys
from batchml.online.spec import OnlineConfig
from batchml.online.state import fingerprint
from batchml.online.state import states as entity_states
from batchml.storage import Lake

log = logging.getLogger(__name__)


@dataclass
class Materialized:
    dataset: str
    days: list[dt.date]
    events: int = 0  # event records written
    skipped_days: list[dt.date] = field(default_factory=list)  # already materialized at the same version
    deleted: int = 0  # events no longer in their partition
    entities: dict[str, int] = field(default_factory=dict)  # states written per entity
    deleted_states: dict[str, int] = field(default_factory=dict)  # keys left without a state (incremental runs)
    incremental_from: dt.date | None = None  # the states' date an incremental run moved forward from
    state_as_of: dt.date | None = None
    purged: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # events, states, state_writes (inside states), purge

    def line(self) -> str:
        span = f"{self.days[0]}..{self.days[-1]}" if len(self.days) > 1 else str(self.days[0])
        mode = (f" (incremental from {self.incremental_from}, {sum(self.deleted_states.values())} deleted)"
                if self.incremental_from else " (full)")
        states = (f"{sum(self.entities.values())} entity state(s) as of {self.state_as_of}{mode}" if self.entities
                  else f"entity states kept (as of {self.state_as_of})")
        return (f"materialize {self.dataset} {span}: {self.events} event record(s)"
                + (f", {len(self.skipped_days)} day(s) already materialized" if self.skipped_days else "")
                + (f", {self.deleted} deleted" if self.deleted else "") + f"; {states}; {self.purged} expired purged"
                + (" (seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()) + ")"
                   if self.seconds else ""))


def materialize(config: Config, run_date: dt.date, dataset: str | None = None, spark=None,
                end: dt.date | None = None) -> Materialized:
    """Materialize ``run_date`` (or ``run_date .. end`` inclusive, in date order) and return what was written."""
    name, spec = feature_spec(config, dataset)
    last = end or run_date
    if last < run_date:
        raise ValueError(f"backfill end {last} is before its start {run_date}")
    lake = Lake(config, spark)
    if not lake.exists(spec.table):
        raise FileNotFoundError(f"feature table {spec.table} does not exist: run `batchml run features` first")
    days = [run_date + dt.timedelta(days=i) for i in range((last - run_date).days + 1)]
    store = open_backend(config, create=True)
    done = Materialized(name, days)
    try:
        started = time.perf_counter()
        for day in days:
            materialize_events(lake, store, name, spec, day, config.online, done)
        _advance_latest(store, name, last)
        done.seconds["events"] = time.perf_counter() - started
        current = _meta(store, name, "state")
        if current is None or dt.date.fromisoformat(current["as_of"]) <= last:
            started = time.perf_counter()
            _states(lake, store, config, name, spec, last, done)
            done.seconds["states"] = time.perf_counter() - started
        else:
            done.state_as_of = dt.date.fromisoformat(current["as_of"])
            log.info("materialize %s: entity states are as of %s, after %s; left as they are", name,
                     current["as_of"], last)
        started = time.perf_counter()
        done.purged = store.purge(R.end_of(last))
        done.seconds["purge"] = time.perf_counter() - started
    finally:
        store.close()
    log.info("%s", done.line())
    return done


def _meta(store: Backend, dataset: str, name: str) -> dict | None:
    value = store.get([R.meta_key(dataset, name)]).get(R.meta_key(dataset, name))
    return None if value is None else json.loads(value)


def _advance_latest(store: Backend, dataset: str, day: dt.date) -> None:
    """``meta/latest``: the newest run date materialized (a backfill of older dates leaves it)."""
    latest = _meta(store, dataset, "latest")
    if latest is None or latest["run_date"] <= str(day):
        run = _meta(store, dataset, f"run/{day}")
        store.put([Record(R.meta_key(dataset, "latest"), json.dumps(run).encode(), R.NEVER)])


def materialize_events(lake: Lake, store: Backend, dataset: str, spec: FeatureSpec, day: dt.date,
                       online: OnlineConfig, done: Materialized) -> None:
    """The by-ID half for one run date: the partition's rows, the run marker, stale IDs deleted."""
    where = [(spec.date_column, "=", day)]
    version = lake.last_change(spec.table, where)
    schema_id, schema_doc = R.schema_doc(lake.schema(spec.table, version))
    expires = R.expiry(day, online.ttl_days)
    marker = _meta(store, dataset, f"run/{day}")
    if marker and marker["table_version"] == version and marker["schema"] == schema_id:
        done.skipped_days.append(day)
        log.info("materialize %s %s: already materialized from %s version %s", dataset, day, spec.table, version)
        return
    # never expires: a schema id is shared by every run date with the same columns (one small record each)
    store.put([Record(R.meta_key(dataset, f"schema/{schema_id}"), schema_doc, R.NEVER)])
    header = {"run_date": str(day), "table_version": version, "schema": schema_id}
    written = set()
    for batch in lake.read_batches(spec.table, where, version=version, batch_rows=online.batch_rows):
        records = R.encode_events(batch, dataset, spec.id_column, header, expires)
        store.put(records)
        written.update(r.key for r in records)
    if marker:  # an earlier materialization of this date: drop the events the partition no longer holds
        stale = [k for k in _event_keys(lake, dataset, spec, day, marker["table_version"]) if k not in written]
        store.delete(stale)
        done.deleted += len(stale)
    if not written:
        log.warning("materialize %s %s: partition %s = %s of %s is empty (were its features built?)", dataset, day,
                    spec.date_column, day, spec.table)
    run = {"run_date": str(day), "table": spec.table, "table_version": version, "schema": schema_id,
           "events": len(written)}
    store.put([Record(R.meta_key(dataset, f"run/{day}"), json.dumps(run).encode(), expires)])
    done.events += len(written)


def _event_keys(lake: Lake, dataset: str, spec: FeatureSpec, day: dt.date, version: int) -> list[str]:
    where = [(spec.date_column, "=", day)]
    return [R.event_key(dataset, i) for batch in lake.read_batches(spec.table, where, [spec.id_column], version)
            for i in batch.column(0).to_pylist()]


def _states(lake: Lake, store: Backend, config: Config, dataset: str, spec: FeatureSpec, day: dt.date,
            done: Materialized) -> None:
    from pyspark.sql import functions as F

    source = source_table(config, dataset)
    version = lake.last_change(source, [("ingest_date", "<=", day)])
    state = {"as_of": str(day), "table": source, "table_version": version, "spec": fingerprint(spec)}
    current = _meta(store, dataset, "state")
    if current and {k: current[k] for k in state} == state:
        done.state_as_of = day
        log.info("materialize %s: entity states as of %s already written from %s version %s", dataset, day,
                 source, version)
        return
    base = _incremental_base(lake, dataset, current, state, day) if config.online.incremental_states else None
    tiles, edges = history(lake, config, dataset, spec, day)
    only = {} if base is None else changed_keys(TileStore(lake, dataset, spec, source), spec, day, tiles)
    try:
        rows = entity_states(tiles, edges, spec, day, only or None)
        if only:
            rows = _with_deletions(rows, only, spec)
        header = {"run_date": str(day), "table": source, "table_version": version}
        writer = StateWriter(config, dataset, {n: e.keys for n, e in spec.entities.items()}, header,
                             R.expiry(day, config.online.ttl_days + spec.lookback()))
        written = _in_store_order(config, rows, len(spec.entities)).mapInArrow(
            writer, "entity string, records long, deleted long, write_s double")
        totals = written.groupBy("entity").agg(F.sum("records").alias("n"), F.sum("deleted").alias("d"),
                                               F.sum("write_s").alias("s")).collect()
        done.seconds["state_writes"] = sum(r["s"] for r in totals)
    finally:
        for df in [*tiles.values(), edges, *only.values()]:
            df.unpersist()
    by_entity = {r["entity"]: r for r in totals}
    done.entities = {name: by_entity[name]["n"] if name in by_entity else 0 for name in spec.entities}
    done.deleted_states = {name: by_entity[name]["d"] if name in by_entity else 0 for name in spec.entities}
    done.incremental_from = None if base is None else day - dt.timedelta(days=1)
    state.update(base=base or str(day), entities=done.entities, deleted=done.deleted_states)
    store.put([Record(R.meta_key(dataset, "state"), json.dumps(state).encode(), R.NEVER)])
    done.state_as_of = day


def _incremental_base(lake: Lake, dataset: str, current: dict | None, state: dict, day: dt.date) -> str | None:
    """The stored states' ``base`` when they are exactly the states of ``day - 1`` from the same source rows and
    definitions (so only changed keys need writing), else None (a full run; the log says why)."""
    prior = day - dt.timedelta(days=1)
    if current is None or "base" not in current:
        why = "no states stored yet" if current is None else "the stored states predate incremental runs"
    elif current["as_of"] != str(prior):
        why = f"the stored states are as of {current['as_of']}, not {prior}"
    elif current["spec"] != state["spec"] or current["table"] != state["table"]:
        why = "the feature definitions or the source table changed"
    elif lake.last_change(state["table"], [("ingest_date", "<=", prior)]) != current["table_version"]:
        why = f"rows ingested by {prior} changed since its states were written"
    else:
        return current["base"]
    log.info("materialize %s: all entity states as of %s are written: %s", dataset, day, why)
    return None


def _with_deletions(rows, only: dict, spec: FeatureSpec):
    """Every key to recompute with its new state, or a null state where it has none any more."""
    from pyspark.sql import functions as F

    wanted = reduce(lambda a, b: a.unionByName(b), [keys.select(
        F.lit(name).alias("entity"), F.array(*[F.col(k).cast("string") for k in spec.entities[name].keys]).alias("key"))
        for name, keys in only.items()])
    return wanted.join(rows, ["entity", "key"], "left")


def _in_store_order(config: Config, rows, entities: int):
    """SQLite: all of an entity's states in one task (two entities may share one), sorted by key, so its B-tree
    takes them as a sequential sweep (about 15x faster than the scattered order of hash partitions)."""
    if config.online.backend != "sqlite":
        return rows
    return rows.repartition(entities, "entity").sortWithinPartitions("entity", "key")


# At 1M events a day a merchant's state reaches 1.6 MB: an Arrow batch of them (up to 10,000 rows) in one
# transaction was hundreds of megabytes of write-ahead log.
TRANSACTION_BYTES = 16 << 20


def transactions(records: list[Record], rows: int, max_bytes: int = TRANSACTION_BYTES) -> Iterator[list[Record]]:
    """``records`` in order, in slices of at most ``rows`` records and ``max_bytes`` of values (a larger
    record alone): one store transaction each."""
    start, size = 0, 0
    for i, record in enumerate(records):
        if i > start and (i - start == rows or size + len(record.value) > max_bytes):
            yield records[start:i]
            start, size = i, 0
        size += len(record.value)
    if start < len(records):
        yield records[start:]


class StateWriter:
    """Writes entity states where Spark computed them (executors, in parallel; no collect on the driver), deletes
    the keys whose state is null, and yields how many it wrote and deleted, and the seconds its store writes
    took (the rest of the task computed them). Idempotent, so a retried task does the same again."""

    def __init__(self, config: Config, dataset: str, keys: dict[str, list[str]], header: dict, expires: int):
        self.config, self.dataset, self.keys, self.expires = config, dataset, keys, expires
        self.prefix = json.dumps(header, separators=(",", ":"))[:-1]

    def __call__(self, batches):
        import pyarrow as pa
        import pyarrow.compute as pc

        store = open_backend(self.config, create=True)
        counts: dict[str, list[int]] = {}  # entity -> [written, deleted]
        writing, step = 0.0, self.config.online.batch_rows
        turn = store.sole_writer if isinstance(store, SqliteBackend) else nullcontext
        try:
            for batch in batches:
                kept = pc.is_valid(batch.column(2))
                present, gone = batch.filter(kept), batch.filter(pc.invert(kept))
                records = self.records(present)
                deletes = [R.entity_key(self.dataset, name, key) for name, key in
                           zip(gone.column(0).to_pylist(), gone.column(1).to_pylist())]
                with turn():  # SQLite: one batch's writes at a time; the records are built in parallel
                    started = time.perf_counter()
                    for part in transactions(records, step):
                        store.put(part)
                    for i in range(0, len(deletes), step):
                        store.delete(deletes[i:i + step])
                    writing += time.perf_counter() - started
                for part, j in ((present, 0), (gone, 1)):
                    for name in part.column(0).to_pylist():
                        counts.setdefault(name, [0, 0])[j] += 1
        finally:
            store.close()
        columns = [pa.array(list(counts), pa.string()), *[pa.array([c[j] for c in counts.values()], pa.int64())
                                                            for j in (0, 1)],
                   pa.array([0.0 if i else writing for i in range(len(counts))], pa.float64())]
        yield pa.record_batch(columns, names=["entity", "records", "deleted", "write_s"])

    def records(self, batch) -> list[Record]:
        """The batch's (entity, key, state) rows as records, spelled by Arrow (a row at a time only for key
        values that JSON must escape): millions of states a night."""
        import pyarrow as pa
        import pyarrow.compute as pc

        out = []
        for name in pc.unique(batch.column(0)).to_pylist():
            part = batch.filter(pc.equal(batch.column(0), name))
            values = [pc.list_element(part.column(1), i) for i in range(len(self.keys[name]))]
            if any(R.needs_escapes(v) for v in values):
                out += [self._record(row) for row in part.to_pylist()]
                continue
            quoted = [pc.binary_join_element_wise('"', v, '"', "") for v in values]
            keys = pc.binary_join_element_wise(f"{self.dataset}/entity/{name}/[",
                                               pc.binary_join_element_wise(*quoted, ","), "]", "")
            doc = pc.binary_join_element_wise(*[pc.binary_join_element_wise(f"{_json(c)}:", q, "")
                                                for c, q in zip(self.keys[name], quoted)], ",")
            head = f'{self.prefix},"entity":{_json(name)},"key":{{'
            docs = pc.binary_join_element_wise(head, doc, '},"state":', part.column(2), "}", "")
            docs = pc.cast(docs, pa.binary())
            out += [Record(k, v, self.expires) for k, v in zip(keys.to_pylist(), docs.to_pylist())]
        return out

    def _record(self, row: dict) -> Record:
        name, values = row["entity"], row["key"]
        key = json.dumps(dict(zip(self.keys[name], values)), separators=(",", ":"), ensure_ascii=False)
        value = f'{self.prefix},"entity":"{name}","key":{key},"state":{row["state"]}}}'.encode()
        return Record(R.entity_key(self.dataset, name, values), value, self.expires)


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def history(lake: Lake, config: Config, dataset: str, spec: FeatureSpec, day: dt.date):
    """What a state as of ``day`` holds, as a build of ``day + 1`` known on ``day`` sees its history (rows
    ingested by ``day``, the latest delivery of each): each entity's tiles of the lookback and the raw rows
    of the edge days, both persisted (the caller unpersists them). The features stage tiled them."""
    from pyspark import StorageLevel

    nxt = day + dt.timedelta(days=1)
    tile_store = TileStore(lake, dataset, spec, source_table(config, dataset))
    untiled = tile_store.untiled(day)
    if untiled:
        raise FileNotFoundError(f"materialize {dataset} {day}: ingest dates {untiled[0]}..{untiled[-1]} are not tiled "
                                f"yet: run `batchml run features --run-date {day}` first")
    versions = tile_store.versions()
    first = nxt - dt.timedelta(days=spec.lookback())
    # by the entity's keys: the state's aggregations and joins of them, all per key, need no shuffle
    tiles = {name: chosen(tile_store.tiles(name, nxt, nxt), versions, nxt, first, known=day).repartition(
        *spec.entities[name].keys).persist(StorageLevel.MEMORY_AND_DISK) for name in spec.entities}
    rows = tile_store.edge_rows(edge_days(spec, nxt, nxt + dt.timedelta(days=1)), min(i for i, _ in versions), day)
    edges = day_edges(rows, tile_store.records(day, since=nxt), spec, nxt, known=day)
    return tiles, edges.persist(StorageLevel.MEMORY_AND_DISK)
