"""The command line as an operator meets it: clear errors, no stack traces."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_bad_run_date_is_rejected_by_the_parser():
    out = run("run", "ingest", "--run-date", "2024-13-01")
    assert out.returncode == 2 and "not a date" in out.stderr


def test_demo_data_writes_the_landing_zone(tmp_path):
    out = run("--env", "test", "demo-data", "--start", "2024-01-01", "--days", "2", "--rows-per-day", "500",
              env={"BATCHML_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "landing" / "transactions").iterdir())) == 2
    assert "demo data: " in out.stdout
