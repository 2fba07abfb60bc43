"""The pure transforms on tiny DataFrames: exact values, point in time, scoring path."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from batchml.features.compute import compute_features, features_for_events
from batchml.features.spec import FeatureSpec
from batchml.labels import LabelSpec
from batchml.rundays import RunCalendar
from tests.features.helpers import at, bronze_frame, event, random_events, reference

D = dt.date(2024, 3, 1)
NEXT = D + dt.timedelta(days=1)
SPEC = FeatureSpec.model_validate({
    "table": "features.test", "id_column": "transaction_id", "event_time_column": "event_time",
    "passthrough": ["customer_id", "amount"],
    "entities": {
        "customer": {"keys": ["customer_id"], "time_since_last": True, "aggregations": [
            {"function": "count"}, {"function": "sum", "column": "amount"}, {"function": "mean", "column": "amount"},
            {"function": "max", "column": "amount"}, {"function": "distinct_count", "column": "merchant_id"}]},
        "merchant": {"keys": ["merchant_id", "country"], "windows": ["2h", "2d"],
                     "aggregations": [{"function": "count"}, {"function": "distinct_count", "column": "customer_id"}]},
    },
    "sql": ["not/read.sql"],  # the tests pass their SQL texts instead
})
RATIO = ["SELECT *, amount / NULLIF(customer_mean_amount_30d, 0) AS amount_to_mean_30d FROM {features}"]


def by_id(df) -> dict[str, dict]:
    return {r["transaction_id"]: r.asDict() for r in df.collect()}


def days_ago(n: int, hours: float, micros: int = 0) -> dt.datetime:
    return at(D - dt.timedelta(days=n), hours, micros)


HAND = [
    event("a", days_ago(30, 0.5), amount=10, merchant="m1"),   # in the lookback, before every 30d window below
    event("b", days_ago(10, 8), amount=20, merchant="m2"),
    event("c", days_ago(1, 12), amount=30, merchant="m1"),     # exactly 24h before e and f
    event("d", at(D, 11.5), amount=40, merchant="m3"),
    event("e", at(D, 12), amount=50, merchant="m2"),
    event("f", at(D, 12), amount=60, merchant="m4"),           # same instant as e: neither sees the other
    event("g", at(D, 12.5), amount=5, merchant="m1"),
    event("x", days_ago(30, 6), customer="c2", amount=7),      # exactly 30 days before y
    event("y", at(D, 6), customer="c2", amount=8),
    event("z", at(D, 6, micros=1), customer="c2", amount=9),   # 1 µs later: x has left its window
    event("old", days_ago(31, 23), customer="c2", amount=99),  # outside the lookback
]


def test_window_aggregates_match_a_hand_computed_example(spark):
    got = by_id(compute_features(bronze_frame(spark, HAND), SPEC, D, NEXT, sql=RATIO))
    assert set(got) == {"d", "e", "f", "g", "y", "z"}
    want = {  # (count, sum, mean, max, distinct merchants) per window 1h, 24h, 7d, 30d
        "d": [(0, 0, None, None, 0), (1, 30, 30, 30, 1), (1, 30, 30, 30, 1), (2, 50, 25, 30, 2)],
        "e": [(1, 40, 40, 40, 1), (2, 70, 35, 40, 2), (2, 70, 35, 40, 2), (3, 90, 30, 40, 3)],
        "f": [(1, 40, 40, 40, 1), (2, 70, 35, 40, 2), (2, 70, 35, 40, 2), (3, 90, 30, 40, 3)],
        "g": [(3, 150, 50, 60, 3), (3, 150, 50, 60, 3), (4, 180, 45, 60, 4), (5, 200, 40, 60, 4)],
        "y": [(0, 0, None, None, 0), (0, 0, None, None, 0), (0, 0, None, None, 0), (1, 7, 7, 7, 1)],
        "z": [(1, 8, 8, 8, 1), (1, 8, 8, 8, 1), (1, 8, 8, 8, 1), (1, 8, 8, 8, 1)],
    }
    for tx, windows in want.items():
        for label, (n, total, mean, top, distinct) in zip(["1h", "24h", "7d", "30d"], windows):
            row = got[tx]
            assert row[f"customer_count_{label}"] == n, (tx, label)
            assert row[f"customer_sum_amount_{label}"] == pytest.approx(total), (tx, label)
            assert row[f"customer_mean_amount_{label}"] == (None if mean is None else pytest.approx(mean)), (tx, label)
            assert row[f"customer_max_amount_{label}"] == top, (tx, label)
            assert row[f"customer_distinct_count_merchant_id_{label}"] == distinct, (tx, label)
    since = {tx: got[tx]["customer_seconds_since_last"] for tx in got}
    assert since == pytest.approx({"d": 23.5 * 3600, "e": 1800, "f": 1800, "g": 1800, "y": 30 * 86400, "z": 1e-6})
    # the ratio against the customer's own history, from the SQL layer
    assert got["e"]["amount_to_mean_30d"] == pytest.approx(50 / 30)
    assert got["y"]["amount_to_mean_30d"] == pytest.approx(8 / 7)
    # composite keys and other windows: merchant m1 in DE saw c, y and z in the 2 days before g, none in 2h
    assert got["g"]["merchant_count_2d"] == 3 and got["g"]["merchant_distinct_count_customer_id_2d"] == 2
    assert got["g"]["merchant_count_2h"] == 0 and got["z"]["merchant_count_2h"] == 1


def test_matches_a_brute_force_reference_with_ties_nulls_and_redeliveries(spark):
    rows = random_events(D - dt.timedelta(days=32), 34, 30, seed=3)
    got = by_id(compute_features(bronze_frame(spark, rows), SPEC, D - dt.timedelta(days=1), NEXT, sql=[]))
    want = {**reference(rows, SPEC, D - dt.timedelta(days=1)), **reference(rows, SPEC, D)}
    assert set(got) == set(want) and len(want) > 40
    for tx, feats in want.items():
        for name, value in feats.items():
            assert got[tx][name] == (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)), (tx, name)


def test_a_planted_future_event_cannot_change_past_features(spark):
    rows = random_events(D - dt.timedelta(days=31), 33, 30, seed=5)
    before = by_id(compute_features(bronze_frame(spark, rows), SPEC, D, NEXT, sql=RATIO))
    target = sorted((r for r in rows if r["event_time"].date() == D), key=lambda r: r["event_time"])[15]
    t = target["event_time"]
    planted = [  # same customer and merchant: at the very same instant, later that day, and the next day
        event("p_same", t, target["customer_id"], target["merchant_id"], 5000.0, country=target["country"]),
        event("p_later", t + dt.timedelta(minutes=1), target["customer_id"], target["merchant_id"], 7000.0,
              country=target["country"]),
        event("p_next", t + dt.timedelta(days=1), target["customer_id"], target["merchant_id"], 9000.0),
    ]
    after = by_id(compute_features(bronze_frame(spark, rows + planted), SPEC, D, NEXT, sql=RATIO))
    assert {"p_same", "p_later"} <= set(after) and "p_next" not in after
    for tx, row in before.items():
        if row["event_time"] <= t.replace(tzinfo=None):  # at or before the planted events: unchanged
            assert after[tx] == row, tx
    later = [tx for tx, r in before.items() if r["event_time"] > t.replace(tzinfo=None)
             and r["customer_id"] == target["customer_id"]]
    assert any(after[tx] != before[tx] for tx in later) or not later  # the planted events are seen later


def test_scoring_path_gives_the_training_features_for_the_same_rows(spark):
    rows = random_events(D - dt.timedelta(days=31), 33, 30, seed=9)
    training = by_id(compute_features(bronze_frame(spark, rows), SPEC, D, NEXT, sql=RATIO))
    to_score = [r for r in rows if r["event_time"].date() == D and r["_source_file"] != "redelivery"][:7]
    history = [r for r in rows if r not in to_score]
    scored = by_id(features_for_events(bronze_frame(spark, to_score), bronze_frame(spark, history), SPEC, D,
                                       sql=RATIO))
    assert set(scored) == {r["transaction_id"] for r in to_score}
    for tx, row in scored.items():
        assert row == training[tx], tx


NEW_YORK = "America/New_York"
SPRING = dt.date(2024, 3, 10)  # New York springs forward at 02:00: a run date of 23 hours


def new_york(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(NEW_YORK)).astimezone(
        dt.timezone.utc)


def test_run_dates_are_local_days_of_the_time_zone_and_windows_are_utc_durations_across_dst(spark):
    """23:30 in New York is 03:30 UTC of the next UTC day: it belongs to its local run date. On the spring-forward
    day (a run date of 23 hours) a 24h window is still 86,400 seconds, and every feature matches the oracle."""
    rows = [{**r, "ingest_date": r["event_time"].astimezone(ZoneInfo(NEW_YORK)).date()
             + dt.timedelta(days=r["_source_file"] == "redelivery")}
            for r in random_events(SPRING - dt.timedelta(days=2), 4, 12, seed=13, customers=4, merchants=3)]
    eve = new_york(SPRING, 23, 30)  # EDT: 03-11 03:30 UTC
    planted = {"out": eve - dt.timedelta(days=1, microseconds=1), "edge": eve - dt.timedelta(days=1),  # 22:30 EST
               "eve_before": new_york(SPRING - dt.timedelta(days=1), 23, 30),  # run date 03-09, UTC 03-10 04:30
               "dawn": new_york(SPRING, 0, 30), "eve": eve}  # 03-10 05:30 UTC; 03-11 03:30 UTC
    rows += [event(tx, t, customer="night", ingest=t.astimezone(ZoneInfo(NEW_YORK)).date())
             for tx, t in planted.items()]
    got = by_id(compute_features(bronze_frame(spark, rows), SPEC, SPRING, SPRING + dt.timedelta(days=1), sql=[],
                                 calendar=RunCalendar(NEW_YORK)))
    assert {"eve", "dawn"} <= set(got) and not {"out", "edge", "eve_before"} & set(got)  # those are of 03-09
    assert (got["eve"]["customer_count_24h"], got["eve"]["customer_count_1h"]) == (3, 0)  # edge, eve_before, dawn
    for tx, row in got.items():
        assert row["event_date"] == SPRING == row["event_time"].replace(tzinfo=dt.timezone.utc).astimezone(
            ZoneInfo(NEW_YORK)).date(), tx
    want = reference(rows, SPEC, SPRING, NEW_YORK)
    assert set(got) == set(want) and len(want) > 10
    for tx, feats in want.items():
        for name, value in feats.items():
            assert got[tx][name] == (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)), (tx, name)


LABELLED = FeatureSpec.model_validate({**SPEC.model_dump(), "label_features": {
    "merchant_fraud": {"keys": ["merchant_id"], "windows": ["30d"], "maturity_days": 7}}})
CHARGEBACK = LabelSpec(key="transaction_id", time_column="reported_at", presence=True)


def chargebacks(spark, rows: list[tuple[str, dt.datetime, dt.date]]):
    import pyarrow as pa

    schema = pa.schema([("transaction_id", pa.string()), ("reported_at", pa.timestamp("us", "UTC")),
                        ("ingest_date", pa.date32())])
    return spark.createDataFrame(pa.Table.from_pylist(
        [{"transaction_id": t, "reported_at": r, "ingest_date": i} for t, r, i in rows], schema))


def test_label_features_count_only_outcomes_known_before_the_event_and_ingested_by_the_run_date(spark):
    """Merchant m1's fraud rate from matured labels: positives when reported, negatives inferred at maturity
    (7 days); a label reported at or after the event's time, or delivered after the run date, is invisible."""
    events = [
        event("a", days_ago(20, 10), merchant="m1"),   # chargeback at D-15: a positive known at D-15
        event("b", days_ago(20, 11), merchant="m1"),   # no chargeback: a negative known at D-13 11:00
        event("c", days_ago(3, 9), merchant="m1"),     # reported D-1 but delivered D+1: invisible at D
        event("e", days_ago(2, 9), merchant="m1"),     # no label, not mature (D+5): not counted
        event("f", days_ago(5, 9), merchant="m1"),     # reported (in time) exactly at x's time: x cannot see it
        event("o", days_ago(20, 9), merchant="m2"),    # another merchant
        event("x", at(D, 12), merchant="m1"),
        event("y", at(D, 13), merchant="m1"),
        event("z", at(D, 13), merchant="m2", customer="c9"),
    ]
    on_time = [("a", days_ago(15, 0), D - dt.timedelta(days=15)), ("o", days_ago(19, 0), D - dt.timedelta(days=19))]
    planted = [("c", days_ago(1, 0), NEXT),  # reported before x, delivered after the run date
               ("f", at(D, 12), D)]          # reported at the very instant of x
    got = by_id(compute_features(bronze_frame(spark, events), LABELLED, D, NEXT, sql=[],
                                 labels=chargebacks(spark, on_time + planted), label=CHARGEBACK))
    want = {"x": (2, 1, 0.5), "y": (3, 2, 2 / 3), "z": (1, 1, 1.0)}  # (labelled, positives, rate) over 30d
    assert {tx: (got[tx]["merchant_fraud_labelled_30d"], got[tx]["merchant_fraud_positives_30d"],
                 pytest.approx(got[tx]["merchant_fraud_positive_rate_30d"])) for tx in want} == want
    # the planted labels change nothing an event could not know: the features without them are the same for x
    without = by_id(compute_features(bronze_frame(spark, events), LABELLED, D, NEXT, sql=[],
                                     labels=chargebacks(spark, on_time), label=CHARGEBACK))
    assert without["x"] == got["x"] and without["y"] != got["y"]


WITH_FX = FeatureSpec.model_validate({**SPEC.model_dump(), "as_of": {"country_fx": {
    "feed": "fx", "keys": {"country": "country"}, "columns": ["rate"], "tolerance": "1h", "max_age": "1d"}}})


def fx_rows(spark, rows: list[tuple[str, dt.datetime, float, dt.date]]):
    import pyarrow as pa

    schema = pa.schema([("country", pa.string()), ("valid_from", pa.timestamp("us", "UTC")), ("rate", pa.float64()),
                        ("ingest_date", pa.date32()), ("_source_file", pa.string()), ("_source_sha256", pa.string()),
                        ("_row_number", pa.int64())])
    return spark.createDataFrame(pa.Table.from_pylist(
        [{"country": c, "valid_from": v, "rate": r, "ingest_date": i, "_source_file": f"fx-{i}", "_source_sha256": "x",
          "_row_number": n} for n, (c, v, r, i) in enumerate(rows)], schema))


def test_as_of_join_takes_the_latest_row_valid_before_the_event_and_ingested_by_the_run_date(spark):
    """Per event: the reference row with the latest valid time <= t - 1h, ingested by D, at most 1 day old."""
    events = [event("de", at(D, 12), country="DE"), event("fr", at(D, 12), country="FR"),
              event("us", at(D, 12), country="US"), event("early", at(D, 0, 30), country="DE")]
    fx = [("DE", at(D, 10), 1.0, D), ("DE", at(D, 11), 2.0, D),   # 11:00 = t - tolerance exactly: taken
          ("DE", at(D, 11, 1), 3.0, D),                             # 1 µs too late for the tolerance
          ("DE", at(D, 11), 2.5, NEXT),                             # a correction delivered after the run date
          ("FR", days_ago(1, 13), 5.0, D - dt.timedelta(days=1)),
          ("FR", at(D, 9), 6.0, NEXT),                              # valid in time but delivered after D
          ("US", days_ago(2, 10), 7.0, D - dt.timedelta(days=2)),   # 50 hours old: beyond max_age
          ("DE", days_ago(1, 23, 1), 0.5, D)]                       # early's (00:30 - 1h) row: valid at 23:00:00.000001
    got = by_id(compute_features(bronze_frame(spark, events), WITH_FX, D, NEXT, sql=[],
                                 references={"fx": (fx_rows(spark, fx), "valid_from")}))
    assert {tx: got[tx]["country_fx_rate"] for tx in got} == {"de": 2.0, "fr": 5.0, "us": None, "early": 0.5}


def test_as_of_join_matches_duckdb_asof_join(spark):
    """Random events and reference rows with ties and late deliveries: the same values as duckdb's ASOF JOIN
    over the rows ingested by D (duckdb takes the latest row with valid_from <= t - 1h; max_age on top)."""
    import random

    import duckdb
    import pyarrow as pa

    rng = random.Random(4)
    rows = random_events(D - dt.timedelta(days=1), 2, 40, seed=11)
    start = at(D - dt.timedelta(days=1))
    fx = [(rng.choice(["DE", "FR", "US"]), start + dt.timedelta(minutes=rng.randrange(0, 2880, 30)),
           round(rng.uniform(0, 2), 3), D - dt.timedelta(days=rng.choice([1, 0, -1]))) for _ in range(60)]
    got = by_id(compute_features(bronze_frame(spark, rows), WITH_FX, D, NEXT, sql=[],
                                 references={"fx": (fx_rows(spark, fx), "valid_from")}))
    seen = {}  # the latest ingest per (country, valid_from) among rows delivered by D, as the join dedupes
    for n, (c, v, r, i) in enumerate(fx):
        if i <= D and ((c, v) not in seen or (i, n) > seen[(c, v)][1:]):
            seen[(c, v)] = (r, i, n)
    # ref and ev are read by name in duckdb's SQL below
    ref = pa.table({"country": [c for c, _ in seen], "valid_from": [v for _, v in seen],  # noqa: F841
                    "rate": [r for r, _, _ in seen.values()]})
    current = {r["transaction_id"]: r for r in sorted(rows, key=lambda r: r["ingest_date"])}  # latest version
    ev = pa.table({"id": list(current), "country": [r["country"] for r in current.values()],  # noqa: F841
                   "t": [r["event_time"] for r in current.values()]})
    want = dict(duckdb.sql("""
        SELECT ev.id, CASE WHEN ev.t - ref.valid_from <= INTERVAL 1 DAY THEN ref.rate END
        FROM ev ASOF LEFT JOIN ref ON ev.country = ref.country AND ev.t - INTERVAL 1 HOUR >= ref.valid_from
        WHERE ev.t >= ? """, params=[at(D)]).fetchall())
    assert set(got) == set(want) and sum(v is not None for v in want.values()) > 10
    assert {tx: got[tx]["country_fx_rate"] for tx in got} == want
