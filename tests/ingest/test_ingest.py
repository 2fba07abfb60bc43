"""Ingest end to end on real Spark and Delta, fed by the demo generator."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from batchml.demo import DemoOptions, generate
from batchml.ingest.ingest import MANIFEST, QUARANTINE, ingest
from batchml.storage import Lake

DAY = dt.date(2024, 1, 1)


def with_format(config, fmt):
    ds = config.dataset()
    events = ds.events.model_copy(update={"format": fmt})
    labels = ds.labels.model_copy(update={"format": fmt})
    return config.model_copy(update={"datasets": {config.default_dataset: ds.model_copy(
        update={"events": events, "labels": labels})}})


def land(config, **options):
    opts = DemoOptions(**{"start": DAY, "days": 1, "rows_per_day": 3000, "seed": 7, **options})
    return generate(config.storage.landing_uri, opts)


def test_every_row_is_accepted_or_quarantined_per_file(config, spark):
    summary = land(config, bad_rate=0.02, bad_file_rate=1.0)
    events = ingest(config, DAY, spark=spark)[0]
    lake = Lake(config, spark)
    manifest = lake.read_arrow(MANIFEST, [("feed", "=", "events")]).to_pylist()
    assert len(manifest) == events.files_seen == events.files_new >= 2
    for row in manifest:
        assert row["rows_accepted"] + row["rows_quarantined"] == row["rows_read"], row["file_name"]
        assert len(row["sha256"]) == 64 and row["size_bytes"] > 0 and row["target_version"] == 0
    # Every injected bad row is caught, and nothing else.
    assert events.rows_quarantined == sum(summary.bad_rows.values()) > 0
    assert events.rows_accepted + events.rows_quarantined == summary.transactions
    assert lake.read("bronze.card_transactions").count() == events.rows_accepted
    # The unreadable file: quarantined whole, with a copy kept.
    bad = [r for r in manifest if r["status"] == "quarantined_file"]
    assert [Path(r["path"]).name for r in bad] == [Path(p).name for p in summary.bad_files]
    copies = list(Path(config.storage.lake_uri, "ops", "quarantine_files", DAY.isoformat()).iterdir())
    assert len(copies) == 1 and copies[0].read_bytes() == Path(summary.bad_files[0]).read_bytes()
    quarantine = lake.read_arrow(QUARANTINE).to_pylist()
    assert len(quarantine) == events.rows_quarantined + 1
    row_level = [q for q in quarantine if q["row_number"] is not None]
    assert all(q["raw_record"] and q["reason"] and q["source_file"].endswith(".csv") for q in row_level)
    reasons = " | ".join(q["reason"] for q in row_level)
    for rule in ("not a valid float64", "missing required field", "not a valid timestamp", "wrong column count",
                 "not a valid int32"):
        assert rule in reasons


def test_rerun_and_redelivery_of_same_content_are_no_ops(config, spark):
    land(config)
    ingest(config, DAY, spark=spark)
    lake = Lake(config, spark)
    versions = {t: lake.version(t) for t in ("bronze.card_transactions", MANIFEST, QUARANTINE)}
    rows = lake.read("bronze.card_transactions").count()
    again = ingest(config, DAY, spark=spark)[0]
    assert again.files_new == 0
    # The same bytes under another name on another day: still a no-op.
    src = next(Path(config.storage.landing_uri, "transactions", DAY.isoformat()).iterdir())
    later = Path(config.storage.landing_uri, "transactions", "2024-01-02")
    later.mkdir(parents=True)
    (later / "copy.csv").write_bytes(src.read_bytes())
    assert ingest(config, dt.date(2024, 1, 2), spark=spark)[0].files_new == 0
    assert {t: lake.version(t) for t in versions} == versions
    assert lake.read("bronze.card_transactions").count() == rows


def test_same_name_with_new_content_is_a_flagged_new_version(config, spark):
    land(config)
    ingest(config, DAY, spark=spark)
    path = next(Path(config.storage.landing_uri, "transactions", DAY.isoformat()).iterdir())
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:11]) + "\n")  # header + 10 corrected rows
    report = ingest(config, DAY, spark=spark)[0]
    assert report.redelivered == [str(path)] and report.rows_accepted == 10
    history = [r for r in Lake(config, spark).read_arrow(MANIFEST).to_pylist() if r["path"] == str(path)]
    assert len(history) == 2 and sum(r["redelivered"] for r in history) == 1
    flagged = next(r for r in history if r["redelivered"])
    assert flagged["previous_sha256"] == next(r for r in history if not r["redelivered"])["sha256"]


def test_crash_after_bronze_commit_then_restart_lands_each_file_once(config, spark, monkeypatch):
    land(config)
    lake_cls = Lake
    real = lake_cls.write_arrow

    def crash(self, data, name, **kwargs):
        raise SystemError("killed before the manifest commit")

    monkeypatch.setattr(lake_cls, "write_arrow", crash)
    with pytest.raises(SystemError):
        ingest(config, DAY, spark=spark)
    monkeypatch.setattr(lake_cls, "write_arrow", real)
    lake = Lake(config, spark)
    rows_after_crash = lake.read("bronze.card_transactions").count()
    assert not lake.exists(MANIFEST)
    report = ingest(config, DAY, spark=spark)[0]  # restart: bronze write is skipped by its txn id
    assert report.files_new == 1
    assert lake.read("bronze.card_transactions").count() == rows_after_crash
    assert lake.version("bronze.card_transactions") == 0
    assert lake.read_arrow(MANIFEST).num_rows == 1


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_other_formats_and_late_labels(config, spark, fmt):
    config = with_format(config, fmt)
    summary = land(config, fmt=fmt, days=2, bad_rate=0.01)
    assert summary.chargebacks > 0
    total = 0
    label_days = sorted(p.name for p in Path(config.storage.landing_uri, "chargebacks").iterdir())
    for day in (DAY, DAY + dt.timedelta(days=1)):
        total += ingest(config, day, spark=spark)[0].rows_accepted
    for day in label_days:
        ingest(config, dt.date.fromisoformat(day), spark=spark)
    lake = Lake(config, spark)
    assert total == summary.transactions - sum(summary.bad_rows.values())
    labels = lake.read("bronze.card_chargebacks")
    assert labels.count() == summary.chargebacks
    # Labels arrive 1..45 days after the transaction; stored timestamps are UTC.
    tx = lake.read("bronze.card_transactions").select("transaction_id", "event_time")
    delays = labels.join(tx, "transaction_id").selectExpr("datediff(reported_at, event_time) as d").collect()
    assert delays and all(1 <= r["d"] <= 46 for r in delays)


def test_event_times_with_offsets_are_stored_in_utc(config, spark):
    land(config, days=1, rows_per_day=200)
    ingest(config, DAY, spark=spark)
    path = next(Path(config.storage.landing_uri, "transactions", DAY.isoformat()).iterdir())
    first = path.read_text().splitlines()[1].split(",")
    raw_time = dt.datetime.fromisoformat(first[1])
    row = Lake(config, spark).read("bronze.card_transactions").where(f"transaction_id = '{first[0]}'").collect()[0]
    assert row["event_time"] == raw_time.astimezone(dt.timezone.utc).replace(tzinfo=None)
    assert row["_row_number"] == 2 and row["ingest_date"] == DAY


@pytest.mark.parametrize("error", [RecursionError("deep"), OverflowError("far"), UnicodeEncodeError(
    "utf-8", "\ud800", 0, 1, "surrogates not allowed"), ValueError("5,000 digits"), EOFError("cut short")])
def test_whatever_one_file_s_bytes_raise_quarantines_that_file_only(config, tmp_path, monkeypatch, error):
    """The file boundary in the parse task (issue 21, cases 3 and 7), without Spark."""
    from batchml.ingest import contract
    from batchml.ingest.ingest import StagedCopyChanged, _parse_one

    source = config.dataset().events
    schema = contract.output_schema(source)
    staged = tmp_path / "copy"
    staged.write_bytes(b"whatever")
    digest = hashlib.sha256(b"whatever").hexdigest()

    def explode(data, src, name):
        raise error

    monkeypatch.setattr(contract, "parse", explode)
    storage = Lake(config).storage
    rows = [r for b in _parse_one(str(staged), "/landing/f.csv", "f.csv", digest, source, storage, schema)
            for r in b.to_pylist()]
    assert len(rows) == 1 and rows[0]["_row_number"] is None and rows[0]["_source_file"] == "/landing/f.csv"
    assert rows[0]["_error"].startswith(f"unreadable file: {type(error).__name__}: ")
    with pytest.raises(StagedCopyChanged):  # a staged copy that no longer matches its hash is not data
        list(_parse_one(str(staged), "/landing/f.csv", "f.csv", "0" * 64, source, storage, schema))
