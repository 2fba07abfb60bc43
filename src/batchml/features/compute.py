"""Point-in-time features, as pure transforms: DataFrame in, DataFrame out.

Every feature of an event at time ``t`` uses only events of the same entity with event time
in ``[t - window, t)``: strictly before ``t``, so events at the same instant never see each other.

How a day ``D`` is computed without sliding a frame over the whole lookback (Spark re-evaluates a
sliding range frame from scratch for every row, which is quadratic in events per window):

* A window ``w`` of ``k`` whole days splits, for any ``t`` on day ``D``, into
  ``[t - w, D - (k-1) days)`` (a suffix of day ``D - k``), the **interior** ``[D - (k-1) days, D)``
  (the same for every event of the day), and ``[D, t)`` (a prefix of day ``D``).
* The interior is a plain per-entity ``groupBy`` over history (hash aggregation, no sort).
* The two edges come from one small stream per entity: day ``D`` plus each boundary day shifted
  forward by ``k - 1`` days. The prefix is an ascending running aggregate over day ``D`` rows and
  the suffix a descending running aggregate (``range between unbounded preceding and 1 day
  following``) over the shifted rows. Both are running frames, which Spark updates incrementally.
* Distinct counts over day windows need no per-row sets (``collect_set`` over a 30-day range is
  quadratic): per (entity, value) the last time before ``D`` and the first time on ``D`` become at
  most two marker rows in the same stream, counted by the same running frames (see
  ``_entity_features``), plus a per-entity constant for the interior.
* Windows shorter than a day use a sliding frame ``[t - w, t - 1µs]`` over days ``D - 1`` and ``D``.
* Sums are exact: values are summed as 64-bit integers of micro-units, so results do not depend on
  row order or on how the input is split, and a backfill equals daily builds bit for bit.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache, reduce

from batchml.features.spec import DAY_S, FeatureSpec, window_seconds

US = 1_000_000
DAY_US = DAY_S * US
SCALE = 1_000_000  # sums are kept in integer micro-units
DEDUPE_ORDER = ("ingest_date", "_source_file", "_source_sha256", "_row_number")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def _micros(day: dt.date) -> int:
    return int(_midnight(day).timestamp()) * US


def lookback_filter(spec: FeatureSpec, start: dt.date, end: dt.date, event_time: str | None = None):
    """The rows any day in ``[start, end)`` needs: event time in ``[start - lookback, end)``.

    A plain comparison on the event-time column, so the lake pushes it down and skips files.
    """
    from pyspark.sql import functions as F

    col = F.col(event_time or spec.event_time_column)
    return (col >= F.lit(_midnight(start - dt.timedelta(days=spec.lookback())))) & (col < F.lit(_midnight(end)))


def dedupe(events, id_column: str):
    """One row per id: a redelivered event keeps its latest ingest (ingest date, then file, hash, row).

    Duplicates are rare, so only their ids are shuffled and broadcast back, not whole rows.
    """
    from pyspark.sql import functions as F

    order = [c for c in DEDUPE_ORDER if c in events.columns]
    if not order:
        return events
    key = F.struct(*order)
    dup_ids = events.groupBy(id_column).count().where("count > 1").select(id_column)
    keep = (events.join(F.broadcast(dup_ids), id_column, "left_semi")
            .groupBy(id_column).agg(F.max(key).alias("__keep")))
    return (events.join(F.broadcast(keep), id_column, "left")
            .where(F.col("__keep").isNull() | key.eqNullSafe(F.col("__keep"))).drop("__keep"))


def compute_features(events, spec: FeatureSpec, start: dt.date, end: dt.date, sql: list[str] | None = None,
                     cache: list | None = None):
    """Features for every event with event date in ``[start, end)`` (UTC), one row per event.

    ``events`` holds at least ``spec.source_columns()``; bronze rows (with ``ingest_date`` and the
    ``_source_*`` columns) are cut to what was ingested by each day and deduplicated per day.
    ``sql`` overrides the spec's SQL files with query texts (tests); None loads the files.
    ``cache``: pass a list to persist the input (narrow it first), so the source is scanned once
    and every entity reads memory; a one-day build persists it already deduplicated. The caller
    unpersists what it finds there after its action.
    """
    days = [start + dt.timedelta(days=i) for i in range((end - start).days)]
    if not days:
        raise ValueError(f"empty date range [{start}, {end})")
    prepared = None
    if cache is not None:
        from pyspark import StorageLevel

        # hash-partitioned by id: the dedup needs no further shuffle, and every core gets work
        # even when the source has few, large splits
        parts = int(events.sparkSession.conf.get("spark.sql.shuffle.partitions"))
        events = events.repartition(parts, spec.id_column)
        if len(days) == 1:  # one day: cache what it reads after the dedup, which ~20 scans then skip
            prepared = prepare(events, spec, days[0]).persist(StorageLevel.MEMORY_AND_DISK)
            cache.append(prepared)
        else:
            events = events.persist(StorageLevel.MEMORY_AND_DISK)
            cache.append(events)
    parts = [day_features(prepared if prepared is not None else prepare(events, spec, day), spec, day)
             for day in days]
    out = reduce(lambda a, b: a.unionByName(b), parts)
    for text in (load_sql(spec) if sql is None else sql):
        out = out.sparkSession.sql(text, features=out)
    return out


def prepare(events, spec: FeatureSpec, day: dt.date):
    """The deduplicated events a build of ``day`` may use, with ``__t`` = event time in microseconds."""
    from pyspark.sql import functions as F

    ev = events.where(lookback_filter(spec, day, day + dt.timedelta(days=1)))
    if "ingest_date" in events.columns:  # what was known by the end of the run date
        ev = ev.where(F.col("ingest_date") <= F.lit(day))
    return dedupe(ev, spec.id_column).select(
        *spec.source_columns(), F.unix_micros(F.col(spec.event_time_column)).alias("__t"))


def features_for_events(new_events, history, spec: FeatureSpec, day: dt.date, sql: list[str] | None = None):
    """The scoring path: features for ``new_events`` (all on ``day``) given stored ``history``.

    The same ``compute_features`` as the table build, over the union of history and the new rows.
    """
    from pyspark.sql import functions as F

    cols = [c for c in history.columns if c in new_events.columns]
    both = history.select(*cols).unionByName(new_events.select(*cols))
    ids = new_events.select(spec.id_column).distinct()
    return compute_features(both, spec, day, day + dt.timedelta(days=1), sql).join(
        F.broadcast(ids), spec.id_column, "left_semi")


def day_features(prepared, spec: FeatureSpec, day: dt.date):
    """Window aggregates for the events of ``day`` from ``prepare``'s output."""
    from pyspark.sql import functions as F

    d0 = _micros(day)
    targets = prepared.where(F.col("__t") >= d0).select(
        spec.id_column, spec.event_time_column, F.lit(day).alias(spec.date_column),
        *[c for c in spec.passthrough if c not in (spec.id_column, spec.event_time_column)])
    out = targets
    for name in spec.entities:
        out = out.join(_entity_features(prepared, spec, name, d0), spec.id_column, "left")
    return out.select(*targets.columns, *spec.feature_names())


def _entity_features(ev, spec: FeatureSpec, name: str, d0: int):
    """(id, <entity features>) for the day's events whose entity keys are all set."""
    from pyspark.sql import Window
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
    base = ev.select(*keys, "__t", spec.id_column, *[v.alias(k) for k, v in values.items()])

    windows = {label: window_seconds(label) * US for label in spec.entity_windows(name)}
    long_windows = {label: w // DAY_US for label, w in windows.items() if w >= 2 * DAY_US}
    # boundary day offset -> stream tag; windows < 1 day and 1 day share day D-1 (shift 0)
    offsets = sorted({max(1, w // DAY_US) for w in windows.values()})
    tag = {off: i + 1 for i, off in enumerate(offsets)}
    # one pass over the lookback: each event becomes its stream rows (a target on D, a shifted edge row)
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

    # Exact distinct counts over day windows without per-row sets. For a value v of the entity let
    # a = (last time before D) + w and b = first time on D. v is in [t - w, t) iff a >= t or b < t, so
    # count(t) = #{a >= D + 1 day} (a per-entity constant) + #{D <= a, a >= t} + #{b < t, a < t}:
    # "A" markers at time a (counted by a descending running count) and "B" markers at max(a, b)
    # (counted by an ascending running count, strictly before t).
    constants = []
    marker_tag = 100
    markers = {}
    for agg in entity.aggregations:
        if agg.function != "distinct_count" or not any(w >= DAY_US for w in windows.values()):
            continue
        col = agg.column
        pairs = base.where(F.col(f"__dv_{col}").isNotNull()).groupBy(*keys, f"__dv_{col}").agg(
            F.max(F.when(F.col("__t") < d0, F.col("__t"))).alias("__lh"),
            F.min(F.when(F.col("__t") >= d0, F.col("__t"))).alias("__fd"))
        counts, marks = {}, []
        for label, w in windows.items():
            if w < DAY_US:
                continue
            a = F.col("__lh") + w
            counts[f"__k_{label}_{col}"] = F.count(F.when(a >= d0 + DAY_US, 1))
            tag_a, tag_b, marker_tag = marker_tag, marker_tag + 1, marker_tag + 2
            markers[(label, col)] = (tag_a, tag_b)
            marks.append(F.when((a >= d0) & (a < d0 + DAY_US), F.struct(F.lit(tag_a).alias("s"), a.alias("t"))))
            marks.append(F.when(F.col("__fd").isNotNull(), F.struct(
                F.lit(tag_b).alias("s"), F.greatest(F.col("__fd"), a).alias("t"))))
        marked = pairs.select(*keys, F.explode(F.filter(F.array(*marks), lambda c: c.isNotNull())).alias("__c"))
        marked = marked.select(*keys, F.col("__c.s").alias("__src"), F.col("__c.t").alias("__t"))
        stream = stream.unionByName(marked, allowMissingColumns=True)
        constants.append(pairs.groupBy(*keys).agg(*[v.alias(k) for k, v in counts.items()]))

    asc = Window.partitionBy(*keys).orderBy("__t")
    prefix = asc.rangeBetween(Window.unboundedPreceding, -1)
    desc = Window.partitionBy(*keys).orderBy(F.desc("__t"))
    suffix = desc.rangeBetween(Window.unboundedPreceding, DAY_US)  # shifted rows at or after t - 1 day
    at_or_after = desc.rangeBetween(Window.unboundedPreceding, 0)

    def on(src, col):
        cond = F.col("__src").isin(*src) if isinstance(src, tuple) else F.col("__src") == src
        return F.when(cond, F.col(col) if col != "*" else F.lit(1))

    def running(fn, col, src, frame):
        if fn == "count":
            return F.count(on(src, col)).over(frame)
        if fn == "sum":
            return F.coalesce(F.sum(on(src, col)).over(frame), F.lit(0))
        if fn == "max":
            return F.max(on(src, col)).over(frame)
        return F.collect_set(on(src, col)).over(frame)  # set

    # history interior per window of k >= 2 days, and the last event time before the day
    hist = base.where(F.col("__t") < d0)
    interior = {"__last": F.max("__t")} if entity.time_since_last else {}
    for label, k in long_windows.items():
        inside = F.col("__t") >= d0 - (k - 1) * DAY_US
        for agg in entity.aggregations:
            for kind, col in _parts(agg, windows[label]):
                if kind == "dc":
                    continue
                value = F.when(inside, F.col(col) if col != "*" else F.lit(1))
                interior[f"__i_{label}_{kind}_{col}"] = {"count": F.count, "sum": F.sum, "max": F.max}[kind](value)
    agg_hist = hist.groupBy(*keys).agg(*[v.alias(k) for k, v in interior.items()]) if interior else None

    cols = {}
    for label, w in windows.items():
        for agg in entity.aggregations:
            for kind, col in _parts(agg, w):
                if kind == "dc":  # exact distinct count over a day window, see above
                    tag_a, tag_b = markers[(label, agg.column)]
                    part = (F.count(on(tag_a, "*")).over(at_or_after) + F.count(on(tag_b, "*")).over(prefix))
                elif w < DAY_US:  # sliding frame over days D-1 and D
                    part = running(kind, col, (0, tag[1]), asc.rangeBetween(-w, -1))
                else:
                    pre = running(kind, col, 0, prefix)
                    suf = running(kind, col, tag[w // DAY_US], suffix)
                    part = {"count": pre + suf, "sum": pre + suf, "max": F.greatest(pre, suf)}[kind]
                cols[f"__e_{label}_{kind}_{col}"] = part
    if entity.time_since_last:
        cols["__e_last"] = F.max(on(0, "__t")).over(prefix)
    edges = stream.select(*keys, "__t", "__src", spec.id_column, *[v.alias(k) for k, v in cols.items()]) \
        .where(F.col("__src") == 0)
    joined = edges.join(agg_hist, keys, "left") if agg_hist is not None else edges
    for table in constants:
        joined = joined.join(table, keys, "left")

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
            value = F.size(F.col(f"__e_{label}_set___dv_{col}"))
        else:
            value = F.col(f"__e_{label}_dc___dv_{col}") + F.coalesce(F.col(f"__k_{label}_{col}"), F.lit(0))
        out.append(value.alias(feature))
    if entity.time_since_last:
        last = F.greatest(F.col("__e_last"), F.col("__last"))
        out.append(((F.col("__t") - last) / F.lit(float(US))).alias(f"{name}_seconds_since_last"))
    return joined.select(*out)


def _parts(agg, window_us: int) -> list[tuple[str, str]]:
    """The running pieces (kind, value column) an aggregation is assembled from."""
    col = agg.column
    return {"count": [("count", "*")], "sum": [("sum", f"__fx_{col}")],
            "mean": [("count", f"__fx_{col}"), ("sum", f"__fx_{col}")], "max": [("max", f"__mx_{col}")],
            "distinct_count": [("set" if window_us < DAY_US else "dc", f"__dv_{col}")]}[agg.function]


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
