"""The Params a person fills in when triggering a batchml DAG from the UI, and their validation.

Airflow checks each Param against its JSON schema when the run is created (so the trigger
form shows a bad date or a short reason at once); ``resolve`` then checks what a schema cannot
(an override must name a table, a check, who and why together) and picks the run date: the
``run_date`` Param when given, else the start of the run's data interval. Nothing here reads
the wall clock, so a rerun, a clear or a backfill of a date always resolves to the same date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from airflow.sdk import Param

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
NAME_PATTERN = r"^[A-Za-z0-9_.]+$"
MIN_REASON = 10  # the same rule as `batchml override`


class ParamError(ValueError):
    """A trigger's params are inconsistent; the message names the param."""


def run_params() -> dict[str, Param]:
    """Run date and dataset: every batchml DAG has them."""
    return {
        "run_date": Param(None, type=["null", "string"], pattern=DATE_PATTERN, format="date",
                          title="Run date", description="The business date to process (YYYY-MM-DD). When set, it "
                          "wins: the Logical date above then only names the run. Empty: the day the run's data "
                          "interval starts, which for a scheduled run, a backfill or a manual trigger is the day "
                          "before its Logical date."),
        "dataset": Param(None, type=["null", "string"], pattern=NAME_PATTERN, title="Dataset",
                         description="Dataset config under conf/base/datasets/. Empty: default_dataset."),
    }


def nightly_params() -> dict[str, Param]:
    """Run params plus a validation override that releases failed gate checks for that one date."""
    return {
        **run_params(),
        "override_table": Param(None, type=["null", "string"], pattern=NAME_PATTERN, title="Override: table",
                                description="Validated table whose failed checks to release, "
                                "e.g. bronze.card_transactions. Leave empty for no override."),
        "override_checks": Param(None, type=["null", "array"], items={"type": "string", "minLength": 1},
                                 title="Override: checks", description="Check names as shown in the "
                                 "validation report, one per line, e.g. drift:amount. Leave empty for no override."),
        "override_by": Param(None, type=["null", "string"], minLength=1, title="Override: by",
                             description="Who releases the checks (recorded)."),
        "override_reason": Param(None, type=["null", "string"], minLength=MIN_REASON, title="Override: reason",
                                 description=f"Why (at least {MIN_REASON} characters; recorded and shown "
                                 "in the validation report)."),
    }


@dataclass(frozen=True)
class RunSpec:
    run_date: str  # ISO date: XCom and the jobs' --run-date take it as is
    dataset: str | None
    override_table: str | None = None
    override_checks: list[str] = field(default_factory=list)
    override_by: str | None = None
    override_reason: str | None = None

    def to_xcom(self) -> dict:
        return asdict(self)


def resolve(params: dict, interval_start: dt.datetime | dt.date | None) -> RunSpec:
    """Validate the params of one run and decide its run date. Raises ParamError naming the param."""
    text = params.get("run_date")
    if text:
        try:
            run_date = dt.date.fromisoformat(text)
        except ValueError:
            raise ParamError(f"param run_date: not a date (YYYY-MM-DD): {text!r}") from None
    elif interval_start is not None:
        run_date = interval_start.date() if isinstance(interval_start, dt.datetime) else interval_start
    else:
        raise ParamError("param run_date is required when the run has no data interval (a manual run "
                         "without a logical date)")
    checks = [c.strip() for c in params.get("override_checks") or [] if c and c.strip()]
    override = {"override_table": params.get("override_table"), "override_by": params.get("override_by"),
                "override_reason": params.get("override_reason")}
    if checks or any(override.values()):
        missing = [k for k, v in override.items() if not (v and str(v).strip())]
        missing += [] if checks else ["override_checks"]
        if missing:
            raise ParamError(f"a validation override needs override_table, override_checks, override_by and "
                             f"override_reason together; missing: {', '.join(missing)}")
        if len(override["override_reason"].strip()) < MIN_REASON:
            raise ParamError(f"param override_reason: give a reason of at least {MIN_REASON} characters")
    return RunSpec(run_date=run_date.isoformat(), dataset=params.get("dataset") or None,
                   override_checks=checks, **{k: (v.strip() if v else None) for k, v in override.items()})
