"""Shared fixtures: one real Spark session per test run, a fresh lake per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchml.config import Config, TableConfig, load_config

REPO = Path(__file__).resolve().parents[1]
LONGEST_FIRST = ("tests/cluster/test_rehearsal.py", "tests/orchestration/test_multi_day.py",
                 "tests/orchestration/test_scheduler.py", "tests/contract/test_flight_delays.py")


def pytest_collection_modifyitems(items):
    """The longest files first, in that order, so the other xdist worker takes the rest meanwhile
    (`make test` keeps this order with --no-loadscope-reorder)."""
    def rank(item) -> int:
        return next((i for i, path in enumerate(LONGEST_FIRST) if item.nodeid.startswith(path)), len(LONGEST_FIRST))

    items.sort(key=rank)


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("batchml_home")
    os.environ["BATCHML_HOME"] = str(home)  # nothing in the tests touches the developer's state
    return home


@pytest.fixture(scope="session")
def base_config(session_home) -> Config:
    return load_config("test", conf_dir=REPO / "conf", environ={"BATCHML_HOME": str(session_home)})


def make_config(base: Config, root: Path, tables: dict[str, TableConfig] | None = None, **storage) -> Config:
    """The test config with its lake and landing zone under ``root``."""
    store = base.storage.model_copy(update={"landing_uri": str(root / "landing"), "lake_uri": str(root / "lake"),
                                            "artifacts_uri": str(root / "artifacts"), **storage})
    tracking = base.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
                                              "artifact_root": str(root / "mlflow" / "artifacts")})
    return base.model_copy(update={"storage": store, "mlflow": tracking,
                                   "tables": {**base.tables, **(tables or {})}})


@pytest.fixture
def config(base_config, tmp_path) -> Config:
    return make_config(base_config, tmp_path)


@pytest.fixture(scope="session")
def spark(base_config):
    from batchml.spark import get_spark

    session = get_spark(base_config)
    yield session
    session.stop()


@pytest.fixture
def lake_slice(base_config, tmp_path, spark):
    """``lake_slice(df)``: ``df`` written to a real lake table, as the validation gate's drift reference."""
    from batchml.storage import Lake
    from batchml.validation.distributions import LakeSlice

    lake = Lake(make_config(base_config, tmp_path, {"test.reference": TableConfig()}), spark)

    def write(df) -> LakeSlice:
        lake.write(df, "test.reference", mode="overwrite")
        return LakeSlice(lake, "test.reference", [])

    return write
