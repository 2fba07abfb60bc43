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


def latest_attempts(lake: Lake, run_date: dt.date, dataset: str) -> list[dict]:
    """The result rows of each table's latest gate run (attempt) for this date."""
    if not lake.exists(RESULTS):
        return []
    return latest_of(lake.read_arrow(RESULTS, [("run_date", "=", run_date), ("dataset", "=", dataset)]).to_pylist())


def latest_of(rows: list[dict]) -> list[dict]:
    """The rows of each (run date, table)'s latest attempt."""
    latest: dict[tuple, int] = {}
    for r in rows:
        key = (r["run_date"], r["table"])
        latest[key] = max(latest.get(key, 0), _attempt(r))
    return [r for r in rows if _attempt(r) == latest[(r["run_date"], r["table"])]]


def _attempt(row: dict) -> int:
    return row.get("attempt") or 1  # rows written before attempts were kept hold none: the first


def next_attempt(lake: Lake, run_date: dt.date, dataset: str, table: str) -> int:
    rows = [r for r in latest_attempts(lake, run_date, dataset) if r["table"] == table]
    return _attempt(rows[0]) + 1 if rows else 1


def failed_checks(lake: Lake, run_date: dt.date, dataset: str) -> list[str]:
    """Checks the gate's latest run for this date failed without release, as ``table: check``."""
    return sorted(f"{r['table']}: {r['check']}" for r in latest_attempts(lake, run_date, dataset)
                  if r["status"] == "failed")


def report_relative(dataset: str, run_date: dt.date, table: str, attempt: int | None = None) -> str:
    """A gate report's path below ``storage.artifacts_uri`` (without extension); the latest when no attempt."""
    return f"reports/validation/{dataset}/{run_date.isoformat()}/{table}" + (f".attempt-{attempt}" if attempt else "")


def report_uri(config: Config, dataset: str, run_date: dt.date, table: str) -> str:
    from batchml.storage.location import join

    return join(config.storage.artifacts_uri, report_relative(dataset, run_date, table) + ".html")


YOU, WHY = "<your name>", "<why the change is real, 10+ characters>"


def release_commands(dataset: str, run_date: dt.date, table: str, checks: list[str]) -> list[str]:
    """The shell commands that release ``checks`` of ``table`` for exactly this run date, then re-run the gate."""
    lines = [f'batchml override --dataset {dataset} --run-date {run_date} --table {table} --check {c} '
             f'--by "{YOU}" --reason "{WHY}"' for c in checks]
    return lines + [f"batchml run validate --dataset {dataset} --run-date {run_date}"]


def release_params(dataset: str, run_date: dt.date, table: str, checks: list[str], by: str = YOU,
                   reason: str = WHY) -> dict:
    """The ``batchml_nightly`` trigger params that release ``checks`` of ``table`` for this run date."""
    return {"run_date": run_date.isoformat(), "dataset": dataset, "override_table": table,
            "override_checks": list(checks), "override_by": by, "override_reason": reason}


def blocked_by_table(blocked: list[str]) -> dict[str, list[str]]:
    """``["table: check", ...]`` grouped by table, in order."""
    out: dict[str, list[str]] = {}
    for item in blocked:
        table, check = item.split(": ", 1)
        out.setdefault(table, []).append(check)
    return out


def blocked_message(config: Config, dataset: str, run_date: dt.date, blocked: list[str]) -> str:
    """One line for a blocked gate: the failed checks, the report and the exact release commands."""
    tables = blocked_by_table(blocked)
    reports = " ".join(report_uri(config, dataset, run_date, t) for t in tables)
    commands = " && ".join(c for t, checks in tables.items() for c in release_commands(dataset, run_date, t, checks)
                           if c.startswith("batchml override"))
    return (f"validation BLOCKED {dataset} {run_date}: {'; '.join(blocked)}. Report: {reports}. If the change is real, "
            f"release it (recorded): {commands}, then re-run validate (or trigger batchml_nightly with the "
            "override_* params shown in the report)")
