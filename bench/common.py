"""Shared benchmark plumbing: an isolated lake, honest timing, and the results file convention.

Every benchmark (``bench/README``-style rules, issue 23):

* records the 1-minute load average before and after;
* refuses to run when the load before is above ``MAX_LOAD`` unless ``--force``, which marks the
  result ``"noisy": true`` (a busy machine slows the floor and batchml by different factors);
* reports the median of at least 3 timed runs, with the floor and batchml interleaved;
* records the git commit it measured.

    args = parse(parser)               # adds --force, --repeat, --results
    run = Run(args)                    # checks the load
    times = run.interleaved({"floor": f, "batchml": b})
    run.write("name", ratio=median(times["batchml"]) / median(times["floor"]), goal=..., ...)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"
MAX_LOAD = 1.0  # 1-minute load average above which a measurement is noise on 2 cores
MIN_RUNS = 3


@contextmanager
def timed(into: dict, key: str):
    start = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - start, 3)


def with_driver_memory(config, memory: str):
    """``config`` with another driver heap (local mode: the driver holds the executors too)."""
    return config.model_copy(update={"spark": config.spark.model_copy(update={"driver_memory": memory})})


def bench_config(env: str = "local"):
    """The real config, with all state in a throwaway folder."""
    from batchml.config import load_config

    home = tempfile.mkdtemp(prefix="batchml-bench-")
    return load_config(env, environ={"BATCHML_HOME": home}), Path(home)


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser``'s arguments plus the honesty options every benchmark takes."""
    parser.add_argument("--force", action="store_true",
                        help=f"run even when the 1-minute load average is above {MAX_LOAD}; the result is marked noisy")
    parser.add_argument("--repeat", type=int, default=MIN_RUNS, help=f"timed runs of each side (at least {MIN_RUNS})")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder for <name>.json (default bench/results; use another for trial runs)")
    args = parser.parse_args(argv)
    if args.repeat < MIN_RUNS:
        parser.error(f"--repeat must be at least {MIN_RUNS} (the result is a median)")
    return args


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def git_commit() -> str:
    """The commit measured, with ``-dirty`` when the work tree differs from it."""
    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
                           cwd=repo, capture_output=True, text=True, check=True).stdout.strip()  # results are not code
    return head.stdout.strip() + ("-dirty" if dirty else "")


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


class Run:
    """One benchmark run: the load check at the start, interleaved timing, the result file."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.load_before = load_average()
        self.noisy = self.load_before > MAX_LOAD
        if self.noisy and not args.force:
            raise SystemExit(f"1-minute load average {self.load_before} > {MAX_LOAD}: the machine is busy and the "
                             "timings would be noise. Run again when it is quiet, or pass --force (the result is "
                             "then marked noisy and must not be committed).")

    def interleaved(self, sides: dict[str, Callable[[], object]], repeat: int | None = None,
                    setup: dict[str, Callable[[], object]] | None = None) -> dict[str, list[float]]:
        """Seconds of ``repeat`` runs of each side, one side after the other in every round, so a
        change of load hits both sides alike. ``setup[side]`` runs untimed before each of its runs."""
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(repeat or self.args.repeat):
            for name, fn in sides.items():
                if setup and name in setup:
                    setup[name]()
                start = time.perf_counter()
                fn()
                times[name].append(round(time.perf_counter() - start, 3))
        return times

    def write(self, name: str, **fields) -> Path:
        return write_result(name, _run=self, **fields)


def write_result(name: str, _run: Run | None = None, **fields) -> Path:
    """<results>/<name>.json: bench, ratio (batchml / floor), goal, higher_is_better, rows, floor, the
    commit, the load average before and after, whether the machine was too busy (noisy) and the
    repeat count; every benchmark goes through ``Run.write``."""
    if _run is None:
        raise ValueError(f"benchmark {name}: write results through Run.write (load, commit and repeat are recorded)")
    for key in ("ratio", "goal", "higher_is_better", "rows", "floor"):
        if key not in fields:
            raise ValueError(f"benchmark result {name} lacks {key!r}")
    after = load_average()
    fields = {"bench": name, **fields, "repeat": _run.args.repeat, "commit": git_commit(),
              "load_average": {"before": _run.load_before, "after": after},
              "noisy": _run.noisy,  # the load after includes the benchmark's own work
              "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}"}
    folder = Path(_run.args.results)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(fields, indent=2, default=str) + "\n")
    print(json.dumps(fields, indent=2, default=str))
    return path
