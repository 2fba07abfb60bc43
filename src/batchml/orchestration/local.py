"""A self-contained local Airflow for the demo and the tests: SQLite metadata DB under
``$BATCHML_HOME/airflow``, the repository's ``dags/``, ``spark_default`` on a local master.

``environment()`` is what every Airflow process (CLI, ``dag.test()`` runner, scheduler, API
server) gets; Spark jobs started by tasks inherit it, including batchml's ``BATCHML_*`` config.
``python -m batchml.orchestration.local <dag_id> DATE [DATE ...] [--conf JSON]`` runs
``dag.test()`` for each date in order, in one process, prints a ``DAGRUN`` line per run (see
``RunLine``), and exits 1 if a run did not succeed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from batchml.resources import folder

DAGS = folder("dags")  # the DAG files and job entrypoints shipped with the package (src/batchml/resources)
JOBS = folder("jobs")
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
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": spark_master}),
        # spark-submit and its Python driver must be this venv's
        "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "BATCHML_JOBS_URI": str(JOBS),
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


@dataclass(frozen=True)
class RunLine:
    """One line the runner prints per ``dag.test()``: a finished run, or the release of a blocked one."""

    kind: str  # "run" | "release"
    dag_id: str
    day: str
    state: str = ""  # run: the DAG run's state
    seconds: float = 0.0  # run: wall time of the dag.test() call
    details: dict = field(default_factory=dict)  # run: task states; release: the override params
    note: str = ""  # run: the note set on the DAG run (run_note.outcome)

    def text(self) -> str:
        details = json.dumps(self.details, sort_keys=True)
        if self.kind == "run":
            return f"DAGRUN {self.dag_id} {self.day} {self.state} {self.seconds:.0f}s {details}\t{self.note}"
        return f"RELEASE {self.dag_id} {self.day} {details}"

    @classmethod
    def parse(cls, line: str) -> RunLine | None:
        if line.startswith("DAGRUN "):
            _, dag_id, day, state, seconds, rest = line.rstrip("\n").split(" ", 5)
            details, _, note = rest.partition("\t")
            return cls("run", dag_id, day, state, float(seconds.rstrip("s")), json.loads(details), note)
        if line.startswith("RELEASE "):
            _, dag_id, day, details = line.rstrip("\n").split(" ", 3)
            return cls("release", dag_id, day, details=json.loads(details))
        return None


def run_lines(log_file: Path) -> list[RunLine]:
    return [r for r in map(RunLine.parse, Path(log_file).read_text().splitlines()) if r is not None]


def run_dates(env: dict[str, str], dag_id: str, dates: list[dt.date], conf: dict | None = None,
              log_file: Path | None = None, release: tuple[str, str] | None = None,
              on_line: Callable[[RunLine], None] | None = None) -> int:
    """``dag.test()`` for each date, oldest first, in a child process; returns its exit code.

    ``release=(by, reason)``: a date the validation gate blocks runs once more in the same process,
    with override params for its failed checks (recorded), as an analyst would after reading the
    report. ``on_line`` sees each run and release as it happens; the child's output goes to ``log_file``.
    """
    cmd = [sys.executable, "-m", "batchml.orchestration.local", dag_id, *map(str, dates)]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    if release:
        cmd += ["--release-by", release[0], "--release-reason", release[1]]
    if log_file is None and on_line is None:
        return subprocess.run(cmd, env=env).returncode
    with open(log_file or os.devnull, "a", encoding="utf-8") as out, subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
        for line in child.stdout:
            out.write(line)
            parsed = RunLine.parse(line) if on_line else None
            if parsed:
                out.flush()
                on_line(parsed)
    return child.returncode


def _test_dates(dag_id: str, dates: list[str], conf: dict | None, release: tuple[str, str] | None) -> int:
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    from batchml.orchestration.tasks import release_params

    bag = DagBag(str(DAGS))
    if bag.import_errors:
        print(f"DAG import errors: {bag.import_errors}", file=sys.stderr)
        return 1
    dag = bag.dags[dag_id]

    def test(day: str, run_conf: dict | None) -> str:
        started = time.monotonic()
        # a manual run's data interval is the one that ENDS at its logical date: [day, day + 1)
        run = dag.test(logical_date=pendulum.parse(day, tz="UTC").add(days=1), run_conf=run_conf)
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        note = _note(run, day, (run_conf or {}).get("dataset"), states)
        print(RunLine("run", dag_id, day, str(run.state), time.monotonic() - started, states, note).text(), flush=True)
        return str(run.state)

    failed = []
    for day in dates:
        state = test(day, conf)
        if state != "success" and release:
            dataset = (conf or {}).get("dataset") or _default_dataset()
            params = release_params(dataset, day, *release)
            if params:
                params = {**(conf or {}), **params}
                print(RunLine("release", dag_id, day, details=params).text(), flush=True)
                state = test(day, params)
        if state != "success":
            failed.append(day)
    return 1 if failed else 0


def _default_dataset() -> str:
    from batchml.config import load_config

    return load_config().default_dataset


def _note(run, day: str, dataset: str | None, states: dict[str, str]) -> str:
    """Set the run's note from the lake (as its tasks would through the REST API, which dag.test() lacks)."""
    from batchml.config import load_config
    from batchml.orchestration import run_note

    config = load_config()
    crashed = [t for t, s in states.items() if s == "failed" and t != "fallback_used"]
    note = run_note.outcome(config, dataset or config.default_dataset, dt.date.fromisoformat(day),
                            crashed[0] if crashed else None)
    set_note(run, note)
    return note


def set_note(run, note: str) -> None:
    """Write a DAG run's note to the metadata DB (this runner is an Airflow process; tasks use the REST API)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        stored = session.get(DagRun, run.id)
        if stored.dag_run_note is None:
            stored.note = (note, None)
        else:
            stored.dag_run_note.content = note


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="run dag.test() for each date, in order")
    p.add_argument("dag_id")
    p.add_argument("dates", nargs="+")
    p.add_argument("--conf", type=json.loads)
    p.add_argument("--release-by", help="with --release-reason: rerun a date the gate blocked, with an override")
    p.add_argument("--release-reason")
    a = p.parse_args()
    sys.exit(_test_dates(a.dag_id, a.dates, a.conf, (a.release_by, a.release_reason) if a.release_by else None))
