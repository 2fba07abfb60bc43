"""Shared benchmark plumbing: an isolated lake, timing, and the results file convention."""

from __future__ import annotations

import json
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@contextmanager
def timed(into: dict, key: str):
    start = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - start, 3)


def bench_config(env: str = "local"):
    """The real config, with all state in a throwaway folder."""
    from batchml.config import load_config

    home = tempfile.mkdtemp(prefix="batchml-bench-")
    return load_config(env, environ={"BATCHML_HOME": home}), Path(home)


def write_result(name: str, **fields) -> Path:
    """bench/results/<name>.json: bench, ratio (batchml / floor), goal, higher_is_better, rows, floor, ..."""
    for key in ("ratio", "goal", "higher_is_better", "rows", "floor"):
        if key not in fields:
            raise ValueError(f"benchmark result {name} lacks {key!r}")
    fields = {"bench": name, **fields, "machine": f"{platform.machine()} {platform.python_version()}"}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(fields, indent=2, default=str) + "\n")
    print(json.dumps(fields, indent=2, default=str))
    return path
