"""The training set: features joined point-in-time to the labels known at the cut-off.

Run date D is the cut-off. A label (a chargeback) is visible only if it was ingested by D and
reported by the end of D. An event counts only once its label had time to mature: event date
<= D - ``label_maturity_days``; an event with no visible chargeback by then is a negative.
The set is written to ``model.training_table``, partition ``cutoff_date = D``, idempotently; the
commit records the Delta versions of the feature and label tables it read (lineage).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from batchml.config import Config
from batchml.storage import Lake
from batchml.training.spec import ModelSpec

log = logging.getLogger(__name__)

LABEL = "label"
CUTOFF = "cutoff_date"


@dataclass(frozen=True)
class Window:
    """Event dates of mature events for a cut-off (inclusive)."""

    start: dt.date
    end: dt.date


def mature_window(spec: ModelSpec, cutoff: dt.date) -> Window:
    end = cutoff - dt.timedelta(days=spec.label_maturity_days)
    return Window(end - dt.timedelta(days=spec.history_days - 1), end)


def model_spec(config: Config, dataset: str | None = None) -> tuple[str, ModelSpec]:
    name = dataset or config.default_dataset
    spec = config.dataset(name).model
    if spec is None:
        raise ValueError(f"dataset {name!r} declares no model (add a 'model:' section to its config)")
    if config.dataset(name).features is None:
        raise ValueError(f"dataset {name!r} has a model but no features section to train on")
    return name, spec


def labels_table(config: Config, dataset: str) -> str:
    """The gate's accepted labels table (silver), or the raw labels feed when it has no gate."""
    spec, ds = config.dataset(dataset).model, config.dataset(dataset)
    if spec.labels_table:
        return spec.labels_table
    if ds.labels is None:
        raise ValueError(f"dataset {dataset!r} has no labels feed and its model names no labels_table")
    gate = ds.validation.get(ds.labels.table)
    return gate.accepted_table if gate else ds.labels.table


# -- pure transforms ------------------------------------------------------------------
def visible_labels(labels, spec: ModelSpec, cutoff: dt.date):
    """Distinct keys of labels known at the cut-off: ingested by D and reported before D + 1."""
    from pyspark.sql import functions as F

    end = dt.datetime.combine(cutoff + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    return (labels.where((F.col("ingest_date") <= F.lit(cutoff)) & (F.col(spec.label_time_column) < F.lit(end)))
            .select(spec.label_key).distinct())


def label_events(features, visible, spec: ModelSpec, date_column: str, window: Window, cutoff: dt.date):
    """Mature events of ``window`` with ``label`` 1 if a visible label names them, else 0."""
    from pyspark.sql import functions as F

    events = features.where(F.col(date_column).between(F.lit(window.start), F.lit(window.end)))
    marked = visible.withColumn("_hit", F.lit(1))
    return (events.join(marked, on=spec.label_key, how="left")
            .withColumn(LABEL, F.coalesce(F.col("_hit"), F.lit(0)).cast("int")).drop("_hit")
            .withColumn(CUTOFF, F.lit(cutoff)))


# -- the stage -------------------------------------------------------------------------
def build_training_set(config: Config, cutoff: dt.date, dataset: str | None = None, spark=None) -> dict:
    """Write partition ``cutoff_date = D`` once; returns lineage {table: version} of what it holds."""
    name, spec = model_spec(config, dataset)
    feats = config.dataset(name).features
    lake = Lake(config, spark)
    txn = (f"training-set/{name}/{cutoff}", 1)
    if lake.committed(spec.training_table, txn):
        lineage = training_set_lineage(lake, spec.training_table, cutoff)
        log.info("training set %s %s: already built (transaction recorded); nothing to do", name, cutoff)
        return lineage
    label_table = labels_table(config, name)
    for table in (feats.table, label_table):
        if not lake.exists(table):
            raise FileNotFoundError(f"training set for {cutoff} needs table {table}, which does not exist yet "
                                    "(run the features stage / ingest + validate first)")
    window = mature_window(spec, cutoff)
    versions = {feats.table: lake.version(feats.table), label_table: lake.version(label_table)}
    features = lake.read(feats.table, version=versions[feats.table])
    labels = lake.read(label_table, columns=[spec.label_key, spec.label_time_column, "ingest_date"],
                       version=versions[label_table])
    rows = label_events(features, visible_labels(labels, spec, cutoff), spec, feats.date_column, window, cutoff)
    result = lake.write(rows, spec.training_table, mode="overwrite", replace_where=[(CUTOFF, "=", cutoff)],
                        txn=txn, metadata={"job": "training-set", "runDate": str(cutoff),
                                           "windowStart": str(window.start), "windowEnd": str(window.end),
                                           **{f"source:{t}": v for t, v in versions.items()}})
    if not result.skipped and result.rows_written == 0:
        log.warning("training set %s %s is empty: no feature rows with %s in [%s, %s]", name, cutoff,
                    feats.date_column, window.start, window.end)
    log.info("training set %s %s: %s row(s), events %s..%s (labels matured %d days), %s version %s",
             name, cutoff, result.rows_written, window.start, window.end, spec.label_maturity_days,
             spec.training_table, result.version)
    return {**versions, spec.training_table: result.version}


def training_set_lineage(lake: Lake, table: str, cutoff: dt.date) -> dict:
    """{table: version} recorded by the commit that built the training set of ``cutoff``."""
    for entry in lake.history(table):
        if entry.get("batchml.job") == "training-set" and entry.get("batchml.runDate") == str(cutoff):
            lineage = {k.removeprefix("batchml.source:"): int(v) for k, v in entry.items()
                       if k.startswith("batchml.source:")}
            return {**lineage, table: entry["version"]}
    raise RuntimeError(f"{table}: no training-set commit for cut-off {cutoff} in the history")
