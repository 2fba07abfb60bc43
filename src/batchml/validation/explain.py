"""Each gate check in plain words, from the table's declared checks (what a report reader needs to know)."""

from __future__ import annotations

from batchml.validation.spec import RowCheck, TableValidation


def describe(check: str, kind: str, column: str | None, spec: TableValidation) -> str:
    """What the check requires of the batch, e.g. ``amount lies between 0.01 and 1,000,000``."""
    rows = {c.name: c for c in spec.row_checks}
    if check in rows:
        return _row_rule(rows[check])
    if check == "schema_columns":
        return ("the batch has exactly the contract's columns" if not spec.allow_extra_columns
                else "the batch has at least the contract's columns")
    if check.startswith("schema_type:"):
        return f"{column} has the contract's type"
    if check == "row_count" and spec.row_count:
        top = f"{spec.row_count.max:,}" if spec.row_count.max is not None else "any number of"
        return f"the batch holds between {spec.row_count.min:,} and {top} rows"
    if check.startswith("freshness:") and spec.freshness:
        return (f"the newest {spec.freshness.column} is at most {spec.freshness.max_lag_hours:g} h before the end "
                "of the run date")
    if kind == "distribution" and spec.distributions:
        d = spec.distributions
        return (f"{column} is distributed as in the accepted rows of the {d.reference_days} days before: it fails "
                f"only when the shift is significant (p < {d.p_value:g}) and material (PSI ≥ {d.min_psi:g}"
                + (f" or a Wasserstein distance ≥ {d.min_wasserstein_std:g} reference std" if column in d.numeric
                   else "") + ")")
    if check == "label_proportion" and spec.labels:
        return (f"labels per event are within {spec.labels.max_relative_deviation:.0%} of the rate of the "
                f"{spec.labels.reference_days} days before")
    if check == "label_delay" and spec.labels:
        return f"every label arrives 0 to {spec.labels.max_delay_days:g} days after its event"
    return check


def _row_rule(c: RowCheck) -> str:
    if c.kind == "not_null":
        return f"{c.column} is never empty"
    if c.kind == "between":
        if c.min is not None and c.max is not None:
            return f"{c.column} lies between {_num(c.min)} and {_num(c.max)}"
        return f"{c.column} is at least {_num(c.min)}" if c.min is not None else f"{c.column} is at most {_num(c.max)}"
    if c.kind == "in_set":
        return f"{c.column} is one of {', '.join(c.values or [])}"
    if c.kind == "regex":
        return f"{c.column} matches the pattern {c.pattern}"
    if c.kind == "unique":
        return f"no two rows share a {c.column}"
    return f"every row satisfies {c.expression}"


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,g}"
