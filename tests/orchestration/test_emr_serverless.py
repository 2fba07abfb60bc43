"""Stage tasks on EMR Serverless: the Amazon provider's operator against a loopback EMR Serverless API.

The nightly DAG runs under ``dag.test()`` with ``orchestration.submit: emr-serverless``; its config, like a
deployed release's, is read from S3 (``BATCHML_CONF_DIR=s3://...``) on both sides. The API is moto's server,
and ``emr_emulator`` runs each job run it receives as EMR would (tests/orchestration/emr_emulator.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import yaml

from batchml.config import load_config
from batchml.orchestration import local
from batchml.orchestration.operators import emr_job_request
from batchml.orchestration.params import RunSpec
from tests.servers import free_port
from tests.conftest import REPO
from tests.orchestration.helpers import airflow_env, demo_data

DAY = dt.date(2024, 1, 1)
RELEASE = "s3://code/releases/test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def overlay(root: Path) -> dict:
    return {"spark": {"master": "local[2]"},
            "orchestration": {"submit": "emr-serverless", "emr_serverless": {
                "application_id": "APPID", "execution_role_arn": "arn:aws:iam::123456789012:role/batchml-emr-job",
                "release_uri": RELEASE, "log_uri": "s3://code/logs/emr/", "log_group": "/aws/emr-serverless/batchml",
                "region": "us-east-1", "poll_seconds": 1, "timeout_minutes": 10,
                "spark_conf": {"spark.executor.memory": "4g"}}}}


def test_the_request_carries_release_entrypoint_arguments_and_logging(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "emr").mkdir()
    for layer in ("base",):
        os.symlink(REPO / "conf" / layer, conf / layer)
    (conf / "emr" / "batchml.yaml").write_text(yaml.safe_dump(overlay(tmp_path)))
    config = load_config("emr", conf, {"BATCHML_HOME": str(tmp_path)})
    spec = RunSpec(run_date="2024-03-01", dataset="card_transactions")
    request = emr_job_request(config, "features", spec)
    submit = request["jobDriver"]["sparkSubmit"]
    assert request["applicationId"] == "APPID" and request["executionRoleArn"].endswith(":role/batchml-emr-job")
    assert submit["entryPoint"] == f"{RELEASE}/jobs/build_features.py"
    assert submit["entryPointArguments"] == ["--env", "emr", "--run-date", "2024-03-01", "--dataset",
                                             "card_transactions"]
    confs = dict(shlex.split(w)[0].split("=", 1) for w in submit["sparkSubmitParameters"].split("--conf ")[1:])
    assert confs["spark.archives"] == f"{RELEASE}/environment.tar.gz#environment"
    assert confs["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert confs["spark.executorEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert confs["spark.emr-serverless.driverEnv.BATCHML_CONF_DIR"] == f"{RELEASE}/conf"
    assert confs["spark.emr-serverless.driverEnv.BATCHML_ENV"] == "emr"
    assert confs["spark.executor.memory"] == "4g"
    log4j = request["configurationOverrides"]["applicationConfiguration"]
    assert [c["classification"] for c in log4j] == ["spark-driver-log4j2"]
    levels = log4j[0]["properties"]
    assert levels["rootLogger.level"] == "warn" and levels["logger.cachemanager.level"] == "error"
    assert not [k for k in levels if k.startswith("appender")]  # EMR's appenders stay
    monitoring = request["configurationOverrides"]["monitoringConfiguration"]
    assert monitoring["s3MonitoringConfiguration"]["logUri"] == "s3://code/logs/emr/"
    assert monitoring["cloudWatchLoggingConfiguration"]["logGroupName"] == "/aws/emr-serverless/batchml"
    assert request["name"] == "batchml-features-card_transactions-2024-03-01"


@pytest.fixture(scope="module")
def emr(tmp_path_factory, connect_server):
    """The emulator, a release on its S3 (jobs and conf: lake and landing on this machine's disk), an
    application, and an Airflow environment whose tasks submit to it."""
    root = tmp_path_factory.mktemp("emr")
    state = root / "emulator"
    state.mkdir()
    port = free_port()
    job_env = {**os.environ, **CREDENTIALS, "BATCHML_SPARK_REMOTE": connect_server, "BATCHML_HOME": str(root),
               "BATCHML_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    job_env = {k: v for k, v in job_env.items() if not k.startswith("AIRFLOW")}
    emulator = subprocess.Popen([sys.executable, "-m", "tests.orchestration.emr_emulator", str(port), str(state)],
                                cwd=REPO, env=job_env, stdout=open(root / "emulator.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (state / "ready").exists():
        assert emulator.poll() is None and time.monotonic() < deadline, (root / "emulator.log").read_text()
        time.sleep(0.2)
    endpoint = f"http://127.0.0.1:{port}"
    aws = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    s3 = aws.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="code")
    upload(s3, root)
    app = aws.client("emr-serverless", endpoint_url=endpoint).create_application(
        name="batchml", releaseLabel="emr-7.9.0", type="SPARK")  # moto knows only emr-X.Y.0 labels
    s3.put_object(Bucket="code", Key="releases/test/conf/emr/batchml.yaml", Body=yaml.safe_dump(
        {**overlay(root), "orchestration": {**overlay(root)["orchestration"], "emr_serverless": {
            **overlay(root)["orchestration"]["emr_serverless"], "application_id": app["applicationId"]}}}))
    connection = {"conn_type": "aws", "login": "test", "password": "test",
                  "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    env = airflow_env(root, BATCHML_ENV="emr", BATCHML_CONF_DIR=f"{RELEASE}/conf", BATCHML_S3_ENDPOINT_URL=endpoint,
                      AIRFLOW_CONN_AWS_DEFAULT=json.dumps(connection), **CREDENTIALS)
    local.prepare(env)
    yield {"root": root, "env": env, "state": state, "endpoint": endpoint}
    emulator.terminate()
    emulator.wait(10)


def upload(s3, root: Path) -> None:
    """The release's jobs/ and conf/ (the parts this test's jobs read), as `make deploy` lays them out."""
    for kind in ("jobs", "conf", "sql"):
        for path in sorted((REPO / kind).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                s3.upload_file(str(path), "code", f"releases/test/{kind}/{path.relative_to(REPO / kind)}")


def requests(emr) -> list[dict]:
    path = emr["state"] / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_day(emr, name: str, retries: int) -> local.RunLine:
    log = emr["root"] / f"{name}.log"
    env = {**emr["env"], "BATCHML_TASK_RETRIES": str(retries)}
    local.run_dates(env, "batchml_nightly", [DAY], log_file=log)
    lines = [line for line in local.run_lines(log) if line.kind == "run"]
    assert lines, log.read_text()[-3000:]
    return lines[-1]


def test_a_run_whose_gate_blocked_fails_without_retries(emr):
    demo_data(emr["env"], DAY, 1, 300)  # below the gate's row_count minimum of 1000
    run = run_day(emr, "blocked", retries=2)
    assert run.state == "failed"
    assert run.details["ingest"] == "success" and run.details["validate"] == "failed"
    assert run.details["build_features"] == "upstream_failed"
    validate = [r for r in requests(emr) if r["name"] == f"batchml-validate-card_transactions-{DAY}"]
    assert len(validate) == 1, "the blocked gate must not be retried"
    log = (emr["root"] / "blocked.log").read_text()
    assert "VALIDATION GATE BLOCKED card_transactions for run date 2024-01-01: bronze.card_transactions: row_count" \
        in log
    submit = validate[0]["jobDriver"]["sparkSubmit"]
    assert submit["entryPoint"] == f"{RELEASE}/jobs/validate.py"
    assert f"spark.archives={RELEASE}/environment.tar.gz#environment" in submit["sparkSubmitParameters"]


def test_a_failed_job_run_fails_the_task_with_its_state_detail(emr):
    (emr["state"] / "fail_next").write_text("ingest")
    run = run_day(emr, "failed", retries=0)
    assert run.state == "failed" and run.details["ingest"] == "failed"
    log = (emr["root"] / "failed.log").read_text()
    assert "Serverless Job failed" in log and "ExitCode: 137" in log and "executor OOM" in log
