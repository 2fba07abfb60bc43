"""Entity window state as of the end of a day ``D``, and the merge that gives a new event's features.

The offline value of a window feature of an event at time ``t`` aggregates the entity's events in
``[t - w, t)``. For ``t`` on ``D + 1`` (``C`` = the start of ``D + 1``), that splits into

* the **interior** ``[C + 1 day - w, C)``: whole days every such window covers (windows longer than a
  day): mergeable partial aggregates (count, fixed-point sum, non-null count for means, max),
  merged from whole-day tiles;
* the **edge** ``[C - w, min(C + 1 day - w, C))``: the events that leave the window as ``t`` moves
  through ``D + 1``, kept as (time, values), so the merge cuts them at exactly ``t - w``;
* ``[C, t)``: events after the state, which the caller passes (``earlier``).

Distinct counts keep, per value, its last time in the longest window (a value is in ``[t - w, t)``
iff it was last seen at or after ``t - w``, or seen again in ``[C, t)``); time since last keeps the
entity's latest time in the lookback. Sums are 64-bit integers of micro-units and every division
is the one the batch makes, so the merge gives the offline value bit for bit.

**What is exact.** For an event at ``t`` in ``[C, C + 1 day)``: every window feature and time since
last equals the value the offline build of ``D + 1`` computes, when ``earlier`` holds the entity's
events that the state does not (ingested after ``D``) with time before ``t``: normally the events of
``D + 1`` so far, plus any late arrival. Not covered: an event the state already holds that is
redelivered with other values after ``D`` (the state cannot take back the old values), and events
after ``D + 1`` (the interior would have to move: ``event_features`` refuses them). Derived SQL
columns and passthrough columns are functions of the event's own row; they are not part of the state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import ROUND_HALF_UP, Decimal
from functools import reduce
from typing import Any, Iterable, Mapping

from batchml.features.spec import DAY_S, Entity, FeatureSpec, window_seconds
from batchml.features.tiles import day_of, distinct_columns

US = 1_000_000
DAY_US = DAY_S * US
SCALE = 1_000_000  # the batch sums values as 64-bit integers of micro-units (docs/features.md)
SUMMED = ("sum", "mean")


def micros(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_US


def fingerprint(spec: FeatureSpec) -> str:
    """What a state's layout depends on: the entities, their keys, windows and aggregations."""
    doc = {n: [e.keys, spec.entity_windows(n), [[a.function, a.column] for a in e.aggregations],
               e.time_since_last, spec.lookback()] for n, e in spec.entities.items()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _windows(spec: FeatureSpec, name: str) -> dict[str, int]:
    return {label: window_seconds(label) * US for label in spec.entity_windows(name)}


def _plain(entity: Entity) -> list:
    return [a for a in entity.aggregations if a.function != "distinct_count"]


def _distinct_columns(entity: Entity) -> list[str]:
    return list(dict.fromkeys(a.column for a in entity.aggregations if a.function == "distinct_count"))


def _values(entity: Entity) -> dict:
    """Per event: ``s_<c>``, the value in fixed point (sums and means), ``m_<c>``, as a double (max)."""
    from pyspark.sql import functions as F

    out = {}
    for agg in _plain(entity):
        if agg.function in SUMMED:
            out[f"s_{agg.column}"] = F.round(F.col(agg.column) * SCALE).cast("long")
        elif agg.function == "max":
            out[f"m_{agg.column}"] = F.col(agg.column).cast("double")
    return out


# -- the state, computed in Spark from tiles and edge days --------------------------------------------
def states(tiles: dict, edges, spec: FeatureSpec, day: dt.date, only: dict | None = None):
    """Every entity's states as of the end of ``day``, one row per (entity, key): ``entity``, ``key`` (the key
    values cast to strings, ``records.key_text``) and ``state`` (a JSON text).

    ``tiles``: per entity, the tile rows a build of ``day + 1`` known on ``day`` merges (``tiles.chosen``:
    event days ``[C - lookback, C)``); ``edges``: the raw rows of ``day`` and of each window's boundary day,
    current on ``day`` (``compute.day_edges`` of ``day + 1`` known on ``day``), with ``__t`` in µs. The same
    events a build of ``day + 1`` sees as history, so a state reproduces that build's features.
    ``only``: per entity, a DataFrame of the keys to compute (``batchml.online.changes``); default every key."""
    return reduce(lambda a, b: a.unionByName(b), [entity_states(tiles[name], edges, spec, name, day,
                                                                None if only is None else only[name])
                                                  for name in spec.entities])


def entity_states(tile, edges, spec: FeatureSpec, name: str, day: dt.date, only=None):
    """Entity ``name``'s rows of ``states``: one aggregation of its tiles, joined with its edge lists and, per
    distinct-counted column, its (value, last time) lists."""
    from pyspark.sql import functions as F

    entity, c0 = spec.entities[name], micros(day + dt.timedelta(days=1))
    keys, windows = entity.keys, _windows(spec, name)
    ev = edges.where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys]) & (F.col("__t") < c0))
    if only is not None:  # a key's state needs all of its rows and only its rows: a semi-join is exact
        tile, ev = tile.join(only, keys, "left_semi"), ev.join(only, keys, "left_semi")
    fields = {}
    if entity.time_since_last:
        fields["last"] = F.max("last")
    interiors = [_interior(tile, entity, day_of(c0 + DAY_US - w)).alias(label)
                 for label, w in windows.items() if w > DAY_US]
    if _plain(entity) and interiors:
        fields["interior"] = F.struct(*interiors)
    out = tile.groupBy(*keys).agg(*[v.alias(k) for k, v in fields.items()] or [F.count(F.lit(1)).alias("__n")])
    state = [F.col(k) for k in fields]
    if _plain(entity):
        out = out.join(_edges(ev, entity, windows, c0), keys, "left")
        state.append(_or_empty(out, "edges"))
    distinct = []
    for col in _distinct_columns(entity):  # every value's last time in the longest window
        out = out.join(_last_seen(tile, ev, spec, name, col, c0 - max(windows.values())), keys, "left")
        distinct.append(_or_empty(out, f"__d_{col}").alias(col))
    if distinct:
        state.append(F.struct(*distinct).alias("distinct"))
    return out.select(F.lit(name).alias("entity"), F.array(*[F.col(k).cast("string") for k in keys]).alias("key"),
                      F.to_json(F.struct(*state)).alias("state"))


def _or_empty(df, field: str):
    """``field``, an array column, with [] for keys the left join found nothing for."""
    from pyspark.sql import functions as F

    return F.coalesce(F.col(field), F.array().cast(df.schema[field].dataType)).alias(field)


def _interior(tile, entity: Entity, first: dt.date):
    """Count, fixed-point sums (with non-null counts for means) and maxima of the tiles from ``first`` on."""
    from pyspark.sql import functions as F

    inside = F.col("tile_date") >= F.lit(first)
    agg = [F.coalesce(F.sum(F.when(inside, F.col("n"))), F.lit(0)).alias("count")] if "n" in tile.columns else []
    for field in _values(entity):
        if field.startswith("s_"):
            agg.append(F.sum(F.when(inside, F.col(field))).alias(field))
            if f"n{field[1:]}" in tile.columns:
                agg.append(F.coalesce(F.sum(F.when(inside, F.col(f"n{field[1:]}"))), F.lit(0)).alias(f"n{field[1:]}"))
        else:
            agg.append(F.max(F.when(inside, F.col(f"mx{field[1:]}"))).alias(field))
    return F.struct(*agg)


def _edges(ev, entity: Entity, windows: dict[str, int], c0: int):
    """(keys, ``edges``): the events in the windows' edges, as (time, values) structs sorted by time."""
    from pyspark.sql import functions as F

    t, values = F.col("__t"), _values(entity)
    in_edge = reduce(lambda a, b: a | b, [(t >= c0 - w) & (t < min(c0 + DAY_US - w, c0)) for w in windows.values()])
    row = F.struct(t.alias("t"), *[v.alias(f) for f, v in values.items()])  # n_<c>: from s_<c>
    return ev.where(in_edge).groupBy(*entity.keys).agg(F.array_sort(F.collect_list(row)).alias("edges"))


def _last_seen(tile, ev, spec: FeatureSpec, name: str, col: str, since: int):
    """(keys, ``__d_<col>``): each value's last time at or after ``since``, sorted by value; merged from the
    tiles' per-day lists, or from the raw rows of the day when every window is under a day."""
    from pyspark.sql import functions as F

    keys = spec.entities[name].keys
    if col in distinct_columns(spec, name):  # the longest window is whole days: whole tiles
        seen = tile.where(F.col("tile_date") >= F.lit(day_of(since))).select(
            *keys, F.explode(f"d_{col}").alias("p")).select(*keys, F.col("p.v").alias("v"), F.col("p.t").alias("t"))
    else:
        seen = ev.where(F.col(col).isNotNull() & (F.col("__t") >= since)).select(
            *keys, F.col(col).alias("v"), F.col("__t").alias("t"))
    last = seen.groupBy(*keys, "v").agg(F.max("t").alias("t"))
    return last.groupBy(*keys).agg(F.array_sort(F.collect_list(F.struct("v", "t"))).alias(f"__d_{col}"))


# -- the merge, in plain Python --------------------------------------------------------------------------
def fixed_point(value: float | int) -> int:
    """The batch's ``round(value * 1e6)`` (HALF_UP on the decimal form, as Spark rounds a double)."""
    if isinstance(value, int):
        return value * SCALE
    return int(Decimal(repr(value * SCALE)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def event_features(spec: FeatureSpec, as_of: dt.date, states: Mapping[str, dict | None], event: Mapping[str, Any],
                   earlier: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Every window feature and time since last of ``event`` (a dict with the spec's source columns), from
    each entity's state as of ``as_of`` (None: no events in the lookback) plus ``earlier``, the events the
    state does not hold (see the module docstring). The event must fall on ``as_of + 1 day``."""
    c0 = micros(as_of + dt.timedelta(days=1))
    t = _micros_of(event[spec.event_time_column])
    if not c0 <= t < c0 + DAY_US:
        raise ValueError(f"a state as of {as_of} gives the features of events on {as_of + dt.timedelta(days=1)} "
                         f"only, not of an event at {event[spec.event_time_column]}")
    others = [e for e in earlier if e[spec.id_column] != event[spec.id_column]]
    out: dict[str, Any] = {}
    for name, entity in spec.entities.items():
        key = [event[k] for k in entity.keys]
        if any(v is None for v in key):
            out.update(dict.fromkeys(_names(spec, name)))
            continue
        prior = [(_micros_of(e[spec.event_time_column]), e) for e in others
                 if [e[k] for k in entity.keys] == key]
        prior = [(te, e) for te, e in prior if te < t]
        out.update(_entity_features(spec, name, states.get(name) or {}, t, c0, prior))
    return {f: out[f] for f in spec.feature_names()}


def _names(spec: FeatureSpec, name: str) -> list[str]:
    names = [f for f, owner, _, _ in spec.window_features() if owner == name]
    return names + ([f"{name}_seconds_since_last"] if spec.entities[name].time_since_last else [])


def _entity_features(spec: FeatureSpec, name: str, state: dict, t: int, c0: int, prior: list) -> dict[str, Any]:
    entity, windows = spec.entities[name], _windows(spec, name)
    out = {}
    for feature, owner, agg, label in spec.window_features():
        if owner != name:
            continue
        w = windows[label]
        lo, edge_hi = t - w, min(c0 + DAY_US - w, c0)
        interior = (state.get("interior") or {}).get(label) or {}
        edges = [e for e in state.get("edges") or [] if lo <= e["t"] < edge_hi]
        new = [e for te, e in prior if te >= lo]
        out[feature] = _aggregate(agg, interior, edges, new)
        if agg.function == "distinct_count":
            seen = {v["v"] for v in (state.get("distinct") or {}).get(agg.column) or [] if v["t"] >= lo}
            out[feature] = len(seen | {e[agg.column] for e in new if e[agg.column] is not None})
    if entity.time_since_last:
        since = c0 - spec.lookback() * DAY_US
        times = [te for te, _ in prior if te >= since]
        if "last" in state:
            times.append(state["last"])
        out[f"{name}_seconds_since_last"] = (t - max(times)) / float(US) if times else None
    return out


def _aggregate(agg, interior: dict, edges: list[dict], new: list[Mapping]) -> Any:
    col = agg.column
    if agg.function == "count":
        return interior.get("count", 0) + len(edges) + len(new)
    if agg.function == "distinct_count":
        return None  # filled by the caller from the distinct lists
    if agg.function == "max":
        values = [interior.get(f"m_{col}")] + [e.get(f"m_{col}") for e in edges]
        values += [float(e[col]) for e in new if e[col] is not None]
        values = [v for v in values if v is not None]
        return max(values) if values else None
    fixed = [e.get(f"s_{col}") for e in edges] + [fixed_point(e[col]) for e in new if e[col] is not None]
    fixed = [v for v in fixed if v is not None]
    total = (interior.get(f"s_{col}") or 0) + sum(fixed)
    if agg.function == "sum":
        return total / float(SCALE)
    n = interior.get(f"n_{col}", 0) + len(fixed)
    return total / (n * float(SCALE)) if n > 0 else None


def _micros_of(value: dt.datetime) -> int:
    if value.tzinfo is None:
        raise ValueError(f"event time {value} has no time zone; pass an aware datetime (UTC)")
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * DAY_S + delta.seconds) * US + delta.microseconds
