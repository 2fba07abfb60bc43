"""Project files shipped inside the wheel: ``conf/``, ``sql/``, ``jobs/``, ``dags/`` and ``spark/`` (logging).

In a source checkout the first four are symlinks to the top-level folders (``spark/`` lives here); a built
wheel carries copies, so an
installed batchml finds its default config, feature SQL, job entrypoints and DAG files without the
repository. Always locate them through :func:`folder`, never relative to a module's ``__file__``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

KINDS = ("conf", "sql", "jobs", "dags", "spark")


def folder(kind: str) -> Path:
    """The packaged ``conf``, ``sql``, ``jobs``, ``dags`` or ``spark`` folder."""
    if kind not in KINDS:
        raise ValueError(f"unknown resource folder {kind!r}; one of {KINDS}")
    return Path(str(files(__name__) / kind)).resolve()  # a checkout: the top-level folder, not the link
