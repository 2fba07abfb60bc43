"""Data and prediction drift of one scored day against the champion's training data.

The reference is the champion's own training rows: the feature table at the Delta version and
event-date window its tags pin, sampled to ``reference_sample_rows``. The statistics are the
validation gate's (``validation.distributions``: PSI on reference deciles, KS, chi-square), computed
in memory on Arrow tables read from the lake: a day and a bounded reference fit one process, and
there the KS statistic is exact. The score column rides along, with reference scores predicted by
the champion.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchml.monitoring.spec import MonitoringSpec
from batchml.registry.store import ModelVersion
from batchml.scoring.predict import features_matrix
from batchml.storage import Lake
from batchml.validation import distributions
from batchml.validation.spec import Distributions

log = logging.getLogger(__name__)
SCORE = "score"  # name of the prediction-drift row


def monitored_columns(spec: MonitoringSpec, model: ModelVersion) -> tuple[list[str], list[str]]:
    numeric, categorical = (spec.numeric, spec.categorical) if spec.numeric or spec.categorical \
        else ([c for c in model.feature_columns if c not in model.categories], list(model.categories))
    return ([c for c in numeric if c not in spec.exclude_columns],
            [c for c in categorical if c not in spec.exclude_columns])


def reference_table(lake: Lake, model: ModelVersion, date_column: str, columns: list[str], limit_rows: int):
    """The champion's training rows (pinned table version and window), a seeded sample of at most ``limit_rows``."""
    table, version = model.tags["features_table"], int(model.tags["features_version"])
    start, end = dt.date.fromisoformat(model.tags["train_start"]), dt.date.fromisoformat(model.tags["train_end"])
    rows = lake.read_arrow(table, filters=[(date_column, ">=", start), (date_column, "<=", end)], columns=columns,
                           version=version)
    return _sample(rows, limit_rows, seed=17)  # the same reference every run


def _sample(table: pa.Table, limit_rows: int, seed: int) -> pa.Table:
    if table.num_rows <= limit_rows:
        return table
    keep = np.sort(np.random.default_rng(seed).choice(table.num_rows, limit_rows, replace=False))
    return table.take(keep)


def predict(model: ModelVersion, table: pa.Table) -> pa.Array:
    """The champion's score for every row (calibrated, as scoring writes it)."""
    x = features_matrix(table, model.feature_columns, model.categories)
    return pa.array(model.predict(x) if len(x) else np.zeros(0), pa.float64())


def measure(lake: Lake, spec: MonitoringSpec, model: ModelVersion, features_table: str, id_column: str,
            date_column: str, run_date: dt.date) -> list[distributions.Drift]:
    """Drift of every monitored column and of the score for the run date's batch."""
    numeric, categorical = monitored_columns(spec, model)
    needed = sorted(set(numeric) | set(categorical) | set(model.feature_columns))
    reference = reference_table(lake, model, date_column, needed, spec.reference_sample_rows)
    reference = reference.append_column(SCORE, predict(model, reference))
    batch = lake.read_arrow(features_table, filters=[(date_column, "=", run_date)],
                            columns=[id_column, *numeric, *categorical])
    batch = _sample(batch, spec.batch_sample_rows, seed=run_date.toordinal())
    if lake.exists(spec.scores_table):
        scores = lake.read_arrow(spec.scores_table, filters=[(spec.score_date_column, "=", run_date)],
                                 columns=[id_column, spec.score_column])
        score = pc.cast(scores.column(spec.score_column), pa.float64())
        scores = scores.select([id_column]).append_column(SCORE, score)
        batch = batch.join(scores, id_column, join_type="left outer")
    else:
        log.warning("%s does not exist yet: no prediction drift", spec.scores_table)
        batch = batch.append_column(SCORE, pa.nulls(batch.num_rows, pa.float64()))
    tests = Distributions(numeric=[*numeric, SCORE], categorical=categorical, bins=spec.bins)
    return distributions.compare_arrow(reference, batch, tests)
