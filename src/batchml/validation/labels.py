"""Label checks for a label feed (e.g. chargebacks): how many labels arrive per event, and how late.

* ``label_proportion``: labels delivered on the run date per event ingested that day, against
  the same ratio over the reference window; fails above ``max_relative_deviation``.
* ``label_delay``: label time minus event time (joined on the key): p50 / p95 / max days and
  labels whose event is unknown; fails when the maximum exceeds ``max_delay_days``.
"""

from __future__ import annotations

import datetime as dt

from batchml.validation.spec import LabelChecks

MIN_REFERENCE_LABELS = 30  # below this the reference rate is noise


def check(lake, spec: LabelChecks, accepted_table: str, batch_column: str, batch, run_date: dt.date) -> list:
    from batchml.validation.gate import CheckResult

    if not lake.exists(spec.events_table):
        return [CheckResult(name, "labels", spec.severity, True, f"{spec.events_table} does not exist yet", "",
                            status="skipped") for name in ("label_proportion", "label_delay")]
    return [_proportion(lake, spec, accepted_table, batch_column, batch, run_date), _delay(lake, spec, batch)]


def _per_day(lake, table: str, column: str, start: dt.date, end: dt.date) -> dict:
    """Rows per ``column`` value in [start, end]: from the Delta statistics when it partitions the table."""
    from pyspark.sql import functions as F

    window = [(column, ">=", start), (column, "<=", end)]
    if column in lake.table_config(table).partition_by:
        return lake.counts_by(table, column, window)
    rows = lake.read(table, columns=[column], where=window)
    return {r[column]: r["n"] for r in rows.groupBy(column).agg(F.count("*").alias("n")).collect()}


def _proportion(lake, spec, accepted_table, batch_column, batch, run_date):
    from batchml.validation.gate import CheckResult

    start = run_date - dt.timedelta(days=spec.reference_days)
    events_per_day = _per_day(lake, spec.events_table, batch_column, start, run_date)
    labels_per_day = (_per_day(lake, accepted_table, batch_column, start, run_date - dt.timedelta(days=1))
                      if lake.exists(accepted_table) else {})
    ref_labels = sum(labels_per_day.values())
    ref_events = sum(n for d, n in events_per_day.items() if d < run_date)
    current_labels, current_events = batch.count(), events_per_day.get(run_date, 0)
    threshold = f"|rate / reference rate - 1| <= {spec.max_relative_deviation}"
    if ref_labels < MIN_REFERENCE_LABELS or not ref_events or not current_events:
        return CheckResult("label_proportion", "labels", spec.severity, True,
                           f"not enough reference ({ref_labels} labels, {ref_events} events)", threshold,
                           status="skipped")
    rate, ref_rate = current_labels / current_events, ref_labels / ref_events
    deviation = rate / ref_rate - 1
    return CheckResult("label_proportion", "labels", spec.severity, abs(deviation) <= spec.max_relative_deviation,
                       f"rate {rate:.5f} vs reference {ref_rate:.5f} ({deviation:+.1%}); "
                       f"{current_labels} labels / {current_events} events", threshold)


def _delay(lake, spec, batch):
    from pyspark.sql import functions as F

    from batchml.validation.gate import CheckResult

    labels = batch.select(spec.key, spec.label_time_column)
    keys = [r[0] for r in labels.select(spec.key).where(F.col(spec.key).isNotNull()).distinct().collect()]
    # The labelled events only: the read tasks drop the others, so the history never crosses into Spark.
    events = lake.read(spec.events_table, columns=[spec.key, spec.event_time_column],
                       where=[(spec.key, "in", keys)])
    joined = labels.join(events, spec.key, "left")
    delay = (F.col(spec.label_time_column).cast("double") - F.col(spec.event_time_column).cast("double")) / 86400
    s = joined.agg(F.percentile_approx(delay, 0.5).alias("p50"), F.percentile_approx(delay, 0.95).alias("p95"),
                   F.max(delay).alias("max"), F.min(delay).alias("min"),
                   F.sum(F.col(spec.event_time_column).isNull().cast("int")).alias("orphans"),
                   F.count("*").alias("n")).first()
    if not s["n"]:
        return CheckResult("label_delay", "labels", spec.severity, True, "no labels in this batch",
                           f"max delay <= {spec.max_delay_days} days", status="passed")
    observed = (f"delay days p50={_f(s['p50'])} p95={_f(s['p95'])} min={_f(s['min'])} max={_f(s['max'])}; "
                f"{s['orphans']} of {s['n']} label(s) without a known event")
    ok = s["max"] is None or (s["max"] <= spec.max_delay_days and s["min"] >= 0)
    return CheckResult("label_delay", "labels", spec.severity, bool(ok), observed,
                       f"0 <= delay <= {spec.max_delay_days} days")


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"
