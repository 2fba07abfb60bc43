"""Point-in-time features, as pure transforms: DataFrame in, DataFrame out.

Every feature of an event at time ``t`` uses only events of the same entity with event time
in ``[t - window, t)``: strictly before ``t``, so events at the same instant never see each other.

How a day ``D`` is computed (docs/tiling.md):

* A window ``w`` of ``k`` whole days splits, for any ``t`` on day ``D``, into
  ``[t - w, D - (k-1) days)`` (a suffix of day ``D - k``), the **interior** ``[D - (k-1) days, D)``
  (the same for every event of the day), and ``[D, t)`` (a prefix of day ``D``).
* The interior is a merge of whole-day **tiles** (``tiles``): per entity key, counts, micro-unit
  sums and maxima of each earlier day, built once when that day's events were ingested.
* The two edges come from raw events of day ``D`` and each boundary day, shifted forward by
  ``k - 1`` days into one small stream per entity. The prefix aggregates day ``D`` rows before ``t``
  and the suffix the shifted rows at or after ``t - 1 day``: frames of the stream sorted by key and
  time, computed in one vectorised pass per partition (``running``), not by Spark's window operator.
* Distinct counts over day windows need no per-row sets: per (entity, value) the last time before
  ``D`` (merged from the tiles' per-value last-seen times) and the first time on ``D`` become at most
  two marker rows in the same stream, counted by the same running frames (see ``_entity_features``),
  plus a per-entity constant for the interior.
* Windows shorter than a day use a sliding frame ``[t - w, t - 1µs]`` over days ``D - 1`` and ``D``.
* Sums are exact: values are summed as 64-bit integers of micro-units, so results do not depend on
  row order or on how the input is split, and a backfill equals daily builds bit for bit.

A build of ``D`` sees the rows ingested by ``D``, one per id (the latest version): tiles by their
versions, edges by dropping rows that a version arriving by ``D`` replaced. Under the events' ``known_since:
event_time`` rule it sees every row ingested so far instead (``rundays``): the windows bound it by time.

Run dates are local days of the dataset's time zone (``rundays``): run date ``D`` is computed as the UTC
days it overlaps (the tiling above is on UTC days), each as the run date's build (visibility as of ``D``),
keeping the events whose time falls in ``D``'s bounds. Windows are durations on UTC instants.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache, reduce

from batchml.features import tiles as T
from batchml.features.running import Aggregate, window_pass
from batchml.features.spec import DAY_S, FeatureSpec, window_seconds
from batchml.features.tiles import DAY_US, SCALE, US
from batchml.rundays import UTC_CALENDAR, RunCalendar

DEDUPE_ORDER = T.VERSION


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def _micros(day: dt.date) -> int:
    return int(_midnight(day).timestamp()) * US


def edge_offsets(spec: FeatureSpec) -> list[int]:
    """Days before ``D`` whose raw events a build of ``D`` reads (besides ``D``): day ``D - 1`` for
    windows up to a day, and the boundary day ``D - k`` of every window of ``k`` days."""
    out = {1}
    for name in spec.entities:
        for label in spec.entity_windows(name):
            out.add(max(1, window_seconds(label) // DAY_S))
    return sorted(out)


def edge_days(spec: FeatureSpec, start: dt.date, end: dt.date) -> list[dt.date]:
    """Event days whose raw rows the builds of ``[start, end)`` read."""
    out = set()
    for i in range((end - start).days):
        day = start + dt.timedelta(days=i)
        out |= {day, *(day - dt.timedelta(days=k) for k in edge_offsets(spec))}
    return sorted(out)


def compute_features(events, spec: FeatureSpec, start: dt.date, end: dt.date, sql: list[str] | None = None,
                     cache: list | None = None, labels=None, label=None, references: dict | None = None,
                     calendar: RunCalendar = UTC_CALENDAR):
    """Features for every event of the run dates ``[start, end)`` (local days of ``calendar``), one row per event.

    ``events`` are bronze or silver rows (with ``ingest_date`` and the ``_source_*`` columns). The
    tiles are derived here, in memory, exactly as the features stage stores them: one version per
    ingest date and per later ingest date that replaced some of its rows. ``sql`` overrides the
    spec's SQL files with query texts (tests); None loads the files. ``cache``: pass a list to
    persist the narrowed input; the caller unpersists what it finds there after its action.
    ``labels`` / ``label``: the label table's rows and the ``LabelSpec``, for ``spec.label_features``.
    ``references``: reference feed name -> its rows (bronze or silver), for ``spec.as_of``.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    known = calendar.events_known(end - dt.timedelta(days=1))
    rows = T.source_rows(events, spec).where(F.col("ingest_date") <= F.lit(known))
    if cache is not None:
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
        cache.append(rows)
    records = [r.asDict() for r in T.supersessions(rows.select(spec.id_column, *T.VERSION, "__t"),
                                                   spec.id_column).collect()]
    revisions = T.revisions(records)
    live = T.versioned(rows, records, revisions, spec.id_column)
    tiles = {name: T.entity_tiles(live, spec, name) for name in spec.entities}
    outcomes = None
    if spec.label_features:
        if labels is None or label is None:
            raise ValueError("the spec declares label_features: pass the label table's rows and the label spec")

        def outcomes(name, day, run_date):
            return label_outcomes(rows, labels, spec, label, name, day, run_date=run_date,
                                  events_known=calendar.events_known(run_date))
    missing = sorted({j.feed for j in spec.as_of.values()} - set(references or {}))
    if missing:
        raise ValueError(f"the spec's as_of joins need the rows of reference feeds {missing}")
    return features_from_tiles(rows, tiles, revisions, records, spec, start, end, sql, outcomes=outcomes,
                               references=lambda name, day, run_date: references[spec.as_of[name].feed],
                               calendar=calendar)


def features_from_tiles(rows, tiles: dict, versions: list, records: list[dict], spec: FeatureSpec, start: dt.date,
                        end: dt.date, sql: list[str] | None = None, cache: list | None = None, outcomes=None,
                        references=None, calendar: RunCalendar = UTC_CALENDAR):
    """Features of ``[start, end)`` from raw ``rows`` (``tiles.source_rows``; at least the edge days),
    each entity's ``tiles``, the tile ``versions`` (``(ingest_date, as_of)`` pairs; originals may be
    left out) and the replaced-row ``records`` (``tiles.supersessions`` rows as dicts).

    ``cache``: for a one-day range, the day's edge rows are persisted (every entity reads them).
    ``outcomes(name, day, run_date)``: the ``label_outcomes`` of label feature ``name`` for UTC day ``day`` of
    ``run_date`` (label features only). ``references(name, day, run_date)``: the reference feed rows as-of join
    ``name`` may use for UTC day ``day`` of ``run_date`` (as_of only). ``calendar``: the run-date rules.
    """
    days = [start + dt.timedelta(days=i) for i in range((end - start).days)]
    if not days:
        raise ValueError(f"empty date range [{start}, {end})")
    parts = []
    for run_date in days:
        for day in calendar.utc_days(run_date):
            parts.append(_utc_day_part(rows, tiles, versions, records, spec, day, run_date, calendar,
                                       cache if len(days) == 1 else None, outcomes, references))
    out = reduce(lambda a, b: a.unionByName(b), parts)
    for text in (load_sql(spec) if sql is None else sql):
        out = out.sparkSession.sql(text, features=out)
    return out


def _utc_day_part(rows, tiles: dict, versions: list, records: list[dict], spec: FeatureSpec, day: dt.date,
                  run_date: dt.date, calendar: RunCalendar, cache: list | None, outcomes, references):
    """The features of the events of ``run_date`` that fall on UTC day ``day``, as a build of ``run_date``
    sees them (events known by ``calendar.events_known(run_date)``, labels and references by ``run_date``)."""
    from pyspark import StorageLevel

    known = calendar.events_known(run_date)
    edges = day_edges(rows, records, spec, day, known)
    if cache is not None:
        edges = edges.persist(StorageLevel.MEMORY_AND_DISK)
        cache.append(edges)
    first = day - dt.timedelta(days=spec.lookback())
    # by the entity's keys: its per-key aggregations (interior, each distinct column's pairs) need no shuffle
    chosen = {n: T.chosen(t, versions, day, first, known).repartition(*spec.entities[n].keys)
              for n, t in tiles.items()}
    if cache is not None:  # an entity's plan reads its tiles up to four times (interior, each distinct column)
        chosen = {n: t.persist(StorageLevel.MEMORY_AND_DISK) for n, t in chosen.items()}
        cache.extend(chosen.values())
    part = day_features(edges, chosen, spec, day, run_date, calendar.bounds_us(run_date))
    for name in spec.label_features:
        if outcomes is None:
            raise ValueError(f"label feature {name!r} needs the label outcomes")
        part = part.join(label_window_features(edges, outcomes(name, day, run_date), spec, name, day),
                         spec.id_column, "left")
    for name in spec.as_of:
        if references is None:
            raise ValueError(f"as_of join {name!r} needs its reference feed's rows")
        part = part.join(as_of_features(edges, references(name, day, run_date), spec, name, day,
                                        run_date=run_date), spec.id_column, "left")
    return part


def day_edges(rows, records: list[dict], spec: FeatureSpec, day: dt.date, known: dt.date | None = None):
    """The raw rows a build of UTC day ``day`` reads: its edge days, ingested by ``known`` (default ``day``),
    current on ``known``."""
    from pyspark.sql import functions as F

    known = known or day
    wanted = [day, *(day - dt.timedelta(days=k) for k in edge_offsets(spec))]
    ev = rows.where(F.col("tile_date").isin(wanted) & (F.col("ingest_date") <= F.lit(known)))
    return T.current(ev, records, spec.id_column, as_of=known)


def features_for_events(new_events, history, spec: FeatureSpec, day: dt.date, sql: list[str] | None = None,
                        labels=None, label=None, calendar: RunCalendar = UTC_CALENDAR):
    """The scoring path: features for ``new_events`` (all on ``day``) given stored ``history``.

    The same ``compute_features`` as the table build, over the union of history and the new rows.
    """
    from pyspark.sql import functions as F

    cols = [c for c in history.columns if c in new_events.columns]
    both = history.select(*cols).unionByName(new_events.select(*cols))
    ids = new_events.select(spec.id_column).distinct()
    return compute_features(both, spec, day, day + dt.timedelta(days=1), sql, labels=labels, label=label,
                            calendar=calendar).join(
        F.broadcast(ids), spec.id_column, "left_semi")


def day_features(edges, tiles: dict, spec: FeatureSpec, day: dt.date, run_date: dt.date | None = None,
                 bounds: tuple[int, int] | None = None):
    """Window aggregates for the events of UTC day ``day`` from its edge rows and each entity's chosen tiles;
    only those in ``bounds`` (µs, ``[start, end)`` of ``run_date``; default: the whole day), dated ``run_date``."""
    from pyspark.sql import functions as F

    d0 = _micros(day)
    lo, hi = bounds or (d0, d0 + DAY_US)
    targets = edges.where((F.col("__t") >= max(d0, lo)) & (F.col("__t") < min(d0 + DAY_US, hi))).select(
        spec.id_column, spec.event_time_column, F.lit(run_date or day).alias(spec.date_column),
        *[c for c in spec.passthrough if c not in (spec.id_column, spec.event_time_column)])
    out = targets
    for name in spec.entities:
        out = out.join(_entity_features(edges, tiles[name], spec, name, d0), spec.id_column, "left")
    return out.select(*targets.columns, *spec.feature_names())


def _entity_features(ev, tile, spec: FeatureSpec, name: str, d0: int):
    """(id, <entity features>) for the day's events whose entity keys are all set, from the edge rows
    ``ev`` and the entity's ``tile`` rows of the days before (``tiles.chosen``)."""
    from pyspark.sql import functions as F

    entity = spec.entities[name]
    keys = entity.keys
    ev = ev.where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys]))
    # value columns: fixed-point for sums, raw for max, the value itself for distinct counts
    values = {}
    for agg in entity.aggregations:
        if agg.function in ("sum", "mean"):
            values[f"__fx_{agg.column}"] = F.round(F.col(agg.column) * SCALE).cast("long")
        elif agg.function == "max":
            values[f"__mx_{agg.column}"] = F.col(agg.column).cast("double")
        elif agg.function == "distinct_count":
            values[f"__dv_{agg.column}"] = F.col(agg.column)
    # partitioned by the keys like the tiles, so Spark 4.1+ keeps that partitioning through the unions below
    # (the stream with its markers, the day's values with the tiles' pairs) and shuffles only these rows
    base = ev.select(*keys, "__t", spec.id_column, *[v.alias(k) for k, v in values.items()]).repartition(*keys)

    windows = {label: window_seconds(label) * US for label in spec.entity_windows(name)}
    long_windows = {label: w // DAY_US for label, w in windows.items() if w >= 2 * DAY_US}
    # boundary day offset -> stream tag; windows < 1 day and 1 day share day D-1 (shift 0)
    offsets = sorted({max(1, w // DAY_US) for w in windows.values()})
    tag = {off: i + 1 for i, off in enumerate(offsets)}
    # one pass over the edge rows: each becomes its stream rows (a target on D, a shifted boundary-day row)
    copies = [F.when(F.col("__t") >= d0, F.struct(F.lit(0).alias("s"), F.col("__t").alias("t"),
                                                  F.col(spec.id_column).alias("i")))]
    for off in offsets:
        lo = d0 - off * DAY_US
        copies.append(F.when((F.col("__t") >= lo) & (F.col("__t") < lo + DAY_US), F.struct(
            F.lit(tag[off]).alias("s"), (F.col("__t") + (off - 1) * DAY_US).alias("t"),
            F.lit(None).cast(base.schema[spec.id_column].dataType).alias("i"))))
    rows = F.explode(F.filter(F.array(*copies), lambda c: c.isNotNull())).alias("__c")
    stream = (base.select(*keys, *values, rows)
              .select(*keys, *values, F.col("__c.s").alias("__src"), F.col("__c.t").alias("__t"),
                      F.col("__c.i").alias(spec.id_column)))

    markers, marked, constants = _distinct_markers(tile, base, entity, windows, d0)
    for rows in marked:
        stream = stream.unionByName(rows, allowMissingColumns=True)

    agg_hist = _interior(tile, entity, windows, long_windows, d0)

    running = {}  # (fn, col, src, frame, width) -> the alias of one aggregate of the window pass

    def run(fn, col, src, frame, width=0):
        return F.col(running.setdefault((fn, col, src, frame, width), f"__w{len(running)}"))

    cols = {}
    for label, w in windows.items():
        for agg in entity.aggregations:
            for kind, col in _parts(agg, w):
                if kind == "dc":  # exact distinct count over a day window, see above
                    tag_a, tag_b = markers[(label, agg.column)]
                    part = run("count", "*", tag_a, "at_or_after") + run("count", "*", tag_b, "prefix")
                elif w < DAY_US:  # sliding frame over days D-1 and D
                    part = run(kind, col, (0, tag[1]), "last", w)
                else:
                    # the suffix: shifted boundary-day rows at or after t - 1 day
                    pre, suf = run(kind, col, 0, "prefix"), run(kind, col, tag[w // DAY_US], "suffix", DAY_US)
                    part = {"count": pre + suf, "sum": pre + suf, "max": F.greatest(pre, suf)}[kind]
                cols[f"__e_{label}_{kind}_{col}"] = part
    for constant, carrier in constants.items():
        cols[constant] = run("max", constant, carrier, "whole")
    if entity.time_since_last:
        cols["__e_last"] = run("max", "__t", 0, "prefix")
    aggregates = [Aggregate(fn, col, src if isinstance(src, tuple) else (src,), frame, width, alias)
                  for (fn, col, src, frame, width), alias in running.items()]
    windowed = window_pass(stream, keys, [spec.id_column], aggregates)
    edges = windowed.select(*keys, "__t", spec.id_column, *[v.alias(k) for k, v in cols.items()])
    joined = edges.join(agg_hist, keys, "left") if agg_hist is not None else edges

    out = [F.col(spec.id_column)]
    for feature, owner, agg, label in spec.window_features():
        if owner != name:
            continue

        def total(kind, col, label=label):
            e = F.col(f"__e_{label}_{kind}_{col}")
            if label not in long_windows:
                return e
            i = F.col(f"__i_{label}_{kind}_{col}")
            return {"count": e + F.coalesce(i, F.lit(0)), "sum": e + F.coalesce(i, F.lit(0)),
                    "max": F.greatest(e, i)}[kind]
        col = agg.column
        if agg.function == "count":
            value = total("count", "*")
        elif agg.function == "sum":
            value = total("sum", f"__fx_{col}") / F.lit(float(SCALE))
        elif agg.function == "mean":
            n = total("count", f"__fx_{col}")
            value = F.when(n > 0, total("sum", f"__fx_{col}") / (n * F.lit(float(SCALE))))
        elif agg.function == "max":
            value = total("max", f"__mx_{col}")
        elif windows[label] < DAY_US:
            value = F.col(f"__e_{label}_distinct___dv_{col}")
        else:
            value = F.col(f"__e_{label}_dc___dv_{col}") + F.coalesce(F.col(f"__k_{label}_{col}"), F.lit(0))
        out.append(value.alias(feature))
    if entity.time_since_last:
        last = F.greatest(F.col("__e_last"), F.col("__last"))
        out.append(((F.col("__t") - last) / F.lit(float(US))).alias(f"{name}_seconds_since_last"))
    return joined.select(*out)


def label_outcomes(rows, labels, spec: FeatureSpec, label, name: str, day: dt.date,
                   ingest_column: str = "ingest_date", run_date: dt.date | None = None,
                   events_known: dt.date | None = None):
    """(keys, ``__t`` = when the outcome became known in µs, ``__pos``) for the earlier events of label
    feature ``name`` whose outcome a build of ``day`` may count.

    ``rows``: event rows (``tiles.source_rows``); ``labels``: the label table's rows (None: none yet). Only
    rows ingested by ``day`` are seen, one version per event (the latest) and one label row per event (the earliest
    known, then by ingest date). An outcome counts when its label time is in ``[event time, event time +
    maturity_days]``; presence labels infer a negative at event time + ``maturity_days`` when no row came
    by then. Events whose outcome could not fall in any window of the day are left out. ``day`` is a UTC
    day of ``run_date`` (default ``day``): labels ingested by ``run_date`` count, events ingested by
    ``events_known`` (default ``run_date``).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lf = spec.label_features[name]
    d0, maturity = _micros(day), lf.maturity_days * DAY_US
    oldest = d0 - max(window_seconds(w) for w in lf.windows) * US - maturity
    run_date = run_date or day
    events_known = events_known or run_date
    ev = rows.where((F.col("ingest_date") <= F.lit(events_known)) & (F.col("__t") >= oldest)
                    & (F.col("__t") < d0 + DAY_US))
    ev = ev.where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in lf.keys]))
    latest = Window.partitionBy(spec.id_column).orderBy(*[F.col(c).desc() for c in T.VERSION])
    ev = ev.withColumn("__v", F.row_number().over(latest)).where("__v = 1").select(spec.id_column, *lf.keys, "__t")
    if labels is None:  # no label delivered yet
        out = ev.select("*", F.lit(None).cast("long").alias("__lt"), F.lit(None).cast("int").alias("__lp"))
    else:
        positive = F.lit(1) if label.presence else F.expr(label.value).cast("int")
        known = labels.where(F.col(ingest_column) <= F.lit(run_date)).select(
            F.col(label.key).alias(spec.id_column), F.unix_micros(F.col(label.time_column)).alias("__lt"),
            F.col(ingest_column).alias("__li"), positive.alias("__lp")).where(F.col("__lt") >= oldest)
        first = Window.partitionBy(spec.id_column).orderBy("__lt", "__li")
        known = known.withColumn("__n", F.row_number().over(first)).where("__n = 1").drop("__n", "__li")
        out = ev.join(known, spec.id_column, "left")
    in_time = F.col("__lt").between(F.col("__t"), F.col("__t") + maturity)
    if label.presence:
        out = out.select(*lf.keys, F.when(in_time, F.col("__lt")).otherwise(F.col("__t") + maturity).alias("__t"),
                         F.coalesce(in_time, F.lit(False)).cast("int").alias("__pos"))
    else:
        out = out.where(in_time & F.col("__lp").isNotNull()).select(*lf.keys, F.col("__lt").alias("__t"),
                                                                    F.col("__lp").alias("__pos"))
    return out.where(F.col("__t") < d0 + DAY_US)


def as_of_features(edges, reference, spec: FeatureSpec, name: str, day: dt.date, ingest_column: str = "ingest_date",
                   run_date: dt.date | None = None):
    """(id, ``<name>_<column>``...) for the day's events with all keys set, from as-of join ``name``;
    ``reference`` is (the feed's rows, its valid-time column).

    A sort-merge as-of join: the events (at ``t - tolerance``) and the reference rows (at their valid time)
    of a key go into one stream ordered by time, reference rows first on a tie; each event takes the last
    reference row before it (``last(..., ignorenulls)`` over a running frame). Spark shuffles by the keys
    and sorts within them: no pairwise comparison of events and reference rows. Reference rows ingested
    after ``run_date`` (default: UTC day ``day``) are invisible; of several rows for the same keys and valid
    time the latest ingest wins.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    join, d0 = spec.as_of[name], _micros(day)
    tolerance = join.tolerance_seconds() * US
    ev_keys, ref_keys = list(join.keys), list(join.keys.values())
    k = [f"__k{i}" for i in range(len(ev_keys))]
    targets = edges.where((F.col("__t") >= d0) & reduce(lambda a, b: a & b, [F.col(c).isNotNull() for c in ev_keys]))
    stream = targets.select(*[F.col(c).alias(n) for c, n in zip(ev_keys, k)], (F.col("__t") - tolerance).alias("__at"),
                            F.lit(1).alias("__kind"), F.col(spec.id_column), F.lit(None).alias("__row"))
    version = Window.partitionBy(*ref_keys, "__at").orderBy(*[F.col(c).desc() for c in T.VERSION])
    reference, valid = reference
    rows = (reference.where(F.col(ingest_column) <= F.lit(run_date or day))
            .withColumn("__at", F.unix_micros(F.col(valid)))
            .where(F.col("__at") >= d0 - spec.as_of_reach_seconds(name) * US)
            .withColumn("__v", F.row_number().over(version)).where("__v = 1"))
    rows = rows.select(*[F.col(c).alias(n) for c, n in zip(ref_keys, k)], "__at", F.lit(0).alias("__kind"),
                       F.lit(None).cast(targets.schema[spec.id_column].dataType).alias(spec.id_column),
                       F.struct(F.col("__at").alias("valid"), *[F.col(c) for c in join.columns]).alias("__row"))
    stream = stream.withColumn("__row", F.lit(None).cast(rows.schema["__row"].dataType)).unionByName(rows)
    before = Window.partitionBy(*k).orderBy("__at", "__kind").rowsBetween(Window.unboundedPreceding, 0)
    found = stream.withColumn("__hit", F.last("__row", ignorenulls=True).over(before)).where("__kind = 1")
    fresh = F.lit(True) if join.max_age is None else (
        F.col("__at") + tolerance - F.col("__hit.valid") <= window_seconds(join.max_age) * US)
    return found.select(spec.id_column, *[F.when(fresh, F.col(f"__hit.{c}")).alias(f)
                                          for c, f in zip(join.columns, join.names(name))])


def label_window_features(edges, outcomes, spec: FeatureSpec, name: str, day: dt.date):
    """(id, label features of ``name``) for the day's events with all keys set: over the outcomes of the
    same keys known in ``[t - window, t)`` (strictly before the event), the number, positives and rate."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lf, d0 = spec.label_features[name], _micros(day)
    keys = lf.keys
    targets = edges.where((F.col("__t") >= d0) & reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys]))
    stream = targets.select(*keys, "__t", F.col(spec.id_column), F.lit(None).cast("int").alias("__pos")).unionByName(
        outcomes.select(*keys, "__t", F.lit(None).cast(targets.schema[spec.id_column].dataType).alias(spec.id_column),
                        "__pos"))
    by_time = Window.partitionBy(*keys).orderBy("__t")
    cols = []
    for feature, kind, label in lf.names(name):
        frame = by_time.rangeBetween(-window_seconds(label) * US, -1)
        n = F.count("__pos").over(frame)
        positives = F.coalesce(F.sum("__pos").over(frame), F.lit(0))
        cols.append({"labelled": n, "positives": positives,
                     "positive_rate": F.when(n > 0, positives / n)}[kind].alias(feature))
    return stream.select(F.col(spec.id_column), *cols).where(F.col(spec.id_column).isNotNull())


def _distinct_markers(tile, base, entity, windows: dict[str, int], d0: int):
    """Exact distinct counts over day windows without per-row sets.

    For a value v of the entity let a = (last time before D) + w and b = first time on D. v is in
    [t - w, t) iff a >= t or b < t, so count(t) = #{a >= D + 1 day} (a per-entity constant)
    + #{D <= a, a >= t} + #{b < t, a < t}: "A" markers at time a (counted by a descending running
    count) and "B" markers at max(a, b) (counted by an ascending running count, strictly before t).
    The constants ride in the stream too, on one row per key, so each column's pairs are aggregated once.
    Returns ({(window, column): (tag A, tag B)}, marker rows to add to the stream,
    {constant column: the tag of the rows that carry it}).
    """
    from pyspark.sql import functions as F

    keys, day_windows = entity.keys, {label: w for label, w in windows.items() if w >= DAY_US}
    markers, marked, constants, tag = {}, [], {}, 100
    for agg in entity.aggregations:
        if agg.function != "distinct_count" or not day_windows:
            continue
        col, dv = agg.column, f"__dv_{agg.column}"
        pairs = _pairs(tile, base, keys, col, dv, d0, d0 - max(day_windows.values()))
        counts, marks = {}, {}  # marks: tag -> the marker's time, null for a pair without one
        for label, w in day_windows.items():
            a = F.col("__lh") + w
            counts[f"__k_{label}_{col}"] = F.count(F.when(a >= d0 + DAY_US, 1))
            markers[(label, col)] = (tag, tag + 1)
            marks[tag] = F.when((a >= d0) & (a < d0 + DAY_US), a)
            marks[tag + 1] = F.when(F.col("__fd").isNotNull(), F.greatest(F.col("__fd"), a))
            tag += 2
        # plain lists of times per tag: collecting per-pair arrays of structs cost a third more
        per_key = pairs.groupBy(*keys).agg(*[v.alias(k) for k, v in counts.items()],
                                           *[F.collect_list(t).alias(f"__m{s}") for s, t in marks.items()])
        carrier = F.array(F.struct(F.lit(tag).alias("s"), F.lit(d0).cast("long").alias("t")))
        tagged = [F.transform(f"__m{s}", _tagged(s)) for s in marks]
        rows = per_key.select(*keys, *counts, F.explode(F.concat(carrier, *tagged)).alias("__c"))
        marked.append(rows.select(*keys, F.col("__c.s").alias("__src"), F.col("__c.t").alias("__t"),
                                  *[F.when(F.col("__c.s") == tag, F.col(k)).alias(k) for k in counts]))
        constants.update(dict.fromkeys(counts, tag))
        tag += 1
    return markers, marked, constants


def _tagged(tag: int):
    """time -> a stream row's (tag, time), for ``F.transform`` (which passes the index to a two-argument function)."""
    from pyspark.sql import functions as F

    return lambda t: F.struct(F.lit(tag).alias("s"), t.alias("t"))


def _pairs(tile, base, keys: list[str], col: str, dv: str, d0: int, oldest: int):
    """Per (keys, value): ``__lh``, the last time seen in ``[oldest, D)`` (merged from the tiles'
    per-value last-seen times), and ``__fd``, the first time seen on D (from the edge rows)."""
    from pyspark.sql import functions as F

    none = F.lit(None).cast("long")
    # Written so it cannot be pushed to the data source even if filter pushdown were on: Spark reuses one
    # pushed read plan per scanned Python data source, which would prune the other scans of ``tile``.
    recent = F.date_diff(F.lit(T.day_of(d0)), F.col("tile_date")) <= (d0 - oldest) // DAY_US
    seen = (tile.where(recent)
            .select(*keys, F.explode(f"d_{col}").alias("__p"))
            .select(*keys, F.col("__p.v").alias(dv), F.col("__p.t").alias("__lh"), none.alias("__fd")))
    first = base.where(F.col(dv).isNotNull() & (F.col("__t") >= d0)).select(
        *keys, dv, none.alias("__lh"), F.col("__t").alias("__fd"))
    return seen.unionByName(first).groupBy(*keys, dv).agg(F.max("__lh").alias("__lh"), F.min("__fd").alias("__fd"))


def _interior(tile, entity, windows: dict[str, int], long_windows: dict[str, int], d0: int):
    """Per key, each window of k >= 2 days merged over its whole days ``[D - (k-1), D)`` and the last
    event time before D, from the tiles (None when the entity needs neither)."""
    from pyspark.sql import functions as F

    interior = {"__last": F.max("last")} if entity.time_since_last else {}
    for label, k in long_windows.items():
        inside = F.col("tile_date") >= F.lit(T.day_of(d0 - (k - 1) * DAY_US))
        for agg in entity.aggregations:
            for kind, col in _parts(agg, windows[label]):
                if kind == "dc":
                    continue
                value = F.when(inside, F.col(_STATE[(kind, col.startswith("__fx_"))].format(c=agg.column)))
                interior[f"__i_{label}_{kind}_{col}"] = (F.max if kind == "max" else F.sum)(value)
    return tile.groupBy(*entity.keys).agg(*[v.alias(k) for k, v in interior.items()]) if interior else None


# (running piece kind, over a value column?) -> the tile state column it merges
_STATE = {("count", False): "n", ("count", True): "n_{c}", ("sum", True): "s_{c}", ("max", False): "mx_{c}"}


def _parts(agg, window_us: int) -> list[tuple[str, str]]:
    """The running pieces (kind, value column) an aggregation is assembled from."""
    col = agg.column
    return {"count": [("count", "*")], "sum": [("sum", f"__fx_{col}")],
            "mean": [("count", f"__fx_{col}"), ("sum", f"__fx_{col}")], "max": [("max", f"__mx_{col}")],
            "distinct_count": [("distinct" if window_us < DAY_US else "dc", f"__dv_{col}")]}[agg.function]


def load_sql(spec: FeatureSpec, conf_dir: str | None = None) -> list[str]:
    """The texts of the spec's SQL files, named relative to the folder that holds the config's ``conf/``
    (default: the package's own copy)."""
    if conf_dir is None:
        from batchml.resources import folder

        conf_dir = str(folder("conf"))
    return [_read(conf_dir, name) for name in spec.sql]


@lru_cache(maxsize=None)
def _read(conf_dir: str, name: str) -> str:
    from batchml.config import project_file

    return project_file(conf_dir, name)
