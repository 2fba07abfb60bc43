"""The features stage: build the feature table's partition for one run date (or a date range).

A day's build reads only its lookback from the events the validation gate accepted (silver; bronze
when the dataset declares no gate), event time in ``[D - lookback, D + 1)``, ingested by ``D``, computes features with the pure transforms in ``compute``, and overwrites only the
``event_date = D`` partition, idempotently (Delta app transaction ``features/<dataset>/<D>``).
"""

from __future__ import annotations

import datetime as dt
import logging

from batchml.config import INGEST_COLUMN, Config
from batchml.features.compute import DEDUPE_ORDER, compute_features, load_sql, lookback_filter
from batchml.features.spec import FeatureSpec
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


def read_events(lake: Lake, table: str, spec: FeatureSpec, start: dt.date, end: dt.date):
    """Event rows a build of ``[start, end)`` needs: only the lookback, only what was ingested by then."""
    from pyspark.sql import functions as F

    columns = spec.source_columns() + [INGEST_COLUMN, *[c for c in DEDUPE_ORDER if c != INGEST_COLUMN]]
    return (lake.read(table, columns=list(dict.fromkeys(columns)))
            .where(lookback_filter(spec, start, end))
            .where(F.col(INGEST_COLUMN) <= F.lit(end - dt.timedelta(days=1))))


def build_features(config: Config, run_date: dt.date, dataset: str | None = None, spark=None,
                   end: dt.date | None = None):
    """Build ``run_date`` (or the backfill ``run_date .. end``, inclusive) and return the write result."""
    name, spec = feature_spec(config, dataset)
    last = end or run_date
    if last < run_date:
        raise ValueError(f"backfill end {last} is before its start {run_date}")
    lake = Lake(config, spark)
    lake.table_config(spec.table)  # fail early if the table is not declared
    source = source_table(config, name)
    stop = last + dt.timedelta(days=1)
    if last == run_date:
        where, txn = [(spec.date_column, "=", run_date)], (f"features/{name}/{run_date}", 1)
    else:
        where = [(spec.date_column, ">=", run_date), (spec.date_column, "<=", last)]
        txn = (f"features/{name}/{run_date}..{last}", 1)
    if lake.exists(spec.table) and lake.committed(spec.table, txn):  # before planning: the plan is large
        log.info("features %s %s%s: already built (transaction recorded); nothing to do", name, run_date,
                 f"..{last}" if last != run_date else "")
        return WriteResult(lake.uri(spec.table), lake.version(spec.table), skipped=True)
    cache: list = []
    features = compute_features(read_events(lake, source, spec, run_date, stop), spec, run_date, stop,
                                load_sql(spec, config.conf_dir), cache=cache)
    try:
        result = lake.write(features, spec.table, mode="overwrite", replace_where=where, txn=txn,
                            metadata={"job": "features", "runDate": str(run_date),
                                      **({"endDate": str(last)} if last != run_date else {})})
    finally:
        for df in cache:
            df.unpersist()
    log.info("features %s %s%s: %s", name, run_date, f"..{last}" if last != run_date else "",
             "already built (transaction recorded); nothing to do" if result.skipped
             else f"{result.rows_written} row(s) in {spec.table} version {result.version}")
    return result
