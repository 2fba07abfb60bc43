"""A long-lived local Spark for many short jobs: a Spark Connect server on loopback.

Each nightly stage is a ``spark-submit`` of its own; on a small machine a fresh JVM, its Spark
start-up and its cold JIT cost more than the stage's work. With this server running and
``spark.remote`` (``BATCHML_SPARK_REMOTE``) pointing at it, a job's driver attaches to the warm
server instead. The server runs with batchml's ``session_conf`` and the project's interpreter for
its Python workers (the Delta data source runs there). Training does not use it (see
``stages.run_stage``). On a cluster there is no server: the jobs run on the cluster's master.

    batchml spark-server start [--port 15002]   # prints the sc:// URL
    batchml spark-server status | stop

``serving_session`` is the in-process variant: a process's own session serves Connect clients too.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from batchml.config import Config
from batchml.spark import check_java, session_conf

log = logging.getLogger(__name__)
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
PLUGIN_CLASS = "org.apache.spark.sql.connect.SparkConnectPlugin"
DEFAULT_PORT = 15002


def _files(config: Config) -> tuple[Path, Path]:
    folder = Path(config.home) / "spark"
    return folder / "connect.pid", folder / "connect.log"


def url(port: int) -> str:
    return f"sc://127.0.0.1:{port}"


def command(config: Config, port: int) -> list[str]:
    conf = {**session_conf(config), "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port)}
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--class", SERVER_CLASS,
           "--name", f"{config.spark.app_name}-connect"]
    if config.spark.master:
        cmd += ["--master", config.spark.master]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    return cmd + ["spark-internal"]


def status(config: Config) -> str | None:
    """The server's URL when its process is alive and its port accepts connections, else None."""
    pid_file, _ = _files(config)
    try:
        pid, port = (int(x) for x in pid_file.read_text().split())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return url(port) if _listening(port) else None


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(config: Config, port: int = DEFAULT_PORT, timeout_s: float = 120) -> str:
    """Start the server (or find it running) and return its ``sc://`` URL once it accepts sessions.

    ``port=0`` picks a free loopback port (tests run several servers side by side).
    """
    running = status(config)
    if running:
        return running
    port = port or _free_port()
    if _listening(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is taken by another process; pass another --port")
    check_java()
    pid_file, log_file = _files(config)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(command(config, port), env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # outlives the command that started it
    pid_file.write_text(f"{proc.pid} {port}\n")
    deadline = time.monotonic() + timeout_s
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(config)
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"the Spark Connect server did not start (see {log_file}):\n{tail}")
        time.sleep(0.5)
    log.info("Spark Connect server %s (pid %s, master %s); log %s", url(port), proc.pid, config.spark.master,
             log_file)
    return url(port)


def serving_session(config: Config, port: int = 0, timeout_s: float = 60):
    """A new in-process (classic) session that also serves Spark Connect clients on loopback, and its URL.

    For a process that does much work itself and then hands jobs to other processes (``make demo``):
    they attach to this already warm JVM (compiled query code, JIT) instead of a cold server.
    Stopping the session stops the service. ``spark.remote`` does not apply: the session is this process's.
    """
    from pyspark.sql import SparkSession

    from batchml.spark import get_spark, register, without_remote

    if SparkSession.getActiveSession() is not None:
        raise RuntimeError("a Spark session is already running in this process; it cannot serve Connect clients")
    port = port or _free_port()
    # Spark keys its Python worker pools by interpreter, module and environment. Classic functions
    # carry PYTHONHASHSEED, Connect's carry no environment, so Connect clients would start a second,
    # cold set of workers. The JVM gets the seed instead (its workers inherit it), the classic
    # functions none, and the data source is registered again with that empty environment.
    os.environ.setdefault("PYTHONHASHSEED", "0")
    spark = get_spark(without_remote(config), extra_conf={"spark.plugins": PLUGIN_CLASS,
                                       "spark.connect.grpc.binding.address": "127.0.0.1",
                                       "spark.connect.grpc.binding.port": str(port)})
    spark.sparkContext.environment.pop("PYTHONHASHSEED", None)
    register(spark)
    deadline = time.monotonic() + timeout_s
    while not _listening(port):
        if time.monotonic() > deadline:
            spark.stop()
            raise RuntimeError(f"the in-process Spark Connect service did not listen on 127.0.0.1:{port}")
        time.sleep(0.2)
    return spark, url(port)


def stop(config: Config, timeout_s: float = 30) -> bool:
    """Stop the server this home started; True when one was running."""
    pid_file, _ = _files(config)
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    pid_file.unlink(missing_ok=True)
    try:
        os.killpg(pid, signal.SIGTERM)  # spark-submit's JVM and its Python workers
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it when this process started it
        except ChildProcessError:
            pass
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    return True
