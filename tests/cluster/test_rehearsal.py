"""The cluster rehearsal: batchml from its packaged release on a real multi-process Spark cluster.

Processes share nothing but the network and object storage:
- a Spark standalone master and two workers (separate JVMs, one core each) from a Spark installation
  outside the development venv (tests/cluster/standalone.py);
- a loopback S3 endpoint (moto's server) holding the landing zone, the lake and the release that
  ``make package`` built, uploaded the way ``make deploy`` lays it out;
- for each stage of a demo day, ``spark-submit --master spark://...`` from a working directory that holds
  only the environment archive, unpacked (as an EMR driver container's): the executors get the same archive
  through ``spark.archives``, and the config is read from the release on S3 (``BATCHML_CONF_DIR=s3://``).
The scored table, the features table and the manifest must equal a local run of the same day, and
a worker killed mid-stage must be survived. MLflow is the driver's: a registry both runs read.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import boto3
import botocore.exceptions
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from batchml.config import load_config
from batchml.demo import DemoOptions, generate
from batchml.stages import run_stage
from batchml.storage import Lake
from tests.cluster.standalone import StandaloneCluster, install_spark
from tests.servers import free_port
from tests.conftest import REPO
from tests.scoring import helpers as models

pytestmark = pytest.mark.cluster
DAYS = [dt.date(2024, 1, 1)]  # one day: each spark-submit costs ~1 min here (JVMs, the archive unpacked)
STAGES = ("ingest", "validate", "features", "score")
ROWS_PER_DAY = 1500
SEED = 11
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
COMMIT = "rehearsal"
# Columns a run stamps with its own wall clock or its own paths: everything else must be equal.
CLOCK_COLUMNS = {"scored_at", "recorded_at"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket="code")
            break
        except botocore.exceptions.EndpointConnectionError:  # the server is still starting
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.3)
    client.create_bucket(Bucket="lake")
    yield {"endpoint": endpoint, "client": client}
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def release(tmp_path_factory, s3) -> dict:
    """``make package`` for this machine's CPython 3.11, uploaded under s3://code/releases/<commit>/."""
    dist = tmp_path_factory.mktemp("dist") / "dist"
    target_python = str(Path(sys.base_prefix) / "bin" / "python3.11")
    subprocess.run(["make", "--no-print-directory", "package", f"DIST={dist}", f"TARGET_PYTHON={target_python}"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    manifest = json.loads((dist / "manifest.json").read_text())
    prefix = f"releases/{COMMIT}"
    for entry in manifest["files"]:
        s3["client"].upload_file(str(dist / entry["path"]), "code", f"{prefix}/{entry['path']}")
    overlay = {"storage": {"landing_uri": "s3://lake/landing", "lake_uri": "s3://lake/lake",
                           "artifacts_uri": "s3://lake/artifacts",
                           "s3": {"endpoint_url": s3["endpoint"], "allow_http": True, "region": "us-east-1"}},
               "spark": {"master": None, "driver_memory": "1g", "shuffle_partitions": 2,
                         "java_options": "-XX:CompileThresholdScaling=12"}}
    s3["client"].put_object(Bucket="code", Key=f"{prefix}/conf/rehearsal/batchml.yaml", Body=json.dumps(overlay))
    archive = s3["client"].generate_presigned_url(
        "get_object", Params={"Bucket": "code", "Key": f"{prefix}/environment.tar.gz"}, ExpiresIn=7200)
    return {"dist": dist, "manifest": manifest, "conf": f"s3://code/{prefix}/conf", "archive": archive}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    running = StandaloneCluster(install_spark(root / "spark"), root / "cluster").start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """A champion registered in an MLflow store that both runs' drivers read."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = load_config("test", REPO / "conf", {"BATCHML_HOME": str(root), "BATCHML_MLFLOW_TRACKING_URI": uri})
    models.register(config, models.train(seed=SEED), threshold=0.2)
    return uri


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, registry, spark) -> dict:
    """The same days, in this process on local disk: what the cluster must reproduce."""
    home = tmp_path_factory.mktemp("local")
    config = load_config("test", REPO / "conf", {"BATCHML_HOME": str(home), "BATCHML_MLFLOW_TRACKING_URI": registry})
    generate(config.storage.landing_uri, DemoOptions(start=DAYS[0], days=len(DAYS), rows_per_day=ROWS_PER_DAY,
                                                     seed=SEED))
    started = time.monotonic()
    for day in DAYS:
        for stage in STAGES:
            assert run_stage(stage, config, day, spark=spark) == 0, (stage, day)
    return {"lake": Lake(config, spark), "seconds": time.monotonic() - started}


class Driver:
    """The driver's host: a working directory holding only the release's environment, unpacked."""

    def __init__(self, root: Path, release: dict, cluster: StandaloneCluster, s3: dict, registry: str):
        self.root, self.release, self.cluster = root, release, cluster
        # The working directory holds only the unpacked environment, as an EMR driver container's does:
        # the driver JVM runs Python data source code with the same ./environment/bin/python as executors.
        self.work = root / "work"
        self.python = self.work / "environment" / "bin" / "python"
        with tarfile.open(release["dist"] / "environment.tar.gz") as tar:
            tar.extractall(self.work / "environment", filter="tar")
        self.jobs = root / "jobs"  # fetched from the release, as EMR fetches the entryPoint
        self.jobs.mkdir()
        for entry in release["manifest"]["files"]:
            if entry["path"].startswith("jobs/"):
                s3["client"].download_file("code", f"releases/{COMMIT}/{entry['path']}", str(root / entry["path"]))
        self.env = {"HOME": str(root), "PATH": "/usr/bin:/bin", "SPARK_HOME": str(cluster.spark_home),
                    "PYSPARK_DRIVER_PYTHON": str(self.python), "PYSPARK_PYTHON": "./environment/bin/python",
                    "BATCHML_CONF_DIR": release["conf"], "BATCHML_ENV": "rehearsal",
                    "BATCHML_HOME": str(root / "home"), "BATCHML_S3_ENDPOINT_URL": s3["endpoint"],
                    "BATCHML_MLFLOW_TRACKING_URI": registry, "SPARK_LOCAL_DIRS": str(root / "scratch"),
                    **CREDENTIALS, **({"JAVA_HOME": os.environ["JAVA_HOME"]} if "JAVA_HOME" in os.environ else {})}

    def submit(self, application: Path, *args: str, ui_port: int | None = None) -> subprocess.Popen:
        conf = {"spark.archives": f"{self.release['archive']}#environment", "spark.executor.memory": "1g",
                "spark.executor.cores": "1", "spark.cores.max": "2", "spark.ui.port": str(ui_port or free_port()),
                **{f"spark.executorEnv.{k}": v for k, v in CREDENTIALS.items()}}
        command = [str(self.cluster.spark_home / "bin" / "spark-submit"), "--master", self.cluster.url,
                   *[arg for k, v in conf.items() for arg in ("--conf", f"{k}={v}")], str(application), *args]
        log = open(self.root / "driver.log", "ab")
        log.write(f"\n$ {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(command, cwd=self.work, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def stage(self, stage: str, day: dt.date, **kwargs) -> subprocess.Popen:
        job = {"features": "build_features.py"}.get(stage, f"{stage}.py")
        return self.submit(self.jobs / job, "--run-date", str(day), "--dataset", "card_transactions", **kwargs)

    def run(self, stage: str, day: dt.date) -> None:
        code = self.stage(stage, day).wait(900)
        assert code == 0, f"{stage} {day} exited {code}:\n{self.tail()}"

    def tail(self, lines: int = 40) -> str:
        """The log's last lines, without Spark's JVM chatter (INFO/WARN lines and Java stack frames)."""
        text = (self.root / "driver.log").read_text().splitlines()
        python = [line for line in text if not line.lstrip().startswith("at ") and " INFO " not in line
                  and " WARN " not in line]
        return "\n".join(python[-lines:])


PROBE = '''
import json, os, sys
from pyspark.sql import SparkSession
import batchml, deltalake, pyarrow, xgboost

def where_am_i(_):
    import os, sys
    import batchml, deltalake, pyarrow, xgboost
    yield json.dumps({"executable": sys.executable, "path": sys.path, "cwd": os.getcwd(),
                      "pythonpath": os.environ.get("PYTHONPATH", ""),
                      "modules": [m.__file__ for m in (batchml, deltalake, pyarrow, xgboost)]})

spark = SparkSession.builder.getOrCreate()
seen = spark.sparkContext.parallelize(range(8), 8).mapPartitions(where_am_i).collect()
driver = {"executable": sys.executable, "path": sys.path, "cwd": os.getcwd(),
          "pythonpath": os.environ.get("PYTHONPATH", ""),
          "modules": [m.__file__ for m in (batchml, deltalake, pyarrow, xgboost)]}
print("PROBE " + json.dumps({"driver": driver, "executors": sorted(set(seen))}))
'''


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, release, cluster, s3, registry) -> dict:
    root = tmp_path_factory.mktemp("driver")
    fs = pafs.S3FileSystem(endpoint_override=s3["endpoint"].removeprefix("http://"), scheme="http",
                           access_key="test", secret_key="test", region="us-east-1")
    generate("lake/landing", DemoOptions(start=DAYS[0], days=len(DAYS), rows_per_day=ROWS_PER_DAY, seed=SEED),
             filesystem=fs)
    driver = Driver(root, release, cluster, s3, registry)
    probe = root / "probe" / "probe.py"
    probe.parent.mkdir()
    probe.write_text(PROBE)
    assert driver.submit(probe).wait(600) == 0, f"probe failed:\n{driver.tail()}"
    report = json.loads(next(line for line in (root / "driver.log").read_text().splitlines()
                             if line.startswith("PROBE "))[len("PROBE "):])
    started = time.monotonic()
    for stage in ("ingest", "validate"):
        driver.run(stage, DAYS[0])
    kill = kill_a_worker_mid_stage(driver, cluster, "features", DAYS[0])
    driver.run("score", DAYS[0])
    config = load_config("rehearsal", release["conf"], {**CREDENTIALS, "BATCHML_S3_ENDPOINT_URL": s3["endpoint"],
                                                        "BATCHML_HOME": str(root / "reader")})
    keys = config.storage.s3.model_copy(update={"access_key_id": "test", "secret_access_key": "test"})
    config = config.model_copy(update={"storage": config.storage.model_copy(update={"s3": keys})})
    seconds = time.monotonic() - started
    deadline = time.monotonic() + 60
    while cluster.app_folders() and time.monotonic() < deadline:
        time.sleep(1)
    return {"probe": report, "kill": kill, "lake": Lake(config), "seconds": seconds, "root": root,
            "work": sorted(p.name for p in driver.work.iterdir()), "app_folders_left": cluster.app_folders()}


def kill_a_worker_mid_stage(driver: Driver, cluster: StandaloneCluster, stage: str, day: dt.date) -> dict:
    """SIGKILL worker 2 while the stage's tasks run on it; re-run the stage if it failed; restart the worker."""
    ui_port = free_port()
    job = driver.stage(stage, day, ui_port=ui_port)
    running = wait_for_tasks_on_both_executors(ui_port, job)
    pids = cluster.kill_worker(2)
    code = job.wait(900)
    cluster.start_worker(2)
    cluster.wait(lambda s: sum(w["state"] == "ALIVE" for w in s["workers"]) >= 2, "worker 2 to rejoin")
    rerun = None
    if code != 0:  # failed cleanly: the operator's retry runs it again
        rerun = driver.stage(stage, day).wait(900)
    return {"running_when_killed": running, "pids": pids, "exit_code": code, "rerun_exit_code": rerun}


def wait_for_tasks_on_both_executors(ui_port: int, job: subprocess.Popen, timeout: float = 600) -> dict:
    """The driver's REST API: a moment when both executors are running tasks of the job's stage."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/v1/applications", timeout=5) as r:
                app = json.load(r)[0]["id"]
            with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/v1/applications/{app}/executors",
                                        timeout=5) as r:
                busy = [e for e in json.load(r) if e["id"] != "driver" and e["activeTasks"] > 0]
            if len(busy) >= 2:
                return {"app": app, "busy_executors": [e["id"] for e in busy]}
        except (OSError, KeyError, IndexError, json.JSONDecodeError):
            pass  # the driver's UI is not up yet, or between jobs
        time.sleep(0.2)
    raise AssertionError(f"the job never ran tasks on both executors (exit {job.poll()})")


def sorted_table(lake: Lake, name: str, keys: list[str], drop: set[str] = frozenset()) -> pa.Table:
    table = lake.read_arrow(name)
    return table.select([c for c in table.column_names if c not in drop | CLOCK_COLUMNS]).sort_by(
        [(k, "ascending") for k in keys])


def test_executors_and_driver_run_only_the_release(rehearsal):
    forbidden = (str(REPO), sys.prefix)  # the repository and the development venv
    for place in [rehearsal["probe"]["driver"], *map(json.loads, rehearsal["probe"]["executors"])]:
        paths = [place["executable"], place["cwd"], *place["path"], *place["pythonpath"].split(":"), *place["modules"]]
        leaks = [p for p in paths if p and p.startswith(forbidden)]
        assert not leaks, f"{place['executable']} reaches the repository or the dev venv: {leaks}"
        assert all("/environment/lib/python3.11/site-packages/" in m for m in place["modules"])
    assert rehearsal["work"] == ["environment"], "the jobs must not write into their working directory"
    # every finished application's unpacked environment is deleted by the workers (a rehearsal filled a disk)
    assert rehearsal["app_folders_left"] == []
    executors = {json.loads(e)["executable"] for e in rehearsal["probe"]["executors"]}
    assert len(executors) == 2 and all(e.endswith("/environment/bin/python") for e in executors)


def test_cluster_tables_equal_a_local_run(rehearsal, local_run):
    cluster, local = rehearsal["lake"], local_run["lake"]
    assert sorted_table(cluster, "features.card_transactions", ["transaction_id"]).equals(
        sorted_table(local, "features.card_transactions", ["transaction_id"]))
    scores = sorted_table(cluster, "scores.card_transactions", ["transaction_id"])
    assert scores.num_rows == cluster.read_arrow("features.card_transactions").num_rows
    assert scores.equals(sorted_table(local, "scores.card_transactions", ["transaction_id"]))
    paths = {"path"}  # s3://lake/landing/... against a local folder: the same files by name and hash
    manifest = sorted_table(cluster, "ops.ingest_manifest", ["sha256"], drop=paths)
    assert manifest.num_rows >= len(DAYS)  # one events file a day; no chargeback is due yet
    assert manifest.equals(sorted_table(local, "ops.ingest_manifest", ["sha256"], drop=paths))
    print(f"cluster rehearsal: {len(DAYS)} days x {len(STAGES)} stages in {rehearsal['seconds']:.0f} s "
          f"(one spark-submit each, a worker killed once); the same in this process: {local_run['seconds']:.0f} s")


def test_a_worker_killed_mid_stage_is_survived(rehearsal):
    kill = rehearsal["kill"]
    assert len(kill["running_when_killed"]["busy_executors"]) == 2 and len(kill["pids"]) >= 1
    # either Spark retried the lost tasks on the other worker, or the stage failed cleanly and its re-run
    # (the task's retry) completed; the equality test above checks the tables either way
    assert kill["exit_code"] == 0 or kill["rerun_exit_code"] == 0, kill
    outcome = "finished on the other worker" if kill["exit_code"] == 0 else "failed, and its re-run succeeded"
    print(f"worker killed mid-stage: the stage {outcome}")
