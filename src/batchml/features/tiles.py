"""Tiles: the mergeable state of each entity's events per event day, built once per ingest date.

A tile row holds, for one entity key, one event day (``tile_date``), the rows of one ingest date
(``ingest_date``) as known on ``as_of``: the number of events ``n``, integer micro-unit sums ``s_<c>``,
non-null counts ``n_<c>`` (for means), maxima ``mx_<c>``, the last event time ``last`` (µs) and, per
distinct-count column, the exact list ``d_<c>`` of (value, last time seen that day). Merging tiles
is sums, maxima and a max per value: exact, in any order, so a window's interior is the merge of
whole-day tiles and only its two edge days need raw events (``compute``).

Redeliveries (docs/tiling.md): a row is replaced by the next version of its id (``VERSION`` order,
latest ingest wins). ``supersessions`` records, per replaced row, the ingest date its successor
arrived (``superseded_on``). The version ``(I, J)`` of ingest I's tiles counts the rows of I that
nothing arriving by J replaced; it is built when I is tiled (``J = I``) and again on every later
ingest date J that replaces rows of I. A build of day D uses, per ingest date I <= D, the version
with the latest ``as_of <= D``: exactly the rows known and current on D.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

from batchml.features.spec import DAY_S, FeatureSpec, window_seconds

US = 1_000_000
DAY_US = DAY_S * US
SCALE = 1_000_000  # sums are kept in integer micro-units
VERSION = ("ingest_date", "_source_file", "_source_sha256", "_row_number")  # dedupe order: the max wins
GROUP = ("tile_date", "ingest_date", "as_of")


def day_of(micros: int) -> dt.date:
    """The UTC day of an instant in µs since 1970 (a ``tile_date``)."""
    return dt.date(1970, 1, 1) + dt.timedelta(days=micros // DAY_US)


def source_rows(events, spec: FeatureSpec):
    """The columns tiles and edges need, with ``__t`` (event time in µs) and ``tile_date`` (its UTC day)."""
    from pyspark.sql import functions as F

    missing = [c for c in VERSION if c not in events.columns]
    if missing:
        raise ValueError(f"feature input lacks the ingest columns {missing} (bronze or silver rows carry them)")
    return events.select(*dict.fromkeys([*spec.source_columns(), *VERSION]),
                         F.unix_micros(F.col(spec.event_time_column)).alias("__t")).withColumn(
        "tile_date", F.expr(f"date_from_unix_date(cast((__t - pmod(__t, {DAY_US})) div {DAY_US} as int))"))


def supersessions(candidates, id_column: str, on: list[dt.date] | None = None):
    """(id, VERSION.., __t, superseded_on) for every row a later version of its id replaces, when
    that version arrived on one of the dates ``on`` (None: any). ``candidates`` holds id, VERSION and __t."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # ids are nearly all unique: find the repeated ones from the id column alone, then order only those
    repeated = candidates.groupBy(id_column).count().where("count > 1").select(id_column)
    rows = candidates.join(F.broadcast(repeated), id_column, "left_semi")
    nxt = F.lead("ingest_date").over(Window.partitionBy(id_column).orderBy(*VERSION))
    rows = rows.select(id_column, *VERSION, "__t", nxt.alias("superseded_on")).where(
        F.col("superseded_on").isNotNull())
    return rows if on is None else rows.where(F.col("superseded_on").isin(list(on)))


def current(rows, records, id_column: str, as_of: dt.date | None = None):
    """``rows`` without those replaced by a version that arrived on or before ``as_of`` (None: the
    rows' own ``as_of`` column). ``records`` is a list of ``supersessions`` rows (as dicts)."""
    from pyspark.sql import functions as F

    keys = (id_column, *VERSION)
    records = [r for r in records if as_of is None or r["superseded_on"] <= as_of]
    if not records:
        return rows
    schema = ", ".join(f"__r_{c} {rows.schema[c].dataType.simpleString()}" for c in keys) + ", __r_on date"
    rec = rows.sparkSession.createDataFrame([[r[c] for c in keys] + [r["superseded_on"]] for r in records], schema)
    cond = reduce(lambda a, b: a & b, [F.col(c).eqNullSafe(F.col(f"__r_{c}")) for c in keys])
    limit = F.col("as_of") if as_of is None else F.lit(as_of)
    joined = rows.join(F.broadcast(rec), cond, "left")
    return joined.where(F.col("__r_on").isNull() | (F.col("__r_on") > limit)).select(*rows.columns)


def versioned(rows, records: list[dict], revisions: list[tuple[dt.date, dt.date]], id_column: str):
    """Rows of each tile version: every row as of its own ingest date, plus, for each revision
    ``(ingest_date, as_of)``, its ingest's rows again as of that date; less the rows replaced by then."""
    from pyspark.sql import functions as F

    out = rows.withColumn("as_of", F.col("ingest_date"))
    if revisions:
        pairs = rows.sparkSession.createDataFrame([list(v) for v in revisions], "ingest_date date, as_of date")
        out = out.unionByName(rows.join(F.broadcast(pairs), "ingest_date"))
    return current(out, records, id_column)


def revisions(records: list[dict]) -> list[tuple[dt.date, dt.date]]:
    """The versions ``(ingest_date, as_of)`` beyond the originals ``(I, I)``: one per later ingest date
    that replaced rows of an ingest date."""
    return sorted({(r["ingest_date"], r["superseded_on"]) for r in records if r["superseded_on"] > r["ingest_date"]})


def distinct_columns(spec: FeatureSpec, name: str) -> list[str]:
    """Distinct-count columns whose day windows need tiles (windows under a day use raw edges only)."""
    if not any(window_seconds(w) >= DAY_S for w in spec.entity_windows(name)):
        return []
    aggs = spec.entities[name].aggregations
    return list(dict.fromkeys(a.column for a in aggs if a.function == "distinct_count"))


def state_columns(spec: FeatureSpec, name: str) -> dict[str, str]:
    """State column -> how tiles of one key merge (sum or max); distinct lists are merged apart."""
    out = {}
    for agg in spec.entities[name].aggregations:
        c = agg.column
        if agg.function == "count":
            out["n"] = "sum"
        elif agg.function in ("sum", "mean"):
            out[f"s_{c}"] = "sum"
            if agg.function == "mean":
                out[f"n_{c}"] = "sum"
        elif agg.function == "max":
            out[f"mx_{c}"] = "max"
    if spec.entities[name].time_since_last:
        out["last"] = "max"
    return out


def entity_tiles(live, spec: FeatureSpec, name: str):
    """Tile rows of one entity from ``versioned`` rows: one per (keys, tile_date, ingest_date, as_of)."""
    from pyspark.sql import functions as F

    keys = spec.entities[name].keys
    ev = live.where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys]))
    group = [*keys, *GROUP]
    aggs = []
    for col in state_columns(spec, name):
        kind, _, c = col.partition("_")
        if col == "n":
            aggs.append(F.count(F.lit(1)).alias(col))
        elif col == "last":
            aggs.append(F.max("__t").alias(col))
        elif kind == "s":
            aggs.append(F.sum(F.round(F.col(c) * SCALE).cast("long")).alias(col))
        elif kind == "n":
            aggs.append(F.count(F.col(c)).alias(col))
        else:
            aggs.append(F.max(F.col(c).cast("double")).alias(col))
    for c in distinct_columns(spec, name):  # (value, time) per event; the max time per value is kept below
        aggs.append(F.array_sort(F.collect_list(F.when(F.col(c).isNotNull(), F.struct(
            F.col(c).alias("v"), F.col("__t").alias("t"))))).alias(f"d_{c}"))
    out = ev.groupBy(*group).agg(*(aggs or [F.count(F.lit(1)).alias("n")]))
    for c in distinct_columns(spec, name):  # sorted by (value, time): keep each value's last element
        d = F.col(f"d_{c}")
        out = out.withColumn(f"d_{c}", F.filter(d, lambda x, i: (i == F.size(d) - 1) | (d[i + 1]["v"] != x["v"])))
    return out


def chosen(tiles, versions: list[tuple[dt.date, dt.date]], day: dt.date, first: dt.date,
           known: dt.date | None = None):
    """Tile rows a build of ``day`` merges: event days ``[first, day)``, ingested by ``known`` (default
    ``day``), per ingest date the latest version as of ``known``: the latest of its revisions in ``versions``
    (``(ingest_date, as_of)`` pairs), else the original (``as_of = ingest_date``)."""
    from pyspark.sql import functions as F

    known = known or day
    latest: dict[dt.date, dt.date] = {}
    for ingest, as_of in versions:
        if ingest < as_of <= known and as_of > latest.get(ingest, ingest):
            latest[ingest] = as_of
    window = (F.col("tile_date") >= F.lit(first)) & (F.col("tile_date") < F.lit(day)) & (
        F.col("ingest_date") <= F.lit(known))
    pick = F.col("ingest_date")
    if latest:
        pick = F.coalesce(F.create_map(*[F.lit(x) for pair in sorted(latest.items()) for x in pair])[pick], pick)
    return tiles.where(window & (F.col("as_of") == pick))
