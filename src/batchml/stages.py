"""The pipeline's stages by name: ``batchml run <stage> --run-date D`` and the jobs/ files use this."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from batchml.config import Config

log = logging.getLogger(__name__)


def _ingest(config: Config, run_date: dt.date, dataset: str | None, spark=None) -> int:
    from batchml.ingest.ingest import ingest

    ingest(config, run_date, dataset, spark)  # logs one summary line per feed
    return 0


def _validate(config: Config, run_date: dt.date, dataset: str | None, spark=None) -> int:
    """Exit code 1 (and one summary line) when a blocking check failed without an override."""
    import sys

    from batchml.validation.gate import validate
    from batchml.validation.overrides import blocked_message

    outcomes = validate(config, run_date, dataset, spark)
    blocked = [f"{o.table}: {check}" for o in outcomes if o.blocked for check in o.blocking_checks()]
    if blocked:
        print(blocked_message(config, dataset or config.default_dataset, run_date, blocked), file=sys.stderr)
        return 1
    return 0


def _features(config: Config, run_date: dt.date, dataset: str | None, spark=None,
              end: dt.date | None = None) -> int:
    from batchml.features.build import build_features

    build_features(config, run_date, dataset, spark, end=end)  # logs one summary line
    return 0


def _materialize(config: Config, run_date: dt.date, dataset: str | None, spark=None) -> int:
    from batchml.online.materialize import materialize

    materialize(config, run_date, dataset, spark)  # logs one summary line
    return 0


def _monitor(config: Config, run_date: dt.date, dataset: str | None, spark=None) -> int:
    """Exit 0 also when it alerts: an alert is a finding (and a retraining request), not a failure."""
    from batchml.monitoring.monitor import monitor

    monitor(config, run_date, dataset, spark)  # logs one summary line
    return 0


def _score(config: Config, run_date: dt.date, dataset: str | None, spark=None,
           rescore_reason: str | None = None, migrate: bool = False) -> int:
    """Exit ``scoring.fallback.exit_code`` (default 3) when any row was scored by the fallback rules."""
    import sys

    from batchml.scoring.score import score, scoring_spec

    summary = score(config, run_date, dataset, spark, rescore_reason=rescore_reason, migrate=migrate)  # logs it
    if summary.fallback_rows:
        print(summary.line(), file=sys.stderr)
        return scoring_spec(config, summary.dataset).fallback.exit_code
    return 0



def _training_set(config: Config, run_date: dt.date, dataset: str | None, spark=None) -> int:
    from batchml.training.dataset import build_training_set

    build_training_set(config, run_date, dataset, spark)  # logs one summary line
    return 0


def _train(config: Config, run_date: dt.date, dataset: str | None, spark=None) -> int:
    from batchml.training.train import train

    train(config, run_date, dataset, spark)  # builds the training set first when it is missing
    return 0


def _evaluate(config: Config, run_date: dt.date, dataset: str | None, spark=None) -> int:
    from batchml.registry.promotion import evaluate

    evaluate(config, run_date, dataset, spark)  # records the decision; promote applies it
    return 0


def _promote(config: Config, run_date: dt.date, dataset: str | None, spark=None) -> int:
    from batchml.registry.promotion import promote

    promote(config, run_date, dataset, spark)
    return 0


STAGES: dict[str, Callable[..., int]] = {
    "ingest": _ingest, "validate": _validate, "features": _features, "score": _score, "monitor": _monitor,
    "materialize": _materialize, "training-set": _training_set, "train": _train, "evaluate": _evaluate,
    "promote": _promote}
NIGHTLY_STAGES = ("ingest", "validate", "features", "score", "monitor", "materialize")  # as the DAG runs them
TRAINING_STAGES = ("training-set", "train", "evaluate", "promote")  # the training DAG's; nightly loops skip them


def run_stage(name: str, config: Config, run_date: dt.date, dataset: str | None = None, spark=None,
              **options) -> int:
    """``options`` are stage-specific keywords (e.g. ``rescore_reason`` for score), passed only when given."""
    if name not in STAGES:
        raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    from batchml.spark import check_java, without_remote

    check_java()  # fail at the start, not halfway through a run
    if name in TRAINING_STAGES and config.spark.remote:
        # xgboost.spark needs the classic API: training runs in its own JVM, not on a Connect server
        config = without_remote(config)
    log.info("stage %s starting for run date %s (env %s, home %s)", name, run_date, config.env, config.home)
    return STAGES[name](config, run_date, dataset, spark, **options)


def run_stage_range(name: str, config: Config, start: dt.date, end: dt.date, dataset: str | None = None,
                    spark=None, **options) -> int:
    """Run ``name`` for every run date of ``[start, end]`` in order (a backfill); each date exactly as its own
    run would be (idempotent: dates already done are skipped by the stage). ``features`` builds the range in
    one pass (tiles once, then each day). Stops at the first date whose exit code is not 0 and returns it."""
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    if name == "features":
        run_stage(name, config, start, dataset, spark, end=end, **options)
        return 0
    day = start
    while day <= end:
        code = run_stage(name, config, day, dataset, spark, **options)
        if code != 0:
            log.error("stage %s stopped the range %s..%s at %s with exit code %s", name, start, end, day, code)
            return code
        day += dt.timedelta(days=1)
    return 0
