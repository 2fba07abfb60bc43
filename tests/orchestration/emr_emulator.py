"""EMR Serverless on loopback: moto's server for the API, plus a runner that executes the job runs it receives.

    python -m tests.orchestration.emr_emulator PORT STATE_DIR

moto implements the API (applications, StartJobRun, GetJobRun) but completes every job run at once. Here a
new run starts SUBMITTED; a background thread then does what EMR would: it fetches the entryPoint from the
S3 endpoint, runs it with ``python`` and the arguments, with the driver environment the request carries
(``spark.emr-serverless.driverEnv.*``) on top of this process's, and sets the run SUCCESS or FAILED with an
EMR-style ``stateDetails``. Every request is written to ``STATE_DIR/requests.jsonl``. A file
``STATE_DIR/fail_next`` holding a stage name makes that stage's next run fail on the EMR side (as an
out-of-memory executor would), without running it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from moto.emrserverless import models
from moto.server import ThreadedMotoServer

DRIVER_ENV = "spark.emr-serverless.driverEnv."


def spark_confs(parameters: str) -> dict[str, str]:
    words = shlex.split(parameters)
    return dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "--conf")


def execute(run, endpoint: str, state: Path) -> tuple[str, str | None]:
    submit = run.job_driver["sparkSubmit"]
    stage = Path(submit["entryPoint"]).stem
    fail = state / "fail_next"
    if fail.exists() and fail.read_text().strip() == stage:
        fail.unlink()
        return "FAILED", "Job failed, please check complete logs in configured logging destination. ExitCode: 137. " \
                         "Last few exceptions: Container killed on request. Exit code is 137 (executor OOM)"
    bucket, key = submit["entryPoint"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    with tempfile.TemporaryDirectory() as work:
        entry = Path(work) / Path(key).name
        s3.download_file(bucket, key, str(entry))
        env = {**os.environ, **{k[len(DRIVER_ENV):]: v for k, v in spark_confs(submit["sparkSubmitParameters"]).items()
                                if k.startswith(DRIVER_ENV)}}
        env.pop("PYSPARK_DRIVER_PYTHON", None)  # the archive's interpreter is not unpacked here
        env.pop("PYSPARK_PYTHON", None)
        done = subprocess.run([sys.executable, str(entry), *submit["entryPointArguments"]], cwd=work, env=env,
                              capture_output=True, text=True)
    (state / f"{run.id}.log").write_text(done.stdout + done.stderr)
    if done.returncode == 0:
        return "SUCCESS", None
    last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["(no output)"]
    return "FAILED", (f"Job failed, please check complete logs in configured logging destination. "
                      f"ExitCode: {done.returncode}. Last few exceptions: {last[0][:300]}")


def runner(endpoint: str, state: Path) -> None:
    backend = models.emrserverless_backends["123456789012"]["us-east-1"]
    while True:
        for runs in list(backend.job_runs.values()):
            for run in runs:
                if run.state == "SUBMITTED":
                    run.state = "RUNNING"
                    with open(state / "requests.jsonl", "a") as out:
                        out.write(json.dumps({"name": run.name, "applicationId": run.application_id,
                                              "executionRoleArn": run.execution_role_arn,
                                              "jobDriver": run.job_driver,
                                              "configurationOverrides": run.configuration_overrides}) + "\n")
                    run.state, run.state_details = execute(run, endpoint, state)
        time.sleep(0.2)


def main(port: int, state: Path) -> None:
    models.JOB_STATUS = "SUBMITTED"  # EMR's first state; the runner takes it from there
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    threading.Thread(target=runner, args=(endpoint, state), daemon=True).start()
    (state / "ready").write_text(endpoint)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
