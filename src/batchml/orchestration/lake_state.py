"""What the Airflow side reads from and writes to the lake, and nothing more.

The DAG side (an MWAA worker, without Spark) touches the lake only through these functions, so its
storage permissions are exactly ``DAG_SIDE_ACCESS`` (the Terraform grants the MWAA role these prefixes).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported inside the functions: DAG files import this module and must parse fast
    from batchml.config import Config

# Prefixes below storage.lake_uri ("lake/") and storage.artifacts_uri ("artifacts/"), and what the DAG side
# does there: Delta tables are read with their _delta_log; the overrides table is also appended to. Alerts
# from task failures go to the sinks (log, a JSONL file under the worker's home, SNS, ...), not the lake.
DAG_SIDE_ACCESS = {
    "read": ["lake/ops/validation_results/", "lake/ops/validation_overrides/", "lake/ops/scoring_runs/",
             "artifacts/retraining/"],
    "write": ["lake/ops/validation_overrides/"],
}


def blocked_checks(config: Config, dataset: str, run_date: dt.date) -> list[str]:
    """Checks the gate's latest run for this date failed without release, as ``table: check``."""
    from batchml.storage import Lake
    from batchml.validation.overrides import failed_checks

    return failed_checks(Lake(config), run_date, dataset)


def released_checks(config: Config, dataset: str, run_date: dt.date) -> list[tuple[str, str, str]]:
    """``(table, check, by)`` the gate's latest run for this date let through on a recorded override."""
    from batchml.storage import Lake
    from batchml.validation.overrides import latest_attempts

    rows = latest_attempts(Lake(config), run_date, dataset)
    return sorted((r["table"], r["check"], r["override_by"]) for r in rows if r["status"] == "overridden")


def scoring_outcome(config: Config, dataset: str, run_date: dt.date) -> dict | None:
    """``{"rows", "fallback_rows", "reason"}`` of the date's latest scoring generation when it completed; None
    when it did not (never ran, or crashed)."""
    from batchml.storage import Lake

    scoring = config.dataset(dataset).scoring
    if scoring is None:
        return None
    lake = Lake(config)
    if not lake.exists(scoring.runs_table):
        return None
    rows = lake.read_arrow(scoring.runs_table, [("run_date", "=", run_date), ("dataset", "=", dataset)]).to_pylist()
    latest = max((r["generation"] for r in rows), default=None)
    completed = [r for r in rows if r["generation"] == latest and r["event"] == "completed"]
    if not completed:
        return None
    done = completed[0]
    return {"rows": done["rows"], "fallback_rows": done["fallback_rows"] or 0, "reason": done["fallback_reason"]}


def scoring_fallback(config: Config, dataset: str, run_date: dt.date) -> dict | None:
    """``{"rows", "total", "reason"}`` when the date's latest scoring generation completed with rows scored by the
    fallback rules; None when it did not complete (a crash) or scored every row with the model."""
    done = scoring_outcome(config, dataset, run_date)
    if not done or not done["fallback_rows"]:
        return None
    return {"rows": done["fallback_rows"], "total": done["rows"], "reason": done["reason"]}


def record_overrides(config: Config, dataset: str, run_date: dt.date, table: str, checks: list[str], by: str,
                     reason: str) -> list[str]:
    """Record the release of ``checks``; once per content, so a rerun or a cleared task adds nothing."""
    from batchml.storage import Lake
    from batchml.validation.overrides import record_override, recorded_overrides

    done = {(r["check"], r["by"], r["reason"]) for r in recorded_overrides(Lake(config), run_date, dataset, table)}
    recorded = []
    for check in checks:
        if (check, by, reason) not in done:
            record_override(config, run_date, table, check, by, reason, dataset)
            recorded.append(check)
    return recorded


def pending_retraining(config: Config, dataset: str, run_date: dt.date) -> dict | None:
    from batchml.monitoring.requests import pending_request

    return pending_request(config, dataset, run_date)
