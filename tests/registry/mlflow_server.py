"""A real MLflow tracking server on loopback (``mlflow server``, SQLite store), and outages of it on cue.

``outage_at`` stops the server the moment the client is about to send a given REST call: it wraps
MLflow's own ``http_request`` only to send the signal first, then makes the real request to the real,
now stopped (``pause``: SIGSTOP, requests time out) or dead (``kill``: SIGKILL, connection refused)
server. Nothing answers in the server's place.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

# MLflow's client retries (7, with backoff from 2 s) would make every outage minutes long.
FAST_CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180) -> None:
        """Start on the same store and port every time; return once /health answers."""
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
               f"sqlite:///{self.root / 'mlflow.db'}", "--default-artifact-root", str(self.root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        log = open(self.root / "server.log", "a")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {timeout_s}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.root / "server.log").read_text()[-2000:]

    def _signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)  # the server and its uvicorn / job-runner children

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self.proc.wait()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill the whole process group, also when the server process itself already exited."""
        if self.proc is None:
            return
        try:
            self.resume()
            self._signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


@contextmanager
def outage_at(server: MlflowServer, calls: set[tuple[str, str]], how: str = "pause"):
    """Stop ``server`` (``pause`` or ``kill``) just before the first request matching one of ``calls``
    (HTTP method, endpoint suffix); yields the list of requests that triggered it (one, when it fired).
    A paused server is resumed on exit; a killed one stays dead."""
    from mlflow.utils import rest_utils

    real, fired = rest_utils.http_request, []

    def request(*args, **kwargs):
        target = kwargs.get("endpoint", args[1] if len(args) > 1 else "")
        method = kwargs.get("method", args[2] if len(args) > 2 else "")
        if not fired and any(method == m and target.endswith(suffix) for m, suffix in calls):
            fired.append(f"{method} {target}")
            server.pause() if how == "pause" else server.kill()
        return real(*args, **kwargs)

    rest_utils.http_request = request
    try:
        yield fired
    finally:
        rest_utils.http_request = real
        if fired and how == "pause":
            server.resume()
