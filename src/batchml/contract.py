"""A dataset's config checked against its own contract when the config loads.

The feeds' ``columns`` are the contract: every key that names a column (the features' id and
event time, entity keys, aggregated and passed-through columns, the label key and time, the gate's
checks) must name a column of the feed it reads, and every table a stage writes must be partitioned
the way that stage writes it. Each problem is reported as (key path, reason); ``config.load_config``
adds the file that set the key. Checks that need the data (SQL expressions, derived feature columns)
are left to the stages.
"""

from __future__ import annotations

from collections.abc import Iterator

from batchml.config import INGEST_COLUMN, DatasetConfig, SourceConfig, TableConfig

Problem = tuple[tuple[str, ...], str]
CUTOFF_COLUMN = "cutoff_date"  # training sets (training.dataset.CUTOFF)
SCORE_PARTITIONS = ["run_date", "chunk"]


def problems(name: str, ds: DatasetConfig, tables: dict[str, TableConfig]) -> list[Problem]:
    at = ("datasets", name)
    return [*_partitions(at, ds, tables), *_features(at, ds), *_label(at, ds), *_validation(at, ds)]


def _columns(feed: SourceConfig) -> dict[str, str]:
    return {c.name: c.type for c in feed.columns}


def _not_in(value: str, feed: SourceConfig, key: str) -> str:
    return f"{value!r} is not a column of the {key} feed ({key}.columns: {', '.join(_columns(feed))})"


def _partitions(at, ds: DatasetConfig, tables: dict[str, TableConfig]) -> Iterator[Problem]:
    wanted = {feed.table: ([INGEST_COLUMN], (*key.split("."), "table")) for key, feed in ds.feeds()}
    if ds.features:
        wanted[ds.features.table] = ([ds.features.date_column], ("features", "table"))
    if ds.model:
        wanted[ds.model.training_table] = ([CUTOFF_COLUMN], ("model", "training_table"))
    if ds.scoring:
        wanted[ds.scoring.table] = (SCORE_PARTITIONS, ("scoring", "table"))
        wanted[ds.scoring.review_table] = (SCORE_PARTITIONS, ("scoring", "review_table"))
    for table, (partitions, key) in wanted.items():
        declared = tables.get(table)
        if declared is not None and declared.partition_by != partitions:
            yield ((*at, *key), f"table {table!r} must be partitioned by {partitions}, "
                                f"is declared with partition_by {declared.partition_by}")


def _features(at, ds: DatasetConfig) -> Iterator[Problem]:
    f = ds.features
    if f is None:
        return
    columns = _columns(ds.events)
    if columns.get(f.event_time_column, "timestamp") != "timestamp":
        yield ((*at, "features", "event_time_column"), f"{f.event_time_column!r} is a {columns[f.event_time_column]} "
                                                       "column of the events feed, not a timestamp")
    named = [(("id_column",), f.id_column), (("event_time_column",), f.event_time_column),
             *[(("passthrough", str(i)), c) for i, c in enumerate(f.passthrough)]]
    for entity_name, entity in f.entities.items():
        named += [(("entities", entity_name, "keys", str(i)), k) for i, k in enumerate(entity.keys)]
        named += [(("entities", entity_name, "aggregations", str(i), "column"), a.column)
                  for i, a in enumerate(entity.aggregations) if a.column]
    for lf_name, lf in f.label_features.items():
        named += [(("label_features", lf_name, "keys", str(i)), k) for i, k in enumerate(lf.keys)]
    for join_name, join in f.as_of.items():
        at_join = (*at, "features", "as_of", join_name)
        ref = ds.reference.get(join.feed)
        if ref is None:
            yield ((*at_join, "feed"), f"{join.feed!r} is not a reference feed ({', '.join(ds.reference) or 'none'})")
            continue
        named += [(("as_of", join_name, "keys", k), k) for k in join.keys]
        for path, column in [*[(("keys", k), v) for k, v in join.keys.items()],
                             *[(("columns", str(i)), c) for i, c in enumerate(join.columns)]]:
            if column not in _columns(ref):
                yield ((*at_join, *path), _not_in(column, ref, f"reference.{join.feed}"))
    if f.label_features and ds.label is None:
        yield ((*at, "features", "label_features"), "label features need the dataset's label: section")
    for key, column in named:
        if column not in columns:
            yield ((*at, "features", *key), _not_in(column, ds.events, "events"))


def _label(at, ds: DatasetConfig) -> Iterator[Problem]:
    label, feed = ds.label, ds.labels
    if label is None or feed is None:
        return
    gate = ds.validation.get(feed.table)
    if label.table not in {feed.table, gate.accepted_table if gate else feed.table}:
        return  # a table filled elsewhere: its columns are not in this contract
    columns = _columns(feed)
    for key, column in (("key", label.key), ("time_column", label.time_column)):
        if column not in columns:
            yield ((*at, "label", key), _not_in(column, feed, "labels"))
    if columns.get(label.time_column, "timestamp") != "timestamp":
        yield ((*at, "label", "time_column"), f"{label.time_column!r} is a {columns[label.time_column]} column "
                                              "of the labels feed, not a timestamp")


def _validation(at, ds: DatasetConfig) -> Iterator[Problem]:
    feeds = {feed.table: (key, feed) for key, feed in ds.feeds()}
    for table, spec in ds.validation.items():
        if table not in feeds:
            yield ((*at, "validation", table), f"{table!r} is not a feed's table ({', '.join(feeds)})")
            continue
        key, feed = feeds[table]
        columns = _columns(feed)
        named = [(("row_checks", str(i), "column"), c.column) for i, c in enumerate(spec.row_checks) if c.column]
        named += [(("freshness", "column"), spec.freshness.column)] if spec.freshness else []
        if spec.distributions:
            named += [(("distributions", kind, str(i)), c) for kind in ("numeric", "categorical")
                      for i, c in enumerate(getattr(spec.distributions, kind))]
        if spec.labels:
            named += [(("labels", "key"), spec.labels.key), (("labels", "label_time_column"),
                                                             spec.labels.label_time_column)]
        for path, column in named:
            if column not in columns:
                yield ((*at, "validation", table, *path), _not_in(column, feed, key))
