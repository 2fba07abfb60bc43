"""The wheel on its own: installed into a clean venv outside the repository, run from an empty folder.

Its config, feature SQL, job entrypoints and DAG files must come from inside the installed package.
Dependencies install at the versions of this (tested) environment, from pip's cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from batchml.release.package import build_wheel
from tests.conftest import REPO


def test_the_installed_wheel_ingests_demo_data_from_an_empty_folder(tmp_path):
    wheel = build_wheel(REPO, tmp_path / "dist")
    venv = tmp_path / "venv"
    subprocess.run([str(Path(sys.base_prefix) / "bin" / "python3.11"), "-m", "venv", str(venv)], check=True)
    pins = tmp_path / "pins.txt"  # this environment's versions: the resolver has nothing to search
    pins.write_text(subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                                   capture_output=True, text=True).stdout)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    "--constraint", str(pins), f"{wheel}[spark]"], check=True)
    work = tmp_path / "empty"
    work.mkdir()
    env = {"HOME": str(tmp_path), "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "BATCHML_HOME": str(tmp_path / "home"),
           **{k: os.environ[k] for k in ("JAVA_HOME",) if k in os.environ}}

    def batchml(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "batchml"), *args], cwd=work, env=env, capture_output=True,
                              text=True)

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import json, batchml\n"
                            "from batchml.config import load_config\nfrom batchml.resources import folder\n"
                            "print(json.dumps([batchml.__file__, load_config().conf_dir, str(folder('jobs'))]))"],
                           cwd=work, env=env, check=True, capture_output=True, text=True)
    for path in json.loads(where.stdout):
        assert path.startswith(str(venv / "lib")), f"{path} is not inside the installed package"
    assert batchml("demo-data", "--start", "2024-01-01", "--days", "1", "--rows-per-day", "600").returncode == 0
    ingest = batchml("run", "ingest", "--run-date", "2024-01-01")
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    assert sorted(os.listdir(work)) == [], "a run must not write into its working directory"
    from deltalake import DeltaTable

    lake = tmp_path / "home" / "lake"
    bronze = DeltaTable(str(lake / "bronze" / "card_transactions")).to_pyarrow_table()
    manifest = DeltaTable(str(lake / "ops" / "ingest_manifest")).to_pyarrow_table().to_pylist()
    events = [m for m in manifest if m["feed"] == "events"]
    assert events and sum(m["rows_accepted"] for m in events) == bronze.num_rows > 500
