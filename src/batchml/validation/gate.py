"""The validation gate: ``batchml run validate --run-date D``.

For each table the dataset validates, the run date's batch is read once and cached. Then:

1. the GX suite runs (schema, row rules, row count, freshness), and drift and label checks run
   against a trailing reference window of accepted data;
2. recorded overrides for this run date release the failed checks they name;
3. failing rows are quarantined with the rules they broke; if nothing blocks, the passing
   rows (all rows, under policy ``hold``) go to the accepted table, else the batch is held;
4. results are appended to ``ops.validation_results`` as the date's next attempt, and written as a
   JSON + HTML report per attempt (plus the latest, and an index of the dataset's days).

Re-running a date recomputes and overwrites that date's accepted rows and quarantine, so it is
idempotent; each run is kept as an attempt, so the history of a day (blocked, then released) stays.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

import pyarrow as pa

from batchml.config import Config, SourceConfig
from batchml.storage import Lake
from batchml.validation import distributions, labels, report
from batchml.validation.explain import describe
# record_override and the table names are re-exported: the gate's own API (CLI, tests)
from batchml.validation.overrides import OVERRIDES, RESULTS, record_override, recorded_overrides  # noqa: F401
from batchml.validation.overrides import next_attempt
from batchml.validation.spec import TableValidation
from batchml.validation.suite import build_suite, failing_condition

log = logging.getLogger(__name__)
QUARANTINE = "ops.quarantine"
EXAMPLES = 5

RESULT_SCHEMA = pa.schema([
    ("run_date", pa.date32()), ("dataset", pa.string()), ("table", pa.string()), ("table_version", pa.int64()),
    ("check", pa.string()), ("kind", pa.string()), ("column", pa.string()), ("severity", pa.string()),
    ("observed", pa.string()), ("threshold", pa.string()), ("passed", pa.bool_()), ("status", pa.string()),
    ("failing_rows", pa.int64()), ("examples", pa.string()), ("override_by", pa.string()),
    ("override_reason", pa.string()), ("attempt", pa.int32()), ("description", pa.string()),
    ("validated_at", pa.timestamp("us", "UTC")),
])


@dataclass
class CheckResult:
    check: str
    kind: str
    severity: str
    passed: bool
    observed: str = ""
    threshold: str = ""
    column: str | None = None
    failing_rows: int | None = None
    examples: list = field(default_factory=list)
    status: str = ""  # passed | failed | warned | quarantined | overridden | skipped
    override_by: str | None = None
    override_reason: str | None = None
    description: str = ""  # the rule in plain words (explain.describe)


@dataclass
class TableOutcome:
    table: str
    version: int | None
    rows: int
    accepted_rows: int
    quarantined_rows: int
    blocked: bool
    results: list[CheckResult]
    report_uri: str = ""
    attempt: int = 1  # the how-many-th gate run of this table and date

    def blocking_checks(self) -> list[str]:
        return [r.check for r in self.results if r.status == "failed"]


def validate(config: Config, run_date: dt.date, dataset: str | None = None, spark=None) -> list[TableOutcome]:
    name = dataset or config.default_dataset
    ds = config.dataset(name)
    lake = Lake(config, spark)
    contracts = {src.table: src for _, src in ds.feeds()}
    outcomes = []
    for table, spec in ds.validation.items():  # dataset order: events before labels
        if not lake.exists(table):
            log.info("validate %s %s: table does not exist yet (nothing delivered); nothing to validate", table,
                     run_date)
            continue
        outcome = _validate_table(lake, name, table, spec, contracts[table], run_date)
        outcomes.append(outcome)
        level = logging.ERROR if outcome.blocked else logging.INFO
        log.log(level, "validate %s %s: %s; %d row(s), %d accepted, %d quarantined; report %s", table, run_date,
                "BLOCKED by " + ", ".join(outcome.blocking_checks()) if outcome.blocked else "passed",
                outcome.rows, outcome.accepted_rows, outcome.quarantined_rows, outcome.report_uri)
    return outcomes


def _validate_table(lake: Lake, dataset: str, table: str, spec: TableValidation, contract: SourceConfig,
                    run_date: dt.date) -> TableOutcome:

    version = lake.version(table)
    batch = lake.read(table, where=[(spec.batch_column, "=", run_date)]).cache()
    try:
        rows = batch.count()
        results = _gx_results(batch, spec, contract, table, run_date)
        results += _drift_results(lake, table, spec, batch, run_date)
        if spec.labels:
            results += labels.check(lake, spec.labels, spec.accepted_table, spec.batch_column, batch, run_date)
        _apply_overrides(lake, dataset, table, run_date, results)
        for r in results:
            r.description = describe(r.check, r.kind, r.column, spec)
        failing = [c for c in spec.row_checks if any(r.check == c.name and r.status == "failed" for r in results)]
        marked = _mark_failures(batch, spec, failing)
        blocked = _decide(results, spec)
        quarantined = _write_row_outputs(lake, dataset, table, spec, marked, failing, run_date, blocked)
        accepted = 0 if blocked else rows - quarantined
    finally:
        batch.unpersist()
    outcome = TableOutcome(table, version, rows, accepted, quarantined, blocked, results,
                           attempt=next_attempt(lake, run_date, dataset, table))
    _write_results(lake, dataset, outcome, run_date)
    outcome.report_uri = report.write(lake, dataset, outcome, run_date, spec)
    return outcome


def _gx_results(batch, spec, contract, table, run_date) -> list[CheckResult]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep task logs readable
    asset = context.data_sources.add_spark("batchml").add_dataframe_asset(table)
    definition = asset.add_batch_definition_whole_dataframe("run")
    suite = context.suites.add(build_suite(f"{table}:{run_date}", spec, contract.columns, batch.columns, run_date))
    outcome = definition.get_batch(batch_parameters={"dataframe": batch}).validate(
        suite, result_format={"result_format": "BASIC", "partial_unexpected_count": EXAMPLES})
    sensitive = set(spec.sensitive_columns)
    results = []
    for r in outcome.results:
        meta = r.expectation_config.meta
        res = r.result or {}
        kwargs = {k: v for k, v in r.expectation_config.kwargs.items() if k not in ("column", "batch_id")}
        observed = res.get("observed_value")
        if observed is None and "unexpected_count" in res:
            observed = f"{res['unexpected_count']} failing row(s) ({res.get('unexpected_percent') or 0:.4f}%)"
        examples = [] if meta.get("column") in sensitive else list(res.get("partial_unexpected_list") or [])[:EXAMPLES]
        results.append(CheckResult(
            check=meta["check"], kind=meta["kind"], severity=meta["severity"], passed=bool(r.success),
            observed=_text(observed), threshold=_text(kwargs), column=meta.get("column"),
            failing_rows=res.get("unexpected_count"), examples=[_text(e) for e in examples]))
    return results


def _drift_results(lake: Lake, table: str, spec: TableValidation, batch, run_date) -> list[CheckResult]:
    d = spec.distributions
    if d is None:
        return []

    accepted = spec.accepted_table
    start = run_date - dt.timedelta(days=d.reference_days)
    window = [(spec.batch_column, ">=", start), (spec.batch_column, "<", run_date)]
    reference_rows = lake.count(accepted, window) if lake.exists(accepted) else 0
    threshold = (f"p < {d.p_value} and (PSI >= {d.min_psi} or Wasserstein >= {d.min_wasserstein_std} ref std); "
                 f"reference: accepted rows of the {d.reference_days} days before")
    columns = [*d.numeric, *d.categorical]
    if reference_rows < d.min_reference_rows:
        return [CheckResult(f"drift:{c}", "distribution", d.severity, True,
                            f"reference too small ({reference_rows} < {d.min_reference_rows} rows)", threshold, c,
                            status="skipped") for c in columns]
    reference = distributions.LakeSlice(lake, accepted, window)  # summarised in its read tasks
    results = []
    for drift in distributions.compare(reference, batch.select(*columns), d):
        observed = (f"{drift.test}={drift.statistic:.4g}, p={drift.p_value:.3g}, PSI={drift.psi:.4f}"
                    + (f", W={drift.wasserstein_std:.3f} std" if drift.wasserstein_std is not None else "")
                    + f" (ref {drift.reference_rows} rows)")
        results.append(CheckResult(f"drift:{drift.column}", "distribution", d.severity, not drift.drifted,
                                   observed, threshold, drift.column))
    return results


def _apply_overrides(lake: Lake, dataset: str, table: str, run_date: dt.date, results: list[CheckResult]) -> None:
    overrides = {r["check"]: r for r in recorded_overrides(lake, run_date, dataset, table)}
    for r in results:
        if r.status == "skipped":
            continue
        if r.passed:
            r.status = "passed"
        elif r.check in overrides:
            r.status, r.override_by, r.override_reason = ("overridden", overrides[r.check]["by"],
                                                          overrides[r.check]["reason"])
        elif r.severity == "warn":
            r.status = "warned"
        else:
            r.status = "failed"


def _decide(results: list[CheckResult], spec: TableValidation) -> bool:
    """Blocked? Failing row rules under policy ``partial`` only quarantine rows."""
    for r in results:
        if r.status == "failed" and r.kind.startswith("row:") and spec.policy == "partial":
            r.status = "quarantined"
    return any(r.status == "failed" for r in results)


def _mark_failures(batch, spec: TableValidation, failing: list):
    """Add ``_failed_checks`` (array of rule names) in one pass; unique checks need a window count."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = batch
    for check in failing:
        if check.kind == "unique":
            df = df.withColumn(f"_dup_{check.name}", F.count("*").over(Window.partitionBy(check.column)))
    names = [F.when(F.expr(failing_condition(c)), F.lit(c.name)) for c in failing]
    df = df.withColumn("_failed_checks", F.filter(F.array(*names), lambda x: x.isNotNull()) if names
                       else F.array().cast("array<string>"))
    return df.drop(*[f"_dup_{c.name}" for c in failing if c.kind == "unique"])


def _write_row_outputs(lake, dataset, table, spec, marked, failing, run_date, blocked) -> int:
    """Quarantine failing rows; send passing rows on unless the batch is held. Returns rows quarantined."""
    from pyspark.sql import functions as F

    data_columns = [c for c in marked.columns if c != "_failed_checks"]
    bad = marked.where(F.size("_failed_checks") > 0) if failing else marked.limit(0)
    quarantined = 0
    if failing:
        rejected = bad.select(
            F.lit(run_date).alias("run_date"), F.lit(dataset).alias("dataset"), F.lit("validation").alias("feed"),
            F.lit(table).alias("target_table"),
            (F.col("_source_file") if "_source_file" in data_columns else F.lit(None).cast("string")).alias("source_file"),
            (F.col("_source_sha256") if "_source_sha256" in data_columns else F.lit(None).cast("string"))
            .alias("source_sha256"),
            (F.col("_row_number") if "_row_number" in data_columns else F.lit(None).cast("long")).alias("row_number"),
            F.to_json(F.struct(*data_columns)).alias("raw_record"),
            F.concat(F.lit("validation: "), F.array_join("_failed_checks", "; ")).alias("reason"))
        result = lake.write(rejected, QUARANTINE, mode="overwrite",
                            replace_where=[("run_date", "=", run_date), ("feed", "=", "validation"),
                                           ("target_table", "=", table)],
                            metadata={"job": "validate", "runDate": run_date})
        quarantined = result.rows_written
    keep = marked if spec.policy == "hold" or not failing else marked.where(F.size("_failed_checks") == 0)
    keep = keep.select(*data_columns)
    if blocked:
        keep = keep.limit(0)  # held: the run date's accepted partition is emptied
    lake.write(keep, spec.accepted_table, mode="overwrite", replace_where=[(spec.batch_column, "=", run_date)],
               metadata={"job": "validate", "runDate": run_date, "held": blocked})
    return quarantined


def _write_results(lake: Lake, dataset: str, outcome: TableOutcome, run_date: dt.date) -> None:
    """Append this run as the date's next attempt (an attempt is written once: its transaction id)."""
    at = dt.datetime.now(dt.timezone.utc)  # audit only: when this attempt ran
    rows = [{"run_date": run_date, "dataset": dataset, "table": outcome.table, "table_version": outcome.version,
             "check": r.check, "kind": r.kind, "column": r.column, "severity": r.severity, "observed": r.observed,
             "threshold": r.threshold, "passed": r.passed, "status": r.status, "failing_rows": r.failing_rows,
             "examples": json.dumps(r.examples) if r.examples else None, "override_by": r.override_by,
             "override_reason": r.override_reason, "attempt": outcome.attempt, "description": r.description,
             "validated_at": at} for r in outcome.results]
    lake.write_arrow(pa.Table.from_pylist(rows, RESULT_SCHEMA), RESULTS,
                     txn=(f"validate/{dataset}/{outcome.table}/{run_date}", outcome.attempt),
                     metadata={"job": "validate", "runDate": run_date, "attempt": outcome.attempt})


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)
