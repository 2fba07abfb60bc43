"""Time-aware splits over event dates: train < validation < test, plus rolling-origin folds.

Everything is decided by calendar dates of the training set, never by random sampling, so
every model is validated and tested only on events later than everything it trained on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from batchml.training.spec import Splits

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Range:
    """Event dates ``start..end``, inclusive."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def column_filter(self, column: str):
        from pyspark.sql import functions as F

        return F.col(column).between(F.lit(self.start), F.lit(self.end))

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"


@dataclass(frozen=True)
class Fold:
    train: Range
    validation: Range


@dataclass(frozen=True)
class SplitPlan:
    train: Range
    validation: Range
    test: Range
    folds: tuple[Fold, ...]  # rolling origin over train + validation, oldest origin first


class NotEnoughHistory(ValueError):
    pass


def plan_splits(first: dt.date, last: dt.date, s: Splits) -> SplitPlan:
    """Split the event dates ``first..last`` (inclusive) of a training set."""
    total = (last - first).days + 1
    need = s.min_train_days + s.validation_days + s.test_days
    if total < need:
        raise NotEnoughHistory(
            f"training set spans {total} event day(s) ({first}..{last}); the splits need at least {need} "
            f"(min_train_days {s.min_train_days} + validation_days {s.validation_days} + test_days {s.test_days}); "
            "wait for more history or lower model.label_maturity_days / model.splits")
    test = Range(last - (s.test_days - 1) * DAY, last)
    validation = Range(test.start - s.validation_days * DAY, test.start - DAY)
    train = Range(first, validation.start - DAY)
    folds = []
    for i in reversed(range(s.cv_folds)):  # origins step back from the end of validation
        end = validation.end - i * s.cv_fold_days * DAY
        held = Range(end - (s.cv_fold_days - 1) * DAY, end)
        if (held.start - first).days >= s.min_train_days:
            folds.append(Fold(Range(first, held.start - DAY), held))
    return SplitPlan(train, validation, test, tuple(folds) or (Fold(train, validation),))
