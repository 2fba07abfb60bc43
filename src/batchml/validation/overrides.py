"""Recorded releases of failed gate checks, and the gate's results table: what the DAG side touches.

Kept free of Spark, GX and pandas so the Airflow side (MWAA) can record an override from the trigger
params and read which checks blocked a run date (``batchml.orchestration.lake_state``).
"""

from __future__ import annotations

import datetime as dt
import logging

import pyarrow as pa

from batchml.config import Config
from batchml.storage import Lake

log = logging.getLogger(__name__)
RESULTS = "ops.validation_results"
OVERRIDES = "ops.validation_overrides"
OVERRIDE_SCHEMA = pa.schema([("run_date", pa.date32()), ("dataset", pa.string()), ("table", pa.string()),
                             ("check", pa.string()), ("by", pa.string()), ("reason", pa.string())])


def record_override(config: Config, run_date: dt.date, table: str, check: str, by: str, reason: str,
                    dataset: str | None = None) -> None:
    """Release one failed check of one table for exactly one run date."""
    if not by.strip() or len(reason.strip()) < 10:
        raise ValueError("an override needs who (--by) and a written reason of at least 10 characters (--reason)")
    name = dataset or config.default_dataset
    if table not in config.dataset(name).validation:
        raise ValueError(f"table {table!r} is not validated by dataset {name!r}")
    row = {"run_date": run_date, "dataset": name, "table": table, "check": check, "by": by, "reason": reason}
    Lake(config).write_arrow(pa.Table.from_pylist([row], OVERRIDE_SCHEMA), OVERRIDES,
                             metadata={"job": "override", "runDate": run_date})
    log.warning("override recorded: %s %s check %s released for %s by %s: %s", name, table, check, run_date, by, reason)


def recorded_overrides(lake: Lake, run_date: dt.date, dataset: str, table: str | None = None) -> list[dict]:
    """The overrides recorded for ``run_date`` (one table's, or all)."""
    if not lake.exists(OVERRIDES):
        return []
    where = [("run_date", "=", run_date), ("dataset", "=", dataset)] + ([("table", "=", table)] if table else [])
    return lake.read_arrow(OVERRIDES, where).to_pylist()


def failed_checks(lake: Lake, run_date: dt.date, dataset: str) -> list[str]:
    """Checks the gate's latest run for this date failed without release, as ``table: check``."""
    if not lake.exists(RESULTS):
        return []
    rows = lake.read_arrow(RESULTS, [("run_date", "=", run_date), ("dataset", "=", dataset)]).to_pylist()
    return sorted(f"{r['table']}: {r['check']}" for r in rows if r["status"] == "failed")
