"""What the validation gate checks, declared per table in the dataset config (``validation:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["error", "warn"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RowCheck(_Strict):
    """A rule every row must satisfy; failing rows can be split off into quarantine."""

    name: str
    kind: Literal["not_null", "between", "in_set", "regex", "unique", "expression"]
    column: str | None = None
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    pattern: str | None = None
    expression: str | None = None  # Spark SQL boolean that must be true, e.g. "refund <= amount"
    severity: Severity = "error"

    @model_validator(mode="after")
    def _arguments(self) -> "RowCheck":
        needs = {"not_null": ["column"], "between": ["column"], "in_set": ["column", "values"],
                 "regex": ["column", "pattern"], "unique": ["column"], "expression": ["expression"]}[self.kind]
        missing = [n for n in needs if getattr(self, n) is None]
        if missing or (self.kind == "between" and self.min is None and self.max is None):
            raise ValueError(f"check {self.name!r} ({self.kind}) needs {missing or ['min or max']}")
        return self


class RowCount(_Strict):
    min: int = 0
    max: int | None = None
    severity: Severity = "error"


class Freshness(_Strict):
    """The newest event must not lag the end of the run date by more than ``max_lag_hours``."""

    column: str
    max_lag_hours: float = Field(gt=0)
    severity: Severity = "error"


class Distributions(_Strict):
    """Drift of this batch against a reference window, decided on significance AND effect size.

    A column fails only when the test is significant (p < p_value) and the shift is large
    enough to matter: PSI >= min_psi, or (numeric) Wasserstein distance >= min_wasserstein_std
    reference standard deviations. Large batches therefore do not fail on trivial shifts.
    """

    numeric: list[str] = []
    categorical: list[str] = []
    reference_days: int = Field(14, gt=0)  # trailing days of accepted data before the run date
    min_reference_rows: int = 1000
    p_value: float = Field(0.01, gt=0, lt=1)
    min_psi: float = 0.1
    min_wasserstein_std: float = 0.1
    bins: int = Field(10, ge=2, le=100)
    severity: Severity = "error"


class LabelChecks(_Strict):
    """For a label feed: positives per event against the reference, and label delays."""

    events_table: str
    key: str
    label_time_column: str
    event_time_column: str
    max_relative_deviation: float = 0.15
    max_delay_days: float = 45
    reference_days: int = 28
    severity: Severity = "warn"


class TableValidation(_Strict):
    batch_column: str = "ingest_date"  # the column holding the run date of each row
    accepted_table: str  # where passing rows go once the gate releases them
    policy: Literal["partial", "hold"] = "partial"  # partial: passing rows go on; hold: nothing goes on
    allow_extra_columns: bool = False
    sensitive_columns: list[str] = []  # never shown as example values in reports
    row_checks: list[RowCheck] = []
    row_count: RowCount | None = None
    freshness: Freshness | None = None
    distributions: Distributions | None = None
    labels: LabelChecks | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> "TableValidation":
        names = [c.name for c in self.row_checks]
        if len(names) != len(set(names)):
            raise ValueError(f"row check names must be unique: {names}")
        return self
