"""The features stage: build the feature table's partition for one run date (or each date of a range).

A build of ``D`` first tiles the ingest dates not tiled yet (normally just ``D``: ``store``), then
reads each entity's tiles of the lookback plus the raw events of ``D`` and of each window's boundary
day (``compute.edge_days``), ingested by ``D``, from the events the validation gate accepted (silver;
bronze when the dataset declares no gate). It overwrites only the ``event_date = D`` partition,
idempotently (Delta app transaction ``features/<dataset>/<D>``). A backfill tiles its whole range in
one pass, then builds the days one by one, each exactly as its daily build would.

Run dates are local days of the dataset's ``timezone`` and the events' ``known_since`` rule says which
ingest dates a build reads (``batchml.rundays``; docs/features.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from batchml.config import Config
from batchml.features.compute import edge_days, features_from_tiles, label_outcomes, load_sql
from batchml.features.spec import FeatureSpec
from batchml.features.store import TileStore
from batchml.rundays import RunCalendar
from batchml.storage import Lake
from batchml.storage.commit import WriteResult

log = logging.getLogger(__name__)


def feature_spec(config: Config, dataset: str | None = None) -> tuple[str, FeatureSpec]:
    name = dataset or config.default_dataset
    spec = config.dataset(name).features
    if spec is None:
        raise ValueError(f"dataset {name!r} declares no features (add a 'features:' section to its config)")
    return name, spec


def source_table(config: Config, dataset: str) -> str:
    """The gate's accepted table for the events feed, or the raw feed when it has no gate."""
    events = config.dataset(dataset).events.table
    gate = config.dataset(dataset).validation.get(events)
    return gate.accepted_table if gate else events


def build_features(config: Config, run_date: dt.date, dataset: str | None = None, spark=None,
                   end: dt.date | None = None) -> WriteResult:
    """Build ``run_date`` (or the backfill ``run_date .. end``, inclusive) and return the write result
    (for a backfill: the rows and files of all days, the last version)."""
    name, spec = feature_spec(config, dataset)
    last = end or run_date
    if last < run_date:
        raise ValueError(f"backfill end {last} is before its start {run_date}")
    lake = Lake(config, spark)
    lake.table_config(spec.table)  # fail early if the table is not declared
    days = [run_date + dt.timedelta(days=i) for i in range((last - run_date).days + 1)]
    todo = [d for d in days if not (lake.exists(spec.table) and lake.committed(spec.table, _txn(name, d)))]
    if not todo:  # before planning: the plan is large
        log.info("features %s %s: already built (transaction recorded); nothing to do", name, _span(days))
        return WriteResult(lake.uri(spec.table), lake.version(spec.table), skipped=True)
    calendar = config.dataset(name).calendar()
    store = TileStore(lake, name, spec, source_table(config, name), calendar)
    outcomes = _label_outcomes(config, lake, name, spec) if spec.label_features else None
    references = _references(config, lake, name, spec) if spec.as_of else None
    cache: list = []
    started = time.perf_counter()
    try:
        first_ingest = store.ensure(todo[0], todo[-1], cache)
        tiled = time.perf_counter()
        results = [_build_day(lake, store, name, spec, day, first_ingest, calendar, outcomes, references)
                   for day in todo]
    finally:
        for df in cache:
            df.unpersist()
    written = [r for r in results if not r.skipped]
    log.info("features %s %s: %d row(s) in %s (%d day(s) built; seconds: tiling %.1f, days %.1f)", name,
             _span(days), sum(r.rows_written for r in written), spec.table, len(written), tiled - started,
             time.perf_counter() - tiled)
    return WriteResult(lake.uri(spec.table), results[-1].version, not written,
                       sum(r.files_added for r in written), sum(r.files_removed for r in written),
                       sum(r.rows_written for r in written))


def _label_outcomes(config: Config, lake: Lake, dataset: str, spec: FeatureSpec):
    """``outcomes(name, day, run_date)`` for ``compute.features_from_tiles``: reads only the events and label
    rows that can matter for UTC day ``day`` of ``run_date`` (known by it, events of its label lookback, labels
    not older than them)."""
    from batchml import labels as L
    from batchml.features import tiles as T

    ds = config.dataset(dataset)
    label, ingest = ds.label, ds.ingest_column
    if label is None or label.table is None:
        raise ValueError(f"dataset {dataset!r} declares label_features but no label: section")

    events_known = ds.calendar().events_known

    def outcomes(name: str, day: dt.date, run_date: dt.date):
        lf = spec.label_features[name]
        first = _midnight(day - dt.timedelta(days=spec.label_lookback_days()))
        stop = _midnight(day + dt.timedelta(days=1))
        events = lake.read(source_table(config, dataset), columns=[spec.id_column, spec.event_time_column,
                                                                    *lf.keys, *T.VERSION],
                           where=[(spec.event_time_column, ">=", first), (spec.event_time_column, "<", stop),
                                  ("ingest_date", "<=", events_known(run_date))])
        rows = events.withColumn("__t", _micros_of(spec.event_time_column))
        known = lake.read(label.table, L.read_columns(label, ingest), where=[
            (ingest, "<=", run_date), (label.time_column, ">=", first)]) if lake.exists(label.table) else None
        return label_outcomes(rows, known, spec, label, name, day, ingest, run_date, events_known(run_date))
    return outcomes


def _references(config: Config, lake: Lake, dataset: str, spec: FeatureSpec):
    """``references(name, day, run_date)`` for ``compute.features_from_tiles``: the rows of as-of join ``name``'s
    feed (its gate's accepted table, else bronze) that UTC day ``day`` of a build of ``run_date`` may use, and
    their valid-time column."""
    from batchml.features import tiles as T

    ds = config.dataset(dataset)

    def references(name: str, day: dt.date, run_date: dt.date):
        join = spec.as_of[name]
        feed = ds.reference[join.feed]
        gate = ds.validation.get(feed.table)
        table = gate.accepted_table if gate else feed.table
        if not lake.exists(table):
            raise FileNotFoundError(f"features {dataset} {run_date}: as_of join {name!r} needs reference feed "
                                    f"{join.feed!r} ({table}), which nothing has been ingested into yet")
        first = _midnight(day) - dt.timedelta(seconds=spec.as_of_reach_seconds(name))
        valid = feed.event_time_column
        rows = lake.read(table, columns=list(dict.fromkeys([*join.keys.values(), valid, *join.columns, *T.VERSION])),
                         where=[(valid, ">=", first), (valid, "<", _midnight(day + dt.timedelta(days=1))),
                                ("ingest_date", "<=", run_date)])
        return rows, valid
    return references


def _midnight(day: dt.date) -> dt.datetime:
    """The start of UTC day ``day`` (a tiling day, not a run date: ``rundays.day_bounds`` gives those)."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def _micros_of(column: str):
    from pyspark.sql import functions as F

    return F.unix_micros(F.col(column))


def _build_day(lake: Lake, store: TileStore, name: str, spec: FeatureSpec, day: dt.date, first_ingest: dt.date,
               calendar: RunCalendar, outcomes=None, references=None) -> WriteResult:
    """Run date ``day``: the UTC days it overlaps, from the rows known by it (``calendar``)."""
    stop, utc = day + dt.timedelta(days=1), calendar.utc_days(day)
    known = calendar.events_known(day)
    cache: list = []
    rows = store.edge_rows(edge_days(spec, utc[0], utc[-1] + dt.timedelta(days=1)), first_ingest, known)
    tiles = {entity: store.tiles(entity, utc[0], utc[-1]) for entity in spec.entities}
    features = features_from_tiles(rows, tiles, store.versions(), store.records(known, since=utc[0]), spec, day,
                                   stop, load_sql(spec, lake.config.conf_dir), cache=cache, outcomes=outcomes,
                                   references=references, calendar=calendar)
    try:
        return lake.write(features, spec.table, mode="overwrite", replace_where=[(spec.date_column, "=", day)],
                          txn=_txn(name, day), metadata={"job": "features", "runDate": str(day)})
    finally:
        for df in cache:
            df.unpersist()


def _txn(dataset: str, day: dt.date) -> tuple[str, int]:
    return f"features/{dataset}/{day}", 1


def _span(days: list[dt.date]) -> str:
    return str(days[0]) if len(days) == 1 else f"{days[0]}..{days[-1]}"
