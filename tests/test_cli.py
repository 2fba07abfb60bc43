"""The command line as an operator meets it: clear errors, no stack traces."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO


def run(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "batchml.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=120)


def test_missing_java_is_a_clear_message(tmp_path):
    env = {"JAVA_HOME": str(tmp_path / "no-jdk"), "PATH": "/usr/bin/nonexistent", "BATCHML_HOME": str(tmp_path)}
    out = run("run", "ingest", "--run-date", "2024-01-01", env=env)
    assert out.returncode == 1
    assert "Java was not found" in out.stderr and "Traceback" not in out.stderr


def test_bad_config_is_a_clear_message(tmp_path):
    out = run("--env", "nowhere", "run", "ingest", "--run-date", "2024-01-01", env={"BATCHML_HOME": str(tmp_path)})
    assert out.returncode == 2 and "no overlay for environment 'nowhere'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_date_range_needs_both_ends_in_order(tmp_path):
    env = {"BATCHML_HOME": str(tmp_path)}
    out = run("run", "ingest", "--from", "2024-01-03", "--to", "2024-01-01", env=env)
    assert out.returncode == 1 and "--to 2024-01-01 is before --from 2024-01-03" in out.stderr
    out = run("run", "ingest", "--from", "2024-01-03", env=env)
    assert out.returncode == 1 and "--from and --to go together" in out.stderr
    out = run("run", "ingest", "--run-date", "2024-01-03", "--from", "2024-01-01", env=env)
    assert out.returncode == 2 and "not allowed with argument" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_run_date_is_rejected_by_the_parser():
    out = run("run", "ingest", "--run-date", "2024-13-01")
    assert out.returncode == 2 and "not a date" in out.stderr


def test_demo_data_writes_the_landing_zone(tmp_path):
    out = run("--env", "test", "demo-data", "--start", "2024-01-01", "--days", "2", "--rows-per-day", "500",
              env={"BATCHML_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "landing" / "transactions").iterdir())) == 2
    assert "demo data: " in out.stdout


def one_line_error(out, code: int, text: str) -> None:
    """The process ends with exactly one ``batchml: error:`` line naming ``text``, and no stack trace."""
    errors = [line for line in out.stderr.splitlines() if line.startswith("batchml: error:")]
    assert out.returncode == code, out.stderr[-3000:]
    assert len(errors) == 1 and text in errors[0] and out.stderr.rstrip().endswith(errors[0]), out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "Exception" not in out.stderr, out.stderr[-3000:]


def test_history_of_an_undeclared_table(tmp_path):
    out = run("--env", "test", "table", "history", "nope.table", env={"BATCHML_HOME": str(tmp_path)})
    one_line_error(out, 1, "table 'nope.table' is not declared under 'tables'")


@pytest.mark.parametrize("master", ["bogus", "local[0]", "spark://nohost"])
def test_a_malformed_spark_master_is_a_config_error(tmp_path, master):
    out = run("--env", "test", "run", "ingest", "--run-date", "2024-01-01",
              env={"BATCHML_HOME": str(tmp_path), "BATCHML_SPARK_MASTER": master})
    one_line_error(out, 2, f"env var BATCHML_SPARK_MASTER: key 'spark.master': Value error, {master!r} is not a Spark")


def test_an_unreachable_spark_master_is_named(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = run("--env", "test", "demo", "--days", "1", "--rows-per-day", "20",
              env={"BATCHML_HOME": str(tmp_path), "BATCHML_SPARK_MASTER": f"spark://127.0.0.1:{port}"})
    one_line_error(out, 1, f"cannot reach the Spark master spark://127.0.0.1:{port}")


@pytest.mark.parametrize("under", [False, True])
@pytest.mark.parametrize("command", [("demo-data", "--days", "1"), ("run", "ingest", "--run-date", "2024-01-01")])
def test_a_home_that_is_a_file_or_under_one(tmp_path, under, command):
    (tmp_path / "file").write_text("not a folder")
    home = tmp_path / "file" / "home" if under else tmp_path / "file"
    out = run("--env", "test", *command, env={"BATCHML_HOME": str(home)})
    one_line_error(out, 2, f"home {home} (set by env var BATCHML_HOME) is {'under' if under else 'a file'}")


def unprivileged(tmp_path) -> tuple[Path, list[str]]:
    """A home this user cannot write, and the command prefix that runs the CLI as such a user
    (root ignores permissions: it runs the CLI as 'nobody')."""
    if os.geteuid() != 0:
        home = tmp_path / "home"
        home.mkdir(mode=0o555)
        return home, []
    home = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path is not reachable for 'nobody'
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop privileges to test an unwritable home")
    home.chmod(0o755)  # root's folder: readable, not writable, for 'nobody'
    return home, [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize("command", [("demo-data", "--days", "1"), ("run", "ingest", "--run-date", "2024-01-01"),
                                     ("run", "score", "--run-date", "2024-01-01")])
def test_an_unwritable_home(tmp_path, command):
    home, prefix = unprivileged(tmp_path)
    try:
        out = subprocess.run([*prefix, sys.executable, "-m", "batchml.cli", "--env", "test", *command],
                             capture_output=True, text=True, cwd=REPO, timeout=120,
                             env={**os.environ, "BATCHML_HOME": str(home), "HOME": str(home)})
    finally:
        home.chmod(0o755)
        shutil.rmtree(home)
    one_line_error(out, 2, f"home {home} is not writable (Permission denied)")


def test_a_job_that_aborts_natively_prints_its_threads_stacks(tmp_path):
    """``jobs/<stage>.py`` under spark-submit: a C++ abort names the Python frames, not only 'terminate called'."""
    code = ("import os, batchml.cli as cli; cli.main = lambda argv: os.abort(); "
            "cli.run_job('validate', ['--run-date', '2024-01-01'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "BATCHML_HOME": str(tmp_path)})
    assert out.returncode == -6
    assert "Fatal Python error: Aborted" in out.stderr and "in <lambda>" in out.stderr, out.stderr
