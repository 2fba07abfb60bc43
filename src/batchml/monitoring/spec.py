"""Monitoring config: which model, tables and features are watched, and when to alert.

Kept free of ``batchml.config`` imports (that module imports this one).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MonitoringSpec(_Strict):
    """Drift against the champion's training data, and realized performance from late labels.

    Alerts (either one produces a retraining request):

    * data / prediction drift: PSI (reference-decile bins) > ``psi_alert`` on any monitored
      column, judged only when the batch has at least ``min_rows`` rows;
    * performance: over the newest ``window_days`` scoring dates whose labels have matured
      (at least ``maturity_days`` old), the pooled ``metric`` fell more than
      ``max_relative_drop`` below the champion's test value, with at least ``min_positives``
      labelled positives, and (recall) the drop is significant (one-sided binomial p < ``p_value``).
    """

    model_name: str | None = None  # registered model watched (its champion); default: model.registered_name
    scores_table: str  # partitioned by ``score_date_column``; one row per scored event
    drift_table: str  # one row per monitored column per run date
    performance_table: str  # one row per scoring date per run date
    requests_table: str = "ops.retraining_requests"
    # labels: the dataset's label contract (label:); a date's labels are those known by the run date
    score_column: str = "score"
    threshold_column: str = "threshold"
    score_date_column: str = "run_date"
    exclude_flag_column: str | None = "fallback"  # rows scored by fallback rules are not model scores
    review_column: str | None = "review"  # decision flags of the scores table: realized decision rates
    overflow_column: str | None = "review_overflow"
    numeric: list[str] = []  # monitored columns; both empty: the champion's feature columns
    exclude_columns: list[str] = []  # never compared: features that differ by design from day to day (calendar)
    categorical: list[str] = []
    bins: int = Field(10, ge=2, le=100)  # PSI bins: reference deciles by default
    psi_alert: float = Field(0.2, gt=0)
    min_rows: int = Field(1000, ge=1)
    reference_sample_rows: int = Field(200_000, ge=1000)  # reference rows (seeded sample), held in memory
    batch_sample_rows: int = Field(2_000_000, ge=1000)  # a larger day is compared through a seeded sample
    maturity_days: int = Field(30, ge=1)
    lookback_days: int = Field(60, ge=1)  # scoring dates evaluated per run
    window_days: int = Field(7, ge=1)
    metric: Literal["recall", "f1"] = "recall"
    max_relative_drop: float = Field(0.05, gt=0, lt=1)
    min_positives: int = Field(50, ge=1)
    p_value: float = Field(0.01, gt=0, lt=1)


class Sink(_Strict):
    """Where alerts go besides the log and the JSONL file under ``{home}/alerts/``."""

    kind: Literal["webhook", "email", "sns"]
    url: str | None = None  # webhook: HTTP(S) endpoint receiving the event as a JSON POST
    timeout_seconds: float = Field(10, gt=0)
    smtp_host: str | None = None  # email
    smtp_port: int = 25
    sender: str | None = None
    recipients: list[str] = []
    # sns: the alert topic (terraform output sns_topic_arn); the event JSON is the message. Credentials
    # come from the default AWS chain (the EMR job role, the MWAA execution role); the region from the ARN.
    topic_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$")

    @model_validator(mode="after")
    def _kind_has_its_settings(self) -> "Sink":
        needed = {"webhook": ["url"], "email": ["smtp_host", "sender", "recipients"], "sns": ["topic_arn"]}[self.kind]
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise ValueError(f"{self.kind} sink needs {', '.join(missing)}")
        return self


class AlertsConfig(_Strict):
    sinks: list[Sink] = []
