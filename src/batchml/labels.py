"""The label contract (a dataset's ``label:`` section): where outcomes come from and what counts as positive.

Two kinds of label deliveries:

* ``presence: true``: a row in the label table means "this event was positive" (a chargeback, a
  complaint). Events without one are negatives, inferred once they are ``label_maturity_days`` old.
* ``value: <Spark SQL>``: every event gets its own outcome row (delivered or not, delayed or not); the
  expression over the label table's columns (``arr_delay > 15``, ``status = 'defaulted'``) is the
  label. Negatives are explicit; an event whose outcome is not known yet has no label.

A label counts at a date D when its row was ingested by D and is known (``time_column``) before D + 1.
When an event has several known outcome rows (corrections), the latest by ``time_column`` then by
ingest date wins. Kept free of ``batchml.config`` imports (that module imports this one).
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, model_validator

LABEL = "label"  # the label column of training sets and of the joins below


class LabelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = None  # default: the labels feed's accepted (validated) table, else its bronze table
    key: str  # the label table's column holding the event id (the values of features.id_column)
    time_column: str  # when the outcome became known
    presence: bool = False  # a row means positive
    value: str | None = None  # Spark SQL over the label table's columns: true (or 1) means positive
    description: str = ""  # what a positive means, in words (the model card)

    @model_validator(mode="after")
    def _one_kind(self) -> "LabelSpec":
        if self.presence == (self.value is not None):
            raise ValueError("give either presence: true (a row means positive) or value: <expression> "
                             "(every event's outcome row says)")
        return self

    @property
    def kind(self) -> str:
        return "presence" if self.presence else "value"

    def definition(self, table: str) -> str:
        """The rule in one clause, for people (model cards, docs)."""
        if self.presence:
            return f"an event is positive when `{table}` holds a row for it (matched on `{self.key}`)"
        return (f"an event is positive when `{self.value}` holds on its outcome row in `{table}` "
                f"(matched on `{self.key}`)")


def read_columns(spec: LabelSpec, ingest_column: str) -> list[str] | None:
    """The label table's columns the rules need: presence needs three; a value expression may use any."""
    return [spec.key, spec.time_column, ingest_column] if spec.presence else None


def known_labels(labels, spec: LabelSpec, id_column: str, ingest_column: str, as_of: dt.date,
                 timezone: str = "UTC"):
    """(``id_column``, ``label``) for every event with a label known at ``as_of`` (by the end of that run date
    in the dataset's ``timezone``): pure Spark transform."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from batchml.rundays import day_bounds

    end = day_bounds(as_of, timezone)[1]
    known = labels.where((F.col(ingest_column) <= F.lit(as_of)) & (F.col(spec.time_column) < F.lit(end)))
    if spec.presence:
        return known.select(F.col(spec.key).alias(id_column)).distinct().withColumn(LABEL, F.lit(1))
    latest = Window.partitionBy(spec.key).orderBy(F.col(spec.time_column).desc(), F.col(ingest_column).desc())
    return (known.withColumn("_n", F.row_number().over(latest)).where(F.col("_n") == 1)
            .select(F.col(spec.key).alias(id_column), F.expr(spec.value).cast("int").alias(LABEL)))


def label_events(events, known, spec: LabelSpec, id_column: str):
    """``events`` with ``label``: presence fills 0 for events without a row; value keeps only labelled events."""
    from pyspark.sql import functions as F

    if spec.presence:
        return events.join(known, id_column, "left").withColumn(LABEL, F.coalesce(F.col(LABEL), F.lit(0)))
    return events.join(known.where(F.col(LABEL).isNotNull()), id_column, "inner")
