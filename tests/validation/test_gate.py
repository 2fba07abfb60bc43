"""The validation gate end to end: planted defects, holds, overrides, results and reports."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from batchml.demo import DemoOptions, generate
from batchml.ingest.ingest import ingest
from batchml.stages import run_stage
from batchml.storage import Lake
from batchml.validation.gate import OVERRIDES, RESULTS, record_override, validate
from tests.orchestration.browser import check_reports

START = dt.date(2024, 1, 1)
TX = "bronze.card_transactions"


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def load(config, spark, days=3, **options):
    generate(config.storage.landing_uri, DemoOptions(start=START, days=days, rows_per_day=3000, seed=3, **options))
    for i in range(days):
        ingest(config, day(i), spark=spark)


def plant(lake, run_date, change):
    """Rewrite one bronze partition with a defect (through the lake, like any job)."""
    batch = lake.read(TX).where(F.col("ingest_date") == run_date)
    changed = change(batch).localCheckpoint()
    lake.write(changed, TX, mode="overwrite", replace_where=[("ingest_date", "=", run_date)])


def outcome(outcomes, table=TX):
    return next(o for o in outcomes if o.table == table)


def statuses(o):
    return {r.check: r.status for r in o.results}


def test_clean_days_pass_and_go_to_silver(config, spark):
    load(config, spark, days=2)
    for i in range(2):
        o = outcome(validate(config, day(i), spark=spark))
        assert not o.blocked and o.quarantined_rows == 0 and o.accepted_rows == o.rows > 0
        assert {s for s in statuses(o).values()} <= {"passed", "skipped"}, statuses(o)
    assert statuses(o)["drift:amount"] == "passed"  # day 2 has a reference: day 1
    lake = Lake(config, spark)
    assert lake.read("silver.card_transactions").count() == lake.read(TX).count()


def test_row_defects_are_quarantined_by_rule_and_the_rest_goes_on(config, spark):
    load(config, spark, days=1)
    lake = Lake(config, spark)
    id_ = F.col("_row_number")
    plant(lake, day(0), lambda b: b
          .withColumn("amount", F.when(id_ == 2, F.lit(-5.0)).otherwise(F.col("amount")))
          .withColumn("channel", F.when(id_ == 3, F.lit("teleport")).otherwise(F.col("channel")))
          .withColumn("currency", F.when(id_ == 4, F.lit("euro")).otherwise(F.col("currency")))
          .withColumn("transaction_id", F.when(id_ == 6, F.lit("dup")).when(id_ == 7, F.lit("dup"))
                      .otherwise(F.col("transaction_id")))
          .withColumn("card_present", F.when((id_ >= 10) & (F.col("channel") == "ecom"), F.lit(True))
                      .otherwise(F.col("card_present"))))
    planted_ecom = lake.read(TX).where("channel = 'ecom' AND card_present").count()
    o = outcome(validate(config, day(0), spark=spark))
    s = statuses(o)
    for check in ("amount_range", "channel_known", "currency_iso", "transaction_id_unique",
                  "ecom_is_card_not_present"):
        assert s[check] == "quarantined", (check, s[check])
    assert not o.blocked
    assert o.quarantined_rows == 5 + planted_ecom and o.accepted_rows == o.rows - o.quarantined_rows
    rows = lake.read("ops.quarantine").where("feed = 'validation'").collect()
    reasons = {r["row_number"]: r["reason"] for r in rows}
    assert "amount_range" in reasons[2] and "channel_known" in reasons[3] and "currency_iso" in reasons[4]
    assert "transaction_id_unique" in reasons[6] and "transaction_id_unique" in reasons[7]
    assert all(r["raw_record"] and r["source_file"] for r in rows)
    silver = lake.read("silver.card_transactions")
    assert silver.count() == o.accepted_rows and silver.where("transaction_id = 'dup'").count() == 0
    # Examples are shown, except for sensitive columns.
    by_check = {r.check: r for r in o.results}
    assert "teleport" in by_check["channel_known"].examples
    assert by_check["transaction_id_unique"].failing_rows == 2
    # Re-running the date gives the same outputs, not duplicates.
    validate(config, day(0), spark=spark)
    assert lake.read("ops.quarantine").where("feed = 'validation'").count() == len(rows)
    assert lake.read("silver.card_transactions").count() == o.accepted_rows


def test_policy_hold_keeps_the_whole_batch_back(config, spark):
    spec = config.dataset().validation[TX].model_copy(update={"policy": "hold"})
    ds = config.dataset().model_copy(update={"validation": {**config.dataset().validation, TX: spec}})
    config = config.model_copy(update={"datasets": {config.default_dataset: ds}})
    load(config, spark, days=1)
    lake = Lake(config, spark)
    plant(lake, day(0), lambda b: b.withColumn("amount", F.when(F.col("_row_number") == 2, F.lit(-1.0))
                                                .otherwise(F.col("amount"))))
    o = outcome(validate(config, day(0), spark=spark))
    assert o.blocked and o.blocking_checks() == ["amount_range"] and o.accepted_rows == 0
    assert lake.read("silver.card_transactions").where(F.col("ingest_date") == day(0)).count() == 0


@pytest.mark.parametrize("defect, check", [
    (lambda b: b.limit(10), "row_count"),
    (lambda b: b.withColumn("event_time", F.col("event_time") - F.expr("INTERVAL 5 DAYS")), "freshness:event_time"),
])
def test_table_level_defects_block(config, spark, defect, check):
    load(config, spark, days=1)
    plant(Lake(config, spark), day(0), defect)
    o = outcome(validate(config, day(0), spark=spark))
    assert o.blocked and check in o.blocking_checks()


def test_schema_contract_mismatch_blocks(config, spark):
    load(config, spark, days=1)
    ds = config.dataset()
    from batchml.config import ColumnContract

    events = ds.events.model_copy(update={"columns": [*ds.events.columns, ColumnContract(name="mcc", type="int32")]})
    config = config.model_copy(update={"datasets": {config.default_dataset: ds.model_copy(update={"events": events})}})
    o = outcome(validate(config, day(0), spark=spark))
    assert o.blocked and "schema_columns" in o.blocking_checks() and "schema_type:mcc" in o.blocking_checks()


def test_drift_blocks_and_an_override_releases_exactly_one_run_date(config, spark, capsys, tmp_path):
    load(config, spark, days=4, drift_from=day(2))
    for i in range(2):
        assert not outcome(validate(config, day(i), spark=spark)).blocked
    assert run_stage("validate", config, day(2), spark=spark) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # one line: checks, the real report, the release
    report = Path(config.storage.artifacts_uri, "reports/validation/card_transactions/2024-01-03", f"{TX}.html")
    assert err.startswith("validation BLOCKED card_transactions 2024-01-03: ") and "drift:amount" in err
    assert f"Report: {report}" in err and "batchml override --dataset card_transactions --run-date 2024-01-03" in err
    o = outcome(validate(config, day(2), spark=spark))
    for check in o.blocking_checks():
        record_override(config, day(2), TX, check, by="ana", reason="new merchant campaign, confirmed with risk")
    released = outcome(validate(config, day(2), spark=spark))
    assert not released.blocked and released.accepted_rows == released.rows
    assert {r.status for r in released.results if r.check.startswith("drift:amount")} == {"overridden"}
    # The next day has the same drift and no override: still blocked.
    assert outcome(validate(config, day(3), spark=spark)).blocked
    lake = Lake(config, spark)
    rows = lake.read_arrow(RESULTS, [("check", "=", "drift:amount"), ("table", "=", TX)]).to_pylist()
    # every gate run of a day is kept: day 2 blocked twice (the stage, then validate), then released
    history = {d: [(r["attempt"], r["status"], r["override_by"]) for r in sorted(rows, key=lambda r: r["attempt"])
                   if r["run_date"] == d] for d in (day(2), day(3))}
    assert history == {day(2): [(1, "failed", None), (2, "failed", None), (3, "overridden", "ana")],
                       day(3): [(1, "failed", None)]}
    assert released.attempt == 3
    assert lake.read_arrow(OVERRIDES).num_rows == len(o.blocking_checks())
    from batchml.orchestration import lake_state

    assert lake_state.blocked_checks(config, config.default_dataset, day(2)) == []  # the latest attempt decides
    assert lake_state.blocked_checks(config, config.default_dataset, day(3)) == [f"{TX}: drift:amount"]
    # The latest report shows the release, the first attempt's report still shows the block and how to release.
    html = Path(released.report_uri).read_text()
    assert "PASSED (" in html and "released by ana: new merchant campaign" in html and "<svg" in html
    assert "How to release" not in html and "amount is distributed as in the accepted rows" in html
    first = Path(released.report_uri.replace(".html", ".attempt-1.html")).read_text()
    assert "BLOCKED" in first and "How to release" in first and "override_checks" in first
    doc = json.loads(Path(released.report_uri.replace(".html", ".json")).read_text())
    assert doc["blocked"] is False and doc["attempt"] == 3 and any(r["override_by"] == "ana" for r in doc["results"])
    index = Path(released.report_uri).parents[1] / "index.html"
    assert index.read_text().count(f"<td>{TX}</td>") == 4
    assert "2024-01-03/bronze.card_transactions.attempt-3.html" in index.read_text()
    check_reports({Path(released.report_uri.replace(".html", ".attempt-1.html")): [
                       "BLOCKED", "How to release", "batchml override", "Population stability (PSI) by column",
                       "Checks", "schema (", "amount lies between"],
                   Path(released.report_uri): ["PASSED (", "released by ana", "earlier attempts: 1, 2"],
                   index: ["Validation gate: card_transactions", "2024-01-04", "BLOCKED", "PASSED ("]},
                  tmp_path / "chromium")


def test_override_needs_who_and_why(config):
    with pytest.raises(ValueError, match="written reason"):
        record_override(config, day(0), TX, "drift:amount", by="ana", reason="ok")


def test_label_checks_report_delay_and_catch_impossible_delays(config, spark):
    load(config, spark, days=3)
    lake = Lake(config, spark)
    label_days = sorted(p.name for p in Path(config.storage.landing_uri, "chargebacks").iterdir())[:2]
    for i in range(3):
        validate(config, day(i), spark=spark)
    first = dt.date.fromisoformat(label_days[0])
    ingest(config, first, spark=spark)
    o = outcome(validate(config, first, spark=spark), "bronze.card_chargebacks")
    delay = next(r for r in o.results if r.check == "label_delay")
    assert delay.passed and "p50=" in delay.observed
    # A chargeback reported before its transaction happened is impossible.
    batch = lake.read("bronze.card_chargebacks").where(F.col("ingest_date") == first)
    broken = batch.withColumn("reported_at", F.col("reported_at") - F.expr("INTERVAL 60 DAYS")).localCheckpoint()
    lake.write(broken, "bronze.card_chargebacks", mode="overwrite", replace_where=[("ingest_date", "=", first)])
    o = outcome(validate(config, first, spark=spark), "bronze.card_chargebacks")
    assert statuses(o)["label_delay"] == "warned" and not o.blocked  # labels are warn by default
