"""``batchml ui``: the Airflow UI and the MLflow UI on this machine's batchml state, ready to use.

Airflow runs as ``airflow standalone`` (API server and UI, scheduler, DAG processor, triggerer) with the same
environment as the demo's runs (``local.environment``): the metadata DB under ``$BATCHML_HOME/airflow``, the
packaged DAGs, ``spark_default`` on ``local[2]`` and the venv's ``spark-submit`` first on ``PATH``, so a run
triggered from the UI runs like the demo's. Login is the simple auth manager's user ``admin`` with a password
kept in ``$AIRFLOW_HOME/batchml_ui_passwords.json``; the ``airflow_api`` connection lets tasks set each run's
note (``run_note``). MLflow's UI serves ``mlflow.tracking_uri``. Ctrl-C stops both.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from batchml.orchestration import local

USER = "admin"
PASSWORDS = "batchml_ui_passwords.json"


def password(airflow_home: Path) -> str:
    """The UI password, made once per Airflow home and kept (the simple auth manager's passwords file)."""
    path = Path(airflow_home) / PASSWORDS
    if path.exists():
        return json.loads(path.read_text())[USER]
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(12)
    path.write_text(json.dumps({USER: secret}))
    path.chmod(0o600)
    return secret


def environment(batchml_home: Path | str, port: int, env_name: str, base: dict | None = None,
                spark_remote: str | None = None) -> dict[str, str]:
    """Every Airflow process's environment for a local UI on ``port`` (the scheduler tests use it too)."""
    env = local.environment(batchml_home, base=base, spark_remote=spark_remote)
    home = Path(env["AIRFLOW_HOME"])
    url = f"http://127.0.0.1:{port}"
    secret = password(home)
    env.update({
        "BATCHML_ENV": env_name,  # tasks read the same config as the state was made with
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        # one secret for the API server and the workers' execution API tokens, whichever process starts first
        "AIRFLOW__API_AUTH__JWT_SECRET": env.get("AIRFLOW__API_AUTH__JWT_SECRET") or secrets.token_urlsafe(24),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / PASSWORDS),
        "AIRFLOW_CONN_AIRFLOW_API": json.dumps({"conn_type": "http", "host": url, "login": USER, "password": secret}),
    })
    return env


def mlflow_command(config, port: int) -> list[str]:
    return [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", config.mlflow.tracking_uri,
            "--default-artifact-root", config.mlflow.artifact_root, "--host", "127.0.0.1", "--port", str(port)]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Until the scheduler reports healthy through the API server; fails when the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:  # noqa: S310
                if json.loads(response.read()).get("scheduler", {}).get("status") == "healthy":
                    return
        except (OSError, ValueError):  # not listening yet, or a half-started server
            pass
        time.sleep(2)
    raise TimeoutError(f"Airflow did not come up on {url} in {timeout:.0f}s; see {log}")


def serve(config, port: int = 8080, mlflow_port: int = 5000) -> int:
    """Start both UIs, print where they are and how to log in, and run until Ctrl-C."""
    env = environment(config.home, port, config.env)
    home = Path(env["AIRFLOW_HOME"])
    local.prepare(env)
    logs = {"airflow": home / "standalone.log", "mlflow": home / "mlflow_ui.log"}
    airflow_cmd = [str(Path(sys.executable).parent / "airflow"), "standalone"]
    processes = {name: subprocess.Popen(cmd, env=env, stdout=open(logs[name], "w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)  # own process group: stop() ends its children
                 for name, cmd in (("airflow", airflow_cmd), ("mlflow", mlflow_command(config, mlflow_port)))}
    try:
        print(f"starting Airflow (logs: {logs['airflow']}) and MLflow (logs: {logs['mlflow']}) ...", flush=True)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, processes["airflow"], logs["airflow"])
        print(f"Airflow UI: {url}  (login {USER} / {password(home)})\n"
              f"MLflow UI:  http://127.0.0.1:{mlflow_port}  (store {config.mlflow.tracking_uri})\n"
              f"State: BATCHML_HOME={config.home}, config env {config.env}, AIRFLOW_HOME={home}. Ctrl-C stops both.",
              flush=True)
        processes["airflow"].wait()
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes.values():
            stop(process)
    return 0


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
