"""Distributed XGBoost fits (``xgboost.spark``) and the bounded, seeded hyperparameter search.

Each fit trains on a date range of the prepared training set. The prepared frame is persisted
already repartitioned (not coalesced: barrier stages reject coalesced input) to ``num_workers``, so
a fit filters its window from the cache with no shuffle, and xgboost.spark sees the right partition
count and adds none. Scores of held-out windows are computed on the driver with the booster
(``inplace_predict``), far faster than ``SparkXGBClassifierModel.transform``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np

from batchml.training.metrics import ranking
from batchml.training.spec import ModelSpec, Param
from batchml.training.splits import Range, SplitPlan

log = logging.getLogger(__name__)

LABEL = "label"
DATE = "event_date"


@dataclass
class Prepared:
    """The training set as the fits see it: model inputs as doubles (categoricals as their codes), label,
    date, slice columns."""

    frame: object  # a persisted Spark DataFrame with ``num_workers`` partitions (``partitioned``)
    features: list[str]
    day_counts: dict  # event date -> (rows, positives), from one aggregation job
    categories: dict[str, list[str]] = field(default_factory=dict)  # categorical input -> categories in code order

    def counts(self, r: Range) -> tuple[int, int]:
        rows = pos = 0
        for day, (n, p) in self.day_counts.items():
            if r.start <= day <= r.end:
                rows, pos = rows + n, pos + p
        return rows, pos

    def collect(self, r: Range, extra: list[str] = ()):
        """Rows of ``r`` on the driver as pandas (features, label, extra columns)."""
        cols = list(dict.fromkeys([*self.features, LABEL, *extra]))
        return self.frame.where(r.column_filter(DATE)).select(*cols).toArrow().to_pandas()


def slice_column(name: str) -> str:
    """A slice's raw values in the prepared frame (a slice may also be an input, there as doubles or codes)."""
    return f"__slice_{name}"


def sample_params(space: dict[str, Param], rng: random.Random) -> dict:
    out = {}
    for name in sorted(space):  # sorted: the draw order, hence the trials, depend only on the seed
        p = space[name]
        if p.choices is not None:
            out[name] = rng.choice(p.choices)
            continue
        if p.log:
            value = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
        else:
            value = rng.uniform(p.low, p.high)
        out[name] = int(round(value)) if p.integer else round(value, 6)
    return out


def fit(prep: Prepared, r: Range, spec: ModelSpec, params: dict):
    """Train on date range ``r``; returns the xgboost Booster."""
    rows, pos = prep.counts(r)
    if pos == 0 or pos == rows:
        raise ValueError(f"training window {r} has {pos} positive(s) out of {rows} rows; it needs both classes")
    merged = {"n_estimators": 100, "tree_method": "hist", **spec.params, **params}
    merged.setdefault("scale_pos_weight", (rows - pos) / pos)  # class imbalance, from counts already known
    if prep.categories:  # native categoricals: xgboost.spark takes them as feature_types 'c' (no enable_categorical)
        from batchml.categories import feature_types

        merged["feature_types"] = feature_types(prep.features, prep.categories)
    # verbose=False: no "[i] training-logloss" line per boosting round in the workers' output
    est = estimator(spec.estimator.objective, features_col=prep.features, label_col=LABEL,
                    num_workers=spec.num_workers, random_state=spec.seed, verbose=False, **merged)
    train = prep.frame.where(r.column_filter(DATE)).select(*prep.features, LABEL)  # no shuffle: see partitioned
    started = time.perf_counter()
    model = est.fit(train)
    log.info("fit on %s (%d rows, %d positive) in %.1fs: %s", r, rows, pos, time.perf_counter() - started, params)
    return model.get_booster()


def partitioned(frame, spec: ModelSpec):
    """``frame`` with exactly ``num_workers`` partitions, as the fits' barrier stage takes it.

    Done once, before the frame is persisted: each fit then reads its window from the cache as is.
    (Repartitioning per fit shuffled the window every time, and twice when a job before the
    barrier stage also ran over the shuffled input.)
    """
    return frame.repartition(spec.num_workers)


# xgboost's own name of each model.estimator.objective (binary so far; regression next)
OBJECTIVES = {"binary": "binary:logistic"}


def estimator(kind: str, /, **params):
    """The ``xgboost.spark`` estimator of a ``model.estimator.objective`` (``kind``).

    ``binary`` is ``SparkXGBRegressor`` with ``objective="binary:logistic"``: the same booster,
    byte for byte, as ``SparkXGBClassifier``, which runs one more Spark job per fit (a
    ``countDistinct`` over the whole input, to choose binary or multi-class: known here, and both
    classes are checked present from the day counts before the fit).
    """
    from xgboost.spark import SparkXGBRegressor

    objective = OBJECTIVES[kind]
    if params.get("objective", objective) != objective:
        raise ValueError(f"model.params.objective {params['objective']!r} contradicts model.estimator.objective "
                         f"{kind!r} ({objective}); drop it from model.params")
    return SparkXGBRegressor(**{**params, "objective": objective})


def predict(booster, frame, features: list[str]) -> np.ndarray:
    return booster.inplace_predict(frame[features].to_numpy(dtype=np.float32, na_value=np.nan))


@dataclass
class Trial:
    number: int
    params: dict
    fold_scores: list[float]
    seconds: float

    @property
    def score(self) -> float:
        scores = [s for s in self.fold_scores if not math.isnan(s)]
        return float(np.mean(scores)) if scores else math.nan


def search(prep: Prepared, plan: SplitPlan, spec: ModelSpec) -> list[Trial]:
    """Seeded random search; every trial is scored by mean PR-AUC over the rolling-origin folds.

    Bounded twice: at most ``search.trials`` trials, and no new trial after ``time_budget_s``.
    """
    rng = random.Random(spec.search.seed)
    held_out = {fold.validation: prep.collect(fold.validation) for fold in plan.folds}
    trials: list[Trial] = []
    started = time.perf_counter()
    for number in range(spec.search.trials):
        params = sample_params(spec.search.space, rng)
        if trials and time.perf_counter() - started > spec.search.time_budget_s:
            log.warning("search: time budget of %.0fs spent after %d trial(s); stopping",
                        spec.search.time_budget_s, len(trials))
            break
        t0 = time.perf_counter()
        scores = []
        for fold in plan.folds:
            booster = fit(prep, fold.train, spec, params)
            frame = held_out[fold.validation]
            scores.append(ranking(frame[LABEL].to_numpy(), predict(booster, frame, prep.features))["pr_auc"])
        trials.append(Trial(number, params, scores, time.perf_counter() - t0))
        log.info("search trial %d/%d: mean fold PR-AUC %.4f %s", number + 1, spec.search.trials,
                 trials[-1].score, params)
    return trials


def best(trials: list[Trial]) -> Trial:
    scored = [t for t in trials if not math.isnan(t.score)]
    if not scored:
        raise ValueError("no search trial produced a score (folds without positives?); widen the history or folds")
    return max(scored, key=lambda t: (t.score, -t.number))  # ties: the earlier trial
