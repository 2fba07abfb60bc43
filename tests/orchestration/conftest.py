"""One nightly history built through ``dag.test()`` and shared by the orchestration tests."""

from __future__ import annotations

import pytest

from batchml import spark_server
from batchml.config import load_config
from batchml.orchestration import local
from tests.orchestration.helpers import DATES, airflow_env, demo_data


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory):
    """A Spark Connect server for this test worker, on a free loopback port (``batchml spark-server``)."""
    config = load_config("test", environ={"BATCHML_HOME": str(tmp_path_factory.mktemp("spark-server"))})
    url = spark_server.start(config, port=0)
    yield url
    spark_server.stop(config)


@pytest.fixture(scope="session")
def nightly(tmp_path_factory, connect_server):
    """Two nightly DAG runs (2024-01-01..02) with dag.test(), one after the other, every task's
    spark-submit attached to the worker's Spark Connect server."""
    root = tmp_path_factory.mktemp("nightly")
    env = airflow_env(root, connect_server)
    local.prepare(env)
    demo_data(env, DATES[0], len(DATES))
    log = root / "dag_test.log"
    rc = local.run_dates(env, "batchml_nightly", DATES, log_file=log)
    print(f"dag.test log: {log}")
    return {"root": root, "env": env, "rc": rc, "log": log}
