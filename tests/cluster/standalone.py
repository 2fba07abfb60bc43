"""A real Spark standalone cluster on loopback: one master and worker JVMs, each its own process.

The cluster's Spark is a copy of the installed pyspark package (hard links), so nothing a worker or an
executor runs points into the development venv. Each worker has its own work and scratch folders.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import free_port


def install_spark(target: Path) -> Path:
    """A Spark installation at ``target``: the pyspark package's jars, bin/ and python/lib, hard-linked."""
    import pyspark

    shutil.copytree(Path(pyspark.__file__).parent, target, copy_function=os.link,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return target


# Each application unpacks the ~0.9 GB environment archive in every worker's work folder: delete the folders
# of finished applications within seconds (Spark's own worker cleanup), or a rehearsal fills the disk.
CLEANUP = "-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.interval=5 -Dspark.worker.cleanup.appDataTtl=1"


@dataclass
class StandaloneCluster:
    spark_home: Path
    root: Path
    workers: int = 2
    worker_memory: str = "2g"
    port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def start(self) -> "StandaloneCluster":
        self._launch("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(self.port), "--webui-port", str(self.ui_port))
        self.wait(lambda s: s.get("status") == "ALIVE", "the master to come up")
        for i in range(1, self.workers + 1):
            self.start_worker(i)
        self.wait(lambda s: sum(w["state"] == "ALIVE" for w in s["workers"]) == self.workers, "the workers")
        return self

    def start_worker(self, i: int) -> None:
        work = self.root / f"worker{i}"
        self._launch(f"worker{i}", "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                     "--cores", "1", "--memory", self.worker_memory, "--webui-port", str(free_port()),
                     env={"SPARK_WORKER_DIR": str(work / "work"), "SPARK_LOCAL_DIRS": str(work / "local"),
                          "SPARK_WORKER_OPTS": CLEANUP})

    def kill_worker(self, i: int) -> list[int]:
        """SIGKILL worker ``i``'s JVM and the executor JVMs it launched; returns their pids."""
        worker = self.processes.pop(f"worker{i}")
        children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
        pids = [worker.pid, *map(int, children)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        worker.wait(30)
        return pids

    def app_folders(self) -> list[Path]:
        """Applications' folders still in the workers' work folders (each holds an unpacked environment)."""
        return sorted(self.root.glob("worker*/work/app-*"))

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=10) as response:
            return json.load(response)

    def wait(self, ready, what: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = self.state()
                if ready(state):
                    return state
            except OSError:
                pass  # the master's UI is not up yet
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}; logs under {self.root}")

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def _launch(self, name: str, main_class: str, *args: str, env: dict | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / f"{name}.log", "ab")
        full_env = {**os.environ, "SPARK_HOME": str(self.spark_home), **(env or {})}
        full_env.pop("PYTHONPATH", None)
        self.processes[name] = subprocess.Popen([str(self.spark_home / "bin" / "spark-class"), main_class, *args],
                                                stdout=log, stderr=subprocess.STDOUT, env=full_env)
