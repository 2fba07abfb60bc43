"""The second built-in dataset, ``flight_delays``, through every stage from landing files to monitoring.

It differs from the demo on every axis of the dataset contract: other key and time columns, JSON Lines
events and CSV outcomes in local time without an offset, an outcome row with a value for every event
(explicit negatives, ``label.value``), its own tables in its own file, another date column, decision
names and cost structure. Onboarded as a real dataset is: two days of history arrive as one bulk delivery
with the first daily delivery (``events.known_since: event_time``), then six daily deliveries of about 500
flights. Ingest and validate run over the six delivery dates, features from the first history date
(`batchml run <stage> --from D1 --to D2`: each date as its own run); training-set, train, evaluate and
promote on day 5; score days 5 and 6; monitor day 6.
"""

from __future__ import annotations

import datetime as dt
import json
from bisect import bisect_left, bisect_right
from pathlib import Path

import pyarrow.compute as pc
import pytest

from batchml.registry import promotion as P
from batchml.registry import store
from batchml.stages import run_stage, run_stage_range
from batchml.storage import Lake
from batchml.training.train import card_path
from tests.conftest import make_config
from tests.contract import flights as G

DATASET = "flight_delays"
DAYS = [G.START + dt.timedelta(days=i) for i in range(6)]  # daily deliveries
HISTORY = [G.START - dt.timedelta(days=i) for i in (2, 1)]  # delivered in bulk on DAYS[0] (test time: 2)
CUTOFF, LAST = DAYS[4], DAYS[5]


@pytest.fixture(scope="module")
def run(base_config, tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("flights")
    config = make_config(base_config, root)
    data = G.generate(root / "landing", days=len(DAYS), history_days=len(HISTORY))
    codes = {}
    for stage in ("ingest", "validate"):  # the deliveries as a backfill: batchml run <stage> --from --to
        codes[stage, "range"] = run_stage_range(stage, config, DAYS[0], DAYS[-1], DATASET, spark)
    codes["features", "range"] = run_stage_range("features", config, HISTORY[0], DAYS[-1], DATASET, spark)
    for stage in ("training-set", "train", "evaluate", "promote"):
        codes[stage, CUTOFF] = run_stage(stage, config, CUTOFF, DATASET, spark)
    for day in (CUTOFF, LAST):
        codes["score", day] = run_stage("score", config, day, DATASET, spark)
    codes["monitor", LAST] = run_stage("monitor", config, LAST, DATASET, spark)
    return {"config": config, "data": data, "codes": codes, "lake": Lake(config, spark),
            "ds": config.dataset(DATASET)}


def _table(run, name, where=None):
    return run["lake"].read_arrow(name, where or [])


def test_every_stage_succeeds(run):
    assert set(run["codes"].values()) == {0}, run["codes"]
    # the ranges ran each date as its own run date: one ingest per date and feed, one gate run per date
    manifest = _table(run, "ops.ingest_manifest", [("dataset", "=", DATASET)])
    runs = set(zip(manifest.column("feed").to_pylist(), manifest.column("run_date").to_pylist()))
    assert runs == {(feed, day) for day in DAYS for feed in ("events", "labels", "reference.weather")}
    bulk = {(r["feed"], r["file_name"]): r["rows_accepted"] for r in manifest.to_pylist() if r["run_date"] == DAYS[0]}
    history = f"history-{HISTORY[0]}-{HISTORY[-1]}"  # the first delivery: the day's files and the bulk history
    flights, hours = 500 * len(HISTORY), 24 * len(HISTORY) * len(G.AIRPORTS)
    assert bulk == {("events", f"flights-{DAYS[0]}.jsonl"): 500, ("events", f"{history}.jsonl"): flights,
                    ("labels", f"{history}.csv"): flights, ("reference.weather", f"weather-{DAYS[0]}.csv"): 6 * 24,
                    ("reference.weather", f"{history}.csv"): hours}
    gate = _table(run, "ops.validation_results", [("table", "=", "bronze.flights")])
    assert sorted(set(gate.column("run_date").to_pylist())) == DAYS  # the history passed the gate with DAYS[0]


def test_ingest_and_the_gate_follow_this_datasets_contract(run):
    data = run["data"]
    outcomes = _table(run, "bronze.flight_outcomes")
    assert outcomes.num_rows == sum(len(f) for d, f in data.flights.items() if d < LAST) - 1  # one never delivered
    known = dict(zip(outcomes.column("flight_id").to_pylist(), outcomes.column("known_at").to_pylist()))
    sample = next(iter(data.flights[DAYS[0]]))["flight_id"]
    assert known[sample] == data.outcomes[sample]["known_at"]  # Berlin wall-clock time, read as UTC
    quarantine = _table(run, "ops.quarantine", [("run_date", "=", DAYS[1])]).to_pylist()
    assert [(r["dataset"], r["target_table"], r["reason"]) for r in quarantine] == [
        (DATASET, "bronze.flights", "validation: airports_differ")]
    assert data.same_airport in quarantine[0]["raw_record"]
    assert _table(run, "silver.flights").num_rows == sum(len(f) for f in data.flights.values()) - 1


def test_features_are_keyed_by_this_datasets_columns(run):
    spec = run["ds"].features
    feats = _table(run, spec.table)
    assert {"flight_id", "departure_date", "origin_count_3h", "origin_mean_distance_km_24h", "carrier_count_2d",
            "carrier_seconds_since_last"} <= set(feats.column_names)
    assert sorted(set(feats.column("departure_date").to_pylist())) == HISTORY + DAYS


def test_departure_date_is_the_local_berlin_date_of_departure(run):
    """The dataset's timezone is Europe/Berlin: a flight belongs to its local departure date. 00:30 local is 22:30
    UTC of the day before, and is still a flight of its local date; 23:30 local is the same UTC day."""
    data, spec = run["data"], run["ds"].features
    feats = _table(run, spec.table).select(["flight_id", "departure_date"]).to_pylist()
    dates = {r["flight_id"]: r["departure_date"] for r in feats}
    night = {k: next(f for f in data.flights[DAYS[3]] if f["flight_id"] == i) for k, i in data.night.items()}
    assert night["00:30"]["scheduled_departure"].date() == DAYS[2]  # the previous UTC day
    assert {k: dates[f["flight_id"]] for k, f in night.items()} == {"00:30": DAYS[3], "23:30": DAYS[3]}
    assert dates == {f["flight_id"]: d for d, fs in data.flights.items() for f in fs
                     if f["flight_id"] != data.same_airport}


def test_training_set_labels_are_the_outcome_expression(run):
    data, spec = run["data"], run["ds"].model
    rows = _table(run, spec.training_table, [("cutoff_date", "=", CUTOFF)]).select(["flight_id", "label"]).to_pylist()
    labels = {r["flight_id"]: r["label"] for r in rows}
    assert data.no_outcome not in labels  # value labels: no outcome known, no label (not a negative)
    mature = [f["flight_id"] for d in HISTORY + DAYS[:4] for f in data.flights[d]  # the history trains too
              if f["flight_id"] not in (data.no_outcome, data.same_airport)]
    assert sorted(labels) == sorted(mature)
    assert labels == {i: data.disrupted(i) for i in mature}
    assert 0.1 < sum(labels.values()) / len(labels) < 0.6  # explicit negatives and positives, not 0.5% fraud


def test_model_card_speaks_of_this_dataset(run):
    config, ds = run["config"], run["ds"]
    model = store.load(config, ds.model.registered_name)
    assert model is not None and model.version == 1  # evaluate + promote made the first model champion
    run_id = model.run_id
    card = open(store.client(config).download_artifacts(run_id, "report/model_card.md")).read()
    assert ds.description in card and ds.label.description in card
    assert "status = 'cancelled' OR arr_delay_min > 15" in card and "`rebook`" in card and "`check`" in card
    assert "1 x false negative + 3 x false positive" in card
    assert "fraud" not in card.lower() and "chargeback" not in card.lower()
    expected = store.client(config).get_run(run_id).data.metrics
    capacity = ds.scoring.review
    warned = expected["test_expected_band_rows_per_day"] > capacity.daily_capacity * capacity.capacity_warning_factor
    assert ("**Warning:** the review band holds" in card) == warned
    band = model.review_band
    assert (band.below_share, band.above_share) == (0.05, 0.05) and band.low < model.threshold <= band.high
    audit = [(r["event"], r["action"], r["to_version"]) for r in P.history(config, DATASET)]
    assert audit == [("decision", "promote", 1), ("alias", "promote", 1)]


def test_isotonic_calibration_through_config_and_the_card_shows_it_before_and_after(run):
    """model.calibration: isotonic, fit on the validation day and registered with the model (scoring uses it: see
    the categoricals test). Both cards (Markdown, HTML) give the test day's ECE and Brier before and after. (With
    about half the flights disrupted, scale_pos_weight is near 1 here and the raw scores are near probabilities
    already; that calibration improves reweighted scores is tested on the demo's data in tests/training.)"""
    config, ds = run["config"], run["ds"]
    model = store.load(config, ds.model.registered_name)
    assert model.calibrator.method == "isotonic" and model.tags["calibration"] == "isotonic"
    assert len(model.calibrator.x) > 2 and all(a < b for a, b in zip(model.calibrator.y, model.calibrator.y[1:]))
    metrics = store.client(config).get_run(model.run_id).data.metrics
    assert metrics["test_ece"] != metrics["test_raw_ece"]
    before = f"| raw (before) | {metrics['test_raw_ece']:.4f} | {metrics['test_raw_brier']:.4f} |"
    after = f"| calibrated (after) | {metrics['test_ece']:.4f} | {metrics['test_brier']:.4f} |"
    card = open(store.client(config).download_artifacts(model.run_id, "report/model_card.md")).read()
    assert "## Calibration (test window)" in card and before in card and after in card
    assert "isotonic regression" in card and "not calibrated" not in card
    html = (Path(config.storage.artifacts_uri) / card_path(DATASET, ds.model.registered_name, model.version)).read_text()
    assert "<h2>Calibration (test window)</h2>" in html and f"<td>{metrics['test_ece']:.4f}</td>" in html
    assert html.count("<polyline") == 2  # the reliability plot, raw and calibrated, inline


def test_scores_use_this_datasets_decisions_and_band(run):
    spec = run["ds"].scoring
    for day in (CUTOFF, LAST):
        scores = _table(run, spec.table, [("run_date", "=", day)]).to_pandas()
        assert len(scores) == len(run["data"].flights[day]) - (day == DAYS[1])
        assert set(scores["decision"]) <= {"rebook", "keep", "check"} and not scores["fallback"].any()
        assert scores["review"].sum() <= spec.review.daily_capacity and set(scores["model_version"]) == {1}
        band = scores["review"] | scores["review_overflow"]
        assert band.mean() < 0.2  # about 10% of flights, by rank on the validation window


def test_monitoring_judges_value_labels_and_tracks_decision_rates(run):
    ds = run["ds"]
    perf = {r["scoring_date"]: r for r in _table(run, ds.monitoring.performance_table,
                                                 [("run_date", "=", LAST)]).to_pylist()}
    assert set(perf) == {CUTOFF, LAST}
    scored = _table(run, ds.scoring.table, [("run_date", "=", CUTOFF)])
    assert perf[CUTOFF]["matured"] and perf[CUTOFF]["labelled_rows"] == perf[CUTOFF]["rows"] == scored.num_rows
    assert perf[LAST]["labelled_rows"] == 0 and perf[LAST]["positives"] == 0  # outcomes not delivered yet
    positives = sum(run["data"].disrupted(i) for i in scored.column("flight_id").to_pylist())
    assert perf[CUTOFF]["positives"] == positives
    review = pc.mean(pc.cast(scored.column("review"), "int64")).as_py()
    assert perf[CUTOFF]["review_rate"] == pytest.approx(review)
    decided = pc.mean(pc.cast(pc.equal(scored.column("decision"), "rebook"), "int64")).as_py()
    assert perf[CUTOFF]["positive_decision_rate"] == pytest.approx(decided)
    drift = _table(run, ds.monitoring.drift_table, [("run_date", "=", LAST)])
    assert "origin_count_3h" in drift.column("column").to_pylist()


def test_carrier_and_origin_are_native_categoricals_coded_as_at_training(run):
    """Categories come from training and travel with the model; a carrier unseen at training is scored as
    missing and counted; the scores equal single-node XGBoost on pandas categoricals with the same categories."""
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    config, ds, data = run["config"], run["ds"], run["data"]
    model = store.load(config, ds.model.registered_name)
    assert model.categories == {"carrier": ["DE", "EW", "LH", "XQ"], "origin": sorted(G.AIRPORTS)}
    types = dict(zip(model.feature_columns, model.booster.feature_types))
    assert types["carrier"] == types["origin"] == "c" and types["distance_km"] == "q"
    feats = _table(run, ds.features.table, [("departure_date", "=", LAST)]).to_pandas()
    frame = pd.DataFrame({c: pd.Categorical(feats[c], categories=model.categories[c]) if c in model.categories
                          else feats[c].astype("float64") for c in model.feature_columns})
    raw = model.booster.predict(xgb.DMatrix(frame, enable_categorical=True))
    expected = dict(zip(feats["flight_id"], model.calibrator(raw)))  # the registered model scores calibrated
    scores = _table(run, ds.scoring.table, [("run_date", "=", LAST)]).to_pandas()
    assert not scores["fallback"].any() and set(data.new_carrier) <= set(scores["flight_id"])
    np.testing.assert_allclose(scores["score"], scores["flight_id"].map(expected), rtol=1e-6)
    done = [r for r in _table(run, ds.scoring.runs_table, [("run_date", "=", LAST)]).to_pylist()
            if r["event"] == "completed"]
    assert [json.loads(r["unseen_categories"]) for r in done] == [{"carrier": len(data.new_carrier), "origin": 0}]


def test_route_label_features_see_only_outcomes_known_before_departure_and_delivered(run):
    """The route's outcomes known in [t - 2d, t) and within a day of their flight, delivered by the run date
    (outcomes of day X land on X + 1): a brute-force oracle from the generator's truth, every flight of LAST."""
    data, ds = run["data"], run["ds"]
    feats = {r["flight_id"]: r for r in _table(run, ds.features.table, [("departure_date", "=", LAST)]).to_pylist()}
    accepted = [f for d, fs in data.flights.items() for f in fs if f["flight_id"] != data.same_airport]
    seen = [0, 0]
    for f in data.flights[LAST]:
        t, route = f["scheduled_departure"], (f["origin"], f["dest"])
        known = [o for o in accepted if (o["origin"], o["dest"]) == route and o["flight_id"] in data.outcomes
                 and o["scheduled_departure"].astimezone(G.BERLIN).date() + dt.timedelta(days=1) <= LAST  # delivered
                 and t - dt.timedelta(days=2) <= data.outcomes[o["flight_id"]]["known_at"] < t
                 and data.outcomes[o["flight_id"]]["known_at"] <= o["scheduled_departure"] + dt.timedelta(days=1)]
        positives = sum(data.disrupted(o["flight_id"]) for o in known)
        row = feats[f["flight_id"]]
        assert (row["route_labelled_2d"], row["route_positives_2d"]) == (len(known), positives), f["flight_id"]
        assert row["route_positive_rate_2d"] == (pytest.approx(positives / len(known)) if known else None)
        seen = [seen[0] + len(known), seen[1] + positives]
    assert seen[0] > 1000 and seen[1] > 100  # the oracle is not vacuous


def test_origin_weather_is_the_latest_observation_an_hour_before_departure_delivered_by_the_run_date(run):
    """The as-of join against an oracle from the generator: per flight of the last two days, the origin's
    observation with the latest valid time <= departure - 1h among those delivered by the flight's date, at
    most 3 hours old. One observation delivered a day late is invisible to its own day's flights."""
    data, ds = run["data"], run["ds"]
    late, checked = data.late_weather, 0
    for day in DAYS[-2:]:
        feats = {r["flight_id"]: r for r in _table(run, ds.features.table, [("departure_date", "=", day)]).to_pylist()}
        for f in data.flights[day]:
            if f["flight_id"] == data.same_airport:
                continue
            cut = f["scheduled_departure"] - dt.timedelta(hours=1)
            known = [w for w in data.weather if w["airport"] == f["origin"] and w["delivered"] <= day
                     and w["valid_from"] <= cut]
            best = max(known, key=lambda w: w["valid_from"])
            fresh = f["scheduled_departure"] - best["valid_from"] <= dt.timedelta(hours=3)
            row = feats[f["flight_id"]]
            assert row["origin_weather_wind_kt"] == (best["wind_kt"] if fresh else None), f["flight_id"]
            assert row["origin_weather_visibility_km"] == (best["visibility_km"] if fresh else None)
            checked += 1
    hidden = [f for f in data.flights[DAYS[-2]] if f["origin"] == late["airport"]
              and late["valid_from"] <= f["scheduled_departure"] - dt.timedelta(hours=1)
              < late["valid_from"] + dt.timedelta(hours=1)]
    assert checked > 900 and hidden  # flights that would have used the late observation exist


def test_bulk_history_days_get_features_from_the_one_bulk_delivery(run):
    """``known_since: event_time``: the history ingested on DAYS[0] has a feature row per flight on its local
    departure date, and each window counts exactly the flights strictly before it (a brute-force count from the
    generator over every accepted flight, later bulk rows and same-instant flights included, so a leak of
    either would show). Outcomes and weather stay strict: the history dates see none of their bulk rows."""
    data, ds = run["data"], run["ds"]
    accepted = [f for fs in data.flights.values() for f in fs if f["flight_id"] != data.same_airport]
    by_key: dict[tuple, list[dt.datetime]] = {}
    for f in accepted:
        for entity in ("origin", "carrier"):
            by_key.setdefault((entity, f[entity]), []).append(f["scheduled_departure"])
    by_key = {k: sorted(v) for k, v in by_key.items()}
    windows = {"origin_count_3h": ("origin", 3), "origin_count_24h": ("origin", 24),
               "carrier_count_24h": ("carrier", 24), "carrier_count_2d": ("carrier", 48)}
    ties = earlier = 0
    for day in HISTORY:
        feats = {r["flight_id"]: r for r in _table(run, ds.features.table, [("departure_date", "=", day)]).to_pylist()}
        assert sorted(feats) == sorted(f["flight_id"] for f in data.flights[day])  # one row per history flight
        for f in data.flights[day]:
            row, t = feats[f["flight_id"]], f["scheduled_departure"]
            for name, (entity, hours) in windows.items():
                times = by_key[entity, f[entity]]  # sorted: the window [t - w, t) is a slice
                seen = times[bisect_left(times, t - dt.timedelta(hours=hours)):bisect_left(times, t)]
                assert row[name] == len(seen), (f["flight_id"], name)
                earlier += sum(o.astimezone(G.BERLIN).date() < day for o in seen)
            same_origin = by_key["origin", f["origin"]]
            ties += bisect_right(same_origin, t) - bisect_left(same_origin, t) - 1  # not f itself
            assert (row["route_labelled_2d"], row["route_positive_rate_2d"]) == (0, None)  # outcomes: on DAYS[0]
            assert row["origin_weather_wind_kt"] is None  # the weather history too: reference feeds stay strict
    assert ties > 100 and earlier > 10_000  # not vacuous: same-instant flights, windows reaching earlier bulk days
    start = _table(run, ds.features.table, [("departure_date", "=", DAYS[0])]).column("route_labelled_2d")
    assert pc.sum(start).as_py() > 1000  # from DAYS[0] on, the bulk outcomes feed the route features
