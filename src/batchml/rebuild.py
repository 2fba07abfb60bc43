"""``batchml rebuild``: every table of a date range rebuilt from the landing zone and the manifest alone.

The run dates from ``start`` to ``end`` are replayed in order into a fresh lake (``into``), each with
the stages its live run recorded, as the nightly DAG runs them:

* **ingest** the files ``ops.ingest_manifest`` recorded for the date, read again from the landing
  zone; each must still hash to the recorded SHA-256 (``ingest.LandingChanged`` otherwise);
* **validate** with the overrides ``ops.validation_overrides`` recorded for the date; a date whose
  gate blocks stops there, as the DAG's run did;
* **features** when the live feature table has the date;
* **score** with the model version ``ops.scoring_runs`` recorded for the date's last completed
  generation (None: the fallback rules), never the champion of today;
* **monitor** with the model version the live drift table recorded for the date.

The live lake is only read. Models come from the registry as they are (training is not replayed);
the online store (materialize) is a serving cache of the feature table, not rebuilt. The fresh
lake's reports go to ``<into>/_artifacts``; alerts raised during the replay go to no sink (and, for a
local ``into``, to ``<into>/_home/alerts``), so nobody is paged twice. Details: docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

from batchml.config import Config
from batchml.storage import Lake
from batchml.storage.location import is_s3, join, local_path

log = logging.getLogger(__name__)

MANIFEST = "ops.ingest_manifest"


class NotFresh(ValueError):
    """The target lake already holds a table (or is the live lake)."""


@dataclass
class LiveRecord:
    """What the live run of one date did, as its tables recorded it."""

    files: dict[str, dict[str, str]]  # feed -> {path: sha256} from the manifest
    validated: bool
    featured: bool
    scored: bool
    score_version: int | None  # the model version of the last completed scoring generation
    monitored: bool
    monitor_version: int | None

    @classmethod
    def of(cls, live: Lake, config: Config, dataset: str, day: dt.date) -> LiveRecord:
        from batchml.validation.overrides import latest_attempts

        ds = config.dataset(dataset)
        scored = _last_completed(live, ds, dataset, day)
        monitored = _monitored_version(live, ds, day)
        featured = ds.features is not None and live.exists(ds.features.table) and live.count(
            ds.features.table, [(ds.features.date_column, "=", day)]) > 0
        return cls(_manifest_files(live, dataset, day), bool(latest_attempts(live, day, dataset)), featured,
                   scored is not None, scored["model_version"] if scored else None,
                   monitored is not None, monitored)


@dataclass
class DayReplay:
    run_date: dt.date
    stages: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, for the log and bench_rebuild

    def line(self) -> str:
        done = ", ".join(self.stages) or "nothing recorded"
        return (f"rebuild {self.run_date}: {done} in {sum(self.seconds.values()):.1f}s"
                + (f"; BLOCKED: {'; '.join(self.blocked)}" if self.blocked else ""))

    def run(self, stage: str, label: str, fn, *args, **kwargs):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[stage] = round(time.perf_counter() - started, 3)
        self.stages.append(label)
        return result


def rebuild_config(config: Config, into: str) -> Config:
    """``config`` writing to the lake ``into``: its reports under ``<into>/_artifacts``, no alert sinks."""
    storage = config.storage.model_copy(update={"lake_uri": into, "artifacts_uri": join(into, "_artifacts")})
    home = config.home if is_s3(into) else local_path(join(into, "_home"))
    alerts = config.alerts.model_copy(update={"sinks": []})
    return config.model_copy(update={"storage": storage, "home": home, "alerts": alerts})


def default_into(config: Config, start: dt.date, end: dt.date) -> str:
    """A sibling of the live lake: ``<lake_uri>-rebuild-<start>-<end>``."""
    return f"{config.storage.lake_uri.rstrip('/')}-rebuild-{start}-{end}"


def rebuild(config: Config, start: dt.date, end: dt.date, into: str | None = None, dataset: str | None = None,
            spark=None) -> list[DayReplay]:
    """Replay the run dates ``start``..``end`` (inclusive) of ``config``'s lake into the fresh lake ``into``."""
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    name = dataset or config.default_dataset
    into = into or default_into(config, start, end)
    target = rebuild_config(config, into)
    live = Lake(config, spark)
    _check_fresh(config, target, Lake(target, spark))
    if not live.exists(MANIFEST):
        raise FileNotFoundError(f"{live.uri(MANIFEST)} does not exist: there is no manifest to rebuild from")
    replays = []
    day = start
    while day <= end:
        replays.append(replay_day(live, target, name, day, spark))
        log.info(replays[-1].line())
        day += dt.timedelta(days=1)
    return replays


def replay_day(live: Lake, target: Config, dataset: str, day: dt.date, spark=None) -> DayReplay:
    """One run date's stages, as its live run recorded them, into ``target``'s lake."""
    from batchml.features.build import build_features
    from batchml.ingest.ingest import ingest
    from batchml.monitoring.monitor import monitor
    from batchml.scoring.score import score
    from batchml.validation.gate import validate

    record = LiveRecord.of(live, live.config, dataset, day)
    out = DayReplay(day)
    if record.files:
        out.run("ingest", "ingest", ingest, target, day, dataset, spark, recorded=record.files)
    if record.validated:
        _copy_overrides(live, Lake(target, spark), dataset, day)
        outcomes = out.run("validate", "validate", validate, target, day, dataset, spark)
        out.blocked = [f"{o.table}: {check}" for o in outcomes if o.blocked for check in o.blocking_checks()]
        if out.blocked:  # the DAG's run stopped here too, unless a recorded override released it
            return out
    if record.featured:
        out.run("features", "features", build_features, target, day, dataset, spark)
    if record.scored:
        version = record.score_version
        out.run("score", f"score (model v{version})" if version else "score (fallback rules)", score, target, day,
                dataset, spark, model_version=version)
    if record.monitored:
        out.run("monitor", f"monitor (model v{record.monitor_version})", monitor, target, day, dataset, spark,
                model_version=record.monitor_version)
    return out


def _check_fresh(config: Config, target: Config, lake: Lake) -> None:
    if target.storage.lake_uri.rstrip("/") == config.storage.lake_uri.rstrip("/"):
        raise NotFresh("--into is the live lake; a rebuild writes a fresh lake beside it")
    present = sorted(t for t in target.tables if lake.exists(t))
    if present:
        raise NotFresh(f"{target.storage.lake_uri} is not a fresh lake: it holds {', '.join(present[:3])}"
                       f"{' …' if len(present) > 3 else ''}; pass another --into")


def _manifest_files(live: Lake, dataset: str, day: dt.date) -> dict[str, dict[str, str]]:
    rows = live.read_arrow(MANIFEST, [("run_date", "=", day), ("dataset", "=", dataset)],
                           columns=["feed", "path", "sha256"]).to_pylist()
    files: dict[str, dict[str, str]] = {}
    for r in rows:
        files.setdefault(r["feed"], {})[r["path"]] = r["sha256"]
    return files


def _copy_overrides(live: Lake, target: Lake, dataset: str, day: dt.date) -> None:
    from batchml.validation.overrides import OVERRIDES

    if not live.exists(OVERRIDES):
        return
    rows = live.read_arrow(OVERRIDES, [("run_date", "=", day), ("dataset", "=", dataset)])
    if rows.num_rows:
        target.write_arrow(rows, OVERRIDES, metadata={"job": "rebuild", "runDate": day})


def _last_completed(live: Lake, ds, dataset: str, day: dt.date) -> dict | None:
    if ds.scoring is None or not live.exists(ds.scoring.runs_table):
        return None
    rows = live.read_arrow(ds.scoring.runs_table, [("run_date", "=", day), ("dataset", "=", dataset),
                                                   ("event", "=", "completed")]).to_pylist()
    return max(rows, key=lambda r: r["generation"]) if rows else None


def _monitored_version(live: Lake, ds, day: dt.date) -> int | None:
    """The model version the live drift rows of ``day`` name; None when monitoring wrote none."""
    if ds.monitoring is None or not live.exists(ds.monitoring.drift_table):
        return None
    versions = set(live.read_arrow(ds.monitoring.drift_table, [("run_date", "=", day)],
                                   columns=["model_version"]).column("model_version").to_pylist())
    if len(versions) > 1:
        raise ValueError(f"{ds.monitoring.drift_table} names several model versions for {day}: {sorted(versions)}")
    return versions.pop() if versions else None
