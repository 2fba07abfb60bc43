"""The scores tables' layout, and the one-off migration from the layout before ``reason_codes`` was typed.

Until this release ``reason_codes`` was a JSON string (``[{"feature", "contribution"}]``, ``[{"rule"}]`` on
rows the fallback rules scored); it is now ``list<struct<feature: string, contribution: double>>``, null on
fallback rows (``fallback_rule`` names the rule). Appending the new layout to an old table would fail the
storage layer's schema check half-way, so scoring checks first and refuses with what to do; ``--migrate``
rewrites both tables once (a new Delta version: older versions keep the old layout for time travel).
"""

from __future__ import annotations

import json
import logging

import pyarrow as pa

from batchml.scoring.predict import REASON_CODES
from batchml.scoring.spec import ScoringSpec
from batchml.storage import Lake, SchemaMismatch

log = logging.getLogger(__name__)
COLUMN = "reason_codes"


def old_tables(lake: Lake, spec: ScoringSpec) -> list[str]:
    """The scores and review tables that still store ``reason_codes`` as a JSON string."""
    return [t for t in (spec.table, spec.review_table) if lake.exists(t) and _is_old(lake.schema(t))]


def _is_old(schema: pa.Schema) -> bool:
    return COLUMN in schema.names and (pa.types.is_string(schema.field(COLUMN).type)
                                       or pa.types.is_large_string(schema.field(COLUMN).type))


def check(lake: Lake, spec: ScoringSpec, migrate: bool, command: str) -> None:
    """Refuse to score into an old-layout table unless ``migrate``; with it, migrate first."""
    old = old_tables(lake, spec)
    if old and not migrate:
        raise SchemaMismatch(
            f"{', '.join(old)} store{'s' if len(old) == 1 else ''} reason_codes as a JSON string, the layout before "
            "list<struct<feature, contribution>>; nothing was scored. Convert once with `" + command + " --migrate` "
            "(see CHANGELOG.md, Migration), and tell the table's readers")
    for table in old:
        migrate_table(lake, table)


def migrate_table(lake: Lake, table: str) -> int:
    """Rewrite ``table`` with typed reason codes in one commit; returns its new version."""
    schema = lake.schema(table)
    target = schema.set(schema.get_field_index(COLUMN), pa.field(COLUMN, REASON_CODES))
    version = lake.rewrite(table, lambda batch: _converted(batch, target), target,
                           metadata={"job": "migrate", "change": "reason_codes: JSON string -> list<struct>"})
    log.warning("migrated %s to typed reason codes: version %s (earlier versions keep the JSON strings)", table,
                version)
    return version


def _converted(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    codes = [_codes(text) for text in batch.column(COLUMN).to_pylist()]
    columns = [pa.array(codes, REASON_CODES) if name == COLUMN else batch.column(name) for name in target.names]
    return pa.RecordBatch.from_arrays(columns, schema=target)


def _codes(text: str | None) -> list[dict] | None:
    """A stored JSON string as reason codes; the fallback rows' ``[{"rule": ...}]`` becomes null."""
    if text is None:
        return None
    items = json.loads(text)
    if any("feature" not in item for item in items):
        return None  # a fallback row: its rule is in fallback_rule
    return [{"feature": item["feature"], "contribution": float(item["contribution"])} for item in items]
