"""One nightly history built through ``dag.test()`` and shared by the orchestration tests."""

from __future__ import annotations

import pytest

from batchml.orchestration import local
from tests.orchestration.helpers import DATES, airflow_env, demo_data


@pytest.fixture(scope="session")
def nightly(tmp_path_factory):
    """Three nightly DAG runs (2024-01-01..03) with dag.test(), one after the other."""
    root = tmp_path_factory.mktemp("nightly")
    env = airflow_env(root)
    local.prepare(env)
    demo_data(env, DATES[0], len(DATES))
    log = root / "dag_test.log"
    rc = local.run_dates(env, "batchml_nightly", DATES, log_file=log)
    print(f"dag.test log: {log}")
    return {"root": root, "env": env, "rc": rc, "log": log}
