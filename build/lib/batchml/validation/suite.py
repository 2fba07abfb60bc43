"""Declared checks -> a Great Expectations suite, and the same rules as SQL row conditions.

GX gives the verdicts, counts and example values; the SQL conditions split failing rows off
(GX cannot split a batch). Both come from one ``TableValidation`` so they cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import logging

import great_expectations as gx
import great_expectations.expectations as gxe

from batchml.config import ColumnContract
from batchml.validation.spec import RowCheck, TableValidation

# GX pins this logger to INFO on import ("Created temporary directory ..." per context): keep task logs readable
logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

SPARK_TYPES = {"string": "StringType", "int32": "IntegerType", "int64": "LongType", "float64": "DoubleType",
               "bool": "BooleanType", "date": "DateType", "timestamp": "TimestampType"}


def build_suite(name: str, spec: TableValidation, contract: list[ColumnContract], table_columns: list[str],
                run_date: dt.date) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name=name)
    expected = [c.name for c in contract]
    extras = [c for c in table_columns if c not in expected]  # lineage columns added by ingest
    suite.add_expectation(gxe.ExpectTableColumnsToMatchSet(
        column_set=expected + extras, exact_match=not spec.allow_extra_columns,
        meta={"check": "schema_columns", "kind": "schema", "severity": "error"}))
    for col in contract:
        suite.add_expectation(gxe.ExpectColumnValuesToBeOfType(
            column=col.name, type_=SPARK_TYPES[col.type],
            meta={"check": f"schema_type:{col.name}", "kind": "schema", "severity": "error", "column": col.name}))
    for check in spec.row_checks:
        suite.add_expectation(_row_expectation(check))
    if spec.row_count:
        rc = spec.row_count
        suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(
            min_value=rc.min, max_value=rc.max,
            meta={"check": "row_count", "kind": "row_count", "severity": rc.severity}))
    if spec.freshness:
        f = spec.freshness
        newest_allowed_lag = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time()) \
            - dt.timedelta(hours=f.max_lag_hours)
        suite.add_expectation(gxe.ExpectColumnMaxToBeBetween(
            column=f.column, min_value=newest_allowed_lag,
            meta={"check": f"freshness:{f.column}", "kind": "freshness", "severity": f.severity, "column": f.column}))
    return suite


def _row_expectation(check: RowCheck):
    meta = {"check": check.name, "kind": f"row:{check.kind}", "severity": check.severity, "column": check.column}
    if check.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=check.column, meta=meta)
    if check.kind == "between":
        return gxe.ExpectColumnValuesToBeBetween(column=check.column, min_value=check.min, max_value=check.max,
                                                 meta=meta)
    if check.kind == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=check.column, value_set=check.values, meta=meta)
    if check.kind == "regex":
        return gxe.ExpectColumnValuesToMatchRegex(column=check.column, regex=check.pattern, meta=meta)
    if check.kind == "unique":
        return gxe.ExpectColumnValuesToBeUnique(column=check.column, meta=meta)
    return gxe.UnexpectedRowsExpectation(
        unexpected_rows_query=f"SELECT * FROM {{batch}} WHERE {failing_condition(check)}",
        description=check.expression, meta=meta)


def failing_condition(check: RowCheck) -> str:
    """Spark SQL that is true for a row breaking ``check`` (nulls pass value rules, as in GX)."""
    col = f"`{check.column}`" if check.column else None
    if check.kind == "not_null":
        return f"{col} IS NULL"
    if check.kind == "between":
        parts = ([f"{col} < {check.min!r}"] if check.min is not None else []) + \
                ([f"{col} > {check.max!r}"] if check.max is not None else [])
        return "(" + " OR ".join(parts) + ")"
    if check.kind == "in_set":
        values = ", ".join("'" + v.replace("'", "\\'") + "'" for v in check.values)
        return f"({col} IS NOT NULL AND {col} NOT IN ({values}))"
    if check.kind == "regex":
        return f"({col} IS NOT NULL AND NOT {col} RLIKE '{check.pattern.replace(chr(39), chr(92) + chr(39))}')"
    if check.kind == "unique":
        return f"(`_dup_{check.name}` > 1)"  # count over a window, added by the gate
    return f"NOT coalesce(({check.expression}), false)"
