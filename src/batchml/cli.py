"""Command line: ``batchml demo-data``, ``batchml run <stage>``, ``batchml demo``, ``batchml table``,
``batchml model``, ``batchml spark-server``, ``batchml serve-features``, ``batchml ui``,
``batchml rebuild``, ``batchml conf-from-terraform``."""

from __future__ import annotations

import argparse
import datetime as dt
import faulthandler
import json
import logging
import sys

from batchml.config import ConfigError, ensure_writable_home, load_config


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batchml", description="Batch ML pipeline on Apache Spark.")
    p.add_argument("--env", help="config overlay under conf/ (default: $BATCHML_ENV or 'local')")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo-data", help="write the demo card-transaction feed into the landing zone")
    _demo_args(d)

    r = sub.add_parser("run", help="run one pipeline stage for one run date, or each date of a range")
    r.add_argument("stage", help="stage name, e.g. ingest")
    when = r.add_mutually_exclusive_group(required=True)
    when.add_argument("--run-date", type=_date)
    when.add_argument("--from", dest="start", type=_date, help="first run date of a range (with --to)")
    r.add_argument("--to", dest="end", type=_date, help="last run date of the range, inclusive")
    r.add_argument("--dataset", help="dataset config name (default: default_dataset)")
    r.add_argument("--rescore", action="store_true", help="score: replace a finished run date's scores")
    r.add_argument("--reason", help="score --rescore: why (recorded in the scoring runs table)")
    r.add_argument("--migrate", action="store_true",
                   help="score: first convert scores tables of an older layout (CHANGELOG.md, Migration)")

    m = sub.add_parser("demo", help="the main job: generate demo data, then run the pipeline day by day")
    _demo_args(m, days=14, rows=20_000, bad_rate=0.001, bad_file_rate=0.1)

    o = sub.add_parser("override", help="release one failed validation check for exactly one run date")
    o.add_argument("--run-date", type=_date, required=True)
    o.add_argument("--table", required=True, help="validated table, e.g. bronze.card_transactions")
    o.add_argument("--check", required=True, help="check name as shown in the report, e.g. drift:amount")
    o.add_argument("--by", required=True, help="who releases it")
    o.add_argument("--reason", required=True, help="why (recorded, shown in reports)")
    o.add_argument("--dataset")

    t = sub.add_parser("table", help="inspect and maintain Delta tables")
    t.add_argument("action", choices=["history", "compact", "vacuum", "version"])
    t.add_argument("name", help="table name, e.g. bronze.card_transactions")
    t.add_argument("--retention-hours", type=int, help="vacuum: keep files newer than this")
    t.add_argument("--apply", action="store_true", help="vacuum: delete (default is a dry run)")

    g = sub.add_parser("model", help="model registry: manual promote / rollback (audited), history, champion-at")
    g.add_argument("action", choices=["promote", "rollback", "history", "champion-at"])
    g.add_argument("--version", type=int, help="promote: the version to make champion; rollback: the target")
    g.add_argument("--by", help="promote / rollback: who decides (recorded)")
    g.add_argument("--reason", help="promote / rollback: why (recorded)")
    g.add_argument("--at", type=dt.datetime.fromisoformat, help="champion-at: ISO time (UTC if no offset)")
    g.add_argument("--dataset")

    b = sub.add_parser("rebuild", help="rebuild every table of a date range from the landing zone and the "
                                       "manifest alone, into a fresh lake (docs/operations.md)")
    b.add_argument("--from", dest="start", type=_date, required=True, help="first run date to replay")
    b.add_argument("--to", dest="end", type=_date, required=True, help="last run date to replay (inclusive)")
    b.add_argument("--into", help="the fresh lake's URI (default: <storage.lake_uri>-rebuild-<from>-<to>)")
    b.add_argument("--dataset", help="dataset config name (default: default_dataset)")

    f = sub.add_parser("serve-features", help="serve the online feature store over HTTP (docs/online.md)")
    f.add_argument("--host", help="default: online.serve.host (127.0.0.1)")
    f.add_argument("--port", type=int, help="default: online.serve.port (8765)")
    f.add_argument("--dataset", help="dataset config name (default: default_dataset)")

    c = sub.add_parser("spark-server", help="a long-lived local Spark (Spark Connect) that jobs attach to")
    c.add_argument("action", choices=["start", "status", "stop"])
    c.add_argument("--port", type=int, default=15002)

    u = sub.add_parser("ui", help="the Airflow UI and the MLflow UI on this machine's state (Ctrl-C stops them)")
    u.add_argument("--port", type=int, default=8080, help="Airflow UI / API port")
    u.add_argument("--mlflow-port", type=int, default=5000)

    t = sub.add_parser("conf-from-terraform", help="print conf/<env>/batchml.yaml filled from `terraform output -json`")
    t.add_argument("--outputs", default="-", help="file with `terraform output -json` (default: stdin)")
    t.add_argument("--release", required=True, help="release id (the commit `make deploy` uploads)")
    t.add_argument("--mlflow-tracking-uri", help="when the stack runs no MLflow server: your managed MLflow URI")
    return p


def _demo_args(p: argparse.ArgumentParser, days: int = 7, rows: int = 20_000, bad_rate: float = 0.0,
               bad_file_rate: float = 0.0) -> None:
    p.add_argument("--start", type=_date, default=dt.date(2024, 1, 1))
    p.add_argument("--days", type=int, default=days)
    p.add_argument("--rows-per-day", type=int, default=rows)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv")
    p.add_argument("--drift-from", type=_date)
    p.add_argument("--concept-drift-from", type=_date)
    p.add_argument("--bad-rate", type=float, default=bad_rate, help="fraction of corrupted rows")
    p.add_argument("--bad-file-rate", type=float, default=bad_file_rate,
                   help="probability per day of an unreadable file")


# Libraries whose INFO lines drown the stages' own progress lines.
NOISY_LOGGERS = ("py4j", "urllib3", "botocore", "great_expectations", "mlflow", "alembic")


def quiet_noisy_loggers() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_noisy_loggers()
    if args.command == "conf-from-terraform":
        return _conf_from_terraform(args)
    try:
        config = load_config(args.env)
        if _writes(args):
            ensure_writable_home(config)
        return _dispatch(args, config)
    except ConfigError as exc:
        print(f"batchml: error: {exc}", file=sys.stderr)
        return 2
    except _operator_errors() as exc:  # known, explained failures: one line, no stack trace
        print(f"batchml: error: {exc}", file=sys.stderr)
        return 1


def _operator_errors() -> tuple[type[Exception], ...]:
    """Errors whose message tells the operator what to fix (imported only when one is raised)."""
    from batchml.ingest.ingest import LandingChanged
    from batchml.online.backends import BackendUnavailable
    from batchml.spark import JavaNotFound, SparkMasterUnreachable, SparkServerUnreachable
    from batchml.storage import (PartiallyCommitted, ReplaceWhereViolation, SchemaMismatch, UnknownTable,
                                 WriteConflict)

    return (JavaNotFound, SparkServerUnreachable, SparkMasterUnreachable, SchemaMismatch, ReplaceWhereViolation,
            UnknownTable, WriteConflict, PartiallyCommitted, BackendUnavailable, FileNotFoundError, PermissionError,
            ValueError, LandingChanged)


# Commands that only read: they may run with a read-only home.
READ_ONLY = {("table", "history"), ("table", "version"), ("model", "history"), ("model", "champion-at"),
             ("spark-server", "status"), ("spark-server", "stop")}


def _writes(args) -> bool:
    return (args.command, getattr(args, "action", None)) not in READ_ONLY


def _dispatch(args, config) -> int:
    if args.command == "demo-data":
        summary = _generate(args, config)
        print(f"demo data: {summary.transactions} transactions ({summary.fraud} fraud), "
              f"{summary.chargebacks} chargebacks in {config.storage.landing_uri} ({summary.seconds:.1f}s)")
        return 0
    if args.command == "run":
        from batchml.stages import run_stage

        if args.rescore and (args.stage != "score" or not args.reason):
            raise ValueError("--rescore applies to the score stage and needs --reason")
        if args.migrate and args.stage != "score":
            raise ValueError("--migrate applies to the score stage")
        options = {"rescore_reason": args.reason} if args.rescore else {}
        options.update({"migrate": True} if args.migrate else {})
        if (args.start is None) != (args.end is None):
            raise ValueError("--from and --to go together (or give --run-date)")
        if args.start is not None:
            from batchml.stages import run_stage_range

            return run_stage_range(args.stage, config, args.start, args.end, args.dataset, **options)
        return run_stage(args.stage, config, args.run_date, args.dataset, **options)
    if args.command == "demo":
        return _demo(args, config)
    if args.command == "override":
        from batchml.validation.gate import record_override

        record_override(config, args.run_date, args.table, args.check, args.by, args.reason, args.dataset)
        print(f"override recorded for {args.table} {args.check} on {args.run_date}; re-run validate for that date")
        return 0
    if args.command == "model":
        return _model(args, config)
    if args.command == "spark-server":
        return _spark_server(args, config)
    if args.command == "ui":
        from batchml.orchestration import ui

        return ui.serve(config, args.port, args.mlflow_port)
    if args.command == "rebuild":
        from batchml.rebuild import default_into, rebuild

        into = args.into or default_into(config, args.start, args.end)
        for day in rebuild(config, args.start, args.end, into, args.dataset):
            print(day.line())
        print(f"rebuilt {args.start}..{args.end} into {into}")
        return 0
    if args.command == "serve-features":
        from batchml.online.service import serve

        serve(config, args.dataset, args.host, args.port)
        return 0
    return _table(args, config)


def _conf_from_terraform(args) -> int:
    """The conf/<env> overlay for a release, from the repository's template and the stack's outputs."""
    from pathlib import Path

    import yaml

    from batchml.config import default_conf_dir
    from batchml.release.deploy import DeployError, conf_yaml, outputs_from_json, render_conf

    env = args.env or "prod"
    try:
        text = sys.stdin.read() if args.outputs == "-" else Path(args.outputs).read_text()
        template = yaml.safe_load(Path(default_conf_dir(), env, "batchml.yaml").read_text()) or {}
        conf = render_conf(template, outputs_from_json(text), args.release, args.mlflow_tracking_uri)
    except (DeployError, OSError) as exc:
        print(f"batchml: error: {exc}", file=sys.stderr)
        return 1
    print(conf_yaml(conf, args.release), end="")
    return 0


def _spark_server(args, config) -> int:
    from batchml import spark_server

    if args.action == "start":
        url = spark_server.start(config, args.port)
        print(f"{url}  (export BATCHML_SPARK_REMOTE={url} so jobs attach to it; "
              f"`batchml spark-server stop` ends it)")
    elif args.action == "status":
        url = spark_server.status(config)
        print(url or "not running")
        return 0 if url else 1
    else:
        print("stopped" if spark_server.stop(config) else "not running")
    return 0


def _model(args, config) -> int:
    from batchml.registry import promotion

    if args.action in ("promote", "rollback") and not (args.by and args.reason):
        raise ValueError(f"model {args.action} needs --by and --reason (both are audited)")
    if args.action == "promote":
        if args.version is None:
            raise ValueError("model promote needs --version")
        before = promotion.set_champion(config, args.version, args.by, args.reason, args.dataset)
        print(f"champion: version {before} -> {args.version}")
    elif args.action == "rollback":
        target = promotion.rollback(config, args.by, args.reason, args.version, args.dataset)
        print(f"champion rolled back to version {target}")
    elif args.action == "champion-at":
        if args.at is None:
            raise ValueError("model champion-at needs --at")
        print(promotion.champion_at(config, args.at, args.dataset))
    else:
        for row in promotion.history(config, args.dataset):
            print(json.dumps({k: v for k, v in row.items() if k != "metrics_json"}, default=str))
    return 0


def _generate(args, config):
    from batchml.demo import DemoOptions, generate

    options = DemoOptions(start=args.start, days=args.days, rows_per_day=args.rows_per_day, seed=args.seed,
                          fmt=args.format, drift_from=args.drift_from, concept_drift_from=args.concept_drift_from,
                          bad_rate=args.bad_rate, bad_file_rate=args.bad_file_rate)
    from batchml.storage.location import StorageOptions

    fs, root = StorageOptions.from_config(config.storage.s3).filesystem(config.storage.landing_uri)
    return generate(root, options, filesystem=fs)


def _demo(args, config) -> int:
    """Generate demo data, then run every stage for each day in order."""
    if args.format != config.dataset().events.format:
        raise ValueError(f"--format {args.format} differs from the dataset contract's "
                         f"{config.dataset().events.format}; change conf/ or the flag")
    _generate(args, config)
    from batchml.stages import NIGHTLY_STAGES, run_stage
    from batchml.spark import get_spark

    spark = get_spark(config)
    for i in range(args.days):
        day = args.start + dt.timedelta(days=i)
        for stage in NIGHTLY_STAGES:  # training runs on its own schedule
            if run_stage(stage, config, day, spark=spark) != 0:
                print(f"{day}: stage {stage} reported a blocking problem; later stages skip this day")
                break
    from batchml.storage import Lake

    lake = Lake(config, spark)
    quarantined = lake.read("ops.quarantine").count() if lake.exists("ops.quarantine") else 0
    print(f"\nDone. {quarantined} bad row(s)/file(s) quarantined (see ops.quarantine). "
          "Tables (Delta, readable with any Delta reader):")
    for name in config.tables:
        if lake.exists(name):
            print(f"  {name:28s} version {lake.version(name):>3}  {lake.uri(name)}")
    return 0


def _table(args, config) -> int:
    from batchml.storage import Lake

    lake = Lake(config)
    if args.action == "history":
        for entry in lake.history(args.name):
            print(json.dumps(entry, default=str))
    elif args.action == "version":
        print(lake.version(args.name))
    elif args.action == "compact":
        print(json.dumps(lake.compact(args.name), default=str))
    else:
        files = lake.vacuum(args.name, args.retention_hours, dry_run=not args.apply)
        print(f"{'deleted' if args.apply else 'would delete'} {len(files)} file(s)")
        for f in files:
            print(f"  {f}")
    return 0


def run_job(stage: str, argv: list[str]) -> int:
    """Entry for ``jobs/<stage>.py`` under spark-submit: ``[--env E] --run-date D [--dataset X]``."""
    # A native abort (seen once: libstdc++'s "terminate called" at interpreter exit, after the job had
    # committed) then prints every Python thread's stack in the task log, not one bare line.
    faulthandler.enable()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--env")
    known, rest = pre.parse_known_args(argv)
    return main(([f"--env={known.env}"] if known.env else []) + ["run", stage, *rest])


if __name__ == "__main__":
    sys.exit(main())
