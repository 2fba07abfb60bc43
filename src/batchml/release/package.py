"""``make package``: everything a cluster needs, in ``dist/``, with a manifest of SHA-256 sums.

    python -m batchml.release.package [--out dist] [--python /usr/bin/python3.11]

Layout (what ``make deploy`` uploads, docs/deploy.md)::

    manifest.json            every file below with its SHA-256 and size, the version and the git commit
    batchml-<v>-py3-none-any.whl
    environment.tar.gz       the driver's and executors' Python environment (spark.archives=...#environment)
    environment.lock         what it holds, one `name==version` a line
    jobs/ conf/ sql/ dags/   the entrypoints, config, feature SQL and DAG files
    mwaa/requirements.txt    for MWAA: the constraints of its Airflow version plus batchml[airflow]
    mwaa/plugins.zip         the wheel, where requirements.txt expects it on MWAA
    mwaa/startup.sh          exports BATCHML_ENV and BATCHML_CONF_DIR (deploy fills in the release URI)

The environment is a virtualenv whose ``bin/python`` links to the target's interpreter (``--python``,
by default ``/usr/bin/python3.11``, AWS's emr-spark-8.0.0), as venv-pack makes them. It holds the wheel
and its ``[spark]`` dependencies exactly as installed in the environment that runs this (the one the
tests ran in), except what the cluster provides (pyspark) or cannot use (CUDA libraries: xgboost comes
as its CPU build of the same version). Every package must come from a manylinux wheel for Linux x86_64
and CPython 3.11, so the archive runs on the cluster's Linux.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from batchml import __version__

log = logging.getLogger("batchml.package")
TARGET_PYTHON = "/usr/bin/python3.11"
MWAA_PLUGINS = "/usr/local/airflow/plugins"
RELEASE_PLACEHOLDER = "__BATCHML_RELEASE_URI__"
MWAA_CONSTRAINTS = "infra/mwaa/constraints.txt"  # the MWAA Airflow version, pinned once
# Provided by the cluster (Spark's own Python library) or unusable there (CUDA collectives for GPUs).
NOT_IN_ENVIRONMENT = ("pyspark", "pyspark-client", "nvidia-")


def build(source: Path, out: Path, target_python: str = TARGET_PYTHON) -> dict:
    """Write the release of the checkout at ``source`` into ``out`` (emptied first); return its manifest."""
    if not (source / "pyproject.toml").is_file():
        raise FileNotFoundError(f"make package runs in a source checkout; no pyproject.toml in {source.absolute()}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    wheel = build_wheel(source, out)
    log.info("wheel %s", wheel.name)
    lock = build_environment(wheel, out / "environment.tar.gz", target_python)
    (out / "environment.lock").write_text("".join(f"{name}=={version}\n" for name, version in lock))
    for kind in ("jobs", "conf", "sql", "dags"):
        shutil.copytree(source / kind, out / kind, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    write_mwaa(out / "mwaa", wheel, source / MWAA_CONSTRAINTS)
    manifest = {"name": "batchml", "version": __version__, **git_state(source), "target_python": target_python,
                "files": [file_entry(out, path) for path in sorted(out.rglob("*")) if path.is_file()]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def build_wheel(source: Path, out: Path) -> Path:
    shutil.rmtree(source / "build", ignore_errors=True)  # setuptools' staging folder: stale files would ship
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out),
                        str(source)], check=True)
    finally:
        shutil.rmtree(source / "build", ignore_errors=True)
    return next(out.glob("batchml-*.whl"))


def build_environment(wheel: Path, archive: Path, target_python: str) -> list[tuple[str, str]]:
    """Pack the wheel and its [spark] dependencies, as installed in this (tested) environment, into a
    virtualenv archive whose interpreter is ``target_python``; return what it holds."""
    if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64" or sys.platform != "linux":
        raise RuntimeError("the environment archive is for Linux x86_64 and CPython 3.11 (emr-spark-8.0.0); "
                           f"this is {sys.platform} {platform.machine()} Python {platform.python_version()}")
    dists = requirement_closure("batchml", {"spark"})
    site = "lib/python3.11/site-packages"
    with tempfile.TemporaryDirectory(prefix="batchml-env-") as tmp, \
            tarfile.open(archive, "w:gz", compresslevel=1) as tar:  # gzip: Spark refuses its links in a plain .tar
        scaffold = Path(tmp) / "scaffold"
        write_scaffold(scaffold, target_python)
        for path in sorted(scaffold.rglob("*")):
            tar.add(path, arcname=path.relative_to(scaffold).as_posix(), recursive=False)
        for dist in dists:
            if dist.metadata["Name"].lower() == "xgboost":  # the cluster has no GPU: the CPU build, same version
                add_wheel(tar, cpu_xgboost(dist.version, Path(tmp)), site)
                continue
            check_portable(dist)
            for file in dist.files or []:
                if not str(file).startswith("..") and "tests" not in file.parts[1:-1]:
                    # scripts and data outside site-packages stay behind, and the packages' own test suites
                    tar.add(dist.locate_file(file), arcname=f"{site}/{file}", recursive=False)
        add_wheel(tar, wheel, site)
    return sorted([(d.metadata["Name"], d.version) for d in dists] + [("batchml", __version__)],
                  key=lambda pair: pair[0].lower())


def requirement_closure(name: str, extras: set[str]) -> list[metadata.Distribution]:
    """The installed distributions ``name[extras]`` needs, transitively, minus NOT_IN_ENVIRONMENT."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        for text in metadata.distribution(current).requires or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
                continue
            key = canonicalize_name(req.name)
            if key.startswith(NOT_IN_ENVIRONMENT) or key in found or key == "batchml":
                continue
            try:
                found[key] = metadata.distribution(req.name)
            except metadata.PackageNotFoundError:
                raise RuntimeError(f"{req.name} (needed by {current}) is not installed here; "
                                   "make package packs this environment: pip install -e '.[dev]' first") from None
            todo.append((req.name, set(req.extras)))
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def check_portable(dist: metadata.Distribution) -> None:
    """Refuse a distribution built on this machine from source: it would not be manylinux-portable."""
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    if any(t.endswith("-linux_x86_64") for t in tags):
        raise RuntimeError(f"{dist.metadata['Name']} {dist.version} was built here ({tags}), not from a manylinux "
                           "wheel; it may not run on the cluster's Linux")


def write_scaffold(root: Path, target_python: str) -> None:
    """pyvenv.cfg and bin/python* links to the target machine's interpreter: a venv once unpacked."""
    (root / "bin").mkdir(parents=True)
    for name in ("python", "python3", "python3.11"):
        (root / "bin" / name).symlink_to(target_python)
    (root / "pyvenv.cfg").write_text(f"home = {Path(target_python).parent}\ninclude-system-site-packages = false\n"
                                     f"version = {platform.python_version()}\n")


def add_wheel(tar: tarfile.TarFile, wheel: Path, site: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir():  # tar creates the folders of the files below
                continue
            entry = tarfile.TarInfo(f"{site}/{info.filename}")
            entry.size = info.file_size
            entry.mode = (info.external_attr >> 16) & 0o777 or 0o644
            entry.mtime = int(dt.datetime(*info.date_time).timestamp())
            tar.addfile(entry, zf.open(info))


def cpu_xgboost(version: str, tmp: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                    "--dest", str(tmp), f"xgboost-cpu=={version}"], check=True)
    return next(tmp.glob("xgboost_cpu-*.whl"))


def write_mwaa(target: Path, wheel: Path, constraints: Path) -> None:
    airflow = airflow_version(constraints)
    target.mkdir()
    (target / "requirements.txt").write_text(
        f'--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-{airflow}/constraints-3.12.txt"\n'
        f"batchml[airflow] @ file://{MWAA_PLUGINS}/{wheel.name}\n")
    with zipfile.ZipFile(target / "plugins.zip", "w") as zf:
        zf.write(wheel, wheel.name)
    (target / "startup.sh").write_text(
        "#!/bin/sh\n"
        "# MWAA startup script: where the DAG side reads batchml's config (make deploy fills in the release).\n"
        "export BATCHML_ENV=prod\n"
        f"export BATCHML_CONF_DIR={RELEASE_PLACEHOLDER}/conf\n")


def airflow_version(constraints: Path) -> str:
    for line in constraints.read_text().splitlines():
        if line.startswith("apache-airflow=="):
            return line.split("==", 1)[1].strip()
    raise ValueError(f"{constraints}: no apache-airflow==<version> line")


def git_state(root: Path) -> dict:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True)
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def file_entry(root: Path, path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(8 << 20), b""):
            digest.update(chunk)
    return {"path": path.relative_to(root).as_posix(), "sha256": digest.hexdigest(), "size": path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchml.release.package", description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("."), help="the checkout (default: here)")
    parser.add_argument("--out", type=Path, default=Path("dist"))
    parser.add_argument("--python", default=os.environ.get("BATCHML_TARGET_PYTHON", TARGET_PYTHON),
                        help="the interpreter the environment links to on the cluster (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = build(args.source, args.out, args.python)
    size = sum(f["size"] for f in manifest["files"])
    print(f"{args.out}: {len(manifest['files'])} files, {size / 1e6:.0f} MB, commit {manifest['commit'][:12]}"
          f"{' (uncommitted changes)' if manifest['dirty'] else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
