"""Shared helpers of the orchestration tests: an isolated batchml + Airflow home, demo data, table snapshots."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from batchml.orchestration import local

DATES = [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]  # two days: a run that reads the day before, and CI time
ROWS_PER_DAY = 1200  # above the gate's row_count minimum (1000); Spark's fixed costs dominate anyway
# Wall-clock audit columns: they record when a job ran, never which rows it produced.
AUDIT_COLUMNS = {"scored_at", "ingested_at", "recorded_at", "validated_at", "created_at", "started_at",
                 "finished_at", "computed_at", "updated_at", "at", "seconds", "duration_s"}
COMPARED_TABLES = ["silver.card_transactions", "silver.card_chargebacks", "features.card_transactions",
                   "scores.card_transactions"]


def airflow_env(root: Path, spark_remote: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of every Airflow process of one test: its own BATCHML_HOME and AIRFLOW_HOME.

    ``spark_remote``: the tasks' jobs attach to that Spark Connect server (see ``spark_server``).
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BATCHML_"))}
    env = local.environment(root, base={**base, "BATCHML_ENV": "test", "BATCHML_TASK_RETRIES": "0"},
                            spark_remote=spark_remote)
    env.update(extra)
    return env


def demo_data(env: dict[str, str], start: dt.date, days: int, rows: int = ROWS_PER_DAY, *args: str) -> None:
    batchml = str(Path(sys.executable).parent / "batchml")
    subprocess.run([batchml, "demo-data", "--start", str(start), "--days", str(days), "--rows-per-day", str(rows),
                    "--seed", "11", *args], env=env, check=True, capture_output=True)


def snapshot(root: Path, tables: list[str] = COMPARED_TABLES) -> dict[str, list[tuple]]:
    """Each table's rows (sorted, audit columns dropped, paths relative to ``root``), read straight from Delta."""
    from deltalake import DeltaTable

    out = {}
    for name in tables:
        path = root / "lake" / Path(*name.split("."))
        if not (path / "_delta_log").is_dir():
            out[name] = None
            continue
        frame = DeltaTable(str(path)).to_pandas()
        frame = frame[sorted(c for c in frame.columns if c not in AUDIT_COLUMNS)]
        # lineage columns hold landing-zone paths: compare them relative to the home
        out[name] = sorted(tuple(repr(v).replace(str(root), "<home>") for v in row)
                           for row in frame.itertuples(index=False))
    return out


def lake_path(root: Path, table: str) -> Path:
    return root / "lake" / Path(*table.split("."))
