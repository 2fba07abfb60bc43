"""A real Airflow (``airflow standalone``: API server, scheduler, DAG processor, triggerer) on loopback,
driven through its REST API (v2) with a JWT from the simple auth manager, as the UI does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests

from batchml.orchestration import ui
from batchml.orchestration.ui import USER
from tests.servers import free_port


class AirflowServer:
    """``airflow standalone`` with ``batchml ui``'s environment (``ui.environment``), on a free port."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = Path(env["AIRFLOW_HOME"])
        self.env = {**ui.environment(env["BATCHML_HOME"], self.port, env["BATCHML_ENV"], base=env,
                                     spark_remote=env.get("BATCHML_SPARK_REMOTE")),
                    # Only the runs the test creates: no run for "yesterday" when the DAG is unpaused.
                    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                    "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "10",
                    "AIRFLOW__CORE__PARALLELISM": "4"}
        self.password = ui.password(self.home)
        self.log = self.home / "standalone.log"
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()

    def start(self, timeout: float = 300) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).parent / "airflow")
        with open(self.log, "w") as out:  # its own process group: stop() ends every child
            self.proc = subprocess.Popen([airflow, "standalone"], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        ui.wait_healthy(self.url, self.proc, self.log, timeout)
        self.session.headers["Authorization"] = f"Bearer {self.token()}"

    def token(self) -> str:
        r = requests.post(f"{self.url}/auth/token", json={"username": USER, "password": self.password}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def stop(self) -> None:
        if self.proc:
            ui.stop(self.proc)

    def api(self, method: str, path: str, retry_for: float = 60, **kwargs):
        """One REST call; a 503 is retried for ``retry_for`` seconds (on SQLite, Airflow answers 503 "Database is
        locked" to a backfill created while the scheduler writes, and creates nothing)."""
        deadline = time.monotonic() + retry_for
        r = self.session.request(method, f"{self.url}/api/v2{path}", timeout=60, **kwargs)
        while r.status_code == 503 and time.monotonic() < deadline:
            time.sleep(2)
            r = self.session.request(method, f"{self.url}/api/v2{path}", timeout=60, **kwargs)
        if r.status_code >= 400:
            raise AssertionError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.session.get(f"{self.url}/api/v2/dags/{dag_id}", timeout=30)
            if r.status_code == 200:
                return r.json()
            time.sleep(3)
        raise TimeoutError(f"{dag_id} was not parsed in {timeout}s; see {self.log}")

    def wait_for_runs(self, dag_id: str, run_ids: list[str] | None = None, count: int | None = None,
                      timeout: float = 1500) -> list[dict]:
        """Poll until the given runs (or ``count`` runs) are all finished; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]
            if run_ids is not None:
                runs = [r for r in runs if r["dag_run_id"] in run_ids]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            if len(done) == (len(run_ids) if run_ids is not None else count) and len(done) == len(runs):
                return done
            time.sleep(5)
        raise TimeoutError(f"{dag_id} runs not finished in {timeout}s; see {self.log}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        body = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                        params={"full_content": "true"})
        content = body.get("content")
        if isinstance(content, list):
            return "\n".join(json.dumps(c) if not isinstance(c, str) else c for c in content)
        return str(content)
