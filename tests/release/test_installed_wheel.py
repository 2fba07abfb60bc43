"""The wheel on its own: installed into a clean venv outside the repository, run from an empty folder.

``make test-spark40`` builds the wheel and installs it (with its ``[spark]`` extra and pyspark 4.0.2) into
a venv under ``$(LEG_HOME)``, then runs this file there. In the development venv batchml is an editable
install of ``src/``, so the test skips: it proves nothing there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import batchml
from tests.conftest import REPO

INSTALLED = not Path(batchml.__file__).resolve().is_relative_to(REPO)
pytestmark = pytest.mark.skipif(not INSTALLED, reason="runs in `make test-spark40`, where batchml is installed "
                                                      "from its wheel in a venv outside the repository")


def test_the_installed_wheel_ingests_demo_data_from_an_empty_folder(tmp_path):
    venv = Path(sys.prefix)
    work = tmp_path / "empty"
    work.mkdir()
    env = {"HOME": str(tmp_path), "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "BATCHML_HOME": str(tmp_path / "home"),
           **{k: os.environ[k] for k in ("JAVA_HOME",) if k in os.environ}}

    def batchml_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "batchml"), *args], cwd=work, env=env, capture_output=True,
                              text=True)

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import json, batchml\n"
                            "from batchml.config import load_config\nfrom batchml.resources import folder\n"
                            "print(json.dumps([batchml.__file__, load_config().conf_dir, str(folder('jobs'))]))"],
                           cwd=work, env=env, check=True, capture_output=True, text=True)
    for path in json.loads(where.stdout):
        assert path.startswith(str(venv / "lib")), f"{path} is not inside the installed package"
    assert not str(venv).startswith(str(REPO)), "the venv must live outside the repository"
    demo = batchml_cli("demo-data", "--start", "2024-01-01", "--days", "1", "--rows-per-day", "600")
    assert demo.returncode == 0, demo.stderr[-2000:]
    ingest = batchml_cli("run", "ingest", "--run-date", "2024-01-01")
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    assert sorted(os.listdir(work)) == [], "a run must not write into its working directory"
    from deltalake import DeltaTable

    lake = tmp_path / "home" / "lake"
    bronze = DeltaTable(str(lake / "bronze" / "card_transactions")).to_pyarrow_table()
    manifest = DeltaTable(str(lake / "ops" / "ingest_manifest")).to_pyarrow_table().to_pylist()
    events = [m for m in manifest if m["feed"] == "events"]
    assert events and sum(m["rows_accepted"] for m in events) == bronze.num_rows > 500
