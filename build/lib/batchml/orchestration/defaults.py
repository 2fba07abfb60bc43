"""Task defaults shared by the batchml DAGs: owner, retries with backoff, timeouts, failure alerts."""

from __future__ import annotations

import datetime as dt
import os

import pendulum

from batchml.orchestration.tasks import on_failure

START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")  # the earliest run date a backfill may ask for
TAGS = ["batchml"]


def default_args() -> dict:
    return {
        "owner": "batchml",
        "retries": int(os.environ.get("BATCHML_TASK_RETRIES", "2")),  # the tests and the demo use 0
        "retry_delay": dt.timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,  # 1, 2, 4 ... minutes
        "max_retry_delay": dt.timedelta(minutes=30),
        "execution_timeout": dt.timedelta(hours=1),
        "on_failure_callback": on_failure,
    }
