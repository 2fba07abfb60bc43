"""``batchml spark-server``: a real Spark Connect server on loopback, and a job process attached to it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchml import spark_server
from batchml.config import load_config
from tests.conftest import REPO

pytestmark = pytest.mark.slow

# The Delta work of a job: write a partitioned table, write it again (a repeated transaction), read a day.
WORK = """
import datetime as dt, json, subprocess
import pyarrow as pa
from batchml.config import load_config
from batchml.spark import default_parallelism, is_connect
from batchml.storage import Lake


def work(spark):
    lake = Lake(load_config("test"), spark)
    df = spark.createDataFrame(pa.table({"id": list(range(500)), "d": ["2024-01-01"] * 250 + ["2024-01-02"] * 250}))
    lake.write(df.selectExpr("id", "CAST(d AS DATE) AS d"), "test.events", mode="overwrite",
               txn=("connect-test", 1))
    again = lake.write(df.selectExpr("id", "CAST(d AS DATE) AS d"), "test.events", mode="overwrite",
                       txn=("connect-test", 1))
    day2 = lake.read("test.events", where=[("d", "=", dt.date(2024, 1, 2))])
    return {"connect": is_connect(spark), "parallelism": default_parallelism(spark),
            "rows": lake.count("test.events"), "day2": day2.count(), "skipped": again.skipped,
            "tasks": lake.read_tasks("test.events"), "version": lake.version("test.events")}
"""
# Runs in its own process, as a spark-submit driver would: a Connect session switches pyspark's
# column functions to Connect for the whole process, which must not leak into the classic tests.
JOB = WORK + """
from batchml.spark import get_spark

print(json.dumps(work(get_spark(load_config("test")))))
"""


def _overlay(tmp_path: Path) -> Path:
    """The test config plus the table the work writes."""
    overlay = tmp_path / "conf"
    if not overlay.exists():
        shutil.copytree(REPO / "conf", overlay)
        base = overlay / "base" / "batchml.yaml"  # tables are declared in conf/base only
        base.write_text(base.read_text().replace("\ntables:\n", "\ntables:\n  test.events:\n    partition_by: [d]\n", 1))
    return overlay


def _attach_job(tmp_path: Path, url: str) -> dict:
    """Run JOB in its own process attached to ``url``; return what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHML_")}
    env.update({"BATCHML_HOME": str(tmp_path / "job"), "BATCHML_SPARK_REMOTE": url,
                "BATCHML_CONF_DIR": str(_overlay(tmp_path)), "MASTER": "local[2]"})  # spark-submit sets MASTER
    out = subprocess.run([sys.executable, "-c", JOB], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


EXPECTED = {"connect": True, "parallelism": 2, "rows": 500, "day2": 250, "skipped": True, "tasks": 1, "version": 0}


def test_a_job_attached_to_the_server_writes_and_reads_delta_tables(tmp_path):
    config = load_config("test", conf_dir=REPO / "conf", environ={"BATCHML_HOME": str(tmp_path / "server")})
    url = spark_server.start(config, port=0)
    try:
        assert spark_server.status(config) == url and url.startswith("sc://127.0.0.1:")
        assert spark_server.start(config, port=0) == url  # found running: no second JVM
        assert _attach_job(tmp_path, url) == EXPECTED
    finally:
        assert spark_server.stop(config) is True
    assert spark_server.status(config) is None
    assert spark_server.stop(config) is False


# A process with its own in-process session that also serves Connect (what `make demo` does): it
# does the job's work itself first, then serves until stdin closes, and reports its JVM's Python
# worker daemons (one per worker module and environment) before and after the attached job.
SERVING = WORK + """
import sys
from batchml import spark_server


def python_daemons(spark):
    jvm = spark.sparkContext._gateway.proc.pid  # spark-submit execs the JVM
    out = subprocess.run(["ps", "-ww", "-o", "args=", "--ppid", str(jvm)], capture_output=True, text=True).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if "pyspark.daemon" in line)


spark, url = spark_server.serving_session(load_config("test"))
work(spark)  # its own work goes on in the same session
before = python_daemons(spark)
print(url, flush=True)
sys.stdin.readline()
print(json.dumps({"before": before, "after": python_daemons(spark)}), flush=True)
spark.stop()
"""


def test_a_job_attaches_to_another_process_s_own_session(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHML_")}
    env.update({"BATCHML_HOME": str(tmp_path / "server"), "BATCHML_CONF_DIR": str(_overlay(tmp_path))})
    serving = subprocess.Popen([sys.executable, "-c", SERVING], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        url = serving.stdout.readline().strip()
        assert url.startswith("sc://127.0.0.1:"), f"no URL from the serving process (exit {serving.poll()})"
        assert _attach_job(tmp_path, url) == EXPECTED
        serving.stdin.write("done\n")
        serving.stdin.flush()
        daemons = json.loads(serving.stdout.readline())
    finally:
        serving.stdin.close()
        assert serving.wait(timeout=120) == 0
    assert not spark_server._listening(int(url.rsplit(":", 1)[1]))  # stopping the session ends the service
    # the attached job reused the session's warm Python workers: no second, cold set
    assert "pyspark.sql.worker.create_data_source" in daemons["before"]
    assert daemons["after"] == daemons["before"], daemons


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHML_")}
    env.update({"BATCHML_HOME": str(tmp_path), "BATCHML_SPARK_REMOTE": "sc://127.0.0.1:9",
                "BATCHML_CONF_DIR": str(REPO / "conf")})
    batchml = str(Path(sys.executable).parent / "batchml")
    subprocess.run([batchml, "--env", "test", "demo-data", "--days", "1", "--rows-per-day", "100"], env=env,
                   check=True, capture_output=True)
    out = subprocess.run([batchml, "--env", "test", "run", "ingest", "--run-date", "2024-01-01"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr  # one line, at once: no client retries
    assert "cannot reach the Spark Connect server at sc://127.0.0.1:9" in out.stderr
    assert "batchml spark-server start" in out.stderr
