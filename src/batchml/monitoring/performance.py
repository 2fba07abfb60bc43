"""Realized performance from late labels: past scores joined to the labels known so far.

A scored event's label is the dataset's label contract (``batchml.labels``) as known at the run
date: with ``presence`` labels an event without a delivered row counts as negative, with ``value``
labels it is unlabelled and left out of the metrics. Per scoring date: rows, labelled rows,
positives, precision / recall / F1 at the decision threshold, PR-AUC (average precision over score
bins of 1/50 logit: ties within a bin count as one threshold), and the realized decision rates
(automatic positive decisions, review, review overflow) over all model-scored rows. A date's labels
have *matured* when it is at least ``maturity_days`` old; younger dates are shown but never alerted
on, because their missing labels would read as negatives.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from scipy import stats

from batchml import labels
from batchml.labels import LABEL, LabelSpec
from batchml.monitoring.spec import MonitoringSpec
from batchml.storage import Lake

_LOGIT_STEPS = 50  # score bins per logit unit for PR-AUC


@dataclass(frozen=True)
class DatePerformance:
    scoring_date: dt.date
    age_days: int
    matured: bool
    rows: int
    positives: int
    predicted_positives: int
    true_positives: int
    precision: float | None
    recall: float | None
    f1: float | None
    pr_auc: float | None
    labelled_rows: int = 0
    positive_decision_rate: float | None = None  # automatic positive decisions (not sent to review) per row
    review_rate: float | None = None  # rows queued for review per row
    overflow_rate: float | None = None  # rows in the review band over the capacity per row


@dataclass(frozen=True)
class Verdict:
    metric: str
    baseline: float | None
    value: float | None
    relative_drop: float | None
    p_value: float | None
    positives: int
    dates: list[str]
    status: str  # ok | alert | insufficient

    def to_dict(self) -> dict:
        return asdict(self)


def measure(lake: Lake, spec: MonitoringSpec, label: LabelSpec, id_column: str, ingest_column: str,
            run_date: dt.date, timezone: str = "UTC") -> list[DatePerformance]:
    from pyspark.sql import functions as F

    if not lake.exists(spec.scores_table) or not lake.exists(label.table):
        return []
    scores = lake.read(spec.scores_table, where=[
        (spec.score_date_column, ">=", run_date - dt.timedelta(days=spec.lookback_days)),
        (spec.score_date_column, "<=", run_date)])
    if spec.exclude_flag_column and spec.exclude_flag_column in scores.columns:
        scores = scores.where(~F.coalesce(F.col(spec.exclude_flag_column).cast("boolean"), F.lit(False)))
    delivered = lake.read(label.table, labels.read_columns(label, ingest_column),
                          where=[(ingest_column, "<=", run_date)])
    known = labels.known_labels(delivered, label, id_column, ingest_column, run_date, timezone)
    joined = scores.join(known, id_column, "left")
    y = F.coalesce(F.col(LABEL), F.lit(0)) if label.presence else F.col(LABEL)  # value: null is unlabelled
    s = F.least(F.greatest(F.col(spec.score_column).cast("double"), F.lit(1e-7)), F.lit(1 - 1e-7))
    flagged = (F.col(spec.score_column) >= F.col(spec.threshold_column)).cast("int")
    review, overflow = (_flag(scores, c) for c in (spec.review_column, spec.overflow_column))
    bins = (joined.select(F.col(spec.score_date_column).alias("d"), y.alias("y"), flagged.alias("p"),
                          F.floor(F.log(s / (1 - s)) * _LOGIT_STEPS).cast("int").alias("b"),
                          review.alias("rev"), overflow.alias("ovf"))
            .groupBy("d", "b")
            .agg(F.count(F.lit(1)).alias("n"), F.count("y").alias("nl"), F.sum("y").alias("pos"),
                 F.sum(F.when(F.col("y").isNotNull(), F.col("p"))).alias("pred"),
                 F.sum(F.col("p") * F.col("y")).alias("tp"), F.sum("rev").alias("rev"), F.sum("ovf").alias("ovf"),
                 F.sum(F.col("p") * (1 - F.coalesce("rev", F.lit(0)))).alias("auto"))
            .collect())
    by_date: dict[dt.date, list] = {}
    for r in bins:
        by_date.setdefault(r["d"], []).append(r)
    return [_date(d, rows, run_date, spec.maturity_days) for d, rows in sorted(by_date.items())]


def _flag(scores, column: str | None):
    """A decision flag of the scores table as 0/1, or null when the table has no such column."""
    from pyspark.sql import functions as F

    if column and column in scores.columns:
        return F.coalesce(F.col(column).cast("int"), F.lit(0))
    return F.lit(None).cast("int")


def _date(day: dt.date, rows: list, run_date: dt.date, maturity_days: int) -> DatePerformance:
    n, labelled = sum(r["n"] for r in rows), sum(r["nl"] for r in rows)
    pos, pred, tp = (sum(r[k] or 0 for r in rows) for k in ("pos", "pred", "tp"))
    precision, recall, f1 = _prf(tp, pos, pred)
    age = (run_date - day).days
    flags = rows[0]["rev"] is not None

    def rate(key: str) -> float | None:
        return sum(r[key] or 0 for r in rows) / n if flags and n else None

    return DatePerformance(day, age, age >= maturity_days, n, pos, pred, tp, precision, recall, f1,
                           _average_precision(rows, pos), labelled, rate("auto"), rate("rev"), rate("ovf"))


def _prf(tp: int, pos: int, pred: int) -> tuple[float | None, float | None, float | None]:
    precision = tp / pred if pred else None
    recall = tp / pos if pos else None
    f1 = 2 * tp / (pos + pred) if pos + pred else None
    return precision, recall, f1


def _average_precision(rows: list, positives: int) -> float | None:
    """sklearn's average precision with each score bin as one threshold (highest bin first)."""
    if not positives:
        return None
    ap, seen, hits = 0.0, 0, 0
    for r in sorted(rows, key=lambda r: r["b"], reverse=True):
        if not r["nl"]:
            continue
        seen, hits = seen + r["nl"], hits + (r["pos"] or 0)
        ap += (r["pos"] or 0) / positives * (hits / seen)
    return ap


def judge(dates: list[DatePerformance], baseline_metrics: dict, spec: MonitoringSpec) -> Verdict:
    """Pool the newest ``window_days`` matured dates and compare ``metric`` with the champion's test value."""
    matured = sorted((d for d in dates if d.matured), key=lambda d: d.scoring_date)[-spec.window_days:]
    tp = sum(d.true_positives for d in matured)
    pos = sum(d.positives for d in matured)
    pred = sum(d.predicted_positives for d in matured)
    precision, recall, f1 = _prf(tp, pos, pred)
    value = recall if spec.metric == "recall" else f1
    baseline = baseline_metrics.get(spec.metric)
    names = [d.scoring_date.isoformat() for d in matured]
    if value is None or baseline is None or not baseline or pos < spec.min_positives:
        return Verdict(spec.metric, baseline, value, None, None, pos, names, "insufficient")
    drop = (baseline - value) / baseline
    # recall: P(at most tp hits out of pos | true recall = baseline), one-sided
    p = float(stats.binom.cdf(tp, pos, min(baseline, 1.0))) if spec.metric == "recall" else None
    significant = p is None or p < spec.p_value
    status = "alert" if drop > spec.max_relative_drop and significant else "ok"
    return Verdict(spec.metric, baseline, value, drop, p, pos, names, status)


