"""Rebuild benchmark: ``batchml rebuild`` of ``--days`` (90) run dates at ``--rows-per-day`` (100k) events,
from the landing zone and the manifest alone into a fresh lake. Goal: under 1 hour on this machine (seed
003, stage 2: "full dataset reconstruction from sources in < 1 hour").

The live lake to rebuild is built once into ``--cache`` (keyed by the parameters and the config) and
reused: demo data, then every run date's nightly stages in one Spark session, as the DAG would have
run them; a champion (bench_nightly's: 150 trees, depth 6) is registered after the first day's
features, so every day is scored and monitored with it. Each timed run is ``rebuild()`` in one
process (what ``batchml rebuild`` runs) into a fresh folder, deleted afterwards.

``ratio`` is the median rebuild over the 3,600 s budget (goal 1.0, lower is better); ``stages_s`` has
the median seconds of each stage summed over the days.

    .venv/bin/python bench/bench_rebuild.py [--days 90] [--rows-per-day 100000]
    # a trial on a busy machine: --days 3 --rows-per-day 2000 --force --results /tmp/bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import time
from pathlib import Path

from common import Run, median, parse

START = dt.date(2024, 1, 1)
BUDGET_S = 3600.0
CACHE_FORMAT = 1  # bump when the live lake's layout changes
STAGES = ("ingest", "validate", "features", "score", "monitor")  # what a rebuild replays


def cache_folder(root: Path, args) -> Path:
    from batchml.training.train import config_hash

    config = _config(root / "probe")
    key = json.dumps({"format": CACHE_FORMAT, "rows": args.rows_per_day, "days": args.days, "seed": args.seed,
                      "config": config_hash(config, config.default_dataset)}, sort_keys=True)
    return root / f"rebuild-{args.rows_per_day}x{args.days}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _config(home: Path):
    import os

    from batchml.config import load_config

    return load_config("local", environ={**os.environ, "BATCHML_HOME": str(home)})


def build_live(folder: Path, args) -> float:
    """The live lake: every run date's stages, in place; ``live.json``, written last, marks it complete."""
    from bench_nightly import register_champion

    from batchml.demo import DemoOptions, generate
    from batchml.spark import get_spark
    from batchml.stages import run_stage

    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    config = _config(folder)
    days = [START + dt.timedelta(days=i) for i in range(args.days)]
    generate(config.storage.landing_uri, DemoOptions(start=START, days=args.days, rows_per_day=args.rows_per_day,
                                                     seed=args.seed))
    spark = get_spark(config)
    try:
        for day in days:
            for stage in STAGES:
                if run_stage(stage, config, day, spark=spark) != 0:
                    raise SystemExit(f"live lake: {stage} {day} failed; the live run must pass every stage")
                if day == START and stage == "features":
                    register_champion(config, spark, day)
            print(f"live lake: {day} at {time.perf_counter() - started:.0f}s", flush=True)
    finally:
        spark.stop()
    seconds = round(time.perf_counter() - started, 1)
    (folder / "live.json").write_text(json.dumps({"live_build_s": seconds, "first": str(days[0]),
                                                  "last": str(days[-1])}))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "batchml-bench",
                        help="folder of built live lakes, reused across runs (keyed by the parameters)")
    args = parse(parser)
    run = Run(args)

    from batchml import rebuild as rb
    from batchml.spark import get_spark

    cached = cache_folder(args.cache, args)
    if not (cached / "live.json").exists():
        print(f"building the live lake into {cached} (once; later runs reuse it)", flush=True)
        build_live(cached, args)
    live = json.loads((cached / "live.json").read_text())
    first, last = dt.date.fromisoformat(live["first"]), dt.date.fromisoformat(live["last"])
    config = _config(cached)
    spark = get_spark(config)
    into = cached.with_name(cached.name + "-rebuilt")
    stage_s: dict[str, list[float]] = {s: [] for s in STAGES}

    def setup() -> None:
        shutil.rmtree(into, ignore_errors=True)

    def rebuild() -> None:
        replays = rb.rebuild(config, first, last, str(into / "lake"), spark=spark)
        missing = [r.line() for r in replays if len(r.stages) != len(STAGES) or r.blocked]
        if missing:
            raise SystemExit(f"rebuild left stages out: {missing[:3]}")
        for stage in STAGES:  # where the time goes: each stage summed over the days
            stage_s[stage].append(round(sum(r.seconds.get(stage, 0.0) for r in replays), 3))

    try:
        runs = run.interleaved({"rebuild_s": rebuild}, setup={"rebuild_s": setup})
    finally:
        spark.stop()
        shutil.rmtree(into, ignore_errors=True)
    total = median(runs["rebuild_s"])
    run.write("rebuild", ratio=round(total / BUDGET_S, 3), goal=1.0, higher_is_better=False,
              rows=args.rows_per_day * args.days,
              floor=f"the seed's budget: {BUDGET_S:.0f} s to rebuild {args.days} days from sources on 2 cores",
              unit="rebuild seconds / budget seconds (lower is better)", seconds=total, runs_s=runs,
              days=args.days, rows_per_day=args.rows_per_day, live_build_s=live["live_build_s"],
              per_day_s=round(total / args.days, 2), stages_s={k: median(v) for k, v in stage_s.items()},
              cache=str(cached))


if __name__ == "__main__":
    main()
