"""The training set: features joined point-in-time to the labels known at the cut-off.

Run date D is the cut-off. A label is visible only if it was ingested by D and known (the label
contract's ``time_column``) by the end of D (``batchml.labels``). An event counts only once its label
had time to mature: event date <= D - ``label_maturity_days``. With ``presence`` labels an event with
no visible label row by then is a negative; with ``value`` labels every event needs its own known
outcome, and events without one are left out. The set is written to ``model.training_table``,
partition ``cutoff_date = D``, idempotently; the commit records the Delta versions of the feature and
label tables it read (lineage).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from batchml import labels
from batchml.config import Config
from batchml.labels import LABEL, LabelSpec  # noqa: F401 - LABEL: the training set's label column
from batchml.storage import Lake
from batchml.training.spec import ModelSpec

log = logging.getLogger(__name__)

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
    if config.dataset(name).label is None:
        raise ValueError(f"dataset {name!r} has a model but no label section to learn from")
    return name, spec


def labels_table(config: Config, dataset: str) -> str:
    """The label contract's table (by default the labels feed's accepted table, resolved at load)."""
    label = config.dataset(dataset).label
    if label is None or label.table is None:
        raise ValueError(f"dataset {dataset!r} declares no label table (add a 'label:' section to its config)")
    return label.table


# -- pure transforms ------------------------------------------------------------------
def label_events(features, known, label: LabelSpec, id_column: str, date_column: str, window: Window,
                 cutoff: dt.date):
    """Mature events of ``window`` with their ``label`` (``batchml.labels.label_events``) and the cut-off."""
    from pyspark.sql import functions as F

    events = features.where(F.col(date_column).between(F.lit(window.start), F.lit(window.end)))
    return labels.label_events(events, known, label, id_column).withColumn(CUTOFF, F.lit(cutoff))


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
    ds = config.dataset(name)
    label, ingest = ds.label, ds.ingest_column
    delivered = lake.read(label_table, labels.read_columns(label, ingest), versions[label_table],
                          where=[(ingest, "<=", cutoff)])
    known = labels.known_labels(delivered, label, feats.id_column, ingest, cutoff, ds.timezone)
    rows = label_events(features, known, label, feats.id_column, feats.date_column, window, cutoff)
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
