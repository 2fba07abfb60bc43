"""Retraining requests as files under ``{artifacts}/retraining/<dataset>/<run date>.json``.

Kept free of Spark and MLflow: the Airflow side reads them to emit the retraining Asset event.
"""

from __future__ import annotations

import datetime as dt
import json

from batchml.config import Config
from batchml.storage.artifacts import read_text
from batchml.storage.location import StorageOptions, join


def request_uri(config: Config, dataset: str, run_date: dt.date) -> str:
    return join(config.storage.artifacts_uri, "retraining", dataset, f"{run_date.isoformat()}.json")


def pending_request(config: Config, dataset: str, run_date: dt.date) -> dict | None:
    """The retraining request monitoring wrote for ``run_date``, or None (the trigger for the training DAG)."""
    uri = request_uri(config, dataset, run_date)
    storage = StorageOptions.from_config(config.storage.s3)
    fs, path = storage.filesystem(uri)
    if fs.get_file_info(path).type.name == "NotFound":
        return None
    return json.loads(read_text(storage, uri))
