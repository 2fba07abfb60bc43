"""Typed feature declarations: the ``features:`` section of a dataset config.

Kept free of ``batchml.config`` imports (that module imports this one).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY_S = 86_400
_UNITS = {"m": 60, "h": 3_600, "d": DAY_S}
_WINDOW = re.compile(r"^([1-9][0-9]*)([mhd])$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TILE_BOOKKEEPING = ("log", "superseded")  # tables beside the entity tiles; no entity may take these names
Function = Literal["count", "sum", "mean", "max", "distinct_count"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def window_seconds(label: str) -> int:
    """``15m`` / ``1h`` / ``24h`` / ``7d`` -> seconds."""
    m = _WINDOW.match(label)
    if not m:
        raise ValueError(f"window {label!r} must look like 15m, 1h, 24h or 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


class Aggregation(_Strict):
    function: Function
    column: str | None = None  # every function but count needs one
    description: str = ""

    @model_validator(mode="after")
    def _column_matches_function(self) -> "Aggregation":
        if self.function == "count" and self.column is not None:
            raise ValueError("count counts events; it takes no column")
        if self.function != "count" and not self.column:
            raise ValueError(f"{self.function} needs a column")
        return self

    def stem(self, entity: str) -> str:
        return f"{entity}_count" if self.function == "count" else f"{entity}_{self.function}_{self.column}"


class Entity(_Strict):
    """Per-entity window aggregates, keyed by one or more event columns."""

    keys: list[str] = Field(min_length=1)
    description: str = ""
    windows: list[str] | None = None  # default: the spec's windows
    aggregations: list[Aggregation] = []
    time_since_last: bool = False  # <entity>_seconds_since_last


class LabelFeature(_Strict):
    """Window aggregates over the dataset's matured labels, per entity of the event (docs/features.md).

    Each earlier event of the entity contributes its outcome once it is known: a label row's time when
    the label (presence: any row; value: the ``label.value`` expression) is known within ``maturity_days``
    of the event; for presence labels, a negative at event time + ``maturity_days`` when no row is known
    by then. An event at ``t`` sees the outcomes known in ``[t - window, t)`` whose label rows were
    ingested by its run date."""

    keys: list[str] = Field(min_length=1)
    windows: list[str] = Field(min_length=1)  # whole days
    maturity_days: int = Field(ge=0)  # how long after an event its outcome may arrive and still count
    description: str = ""

    def names(self, name: str) -> list[tuple[str, str, str]]:
        """(feature, kind, window) with kind ``labelled`` (outcomes known), ``positives`` or ``positive_rate``."""
        return [(f"{name}_{kind}_{w}", kind, w) for w in self.windows
                for kind in ("labelled", "positives", "positive_rate")]


class AsOfJoin(_Strict):
    """A point-in-time join to a reference feed (``reference:`` in the dataset; docs/features.md): per event,
    the feed's row with the same keys and the latest valid time ``<= event time - tolerance`` among the rows
    ingested by the run date; null when there is none, or when it is older than ``max_age``."""

    feed: str  # a reference feed of the dataset
    keys: dict[str, str] = Field(min_length=1)  # event column -> reference column
    columns: list[str] = Field(min_length=1)  # reference columns brought in, as <join name>_<column>
    tolerance: str | None = None  # e.g. 1h: only rows valid at least this long before the event
    max_age: str | None = None  # e.g. 6h: older rows give null (default: any row within the lookback)
    description: str = ""

    def names(self, name: str) -> list[str]:
        return [f"{name}_{c}" for c in self.columns]

    def tolerance_seconds(self) -> int:
        return window_seconds(self.tolerance) if self.tolerance else 0


class FeatureSpec(_Strict):
    table: str  # the feature table, declared under tables: and partitioned by date_column
    id_column: str  # the events' unique id (one feature row per id)
    event_time_column: str  # the events' timestamp: windows look back from it
    date_column: str = "event_date"
    windows: list[str] = ["1h", "24h", "7d", "30d"]
    lookback_days: int | None = Field(None, ge=1)  # default: the longest window, in whole days
    passthrough: list[str] = []  # event columns copied into the table and visible to the SQL files
    entities: dict[str, Entity]
    sql: list[str] = []  # Spark SQL files (relative to the repository) applied in order: SELECT ... FROM {features}
    label_features: dict[str, LabelFeature] = {}  # aggregates of matured labels per entity (needs label:)
    as_of: dict[str, AsOfJoin] = {}  # point-in-time joins to reference feeds

    @model_validator(mode="after")
    def _check(self) -> "FeatureSpec":
        for name, entity in self.entities.items():
            if not _NAME.match(name):
                raise ValueError(f"entity name {name!r} must be lower_snake_case")
            if name in TILE_BOOKKEEPING:
                raise ValueError(f"entity name {name!r} is reserved (tile bookkeeping tables)")
            for label in self.entity_windows(name):
                seconds = window_seconds(label)
                if seconds > DAY_S and seconds % DAY_S:
                    raise ValueError(f"window {label!r}: windows longer than a day must be whole days")
            if not entity.aggregations and not entity.time_since_last:
                raise ValueError(f"entity {name!r} declares no features")
        for name, lf in self.label_features.items():
            if not _NAME.match(name):
                raise ValueError(f"label feature name {name!r} must be lower_snake_case")
            for label in lf.windows:
                if window_seconds(label) % DAY_S:
                    raise ValueError(f"label feature {name!r}: window {label!r} must be whole days")
        for name, join in self.as_of.items():
            if not _NAME.match(name):
                raise ValueError(f"as_of join name {name!r} must be lower_snake_case")
            join.tolerance_seconds(), window_seconds(join.max_age) if join.max_age else None  # well-formed
        names = self.feature_names() + self.label_feature_names() + self.as_of_names()
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.lookback_days is not None and self.lookback_days < self.max_window_days():
            raise ValueError(f"lookback_days {self.lookback_days} is shorter than the longest window "
                             f"({self.max_window_days()} days)")
        return self

    def entity_windows(self, name: str) -> list[str]:
        return list(self.entities[name].windows or self.windows)

    def max_window_days(self) -> int:
        longest = max(window_seconds(w) for n in self.entities for w in self.entity_windows(n))
        return -(-longest // DAY_S)

    def lookback(self) -> int:
        """Whole days of history a day's build reads before the run date."""
        return self.lookback_days or self.max_window_days()

    def source_columns(self) -> list[str]:
        """Event columns the computation needs."""
        cols = [self.id_column, self.event_time_column]
        for entity in self.entities.values():
            cols += entity.keys + [a.column for a in entity.aggregations if a.column]
        cols += self.passthrough
        cols += [k for lf in self.label_features.values() for k in lf.keys]
        cols += [k for join in self.as_of.values() for k in join.keys]
        return list(dict.fromkeys(cols))

    def window_features(self):
        """(feature name, entity, aggregation, window label) for every window aggregate."""
        for name, entity in self.entities.items():
            for agg in entity.aggregations:
                for label in self.entity_windows(name):
                    yield f"{agg.stem(name)}_{label}", name, agg, label

    def feature_names(self) -> list[str]:
        names = [f for f, _, _, _ in self.window_features()]
        names += [f"{n}_seconds_since_last" for n, e in self.entities.items() if e.time_since_last]
        return names


    def label_feature_names(self) -> list[str]:
        return [f for name, lf in self.label_features.items() for f, _, _ in lf.names(name)]

    def as_of_names(self) -> list[str]:
        return [f for name, join in self.as_of.items() for f in join.names(name)]

    def as_of_reach_seconds(self, name: str) -> int:
        """How long before an event its reference row may be valid: tolerance + max age (or the lookback)."""
        join = self.as_of[name]
        age = window_seconds(join.max_age) if join.max_age else self.lookback() * DAY_S
        return join.tolerance_seconds() + age

    def label_lookback_days(self) -> int:
        """Days of events before the run date whose outcomes the label features may see."""
        return max((window_seconds(w) // DAY_S + lf.maturity_days for lf in self.label_features.values()
                    for w in lf.windows), default=0)


def tile_tables(dataset: str, spec: FeatureSpec) -> dict[str, str]:
    """The tile tables a dataset's features keep (docs/tiling.md): one per entity, plus ``log`` (the
    versions built) and ``superseded`` (redelivered rows). The config declares them itself."""
    return {name: f"tiles.{dataset}.{name}" for name in [*spec.entities, *TILE_BOOKKEEPING]}


def tile_table_configs(dataset: str, entities: list[str]) -> dict[str, dict]:
    """``tables:`` entries for the tile tables of a dataset's ``entities``: tiling is invisible in config."""
    out = {f"tiles.{dataset}.{entity}": {
        "description": f"Tiles of entity {entity}: per key and event day, the mergeable state of each ingest "
                       "date's events (docs/tiling.md).", "partition_by": ["tile_date"]} for entity in entities}
    out[f"tiles.{dataset}.superseded"] = {
        "description": "Rows replaced by a later version of the same id, with the ingest date the new version "
                       "arrived.", "partition_by": ["superseded_on"]}
    out[f"tiles.{dataset}.log"] = {
        "description": "One row per tile version (ingest date, as of), with the source partition's row count and "
                       "the feature spec's fingerprint."}
    return out
