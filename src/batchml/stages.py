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

    outcomes = validate(config, run_date, dataset, spark)
    blocked = [f"{o.table}: {', '.join(o.blocking_checks())}" for o in outcomes if o.blocked]
    if blocked:
        print(f"validation BLOCKED for {run_date}: " + "; ".join(blocked)
              + " (see the report, or release with `batchml override`)", file=sys.stderr)
        return 1
    return 0


def _features(config: Config, run_date: dt.date, dataset: str | None, spark=None) -> int:
    from batchml.features.build import build_features

    build_features(config, run_date, dataset, spark)  # logs one summary line
    return 0


STAGES: dict[str, Callable[..., int]] = {"ingest": _ingest, "validate": _validate, "features": _features}


def run_stage(name: str, config: Config, run_date: dt.date, dataset: str | None = None, spark=None) -> int:
    if name not in STAGES:
        raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    from batchml.spark import check_java

    check_java()  # fail at the start, not halfway through a run
    log.info("stage %s starting for run date %s (env %s, home %s)", name, run_date, config.env, config.home)
    return STAGES[name](config, run_date, dataset, spark)
