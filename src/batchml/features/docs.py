"""Generate the feature docs from the feature specs: ``docs/features/<dataset>.md`` for every dataset with
features, and ``docs/features.md``, their index. ``python -m batchml.features.docs`` writes them all;
``--dataset X --out F`` one page; ``--conf-dir`` / ``--env`` read another configuration."""

from __future__ import annotations

import argparse
from pathlib import Path

from batchml.features.compute import edge_offsets
from batchml.features.spec import FeatureSpec
from batchml.rundays import UTC_CALENDAR, RunCalendar

DOC = Path("docs") / "features.md"  # the index; run from the repository root
PAGES = Path("docs") / "features"  # one page per dataset
_FN = {"count": "number of events", "sum": "sum of `{c}`", "mean": "mean of `{c}`", "max": "largest `{c}`",
       "distinct_count": "number of distinct `{c}` values"}


def render_feature_docs(spec: FeatureSpec, dataset: str = "card_transactions",
                        sql: dict[str, str] | None = None, calendar: RunCalendar = UTC_CALENDAR) -> str:
    """Markdown for every feature of ``spec``; ``sql`` maps each SQL file name to its text; ``calendar``: the
    dataset's time zone and the events' known-since rule."""
    local = "UTC" if calendar.timezone == "UTC" else f"{calendar.timezone} local"
    known = ("ingested by D" if calendar.known_since == "ingest_date" else
             "ingested so far (`known_since: event_time`: a bulk history load counts as known at its event times; "
             "the windows below still end strictly before each event)")
    lines = [
        f"# Features: `{dataset}`",
        "",
        f"<!-- Generated from the features: section of dataset {dataset!r} (conf/<env>/datasets/{dataset}.yaml) by "
        "`python -m batchml.features.docs`. Do not edit by hand; tests/features checks that it is current. -->",
        "",
        f"Table `{spec.table}`: one row per event (`{spec.id_column}`), partitioned by `{spec.date_column}` "
        f"(the {local} date of `{spec.event_time_column}`: the dataset's `timezone:` is `{calendar.timezone}`). "
        f"`batchml run features --run-date D` builds partition D, the events of D's {local} day, from the "
        f"events of the {spec.lookback()} days before them and of that day, {known}: the (UTC) day tiles of the "
        f"entities (`tiles.{dataset}.<entity>`, each ingest date aggregated once) plus the raw events of D and "
        f"of each window's boundary day ({', '.join(f'D - {k}' for k in edge_offsets(spec))}). "
        "How tiles work, why they are exact, the rule for late and redelivered events, time zones and bulk "
        "history: [tiling.md](../tiling.md).",
        "",
        "**Point in time.** Every window feature of an event at time `t` is computed only from events of the "
        "same entity with event time in `[t - window, t)` (windows are durations on UTC instants: 24h is "
        "86,400 seconds on a DST day too): strictly before `t`, so events at the same "
        "instant never see each other, and nothing after `t` can change the value. Redelivered events are "
        "counted once (latest ingest). Empty windows give count 0, sum 0, distinct count 0, and null "
        "mean, max and time since last event. Events whose entity key is null get null for that entity's "
        "features.",
        "",
        "## Entities and windows",
        "",
        "| entity | keys | windows | description |",
        "|---|---|---|---|",
    ]
    for name, entity in spec.entities.items():
        lines.append(f"| `{name}` | {', '.join(f'`{k}`' for k in entity.keys)} | "
                     f"{', '.join(spec.entity_windows(name))} | {entity.description} |")
    lines += ["", "## Window aggregates", "", "| feature | entity | window | value |", "|---|---|---|---|"]
    for feature, owner, agg, label in spec.window_features():
        what = _FN[agg.function].format(c=agg.column)
        desc = f" {agg.description}" if agg.description else ""
        lines.append(f"| `{feature}` | `{owner}` | {label} | {what} in `[t - {label}, t)`.{desc} |")
    since = [n for n, e in spec.entities.items() if e.time_since_last]
    if since:
        lines += ["", "## Time since the entity's last event", "", "| feature | value |", "|---|---|"]
        for n in since:
            lines.append(f"| `{n}_seconds_since_last` | seconds from the `{n}`'s latest earlier event "
                         f"(within the lookback: from the start of D - {spec.lookback()} days) to `t` |")
    if spec.label_features:
        lines += ["", "## Features from matured labels", "",
                  "Over the dataset's label feed (`label:`), per entity of the event. Each earlier event of the "
                  "entity contributes its outcome once known: at its label row's time when that time is within "
                  "the feature's maturity of the event (value labels: the `label.value` expression on the event's "
                  "earliest known row; presence labels: a row is a positive), and for presence labels a negative "
                  "at event time + maturity when no row came by then. An event at `t` counts the outcomes known "
                  "in `[t - window, t)`, strictly before `t`, from label rows ingested by its run date: a label "
                  "delivered later is invisible, exactly as a late event is. Empty windows give 0 labelled, "
                  "0 positives and a null rate; events with a null key get nulls.", "",
                  "| feature | keys | window | maturity | value |", "|---|---|---|---|---|"]
        what = {"labelled": "number of the entity's outcomes known", "positives": "positive outcomes known",
                "positive_rate": "positives / labelled (null when none)"}
        for name, lf in spec.label_features.items():
            for feature, kind, window in lf.names(name):
                lines.append(f"| `{feature}` | {', '.join(f'`{k}`' for k in lf.keys)} | {window} | "
                             f"{lf.maturity_days} d | {what[kind]} in `[t - {window}, t)` |")
    if spec.as_of:
        lines += ["", "## Point-in-time joins to reference feeds", "",
                  "Per event at `t`, the reference feed's row with the same keys and the latest valid time "
                  "`<= t - tolerance`, among the rows ingested by the run date (a row delivered later is "
                  "invisible; of several rows with the same keys and valid time the latest delivery wins); null "
                  "when there is none or it is older than the maximum age (`t - valid time > max age`). Computed "
                  "as a sort-merge: events and reference rows of a key in one time-ordered stream, each event "
                  "taking the last reference row before it; benchmarked against duckdb's `ASOF JOIN` "
                  "([bench/README.md](../../bench/README.md#where-the-time-goes), `bench_asof.py`).", "",
                  "| feature | feed | keys (event = reference) | tolerance | max age |", "|---|---|---|---|---|"]
        for name, join in spec.as_of.items():
            keys = ", ".join(f"`{e}` = `{r}`" for e, r in join.keys.items())
            for feature, column in zip(join.names(name), join.columns):
                lines.append(f"| `{feature}` | `{join.feed}`.`{column}` | {keys} | {join.tolerance or '0'} | "
                             f"{join.max_age or f'the lookback ({spec.lookback()} d)'} |")
    lines += ["", "## Passthrough columns", "", ", ".join(f"`{c}`" for c in spec.passthrough) or "none"]
    if spec.sql:
        lines += ["", "## Derived features (Spark SQL)", "",
                  "Applied in order after the aggregates; each query reads `{features}`, one row per event, "
                  "so it can only combine values of the same row (ratios against the entity's own history, "
                  "categorical encodings)."]
        for name in spec.sql:
            lines += ["", f"### `{name}`", "", "```sql", (sql or {}).get(name, "").rstrip(), "```"]
    return "\n".join(lines) + "\n"


def current_docs(config, dataset: str | None = None) -> str:
    """The page of ``dataset`` (default: the default dataset); a dataset without features is an error."""
    from batchml.features.build import feature_spec
    from batchml.features.compute import load_sql

    name = dataset or config.default_dataset
    if name not in config.datasets:
        raise ValueError(f"no dataset {name!r} in the config (datasets: {', '.join(sorted(config.datasets))})")
    name, spec = feature_spec(config, name)
    texts = dict(zip(spec.sql, load_sql(spec, config.conf_dir)))
    return render_feature_docs(spec, name, texts, config.dataset(name).calendar())


def index_docs(config) -> str:
    """``docs/features.md``: the datasets and their pages."""
    lines = ["# Features", "", "<!-- Generated by `python -m batchml.features.docs`. Do not edit by hand; "
             "tests/features checks that it is current. -->", "",
             "Each dataset's `features:` section declares its point-in-time features: window aggregates per "
             "entity (built from day tiles, [tiling.md](tiling.md)), features from matured labels, point-in-time "
             "joins to reference feeds and Spark SQL on top. A dataset's `timezone:` (default UTC) makes run date "
             "D its local day, and the events feed's `known_since:` rule says which deliveries a build of D may "
             "read ([tiling.md](tiling.md#run-dates-time-zones-and-bulk-history)). One generated page per dataset:",
             "",
             "| dataset | feature table | page |", "|---|---|---|"]
    for name, ds in sorted(config.datasets.items()):
        if ds.features is None:
            lines.append(f"| `{name}` | none (no `features:` section) | |")
        else:
            lines.append(f"| `{name}` | `{ds.features.table}` | [features/{name}.md](features/{name}.md) |")
    return "\n".join(lines) + "\n"


def all_docs(config) -> dict[Path, str]:
    """Every generated page, by its path relative to the repository root."""
    pages = {DOC: index_docs(config)}
    for name, ds in sorted(config.datasets.items()):
        if ds.features is not None:
            pages[PAGES / f"{name}.md"] = current_docs(config, name)
    return pages


def main(argv: list[str] | None = None) -> int:
    import sys

    from batchml.config import load_config

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", help="write only this dataset's page (to --out)")
    parser.add_argument("--out", type=Path,
                        help="with --dataset: the file to write (default docs/features/<dataset>.md)")
    parser.add_argument("--conf-dir", help="the configuration folder (default: the repository's conf/)")
    parser.add_argument("--env", default="base", help="the environment whose config is read (default: base)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.env, conf_dir=args.conf_dir)
        pages = ({args.out or PAGES / f"{args.dataset}.md": current_docs(config, args.dataset)} if args.dataset
                 else all_docs(config))
    except ValueError as exc:  # a bad config (ConfigError) or a dataset without features: one line, no trace
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, text in pages.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
