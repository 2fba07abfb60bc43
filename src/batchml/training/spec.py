"""Typed model declarations: the ``model:`` section of a dataset config.

Kept free of ``batchml.config`` imports (that module imports this one).
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Param(_Strict):
    """One searched hyperparameter: a list of choices, or a [low, high] range (log-uniform if log)."""

    choices: list[int | float | str] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> "Param":
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give either choices or low and high")
        if self.low is not None and self.high is not None and not self.low <= self.high:
            raise ValueError(f"low {self.low} must not exceed high {self.high}")
        if self.log and (self.low or 0) <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Splits(_Strict):
    """Time-ordered windows over the mature event dates (newest last); no random split anywhere."""

    test_days: int = Field(3, ge=1)        # the most recent window: reported metrics and promotion
    validation_days: int = Field(3, ge=1)  # before test: threshold choice and the final model's check
    cv_folds: int = Field(3, ge=1)         # rolling-origin folds over train + validation for the search
    cv_fold_days: int = Field(2, ge=1)     # each fold validates on this many days after its origin
    min_train_days: int = Field(3, ge=1)   # the earliest fold still trains on at least this many days


class Search(_Strict):
    trials: int = Field(8, ge=1)
    time_budget_s: float = Field(900, gt=0)  # no new trial starts after this (the first always runs)
    seed: int = 7
    space: dict[str, Param] = {}


class Costs(_Strict):
    """The cost matrix that picks the decision threshold (on the validation window)."""

    false_negative: float = Field(50.0, gt=0)  # a positive event the model let through
    false_positive: float = Field(1.0, gt=0)   # a negative event the model flagged
    beta: float = Field(2.0, gt=0)             # the reported F-beta (F1 is always reported too)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data):
        """``missed_fraud`` / ``false_alarm`` (before 2026-12) still load, with a deprecation warning."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in _RENAMED_COSTS.items():
            if old in data:
                if new in data:
                    raise ValueError(f"costs: give {new} only ({old} is its deprecated name)")
                warnings.warn(f"model.costs.{old} is deprecated; call it {new}", DeprecationWarning, stacklevel=2)
                logging.getLogger(__name__).warning("model.costs.%s is deprecated; call it %s", old, new)
                data[new] = data.pop(old)
        return data


_RENAMED_COSTS = {"missed_fraud": "false_negative", "false_alarm": "false_positive"}


class Estimator(_Strict):
    """What the model learns. ``binary`` (XGBoost ``binary:logistic``; see ``fit.estimator``) is the only
    objective so far; ``regression`` (``reg:squarederror``) is the planned next one, and with it the label
    contract's ``value`` expression becomes numeric while costs, threshold and review band stay binary-only."""

    objective: Literal["binary"] = "binary"


class Promotion(_Strict):
    metric: Literal["pr_auc", "roc_auc"] = "pr_auc"
    margin: float = Field(0.0, ge=0)            # challenger must beat the champion by at least this
    slice_tolerance: float = Field(0.05, ge=0)  # no slice may drop more than this below the champion
    min_slice_positives: int = Field(5, ge=1)   # smaller slices are reported but never block


class ModelSpec(_Strict):
    registered_name: str                     # MLflow registered model name (scoring loads @champion of it)
    training_table: str                      # Delta table, partitioned by cutoff_date
    audit_table: str = "ops.model_audit"     # promotion decisions and alias changes, partitioned by run_date
    estimator: Estimator = Estimator()
    label_maturity_days: int = Field(14, ge=0)  # an event counts once this many days passed by the cut-off
    history_days: int = Field(90, ge=1)      # mature event days in a training set
    exclude_columns: list[str] = []          # feature-table columns that are not model inputs (any other
                                             # non-numeric column fails training, naming it)
    categorical: list[str] = []              # string feature-table columns that are native XGBoost categoricals
    slices: list[str] = []                   # feature-table columns whose values get their own metrics
    num_workers: int = Field(2, ge=1)        # xgboost.spark workers (one barrier task each)
    params: dict[str, float | int | str] = {}  # fixed XGBoost parameters (n_estimators, max_bin, ...)
    splits: Splits = Splits()
    search: Search = Search()
    costs: Costs = Costs()
    promotion: Promotion = Promotion()
    # raw score -> probability, fit on the validation window and registered with the booster
    # (training/calibration.py). platt: undoes scale_pos_weight's log-odds shift, keeps the ranking exactly.
    calibration: Literal["platt", "isotonic", "none"] = "platt"
    calibration_bins: int = Field(10, ge=2)  # equal-width bins of the reliability table and ECE
    baseline_sample_rows: int = Field(200_000, ge=1000)  # logistic baseline fits on at most this many rows
    seed: int = 7

    @model_validator(mode="after")
    def _categorical_is_an_input(self) -> "ModelSpec":
        both = sorted(set(self.categorical) & set(self.exclude_columns))
        if both:
            raise ValueError(f"{both}: a column is either categorical (an input) or in exclude_columns, not both")
        return self
