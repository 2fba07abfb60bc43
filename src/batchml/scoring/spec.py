"""Typed scoring declarations: the ``scoring:`` section of a dataset config.

Kept free of ``batchml.config`` imports (that module imports this one).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReviewSpec(_Strict):
    """Events whose score is among those nearest the threshold go to people instead of an automatic decision.

    The band is defined by rank, not by score distance: training takes the ``share_below`` of the
    validation window's events just below the threshold and the ``share_above`` just at or above it,
    and records the score interval they span on the model (``batchml.review_band``). Scoring sends the
    events in that interval to review. Unlike a fixed score distance, this means the same whatever the
    threshold and however (un)calibrated the scores are, and it is in the unit review capacity is planned
    in: a share of the events (docs/scoring.md).
    """

    share_below: float = Field(0.01, ge=0, le=1)  # of all events, the nearest below the threshold
    share_above: float = Field(0.01, ge=0, le=1)  # of all events, the nearest at or above it
    daily_capacity: int = Field(500, ge=0)  # most rows queued per run date; the rest keep the model decision
    # training warns when the band's expected rows per day exceed daily_capacity by more than this factor
    capacity_warning_factor: float = Field(1.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _absolute_band_is_gone(cls, data):
        if isinstance(data, dict) and {"below", "above"} & set(data):
            raise ValueError("review.below / review.above were absolute score distances; the band is now a share "
                             "of events by rank around the threshold: use review.share_below / review.share_above")
        return data


class ReasonCodeSpec(_Strict):
    top_k: int = Field(3, ge=1)
    # approx: XGBoost's path attribution (approx_contribs), about as fast as predicting; exact: TreeSHAP,
    # about 100x slower than predicting (see docs/scoring.md).
    method: Literal["approx", "exact"] = "approx"
    # flagged: rows a person may look at (inside the review band or above the threshold); all: every row.
    rows: Literal["flagged", "all"] = "flagged"


class FallbackRule(_Strict):
    name: str
    when: str  # Spark SQL boolean over feature-table columns
    score: float = Field(ge=0, le=1)


class FallbackSpec(_Strict):
    """Rules that score a batch when no champion loads or the model fails on it: first match wins."""

    rules: list[FallbackRule] = []
    default_score: float = Field(0.0, ge=0, le=1)
    threshold: float = Field(0.5, ge=0, le=1)
    exit_code: int = Field(3, ge=0, le=255)  # the stage's exit status when any row used a fallback

    def score_sql(self) -> str:
        """One CASE expression: the first matching rule's score, else the default."""
        if not self.rules:
            return f"CAST({self.default_score!r} AS DOUBLE)"
        whens = " ".join(f"WHEN ({r.when}) THEN {r.score!r}" for r in self.rules)
        return f"CAST(CASE {whens} ELSE {self.default_score!r} END AS DOUBLE)"

    def rule_sql(self) -> str:
        """The name of the rule that scored the row (``default`` when none matched)."""
        whens = " ".join(f"WHEN ({r.when}) THEN '{r.name}'" for r in self.rules)
        return f"CASE {whens} ELSE 'default' END" if self.rules else "'default'"


class ScoringSpec(_Strict):
    table: str  # scores table, declared under tables: and partitioned by [run_date, chunk]
    review_table: str  # review queue, partitioned by [run_date, chunk]
    runs_table: str  # one row per plan / completion of a scoring generation, partitioned by run_date
    registered_model: str | None = None  # default: the dataset's model.registered_name
    alias: str = "champion"
    chunk_rows: int = Field(1_000_000, gt=0)  # rows per checkpointed chunk (by hash of the id)
    decisions: dict[Literal["positive", "negative", "review"], str] = {
        "positive": "decline", "negative": "approve", "review": "review"}
    review: ReviewSpec = ReviewSpec()
    reason_codes: ReasonCodeSpec = ReasonCodeSpec()
    fallback: FallbackSpec = FallbackSpec()

    @model_validator(mode="after")
    def _check(self) -> "ScoringSpec":
        missing = {"positive", "negative", "review"} - set(self.decisions)
        if missing:
            raise ValueError(f"decisions needs labels for {sorted(missing)}")
        names = [r.name for r in self.fallback.rules]
        if len(set(names)) != len(names):
            raise ValueError("fallback rule names must be unique")
        return self
