"""The DAG side as MWAA installs it (``make test-mwaa``): run in the environment built from
infra/mwaa/constraints.txt and ``batchml[airflow]``, not in the development venv.

Checks that the Airflow version is the pinned one, that the DagBag of the packaged DAG files loads with no
import errors, that neither Spark (the full pyspark with its JARs), XGBoost, Great Expectations nor MLflow was
installed, and that the DAG side's lake functions (record an override, read the gate's verdict, the scoring
fallback and a retraining request) work on a real Delta lake with the core dependencies alone.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pyarrow as pa


def pinned(constraints: Path, name: str) -> str:
    return next(line.split("==", 1)[1].strip() for line in constraints.read_text().splitlines()
                if line.startswith(f"{name}=="))


def check_versions(constraints: Path) -> None:
    assert md.version("apache-airflow") == pinned(constraints, "apache-airflow"), md.version("apache-airflow")
    for provider in ("apache-airflow-providers-amazon", "apache-airflow-providers-apache-spark"):
        assert md.version(provider) == pinned(constraints, provider), (provider, md.version(provider))
    for heavy in ("xgboost", "great_expectations", "mlflow"):
        assert importlib.util.find_spec(heavy) is None, f"{heavy} was installed on the DAG side"
    try:
        md.distribution("pyspark")
        raise AssertionError("the full pyspark (with its JARs) was installed on the DAG side")
    except md.PackageNotFoundError:
        pass  # only the Spark Connect client comes with the Spark provider


def check_dagbag() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from batchml.resources import folder

    bag = DagBag(str(folder("dags")))
    assert bag.import_errors == {}, bag.import_errors
    assert set(bag.dag_ids) == {"batchml_nightly", "batchml_training"}, bag.dag_ids


def check_lake_functions(home: Path) -> None:
    from batchml.config import load_config
    from batchml.orchestration import lake_state
    from batchml.storage import Lake
    from batchml.validation.overrides import RESULTS

    config = load_config("local", environ={"BATCHML_HOME": str(home)})
    day = dt.date(2024, 1, 1)
    row = {"run_date": day, "dataset": "card_transactions", "table": "bronze.card_transactions",
           "check": "row_count", "status": "failed"}
    Lake(config).write_arrow(pa.Table.from_pylist([row]), RESULTS)
    assert lake_state.blocked_checks(config, "card_transactions", day) == ["bronze.card_transactions: row_count"]
    args = (config, "card_transactions", day, "bronze.card_transactions", ["row_count"], "ana",
            "a short holiday day, confirmed with the source team")
    assert lake_state.record_overrides(*args) == ["row_count"]
    assert lake_state.record_overrides(*args) == []  # once per content
    assert lake_state.scoring_fallback(config, "card_transactions", day) is None
    assert lake_state.pending_retraining(config, "card_transactions", day) is None


def main() -> int:
    constraints = Path(sys.argv[1])
    check_versions(constraints)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-"))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    check_dagbag()
    with tempfile.TemporaryDirectory() as home:
        check_lake_functions(Path(home))
    print(f"DAG side OK on Python {sys.version.split()[0]}: apache-airflow {md.version('apache-airflow')}, "
          f"amazon {md.version('apache-airflow-providers-amazon')}, "
          f"apache-spark {md.version('apache-airflow-providers-apache-spark')}; no pyspark, xgboost, GX or MLflow")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
