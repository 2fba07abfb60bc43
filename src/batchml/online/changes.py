"""Which entity keys can have a different state as of ``D`` than as of ``D - 1`` (docs/online.md, "States a
night changes"): the keys a night recomputes when the stored states are those of ``D - 1``.

A state as of ``D`` is a function of the key's events in the lookback ``[D + 1 - L, D]``, split at fixed
boundaries into each window's interior (whole-day tiles) and edge day. An event keeps its part from one
state to the next unless it falls on a day where a boundary moves, so a key's state can change only if

* it has events on ``D`` (new) or ``D - 1`` (the edges of windows under a day),
* it has events on a window's edge day, as of ``D`` or ``D - 1`` (interior to edge, edge to gone),
* it has events on ``D - L`` (they leave the lookback: a key with no others is deleted), or
* a row of it was ingested on ``D`` (late arrivals and new deliveries), or replaced on ``D`` by a new
  delivery of its event (the old delivery may have named another key).

Everything else in a state is absolute (event times, not ages), so an unchanged key's state is the same
bytes; the test that an incremental store equals a full one after every night holds this module to it.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

from batchml.features.spec import FeatureSpec, window_seconds
from batchml.features.store import TileStore
from batchml.features.tiles import DAY_US, VERSION, day_of
from batchml.online.state import US, micros


def change_days(spec: FeatureSpec, name: str, day: dt.date) -> list[dt.date]:
    """The event days on which an event of entity ``name`` can change its key's state from ``day - 1`` to ``day``."""
    one = dt.timedelta(days=1)
    c0 = micros(day + one)
    days = {day, day - one, day - dt.timedelta(days=spec.lookback())}
    for label in spec.entity_windows(name):
        w = window_seconds(label) * US
        days |= {day_of(c0 - w), day_of(c0 - DAY_US - w)}  # the edge days of the two states
    return sorted(days)


def changed_keys(tile_store: TileStore, spec: FeatureSpec, day: dt.date, tiles: dict) -> dict:
    """Per entity, a DataFrame of the distinct keys (typed as the source holds them) to recompute for ``day``.

    ``tiles``: per entity, the tiles the state as of ``day`` merges (``materialize.history``, persisted), which
    hold every change day but ``D - L`` and every row ingested on ``day``; ``D - L`` is read (every version: a
    superset is safe, an unchanged key's state is rewritten as it was). For rows replaced on ``day``, the keys
    their old deliveries had. Persisted: the caller unpersists."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    replaced = _replaced_rows(tile_store, spec, day)
    leaving = day - dt.timedelta(days=spec.lookback())
    out = {}
    for name, entity in spec.entities.items():
        touched = F.col("tile_date").isin([d for d in change_days(spec, name, day) if d != leaving])
        keys = tiles[name].where(touched | (F.col("ingest_date") == F.lit(day))).select(*entity.keys)
        gone = tile_store.lake.read(tile_store.tables[name], [*entity.keys, "tile_date"],
                                    where=[("tile_date", "=", leaving)])
        keys = keys.unionByName(gone.select(*entity.keys))
        if replaced is not None:
            present = reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in entity.keys])
            keys = keys.unionByName(replaced.where(present).select(*entity.keys))
        out[name] = keys.distinct().persist(StorageLevel.MEMORY_AND_DISK)
    return out


def _replaced_rows(tile_store: TileStore, spec: FeatureSpec, day: dt.date):
    """The source rows (every entity's key columns) that a delivery ingested on ``day`` replaced, or None."""
    from pyspark.sql import functions as F

    records = tile_store.records(day, on=[day])
    if not records:
        return None
    keys = (spec.id_column, *VERSION)
    columns = list(dict.fromkeys([k for e in spec.entities.values() for k in e.keys]))
    rows = tile_store.lake.read(tile_store.source, columns=list(dict.fromkeys([*keys, *columns])),
                                where=[("ingest_date", "in", sorted({r["ingest_date"] for r in records}))])
    wanted = rows.sparkSession.createDataFrame([[r[c] for c in keys] for r in records],
                                               rows.select(*keys).schema)
    cond = reduce(lambda a, b: a & b, [rows[c].eqNullSafe(wanted[c]) for c in keys])
    return rows.join(F.broadcast(wanted), cond, "left_semi").select(*columns)
