"""The review band a model is trained with, and the decisions it is expected to produce (pure numpy).

The band is chosen by rank on the validation window (the window the threshold is chosen on): the
``share_below`` of its events just below the threshold and the ``share_above`` at or just above it.
What is recorded is the score interval ``[low, high)`` those events span, so scoring needs only the
model. The expected rates are measured on the test window, day by day, as scoring would decide:
the band's events nearest the threshold go to review up to the daily capacity, the rest of the band
keeps the model decision (overflow).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ReviewBand:
    low: float  # band is low <= score < high
    high: float
    below_share: float
    above_share: float

    def tag(self) -> str:
        return json.dumps({**asdict(self), "high": None if math.isinf(self.high) else self.high})

    @classmethod
    def from_tag(cls, text: str | None) -> "ReviewBand | None":
        """The band a model version records (``batchml.review_band``); None when it records none."""
        if not text:
            return None
        doc = json.loads(text)
        return cls(**{**doc, "high": math.inf if doc["high"] is None else doc["high"]})  # null: no upper edge


def band(scores: np.ndarray, threshold: float, share_below: float, share_above: float) -> ReviewBand:
    """The score interval holding the given shares of ``scores`` nearest the threshold on each side."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n, k = len(s), int(np.searchsorted(s, threshold, side="left"))  # k scores lie below the threshold
    below, above = math.ceil(share_below * n), math.ceil(share_above * n)
    low = threshold if not below else float(s[k - below]) if k >= below else 0.0
    high = threshold if not above else float(s[k + above]) if k + above < n else math.inf
    return ReviewBand(min(low, threshold), max(high, threshold), share_below, share_above)


def expected_decisions(scores: np.ndarray, days: np.ndarray, threshold: float, b: ReviewBand | None,
                       capacity: int) -> dict[str, float]:
    """Rates over all events of a window and mean band rows per day, deciding each day as scoring does."""
    scores = np.asarray(scores, dtype=np.float64)
    rows, positive, reviewed, in_band = len(scores), 0, 0, 0
    for day in np.unique(days):
        p = scores[days == day]
        band_rows = np.flatnonzero((p >= b.low) & (p < b.high)) if b else np.zeros(0, int)
        picked = band_rows[np.argsort(np.abs(p[band_rows] - threshold), kind="stable")[:capacity]]
        auto = np.ones(len(p), bool)
        auto[picked] = False
        positive += int(np.sum(auto & (p >= threshold)))
        reviewed, in_band = reviewed + len(picked), in_band + len(band_rows)
    n_days = max(len(np.unique(days)), 1)
    return {"positive_rate": positive / rows if rows else math.nan,
            "review_rate": reviewed / rows if rows else math.nan,
            "overflow_rate": (in_band - reviewed) / rows if rows else math.nan,
            "band_rate": in_band / rows if rows else math.nan,
            "rows_per_day": rows / n_days, "band_rows_per_day": in_band / n_days}


def capacity_warning(expected: dict[str, float], capacity: int, factor: float) -> str | None:
    """A warning when the band's expected rows per day exceed the review capacity by more than ``factor``."""
    if expected["band_rows_per_day"] <= capacity * factor:
        return None
    return (f"the review band holds about {expected['band_rows_per_day']:.0f} events a day on the test window, "
            f"more than {factor:g} x the daily capacity of {capacity}: about "
            f"{expected['overflow_rate']:.1%} of events would overflow (keep the model decision unreviewed); "
            "lower scoring.review.share_below / share_above or raise daily_capacity")
