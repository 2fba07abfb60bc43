"""Data and prediction drift of one scored day against the champion's training data.

The reference is the champion's own training rows: the feature table at the Delta version and
event-date window its tags pin. The statistics are the validation gate's
(``validation.distributions``: PSI on reference deciles, KS, chi-square, in two Spark jobs for
all columns); the score column rides along, with reference scores predicted by the champion.
"""

from __future__ import annotations

import datetime as dt
import logging

from batchml.monitoring.spec import MonitoringSpec
from batchml.registry.store import ModelVersion
from batchml.storage import Lake
from batchml.validation import distributions
from batchml.validation.spec import Distributions

log = logging.getLogger(__name__)
SCORE = "score"  # name of the prediction-drift row


def monitored_columns(spec: MonitoringSpec, model: ModelVersion) -> tuple[list[str], list[str]]:
    if spec.numeric or spec.categorical:
        return list(spec.numeric), list(spec.categorical)
    return list(model.feature_columns), []


def reference_frame(lake: Lake, model: ModelVersion, date_column: str, limit_rows: int):
    """The champion's training rows (pinned table version and window), sampled to ``limit_rows``."""
    from pyspark.sql import functions as F

    table, version = model.tags["features_table"], int(model.tags["features_version"])
    start, end = dt.date.fromisoformat(model.tags["train_start"]), dt.date.fromisoformat(model.tags["train_end"])
    rows = lake.count(table, where=[(date_column, ">=", start), (date_column, "<=", end)])
    df = lake.read(table, version=version).where(F.col(date_column).between(F.lit(start), F.lit(end)))
    if rows > limit_rows:  # a seeded sample: the same reference every run
        df = df.sample(fraction=limit_rows / rows, seed=17)
    return df


def with_scores(df, model: ModelVersion, out: str = SCORE):
    """Append the champion's score to every row (booster broadcast, ``inplace_predict`` per Arrow batch)."""
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    cols, raw = list(model.feature_columns), bytes(model.booster.save_raw("ubj"))
    df = df.select(*[F.col(c).cast("double").alias(c) for c in cols],
                   *[c for c in df.columns if c not in cols])

    def predict(batches):
        import numpy as np
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        for batch in batches:
            x = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in cols]).astype(np.float32)
            score = booster.inplace_predict(x) if len(x) else np.zeros(0)
            yield pa.RecordBatch.from_arrays([*batch.columns, pa.array(score, pa.float64())],
                                             names=[*batch.schema.names, out])

    schema = T.StructType([*df.schema.fields, T.StructField(out, T.DoubleType())])  # .add() would mutate df's
    return df.mapInArrow(predict, schema)


def measure(lake: Lake, spec: MonitoringSpec, model: ModelVersion, features_table: str, id_column: str,
            date_column: str, run_date: dt.date) -> list[distributions.Drift]:
    """Drift of every monitored column and of the score for the run date's batch."""
    from pyspark.sql import functions as F

    numeric, categorical = monitored_columns(spec, model)
    needed = sorted(set(numeric) | set(categorical) | set(model.feature_columns))
    reference = with_scores(reference_frame(lake, model, date_column, spec.reference_sample_rows)
                            .select(*needed), model).select(*numeric, *categorical, SCORE)
    batch = lake.read(features_table).where(F.col(date_column) == F.lit(run_date)).select(id_column, *numeric,
                                                                                           *categorical)
    if lake.exists(spec.scores_table):
        scores = (lake.read(spec.scores_table, columns=[id_column, spec.score_column, spec.score_date_column])
                  .where(F.col(spec.score_date_column) == F.lit(run_date))
                  .select(id_column, F.col(spec.score_column).cast("double").alias(SCORE)))
        batch = batch.join(scores, id_column, "left")
    else:
        log.warning("%s does not exist yet: no prediction drift", spec.scores_table)
        batch = batch.withColumn(SCORE, F.lit(None).cast("double"))
    tests = Distributions(numeric=[*numeric, SCORE], categorical=categorical, bins=spec.bins)
    reference = reference.cache()  # read twice (quantiles, histograms); predict once
    try:
        return distributions.compare(reference, batch.drop(id_column), tests, exact_ks=spec.exact_ks)
    finally:
        reference.unpersist()
