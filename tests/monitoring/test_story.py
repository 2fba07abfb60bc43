"""The demo story end to end on small data: a quiet period never alerts; covariate drift alerts on
the day it starts; concept drift alerts within days of its labels maturing. Plus the tables,
the report, the retraining request and idempotent re-runs."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pytest

from batchml.monitoring.monitor import monitor, pending_request
from batchml.stages import run_stage
from batchml.storage import Lake
from tests.conftest import make_config
from tests.monitoring import story
from tests.orchestration.browser import check_reports

QUIET = [dt.date(2024, 1, 22), dt.date(2024, 2, 26)]  # no matured labels yet; matured dates before the drift
CONCEPT = dt.date(2024, 3, 4)  # concept drift from Feb 1; labels of Feb 1..3 have matured (30 days)
COVARIATE = story.COVARIATE_DRIFT


@pytest.fixture(scope="module")
def world(base_config, tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("monitoring")
    config = make_config(base_config, root).model_copy(update={"home": str(root)})
    ds = config.dataset()
    spec = ds.monitoring.model_copy(update={"model_name": story.MODEL, "numeric": story.FEATURES,
                                            "categorical": ["channel", "merchant_category"]})
    config = config.model_copy(update={"datasets": {**config.datasets, config.default_dataset:
                                                    ds.model_copy(update={"monitoring": spec})}})
    facts = story.build(config, str(root / "landing"))
    outcomes = {d: monitor(config, d, spark=spark) for d in [*QUIET, CONCEPT, COVARIATE]}
    return config, facts, outcomes


def kinds(outcome) -> set[str]:
    return {r["kind"] for r in outcome.reasons}


def test_quiet_period_never_alerts(world):
    config, _, outcomes = world
    for day in QUIET:
        out = outcomes[day]
        assert out.reasons == [], (day, out.reasons)
        assert out.request is None and pending_request(config, "card_transactions", day) is None
        assert max(d.psi for d in out.drift) < 0.05
    assert outcomes[QUIET[0]].verdict.status == "insufficient"  # no scoring date is 30 days old yet
    assert outcomes[QUIET[1]].verdict.status == "ok" and outcomes[QUIET[1]].verdict.positives >= 50


def test_concept_drift_alerts_once_labels_mature(world):
    config, facts, outcomes = world
    out = outcomes[CONCEPT]
    assert kinds(out) == {"performance"}  # features did not move
    verdict = out.verdict
    assert verdict.relative_drop > 0.05 and verdict.p_value < 0.01
    assert verdict.baseline == pytest.approx(facts["test_metrics"]["recall"])
    assert min(verdict.dates) < story.CONCEPT_DRIFT.isoformat() < max(verdict.dates)
    request = pending_request(config, "card_transactions", CONCEPT)
    assert request["reasons"][0]["kind"] == "performance" and request["model_name"] == story.MODEL


def test_covariate_drift_alerts_on_its_first_day(world):
    _, _, outcomes = world
    out = outcomes[COVARIATE]
    drifted = {r["column"] for r in out.reasons if r["kind"] == "data_drift"}
    assert "log_amount" in drifted
    assert all(r["psi"] > 0.2 for r in out.reasons if r["kind"] == "data_drift")


def test_realized_performance_matches_a_direct_computation(world):
    from sklearn.metrics import average_precision_score

    config, facts, outcomes = world
    run = QUIET[1]
    delivered = {t for t, d in zip(facts["labels"].column("transaction_id").to_pylist(),
                                   facts["labels"].column("ingest_date").to_pylist()) if d <= run}
    rows = {p.scoring_date: p for p in outcomes[run].performance}
    for day in (dt.date(2024, 1, 20), dt.date(2024, 2, 20)):
        mask = facts["day"] == np.datetime64(day)
        y = np.array([t in delivered for i, t in enumerate(facts["ids"]) if mask[i]])
        score = facts["score"][mask]
        pred = score >= facts["threshold"]
        p = rows[day]
        assert (p.rows, p.positives, p.true_positives) == (mask.sum(), y.sum(), (pred & y).sum())
        assert p.recall == pytest.approx((pred & y).sum() / y.sum())
        assert p.precision == pytest.approx((pred & y).sum() / pred.sum())
        assert p.pr_auc == pytest.approx(average_precision_score(y, score), abs=0.01)  # 1/50-logit bins
        assert p.matured == ((run - day).days >= 30)
    assert rows[dt.date(2024, 1, 20)].matured and not rows[dt.date(2024, 2, 20)].matured


def test_tables_report_and_idempotent_rerun(world, spark, tmp_path):
    config, _, outcomes = world
    spec = config.dataset().monitoring
    lake = Lake(config, spark)
    before = {t: lake.read_arrow(t).num_rows for t in (spec.drift_table, spec.performance_table, spec.requests_table)}
    alerts_file = f"{config.home}/alerts/alerts.jsonl"
    lines = open(alerts_file).read().splitlines()
    assert len(lines) == 2 and {json.loads(x)["run_date"] for x in lines} == {CONCEPT.isoformat(), COVARIATE.isoformat()}

    assert run_stage("monitor", config, COVARIATE, spark=spark) == 0  # alerts are not failures
    after = {t: lake.read_arrow(t).num_rows for t in before}
    assert after == before
    assert open(alerts_file).read().splitlines() == lines  # the same findings page nobody twice

    drift = lake.read_arrow(spec.drift_table).to_pylist()
    assert {r["run_date"] for r in drift} == {*QUIET, CONCEPT, COVARIATE}
    assert len(drift) == 4 * (len(story.FEATURES) + 2 + 1)  # 4 run dates x (features, categoricals, score)
    html = open(outcomes[COVARIATE].report_uri).read()
    assert "<svg" in html and "<script" not in html and "log_amount" in html and "ALERT" in html
    drift_rows = re.findall(r"<tr class=\"(breach|)\"><td>([^<]+)</td><td>([0-9.]+)</td>", html)
    psis = [float(p) for _, _, p in drift_rows]
    assert psis == sorted(psis, reverse=True)  # highest PSI first, every breach highlighted
    assert {c for b, c, _ in drift_rows if b} == {r["column"] for r in outcomes[COVARIATE].reasons
                                                  if r["kind"] in ("data_drift", "prediction_drift")}
    check_reports({Path(outcomes[COVARIATE].report_uri): [
        "PSI over time", "Columns over the alert line: reference against this run", "log_amount: PSI",
        "Score distribution", "Realized performance per scoring date", "labels not matured yet", "run date",
        "share of rows"]}, tmp_path / "chromium")
