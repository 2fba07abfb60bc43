"""The features stage on real Spark and Delta: lookback-only reads, own-partition overwrites,
backfill equals daily builds, idempotent re-runs, the generated docs page."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from batchml.config import TableConfig
from batchml.features.build import build_features, feature_spec
from batchml.features.docs import DOC, PAGES, all_docs, current_docs
from batchml.stages import STAGES, run_stage
from batchml.storage import Lake
from tests.conftest import REPO, make_config
from tests.features.helpers import BRONZE_SCHEMA, at, event, random_events, reference

D = dt.date(2024, 3, 10)
BRONZE = "silver.card_transactions"  # the gate's accepted events: what features read


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def with_table(config, table: str):
    name, spec = feature_spec(config)
    ds = config.dataset().model_copy(update={"features": spec.model_copy(update={"table": table})})
    return config.model_copy(update={"datasets": {**config.datasets, name: ds}})


def rows_of(lake: Lake, table: str, where=None) -> list[dict]:
    data = lake.read_arrow(table, where).to_pylist()
    return sorted(data, key=lambda r: r["transaction_id"])


def files_of(lake: Lake, table: str, partition: dt.date) -> set[str]:
    adds = pa.table(lake._delta(table).get_add_actions(flatten=True)).to_pylist()
    return {a["path"] for a in adds if a["partition.event_date"] == partition}


@pytest.fixture(scope="module")
def built(base_config, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    config = make_config(base_config, root, tables={"features.backfill": TableConfig(partition_by=["event_date"])})
    lake = Lake(config, spark)
    rows = random_events(day(-33), 36, 25, seed=11, customers=8, merchants=4)  # event days D-33 .. D+2
    for ingest in sorted({r["ingest_date"] for r in rows}):
        lake.write_arrow(pa.Table.from_pylist([r for r in rows if r["ingest_date"] == ingest], BRONZE_SCHEMA), BRONZE)

    backfill = build_features(with_table(config, "features.backfill"), day(-1), spark=spark, end=D)
    build_features(config, day(-1), spark=spark)
    before = {p: (files_of(lake, "features.card_transactions", p),
                  rows_of(lake, "features.card_transactions", [("event_date", "=", p)])) for p in (day(-1),)}
    # D's build may read only [D - 30 days, D + 1 day), ingested by D: delete every bronze file outside
    table_dir = Path(lake.uri(BRONZE))
    deleted = 0
    for part in table_dir.glob("ingest_date=*"):
        ingest = dt.date.fromisoformat(part.name.split("=")[1])
        if ingest < day(-30) or ingest > D:
            deleted += len(list(part.glob("*.parquet")))
            shutil.rmtree(part)
    assert deleted >= 4
    assert run_stage("features", config, D, spark=spark) == 0  # the registered stage: batchml run features
    return {"config": config, "lake": lake, "rows": rows, "before": before, "backfill": backfill}


def test_a_day_reads_only_its_lookback_and_overwrites_only_its_partition(built):
    lake = built["lake"]
    table = "features.card_transactions"
    spec = feature_spec(built["config"])[1]
    stored = rows_of(lake, table, [("event_date", "=", D)])
    want = reference(built["rows"], spec, D)
    assert {r["transaction_id"] for r in stored} == set(want) and len(want) >= 20
    for row in stored:
        for name, value in want[row["transaction_id"]].items():
            assert row[name] == (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)), name
    for partition, (files, rows) in built["before"].items():  # earlier partitions: same files, same rows
        assert files_of(lake, table, partition) == files and rows
        assert rows_of(lake, table, [("event_date", "=", partition)]) == rows


def test_backfill_equals_daily_builds(built):
    lake = built["lake"]
    assert not built["backfill"].skipped and built["backfill"].rows_written >= 40
    daily = rows_of(lake, "features.card_transactions")
    backfill = rows_of(lake, "features.backfill")
    assert {r["event_date"] for r in daily} == {day(-1), D}
    assert daily == backfill  # every column, bit for bit


def test_rerun_of_a_date_is_a_no_op(built):
    lake = built["lake"]
    version = lake.version("features.card_transactions")
    again = build_features(built["config"], D, spark=lake.spark)
    assert again.skipped and lake.version("features.card_transactions") == version


def test_stage_job_and_docs_page(base_config):
    assert "features" in STAGES
    job = (REPO / "jobs" / "build_features.py").read_text()
    assert 'run_job("features"' in job
    pages = all_docs(base_config)
    assert set(pages) == {DOC, *(PAGES / f"{name}.md" for name in base_config.datasets)}  # every dataset
    for path, text in pages.items():
        assert (REPO / path).read_text() == text, f"{path} is stale: run .venv/bin/python -m batchml.features.docs"
    assert "## Point-in-time joins to reference feeds" in pages[PAGES / "flight_delays.md"]
    assert pages[PAGES / "card_transactions.md"] == current_docs(base_config, "card_transactions")


def test_the_docs_generator_reads_any_config_and_says_what_is_wrong_in_one_line(tmp_path, capsys):
    import shutil

    from batchml.features.docs import main

    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "base" / "datasets" / "no_features.yaml").write_text(
        (conf / "base" / "datasets" / "flight_delays.yaml").read_text().split("\nfeatures:")[0]
        .replace("flights", "nf_flights").replace("flight_outcomes", "nf_outcomes").replace("weather", "nf_weather"))
    out = tmp_path / "nf.md"
    assert main(["--conf-dir", str(conf), "--dataset", "no_features", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == ("error: dataset 'no_features' declares no features (add a 'features:' "
                                               "section to its config)")
    assert main(["--conf-dir", str(conf), "--dataset", "flight_delays", "--out", str(out)]) == 0
    assert out.read_text() == (REPO / PAGES / "flight_delays.md").read_text()


def test_nightly_tiles_take_late_and_redelivered_events_exactly(base_config, spark, tmp_path):
    """A night tiles only its own ingest: late events and redeliveries (new values, a moved event
    time, another customer) revise the tiles of earlier ingest dates, and match the reference."""
    config = make_config(base_config, tmp_path)
    lake = Lake(config, spark)
    spec = feature_spec(config)[1]
    rows = [r for r in random_events(day(-4), 4, 15, seed=23, customers=4, merchants=3)
            if r["_source_file"] != "redelivery"]  # ingest dates D-4 .. D-1, on time
    old = [r for r in rows if r["ingest_date"] == day(-1)][:3] + [r for r in rows if r["ingest_date"] == day(-3)][:2]
    arriving = (  # ingest D: the day's events, late ones, and new versions of rows tiled the nights before
        [event(f"d{i}", at(D, 1 + i), f"c{i % 4}", f"m{i % 3}", 5.0 + i, ingest=D) for i in range(12)]
        + [event("late1", at(day(-2), 23), "c1", "m2", 77.0, ingest=D),
           event("late2", at(day(-1), 0.5), "c2", "m0", 8.0, ingest=D)]
        + [{**r, "amount": r["amount"] + 500, "_source_file": "again", "ingest_date": D} for r in old[:3]]
        + [{**old[3], "event_time": old[3]["event_time"] + dt.timedelta(hours=30), "_source_file": "again",
            "ingest_date": D}, {**old[4], "customer_id": "c9", "_source_file": "again", "ingest_date": D}])
    for ingest in sorted({r["ingest_date"] for r in rows}):
        lake.write_arrow(pa.Table.from_pylist([r for r in rows if r["ingest_date"] == ingest], BRONZE_SCHEMA), BRONZE)
    build_features(config, day(-1), spark=spark)
    lake.write_arrow(pa.Table.from_pylist(arriving, BRONZE_SCHEMA), BRONZE)
    build_features(config, D, spark=spark)  # tiles ingest D only, revising the tiles of D-1 and D-3
    versions = lake.read_arrow("tiles.card_transactions.log").to_pylist()
    assert {(v["ingest_date"], v["as_of"]) for v in versions if v["as_of"] == D} == {(D, D), (day(-1), D),
                                                                                     (day(-3), D)}
    want = reference(rows + arriving, spec, D)
    stored = rows_of(lake, "features.card_transactions", [("event_date", "=", D)])
    assert {r["transaction_id"] for r in stored} == set(want) and len(want) == 12
    for row in stored:
        for name, value in want[row["transaction_id"]].items():
            assert row[name] == (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)), name


def with_known_since(config, rule: str):
    """The demo dataset with the events' ``known_since`` rule, its features cut to the customer entity (test time)."""
    ds = config.dataset()
    events = ds.events.model_copy(update={"known_since": rule})
    spec = ds.features.model_copy(update={"entities": {"customer": ds.features.entities["customer"]}, "sql": []})
    return config.model_copy(update={"datasets": {**config.datasets, config.default_dataset: ds.model_copy(
        update={"events": events, "features": spec})}})


def test_bulk_history_known_since_event_time_equals_daily_deliveries_and_never_sees_the_future(
        base_config, spark, tmp_path):
    """Five days of events land in one bulk delivery on D (with events after the backfilled days planted in
    it). Under the strict default a backfill of D-5 .. D-1 sees nothing; under ``known_since: event_time``
    (``batchml run features --from D-5 --to D-1``) each day equals the oracle of daily deliveries."""
    from batchml.stages import run_stage_range

    strict = with_known_since(make_config(base_config, tmp_path), "ingest_date")
    lake = Lake(strict, spark)
    spec = feature_spec(strict)[1]
    daily = [r for r in random_events(day(-5), 5, 10, seed=29, customers=3, merchants=2)
             if r["_source_file"] != "redelivery"]  # as if delivered on their own dates
    tie = at(day(-3), 12)  # same instant, and 1 µs later, for one customer: neither sees what is not before it
    daily += [event("tie_a", tie, "c1", "m0", 50.0, ingest=day(-3)), event("tie_b", tie, "c1", "m1", 60.0,
              ingest=day(-3)), event("tie_c", tie + dt.timedelta(microseconds=1), "c1", "m0", 70.0, ingest=day(-3))]
    future = [event(f"future{i}", at(day(-1), 23.5) + dt.timedelta(minutes=31 + 60 * i), f"c{i % 3}", "m0", 900.0,
                    ingest=D) for i in range(4)]  # after every backfilled day: in D's bulk, invisible to them
    lake.write_arrow(pa.Table.from_pylist([{**r, "ingest_date": D} for r in daily] + future, BRONZE_SCHEMA), BRONZE)
    with pytest.raises(FileNotFoundError, match="no events ingested"):  # strict: nothing known before D
        build_features(strict, day(-5), spark=spark, end=day(-1))

    assert run_stage_range("features", with_known_since(strict, "event_time"), day(-5), day(-1), spark=spark) == 0
    for d in range(-5, 0):
        want = reference(daily, spec, day(d))
        stored = rows_of(lake, "features.card_transactions", [("event_date", "=", day(d))])
        assert {r["transaction_id"] for r in stored} == set(want) and len(want) >= 8, day(d)
        for row in stored:
            for name, value in want[row["transaction_id"]].items():
                assert row[name] == (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)), name
