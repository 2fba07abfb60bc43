"""A self-contained local Airflow for the demo and the tests: SQLite metadata DB under
``$BATCHML_HOME/airflow``, the repository's ``dags/``, ``spark_default`` on a local master.

``environment()`` is what every Airflow process (CLI, ``dag.test()`` runner, scheduler, API
server) gets; Spark jobs started by tasks inherit it, including batchml's ``BATCHML_*`` config.
``python -m batchml.orchestration.local <dag_id> DATE [DATE ...] [--conf JSON]`` runs
``dag.test()`` for each date in order, in one process, and exits 1 if a run did not succeed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
POOL_SLOTS = 1  # one Spark job at a time on a laptop; raise it on a cluster


def environment(batchml_home: Path | str, airflow_home: Path | str | None = None,
                spark_master: str = "local[2]", base: dict | None = None,
                spark_remote: str | None = None) -> dict[str, str]:
    """``spark_remote``: the ``sc://`` URL of a running ``batchml spark-server``; each task's
    spark-submit then attaches its job to that warm Spark instead of starting one of its own."""
    env = dict(os.environ if base is None else base)
    home = Path(batchml_home).resolve()
    venv_bin = str(Path(sys.executable).parent)
    env.update({
        "BATCHML_HOME": str(home),
        "AIRFLOW_HOME": str(Path(airflow_home or home / "airflow").resolve()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": spark_master}),
        # spark-submit and its Python driver must be this venv's
        "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "BATCHML_JOBS_URI": str(REPO / "jobs"),
        "PYTHONUNBUFFERED": "1",
    })
    if spark_remote:
        env["BATCHML_SPARK_REMOTE"] = spark_remote
    return env


def airflow_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    airflow = str(Path(sys.executable).parent / "airflow")
    return subprocess.run([airflow, *args], env=env, check=check, capture_output=True, text=True)


def prepare(env: dict[str, str]) -> None:
    """Create (or migrate) the metadata DB and the Spark pool; cheap when already done."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    try:
        airflow_cli(env, "db", "migrate")
        airflow_cli(env, "pools", "set", "batchml_spark", str(POOL_SLOTS), "batchml Spark jobs (one writer at a time)")
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"airflow {' '.join(exc.cmd[1:])} failed:\n{exc.stdout}\n{exc.stderr}") from None


def run_dates(env: dict[str, str], dag_id: str, dates: list[dt.date], conf: dict | None = None,
              log_file: Path | None = None) -> int:
    """``dag.test()`` for each date, oldest first, in a child process; returns its exit code."""
    cmd = [sys.executable, "-m", "batchml.orchestration.local", dag_id, *map(str, dates)]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    if log_file is None:
        return subprocess.run(cmd, env=env).returncode
    with open(log_file, "a", encoding="utf-8") as out:
        return subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def _test_dates(dag_id: str, dates: list[str], conf: dict | None) -> int:
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    if bag.import_errors:
        print(f"DAG import errors: {bag.import_errors}", file=sys.stderr)
        return 1
    dag = bag.dags[dag_id]
    failed = []
    for day in dates:
        # a manual run's data interval is the one that ENDS at its logical date: [day, day + 1)
        run = dag.test(logical_date=pendulum.parse(day, tz="UTC").add(days=1), run_conf=conf)
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        print(f"DAGRUN {dag_id} {day} {run.state} {json.dumps(states, sort_keys=True)}", flush=True)
        if run.state != "success":
            failed.append(day)
    return 1 if failed else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="run dag.test() for each date, in order")
    p.add_argument("dag_id")
    p.add_argument("dates", nargs="+")
    p.add_argument("--conf", type=json.loads)
    a = p.parse_args()
    sys.exit(_test_dates(a.dag_id, a.dates, a.conf))
