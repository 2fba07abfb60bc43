"""The tile tables of a dataset's features (docs/tiling.md): which ingest dates are tiled, one
tiling pass over the ingest dates not tiled yet, and the reads a day's build makes.

Tables (``spec.tile_tables``, declared under ``tables:``): one per entity, partitioned by
``tile_date``; ``superseded``, the rows a later version replaced, partitioned by ``superseded_on``;
``log``, one row per tile version ``(ingest_date, as_of)`` with the source partition's row count
and the feature spec's fingerprint. A pass writes each table's rows of its ingest dates with one
replace-where overwrite (a crashed pass is redone whole) and the log last, so the log only ever
names complete versions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging

import pyarrow as pa

from batchml.features import tiles as T
from batchml.features.spec import FeatureSpec, tile_tables
from batchml.rundays import UTC_CALENDAR, RunCalendar
from batchml.storage import Lake

log = logging.getLogger(__name__)
LOG_SCHEMA = pa.schema([("ingest_date", pa.date32()), ("as_of", pa.date32()), ("source_rows", pa.int64()),
                        ("spec", pa.string())])


class TilesOutdated(RuntimeError):
    """The stored tiles were built for other feature definitions."""


def fingerprint(spec: FeatureSpec) -> str:
    """What tile contents depend on: the id and time columns, each entity's keys and states."""
    doc = {"id": spec.id_column, "time": spec.event_time_column, "entities": {
        n: [e.keys, list(T.state_columns(spec, n)), T.distinct_columns(spec, n)] for n, e in spec.entities.items()}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _span(days: list[dt.date]) -> str:
    return f"{days[0]}..{days[-1]}" if days else "none"


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


class TileStore:
    """Tiles are by UTC event day (``tile_date``) and ingest date; ``calendar`` maps run dates onto them."""

    def __init__(self, lake: Lake, dataset: str, spec: FeatureSpec, source: str,
                 calendar: RunCalendar = UTC_CALENDAR):
        self.lake, self.dataset, self.spec, self.source, self.calendar = lake, dataset, spec, source, calendar
        self.tables = tile_tables(dataset, spec)
        for table in self.tables.values():
            lake.table_config(table)  # fail early if a tile table is not declared
        self.columns = list(dict.fromkeys([*spec.source_columns(), *T.VERSION]))

    # -- what is tiled ---------------------------------------------------------------------------
    def ensure(self, first: dt.date, last: dt.date, cache: list) -> dt.date:
        """Tile, in one pass, every ingest date up to ``last`` that the builds of ``[first, last]``
        need and that is not tiled yet. Returns the first ingest date builds may read: no rows
        ingested before it are tiled. Tiles are redone from scratch when a needed source ingest date
        before (or between) the tiled ones is not tiled, or a tiled source partition changed.
        ``first``/``last`` are run dates: the first UTC day ``first`` overlaps starts the lookback, and the
        events' known-since rule says up to which ingest date to tile."""
        versions = self._log()
        other = {r["spec"] for r in versions} - {fingerprint(self.spec)}
        if other:
            raise TilesOutdated(f"the tiles of {self.dataset} were built for other feature definitions; delete "
                                f"the tables {sorted(self.tables.values())} and build again (they are rebuilt "
                                "from the source in one pass)")
        last = self.calendar.events_known(last)
        ingests = self._ingests(last)
        tiled = {r["ingest_date"]: r["source_rows"] for r in versions if r["ingest_date"] == r["as_of"]}
        need = self.calendar.utc_days(first)[0] - dt.timedelta(days=self.spec.lookback())
        if tiled:
            lo, hi = min(tiled), max(tiled)
            changed = [d for d, n in tiled.items() if d <= last and ingests.get(d, 0) != n]
            untiled = [d for d in ingests if need <= d <= hi and d not in tiled]  # before or between tiled ones
            if not changed and not untiled:
                todo = [d for d in sorted(ingests) if d > hi]
                if todo:
                    self._tile(todo, ingests, lo, scratch=False, cache=cache)
                return min(lo, need)
            log.warning("tiles of %s redone from scratch: %s", self.dataset,
                        f"source partitions changed since tiling: {changed}" if changed else
                        f"ingest dates {untiled[0]}..{untiled[-1]} are needed and not tiled")
            need = min(need, lo)
        todo = [d for d in sorted(ingests) if d >= need]
        if not todo:
            span = f"from {need} on" if last == dt.date.max else f"from {need} to {last}"
            raise FileNotFoundError(f"{self.source} has no events ingested {span}: nothing to build features of "
                                    f"run dates from {first} on from")
        self._tile(todo, ingests, need, scratch=True, cache=cache)
        return need

    def _log(self) -> list[dict]:
        table = self.tables["log"]
        return self.lake.read_arrow(table).to_pylist() if self.lake.exists(table) else []

    def _ingests(self, last: dt.date) -> dict[dt.date, int]:
        """Source rows per ingest date up to ``last``, from the Delta log alone."""
        out: dict[dt.date, int] = {}
        for f in self.lake.file_stats(self.source):
            day = f["partition.ingest_date"]
            if day <= last:
                out[day] = out.get(day, 0) + (f["num_records"] or 0)
        return out

    # -- one pass ----------------------------------------------------------------------------------
    def _tile(self, todo: list[dt.date], ingests: dict, first: dt.date, scratch: bool, cache: list) -> None:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        spec, lake, idc = self.spec, self.lake, self.spec.id_column
        if scratch and lake.exists(self.tables["log"]):  # a crash mid-pass must not leave old versions named
            lake.write_arrow(LOG_SCHEMA.empty_table(), self.tables["log"], mode="overwrite")
        new = T.source_rows(lake.read(self.source, columns=self.columns, where=[("ingest_date", "in", todo)]), spec)
        new = new.persist(StorageLevel.MEMORY_AND_DISK)
        cache.append(new)
        candidates = new.select(idc, *T.VERSION, "__t")
        if not scratch:
            candidates = candidates.unionByName(self._earlier_versions(new, todo, first))
        found = T.supersessions(candidates, idc, on=todo).withColumnRenamed("__t", "event_us").toArrow()
        self._write_arrow(found, "superseded", "superseded_on", todo, scratch)

        known = self.records(todo[-1], ingests=todo)
        pairs = [(i, j) for i, j in T.revisions(known + self.records(todo[-1], on=todo)) if j in set(todo)]
        revised = sorted({i for i, _ in pairs} - set(todo))
        old = [(i, j) for i, j in pairs if i in set(revised)]  # revisions of ingest dates tiled before
        live = T.versioned(new, known, [p for p in pairs if p not in old], idc)
        if revised:  # those ingest dates' rows again, as of the new dates only
            rows = T.source_rows(lake.read(self.source, columns=self.columns, where=[("ingest_date", "in", revised)]),
                                 spec)
            again = rows.sparkSession.createDataFrame([list(p) for p in old], "ingest_date date, as_of date")
            live = live.unionByName(T.current(rows.join(F.broadcast(again), "ingest_date"),
                                              self.records(todo[-1], ingests=revised), idc))
        versions = sorted({(d, d) for d in todo} | set(pairs))
        live = live.persist(StorageLevel.MEMORY_AND_DISK)
        cache.append(live)
        for name in spec.entities:
            self._write(T.entity_tiles(live, spec, name), name, "as_of", todo, scratch)
        entries = [{"ingest_date": i, "as_of": j, "source_rows": ingests.get(i, 0), "spec": fingerprint(spec)}
                   for i, j in versions]
        self._write_arrow(pa.Table.from_pylist(entries, LOG_SCHEMA), "log", "as_of", todo, scratch)
        log.info("tiles %s: ingest dates %s tiled (%d version(s), %d revised)", self.dataset, _span(todo),
                 len(versions), len(versions) - len(todo))

    def _earlier_versions(self, new, todo: list[dt.date], first: dt.date):
        """Rows of already tiled ingest dates with an id among the new rows, that could still be in
        a window (event time from ``todo[0] - lookback``). Files whose id range (Delta statistics)
        misses the new ids are skipped unread: with ids that grow over time, that is all of them."""
        from pyspark.sql import functions as F

        spec, idc = self.spec, self.spec.id_column
        where = [("ingest_date", ">=", first), ("ingest_date", "<", todo[0]),
                 (spec.event_time_column, ">=", _midnight(self.calendar.utc_days(todo[0])[0]
                                                          - dt.timedelta(days=spec.lookback())))]
        stats = [f for f in self.lake.file_stats(self.source) if f["partition.ingest_date"] in set(todo)]
        lows, highs = [f.get(f"min.{idc}") for f in stats], [f.get(f"max.{idc}") for f in stats]
        if stats and None not in lows and None not in highs:
            where += [(idc, ">=", min(lows)), (idc, "<=", max(highs))]
        old = self.lake.read(self.source, columns=[idc, spec.event_time_column, *T.VERSION], where=where)
        old = old.select(idc, *T.VERSION, F.unix_micros(F.col(spec.event_time_column)).alias("__t"))
        return old.join(new.select(idc), idc, "left_semi")

    def _write(self, df, key: str, column: str, todo: list[dt.date], scratch: bool) -> None:
        where = None if scratch else [(column, "in", todo)]
        self.lake.write(df, self.tables[key], mode="overwrite", replace_where=where,
                        metadata={"job": "features-tiles", "ingestDates": _span(todo)})

    def _write_arrow(self, data: pa.Table, key: str, column: str, todo: list[dt.date], scratch: bool) -> None:
        where = None if scratch else [(column, "in", todo)]
        self.lake.write_arrow(data, self.tables[key], mode="overwrite", replace_where=where,
                              metadata={"job": "features-tiles", "ingestDates": _span(todo)})

    def untiled(self, last: dt.date) -> list[dt.date]:
        """Source ingest dates up to ``last`` with rows and no tiles (none before the first tiled one: builds do
        not read those)."""
        tiled = {ingest for ingest, as_of in self.versions() if ingest == as_of}
        return [d for d in sorted(self._ingests(last)) if d not in tiled and (not tiled or d > min(tiled))]

    # -- what a day's build reads --------------------------------------------------------------------
    def versions(self) -> list[tuple[dt.date, dt.date]]:
        """The tile versions built: ``(ingest_date, as_of)`` pairs."""
        return [(r["ingest_date"], r["as_of"]) for r in self._log()]

    def records(self, day: dt.date, ingests: list[dt.date] | None = None,
                on: list[dt.date] | None = None, since: dt.date | None = None) -> list[dict]:
        """Rows replaced by a version that arrived by ``day``, as dicts: of the given ingest dates, or
        replaced on the dates ``on``, else those with an event time in the lookback of UTC day ``since``
        (default ``day``)."""
        table = self.tables["superseded"]
        if not self.lake.exists(table):
            return []
        first = (since or day) - dt.timedelta(days=self.spec.lookback())
        where = [("superseded_on", "<=", day)]
        if ingests is not None:
            where.append(("ingest_date", "in", ingests))
        elif on is not None:
            where.append(("superseded_on", "in", on))
        else:
            where.append(("event_us", ">=", int(_midnight(first).timestamp()) * T.US))
        return self.lake.read_arrow(table, where).to_pylist()

    def tiles(self, name: str, first_day: dt.date, last_day: dt.date):
        """The entity's tile rows of the event days in the lookbacks of UTC days ``first_day..last_day``."""
        first = first_day - dt.timedelta(days=self.spec.lookback())
        return self.lake.read(self.tables[name], where=[("tile_date", ">=", first), ("tile_date", "<", last_day)])

    def edge_rows(self, days: list[dt.date], first_ingest: dt.date, last_ingest: dt.date):
        """Source rows of the event ``days`` ingested in ``[first_ingest, last_ingest]``: one read per run
        of consecutive days, so file statistics skip the rest."""
        runs: list[list[dt.date]] = []
        for day in sorted(days):
            if runs and day - runs[-1][-1] == dt.timedelta(days=1):
                runs[-1].append(day)
            else:
                runs.append([day])
        t = self.spec.event_time_column
        parts = [self.lake.read(self.source, columns=self.columns, where=[
            (t, ">=", _midnight(run[0])), (t, "<", _midnight(run[-1] + dt.timedelta(days=1))),
            ("ingest_date", ">=", first_ingest), ("ingest_date", "<=", last_ingest)]) for run in runs]
        out = parts[0]
        for part in parts[1:]:
            out = out.unionByName(part)
        return T.source_rows(out, self.spec)
