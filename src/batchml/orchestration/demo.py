"""``make demo``: the whole pipeline on demo data and its monitoring story; the last days through Airflow.

1. Generate demo card transactions: ``warmup`` days that fill the 30-day feature windows, then
   ``history`` quiet days, ``quiet`` more quiet days, ``concept`` days where the fraud pattern
   changes (concept drift), and ``nightly`` days that also carry covariate drift.
2. The warm-up days' files arrive as one historical load on the last warm-up day (one ingest and
   one validation instead of thirty). In ONE Spark session, ingest and validate it, load the history
   (ingest, validate, features) and train the first champion: starting a JVM per task and day would
   take most of the time budget on a small machine. A day the gate blocks is released with a
   recorded override, as an analyst would, and printed.
3. In the same session, run every stage of the quiet and concept-drift days (ingest, validate,
   features, score, materialize into the online store, monitor) and print each day's drift and
   realized-performance verdict. In steps
   2 and 3 a second thread runs a day's features (score, monitor) while the next day is ingested
   and validated, so both cores work (``_overlapped``).
4. Run the ``batchml_nightly`` DAG through Airflow (``dag.test()``, SQLite metadata DB under
   ``$BATCHML_HOME/airflow``, every stage a ``spark-submit``) for the covariate drift days. The
   jobs attach through Spark Connect to the session of steps 2 and 3, which serves Connect clients on
   loopback, so a task finds a warm JVM (compiled query code, JIT) instead of starting a cold one.
   When the gate blocks a day, the demo releases it as an analyst would, by re-triggering with the
   override params (recorded); monitoring files a retraining request and the DAG emits the Asset
   event that starts ``batchml_training`` under a scheduler.
5. Print the story (when each alert fired against when each drift began), where the scored
   table, the reports and the Airflow state are, and one timed lookup in the online store.

The console shows one line per day (``progress.DayLines``: each stage's time, k/N, the day's verdict), the
steps, the story and the summary; everything else goes to ``$BATCHML_HOME/logs/demo.log`` (``progress.log_to_file``).

Runs under the ``demo`` config environment (``conf/demo``): small-data Spark settings, and labels
that count as mature after 7 days, so the concept-drift alert can fire within the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from batchml.orchestration import local, progress

log = logging.getLogger("batchml.demo.airflow")
LINES = progress.DayLines(0)  # the console's day lines; main() sets the day count
GATE_STAGES = ("ingest", "validate")  # the warm-up load's, and each day's first part
HISTORY_LATER = ("features",)         # a history day's part after its gate
SCORED_LATER = ("features", "score", "materialize")  # a scored day's, then monitor for its printed verdict
RELEASE_REASON = "demo: the drift is the story, let it through"


def _args(argv):
    p = argparse.ArgumentParser(prog="python -m batchml.orchestration.demo", description=__doc__.splitlines()[0])
    p.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1))
    p.add_argument("--warmup-days", type=int, default=30,
                   help="days only ingested, so the first trained day already has full 30-day windows")
    p.add_argument("--history-days", type=int, default=17, help="quiet days loaded before the first training")
    p.add_argument("--quiet-days", type=int, default=3, help="quiet days scored and monitored after it")
    p.add_argument("--concept-days", type=int, default=10, help="then days with concept drift (in-session)")
    p.add_argument("--nightly-days", type=int, default=1,
                   help="the last days, through the nightly DAG; they also carry covariate drift")
    p.add_argument("--rows-per-day", type=int, default=4000)
    p.add_argument("--seed", type=int, default=42)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global LINES
    a = _args(argv)
    os.environ.setdefault("BATCHML_ENV", "demo")  # also inherited by the Airflow tasks' spark-submits
    from batchml.config import load_config

    config = load_config()
    home = Path(config.home)
    log_file = progress.log_to_file(home / "logs" / "demo.log")
    sys.excepthook = _one_line_failure(log_file)
    started = time.monotonic()
    days = [a.start + dt.timedelta(days=i) for i in range(a.warmup_days + a.history_days + a.quiet_days
                                                          + a.concept_days + a.nightly_days)]
    warmup, rest = days[:a.warmup_days], days[a.warmup_days:]
    history = rest[:a.history_days]
    scored = rest[a.history_days:a.history_days + a.quiet_days + a.concept_days]
    nightly = rest[len(history) + len(scored):]
    concept_from = scored[a.quiet_days] if a.concept_days else None
    drift_from = nightly[0] if nightly else None
    LINES = progress.DayLines(bool(warmup) + len(history) + len(scored) + len(nightly))
    print(f"make demo: details of every step go to {log_file}", flush=True)
    _step(f"1/5 demo data: {len(days)} days from {days[0]} x {a.rows_per_day} rows (config env {config.env})"
          + (f", concept drift from {concept_from}" if concept_from else "")
          + (f", covariate drift from {drift_from}" if drift_from else ""))
    cmd = [str(Path(sys.executable).parent / "batchml"), "demo-data", "--start", str(a.start), "--days",
           str(len(days)), "--rows-per-day", str(a.rows_per_day), "--seed", str(a.seed)]
    cmd += ["--concept-drift-from", str(concept_from)] if concept_from else []
    subprocess.run(cmd + (["--drift-from", str(drift_from)] if drift_from else []), check=True, stdout=sys.stderr)
    if warmup:
        moved = bundle_history(config, warmup)
        print(f"  warm-up: the {len(warmup)} days' {moved} files arrive as one historical load on {warmup[-1]}",
              flush=True)

    env = _airflow_env(home)
    _step(f"2/5 Airflow metadata DB and pool under {env['AIRFLOW_HOME']} (in the background, while Spark starts)")
    airflow_db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-airflow-db")
    prepared = airflow_db.submit(local.prepare, env)  # subprocesses: the JVM start-up uses the other core
    airflow_db.shutdown(wait=False)

    _step(f"3/5 one Spark session: warm-up {days[0]}.., history {history[0]}..{history[-1]}, the first training"
          + (f", then every stage of {scored[0]}..{scored[-1]}" if scored else ""))
    from batchml import spark_server

    spark, spark_url = spark_server.serving_session(config)
    try:
        _in_session(config, spark, warmup, history, scored)
        prepared.result()
        if nightly:
            span = f"{nightly[0]}..{nightly[-1]}" if len(nightly) > 1 else str(nightly[0])
            _step(f"4/5 batchml_nightly through Airflow for {span} (one spark-submit per "
                  f"task, each attached through Spark Connect to this demo's warm Spark at {spark_url})")
            _airflow_days(config, home, nightly, spark_url)
    finally:
        spark.stop()
    _step(f"5/5 done in {(time.monotonic() - started) / 60:.1f} min")
    _story(config, scored[:a.quiet_days], concept_from, drift_from)
    _summary(config, env, home / "airflow" / "demo_nightly.log")
    print(f"Log:       {log_file}  (INFO lines of every stage, Spark and library output)")
    return 0


def _one_line_failure(log_file: Path):
    """An uncaught error: its traceback to the log file, one line naming it on the console."""
    def hook(kind, error, trace):
        sys.__excepthook__(kind, error, trace)  # stderr: the log file
        print(f"\nmake demo failed: {kind.__name__}: {error}\n  the traceback and everything before it: {log_file}",
              flush=True)
    return hook


def _airflow_env(home: Path, spark_remote: str | None = None) -> dict:
    env = local.environment(home, spark_remote=spark_remote)
    env.setdefault("BATCHML_TASK_RETRIES", "0")  # a demo failure should show at once, not after backoff
    return env


def _airflow_days(config, home: Path, nightly: list[dt.date], spark_url: str) -> None:
    """The nightly DAG for each day, in one runner process; a day the gate blocks is released there
    through the override params (recorded), as an analyst would after reading the report."""
    env = _airflow_env(home, spark_url)
    run_log = home / "airflow" / "demo_nightly.log"
    run_log.unlink(missing_ok=True)
    local.run_dates(env, "batchml_nightly", nightly, log_file=run_log, release=("demo", RELEASE_REASON),
                    on_line=_show_run)


def _show_run(line: local.RunLine) -> None:
    day = dt.date.fromisoformat(line.day)
    if line.kind == "release":
        checks = ", ".join(line.details["override_checks"])
        print(f"    {day}: releasing {line.details['override_table']}: {checks} through the DAG's override params "
              "(recorded in ops.validation_overrides)", flush=True)
    elif line.state == "success":
        LINES.stage(day, "Airflow run", line.seconds)
        LINES.finish(day, line.note)
    else:
        failed = sorted(t for t, state in line.details.items() if state == "failed")
        print(f"    {day}: Airflow run failed in {line.seconds:.0f}s ({', '.join(failed)}): {line.note}", flush=True)


def _blocked(config, day: dt.date) -> list[str]:
    from batchml.orchestration.lake_state import blocked_checks

    return blocked_checks(config, config.default_dataset, day)


def bundle_history(config, days: list[dt.date]) -> int:
    """Move every feed's landing files of ``days`` into the last day's folder, as a one-off load of
    history would arrive: one ingest and one validation instead of one per day. Features of later
    days still see each event at its own event time, and only from the day it was ingested on."""
    from pyarrow import fs as pafs

    from batchml.storage.location import StorageOptions

    filesystem, root = StorageOptions.from_config(config.storage.s3).filesystem(config.storage.landing_uri)
    dataset, moved = config.dataset(), 0
    for feed in filter(None, (dataset.events, dataset.labels)):
        target = f"{root}/{feed.landing_prefix}/{days[-1]}"
        filesystem.create_dir(target)
        for day in days[:-1]:
            source = f"{root}/{feed.landing_prefix}/{day}"
            for info in filesystem.get_file_info(pafs.FileSelector(source, allow_not_found=True)):
                filesystem.move(info.path, f"{target}/{info.base_name}")
                moved += 1
            if filesystem.get_file_info(source).type == pafs.FileType.Directory:
                filesystem.delete_dir(source)
    return moved


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _in_session(config, spark, warmup: list[dt.date], history: list[dt.date], scored: list[dt.date]) -> None:
    from batchml.spark import activate
    from batchml.stages import TRAINING_STAGES, run_stage

    if warmup:
        _run_day(config, warmup[-1], GATE_STAGES, spark)
        LINES.finish(warmup[-1], f"the warm-up's historical load ({len(warmup)} days)")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-later-stages", initializer=activate,
                            initargs=(spark,)) as later:
        _overlapped(config, spark, history, HISTORY_LATER, later, monitored=False)
        t0 = time.monotonic()
        for stage in TRAINING_STAGES:
            try:
                if run_stage(stage, config, history[-1], spark=spark) != 0:
                    print(f"  first training: {stage} did not succeed; see the log above")
                    break
            except (ValueError, OSError) as exc:  # bad data or I/O: the nightly part still runs on the fallback rules
                log.exception("first training failed at %s", stage)
                print(f"  first training failed at {stage}: {exc}; scoring will use the fallback rules")
                break
        else:
            print(f"  first training ({', '.join(TRAINING_STAGES)}, cut-off {history[-1]}): "
                  f"{time.monotonic() - t0:.0f}s", flush=True)
        _overlapped(config, spark, scored, SCORED_LATER, later, monitored=True)


def _overlapped(config, spark, days: list[dt.date], rest, later, monitored: bool) -> None:
    """Each day's ingest and validate, while ``later`` (one thread) runs the previous day's other stages.

    Two cores: one day's features, score and monitor overlap the next day's gate. That is safe because
    every later stage reads only rows ingested by its own run date, and the gates still run in date
    order (a gate compares its day with the days before). The nightly DAG itself runs days one by one.
    """
    pending = None
    for day in days:
        passed = _run_day(config, day, GATE_STAGES, spark)
        if pending is not None:
            pending.result()
        pending = later.submit(_finish_day, config, spark, day, rest, monitored) if passed else None
        if not passed:
            LINES.finish(day, "blocked: its later stages skip this day")
    if pending is not None:
        pending.result()


def _finish_day(config, spark, day: dt.date, stages, monitored: bool) -> None:
    if not _run_day(config, day, stages, spark):
        LINES.finish(day, "a stage failed: see the log")
    elif monitored:
        from batchml.monitoring.monitor import monitor

        t0 = time.monotonic()
        verdict = _verdict_line(monitor(config, day, spark=spark))
        LINES.stage(day, "monitor", time.monotonic() - t0)
        LINES.finish(day, verdict)
    else:
        LINES.finish(day)


def _run_day(config, day: dt.date, stages, spark) -> bool:
    """One day's stages in the shared session; a blocked gate is released (recorded), as an analyst would."""
    from batchml.stages import run_stage

    for stage in stages:
        t0, note = time.monotonic(), ""
        code = run_stage(stage, config, day, spark=spark)
        if stage == "validate" and code != 0:
            note = f"blocked {_release(config, day)}, released"
            code = run_stage(stage, config, day, spark=spark)
        note = note or ("FALLBACK rules" if stage == "score" and code != 0 else "")
        LINES.stage(day, stage, time.monotonic() - t0, note)
        if code != 0 and stage != "score":  # score exits 3 when fallback rules scored rows
            log.warning("%s: %s exited %s; later stages skip this day", day, stage, code)
            return False
    return True


def _release(config, day: dt.date) -> str:
    """Release what the gate blocked, recorded as an analyst's override; returns the checks."""
    from batchml.validation import gate

    blocked = _blocked(config, day)
    for item in blocked:
        table, check = item.split(": ", 1)
        gate.record_override(config, day, table, check, "demo", RELEASE_REASON)
    return ", ".join(item.split(": ", 1)[1] for item in blocked)


def _verdict_line(outcome) -> str:
    judged = [d for d in outcome.drift if d.batch_rows]
    top = max(judged, key=lambda d: d.psi, default=None)
    drift = f"max PSI {top.psi:.3f} ({top.column})" if top else "no drift rows"
    v = outcome.verdict
    perf = "no champion" if v is None else (
        f"{v.metric} {v.value:.2f} vs {v.baseline:.2f} on {len(v.dates)} matured date(s)" if v.value is not None
        and v.baseline is not None else f"{v.metric}: {v.status} ({v.positives} labelled positives)")
    kinds = sorted({r["kind"] for r in outcome.reasons})
    return f"{drift}; {perf} -> {'ALERT: ' + ', '.join(kinds) if kinds else 'ok'}"


def alert_days(config) -> dict[str, list[dt.date]]:
    """Run dates with a retraining request, by alert kind (data_drift, prediction_drift, performance)."""
    from batchml.storage import Lake

    lake, spec = Lake(config), config.dataset().monitoring
    out: dict[str, list[dt.date]] = {}
    if spec is None or not lake.exists(spec.requests_table):
        return out
    for row in lake.read_arrow(spec.requests_table).to_pylist():
        for kind in {r["kind"] for r in json.loads(row["reasons"])}:
            out.setdefault(kind, []).append(row["run_date"])
    return {k: sorted(v) for k, v in out.items()}


def _story(config, quiet: list[dt.date], concept_from: dt.date | None, drift_from: dt.date | None) -> None:
    alerts = alert_days(config)
    every = sorted({d for days in alerts.values() for d in days})
    print("Monitoring story:")
    if quiet:
        noisy = [d for d in every if d <= quiet[-1]]
        print(f"  quiet {quiet[0]}..{quiet[-1]}: " + (f"ALERTS on {noisy} (unexpected)" if noisy else "no alert"))
    for label, start, kinds in (("concept drift", concept_from, ("performance",)),
                                ("covariate drift", drift_from, ("data_drift", "prediction_drift"))):
        if start is None:
            continue
        first = min((d for k in kinds for d in alerts.get(k, []) if d >= start), default=None)
        print(f"  {label} from {start}: " + (f"first {'/'.join(kinds)} alert on {first}, "
                                             f"{(first - start).days} day(s) later" if first else "no alert yet"))


def _summary(config, env: dict, run_log: Path) -> None:
    from batchml.storage import Lake

    lake = Lake(config)
    print("Tables (Delta):")
    for name in config.tables:
        if lake.exists(name):
            print(f"  {name:36s} version {lake.version(name):>4}  {lake.uri(name)}")
    scoring = config.dataset().scoring
    if scoring and lake.exists(scoring.table):
        print(f"Scored:    {scoring.table} ({lake.count(scoring.table)} rows) at {lake.uri(scoring.table)}")
    print(f"Online:    {_online_lookup(config, lake)}")
    artifacts = config.storage.artifacts_uri
    dataset = config.default_dataset
    print(f"Reports:   {artifacts}/reports/  (validation/{dataset}/index.html, monitoring/{dataset}/<date>.html, "
          f"models/{dataset}/*.html)")
    print(f"Alerts:    {Path(config.home) / 'alerts' / 'alerts.jsonl'}")
    print(f"Airflow:   AIRFLOW_HOME={env['AIRFLOW_HOME']}; the runs' task output in {run_log}")
    print("UIs:       make ui  (Airflow with its scheduler and MLflow on this state; prints the URLs and the login)")


def _online_lookup(config, lake) -> str:
    """One lookup by event ID in the online store (an event of the last materialized day), timed warm."""
    from batchml.online.backends import BackendUnavailable
    from batchml.online.client import OnlineStore

    try:
        store = OnlineStore(config)
    except BackendUnavailable as exc:
        return f"nothing materialized ({exc})"
    try:
        latest, spec = store.status()["latest_run_date"], store.spec
        ids = lake.read_arrow(spec.table, [(spec.date_column, "=", dt.date.fromisoformat(latest))], [spec.id_column])
        event_id = ids.column(0)[0].as_py()
        store.get_features([event_id])  # opens the connection and reads the schema once
        started = time.perf_counter()
        found = store.get_features([event_id])[0]
        ms = (time.perf_counter() - started) * 1000
    finally:
        store.close()
    return (f"get_features(['{event_id}']) -> {found['status']}, {len(found.get('features', {}))} columns of run "
            f"date {found.get('run_date')} in {ms:.2f} ms ({store.backend.name}; `batchml serve-features` serves it)")


if __name__ == "__main__":
    sys.exit(main())
