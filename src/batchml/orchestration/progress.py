"""What ``make demo`` prints: one line per day with its stages, their times and a running k/N, the story lines and
the closing summary. Everything else (batchml's INFO lines, library and Spark output, subprocesses) goes to one
log file under the run's home, which the summary names.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
from pathlib import Path

from batchml.cli import quiet_noisy_loggers


def log_to_file(path: Path) -> Path:
    """Send this process's stderr, and with it logging, warnings, the Spark JVM and every child process's
    stderr, to ``path``; the console (stdout) keeps only what the demo prints."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stderr.flush()
    os.dup2(fd, 2)  # the JVM and Spark's Python workers inherit descriptor 2
    os.close(fd)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    quiet_noisy_loggers()
    return path


class DayLines:
    """One console line per day once its stages are done: ``[k/N] day  ingest 3s · validate 5s ... -> outcome``.

    Stages of one day may run on two threads (the demo overlaps a day's later stages with the next day's gate);
    days finish in date order, so k counts up.
    """

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self._stages: dict[dt.date, list[str]] = {}
        self._lock = threading.Lock()

    def stage(self, day: dt.date, stage: str, seconds: float, note: str = "") -> None:
        with self._lock:
            self._stages.setdefault(day, []).append(f"{stage} {seconds:.0f}s" + (f" ({note})" if note else ""))

    def finish(self, day: dt.date, outcome: str = "") -> None:
        with self._lock:
            self.done += 1
            stages = " · ".join(self._stages.pop(day, []))
            width = len(str(self.total))
            print(f"  [{self.done:>{width}}/{self.total}] {day}  {stages}" + (f"  -> {outcome}" if outcome else ""),
                  flush=True)
