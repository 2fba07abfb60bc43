"""Champion / challenger promotion, the audit table, and manual promote / rollback.

Models here are real XGBoost boosters trained on the driver from a real training set and
registered through the real MLflow store, so the module needs no distributed fits.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import mlflow
import pytest
import xgboost as xgb

from batchml.cli import main
from batchml.registry import promotion as P
from batchml.registry import store
from batchml.stages import STAGES, TRAINING_STAGES, run_stage
from batchml.storage import Lake
from batchml.training.dataset import build_training_set
from batchml.training.spec import Promotion
from batchml.training.train import DATASET_TAG, RUN_DATE_TAG, VERSION_TAG
from tests.conftest import REPO, make_config
from tests.training import helpers as H

DAY = dt.timedelta(days=1)
D1, D2, D3 = H.CUTOFF, H.CUTOFF + DAY, H.CUTOFF + 2 * DAY
WEAK = ["amount", "noise"]
STRONG = ["risk_signal", "channel_ecom", "amount"]


def register(config, run_date: dt.date, features: list[str], seed: int = 1) -> int:
    """Train a booster on the training set of cut-off D1 and register it like train does for ``run_date``."""
    spec = config.dataset().model
    lake = Lake(config)
    rows = lake.read_arrow(spec.training_table, filters=[("cutoff_date", "=", D1)]).to_pandas()
    test_start = H.START + 13 * DAY
    train = rows[rows.event_date < test_start]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": seed, "nthread": 1},
                        xgb.DMatrix(train[features].astype(float), label=train.label), num_boost_round=20)
    tags = {"features_table": "features.card_transactions", "features_version": "0",
            "train_start": str(H.START), "train_end": str(test_start - DAY), "test_start": str(test_start),
            "test_end": str(H.START + 15 * DAY), "test_metrics": json.dumps({}), "cutoff_date": str(D1),
            "training_table": spec.training_table, "training_version": str(lake.version(spec.training_table))}
    with mlflow.start_run(experiment_id=store.experiment_id(config, config.default_dataset),
                          tags={RUN_DATE_TAG: str(run_date), DATASET_TAG: config.default_dataset}):
        mv = store.log_and_register(config, spec.registered_name, booster, features, 0.5, tags)
        mlflow.set_tag(VERSION_TAG, str(mv.version))
    return mv.version


@pytest.fixture(scope="module")
def registry(base_config, tmp_path_factory, spark):
    config = H.small_model(make_config(base_config, tmp_path_factory.mktemp("registry")),
                           promotion=Promotion(metric="pr_auc", margin=0.01, slice_tolerance=0.05))
    H.load(config, *H.synthetic())
    build_training_set(config, D1, spark=spark)  # every model here is tested on this cut-off's window
    return config


def _champion(config) -> int | None:
    return store.resolve(config, config.dataset().model.registered_name, "champion")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def test_decide_margin_and_slice_regression():
    rules = Promotion(metric="pr_auc", margin=0.02, slice_tolerance=0.05, min_slice_positives=5)
    good = {"channel": {"pos": {"pr_auc": 0.50, "positives": 20}, "ecom": {"pr_auc": 0.60, "positives": 30}}}
    assert P.decide({"pr_auc": 0.63}, {"pr_auc": 0.60}, good, good, rules).action == "promote"
    short = P.decide({"pr_auc": 0.61}, {"pr_auc": 0.60}, good, good, rules)
    assert short.action == "challenger" and "margin" in short.reason
    worse_pos = {"channel": {**good["channel"], "pos": {"pr_auc": 0.40, "positives": 20}}}
    blocked = P.decide({"pr_auc": 0.70}, {"pr_auc": 0.60}, worse_pos, good, rules)
    assert blocked.action == "challenger" and blocked.regressions == [
        "channel=pos: pr_auc 0.4000 < champion 0.5000 - 0.05"]
    tiny = {"channel": {**good["channel"], "pos": {"pr_auc": 0.40, "positives": 2}}}  # too few to judge
    assert P.decide({"pr_auc": 0.70}, {"pr_auc": 0.60}, tiny, good, rules).action == "promote"
    assert P.decide({"pr_auc": math.nan}, {"pr_auc": 0.6}, good, good, rules).action == "challenger"


def test_promotion_flow_audit_and_champion_at(registry, spark):
    config = registry
    t0 = _now()
    v1 = register(config, D1, WEAK)
    assert P.evaluate(config, D1, spark=spark).action == "promote"  # the first model ever
    assert _champion(config) is None  # evaluate only decides
    P.promote(config, D1, spark=spark)
    assert _champion(config) == v1
    t1 = _now()

    v2 = register(config, D2, WEAK)  # the same model again: equal metric, does not beat the margin
    decision = P.evaluate(config, D2, spark=spark)
    assert decision.action == "challenger" and "margin 0.01" in decision.reason
    P.promote(config, D2, spark=spark)
    name = config.dataset().model.registered_name
    assert _champion(config) == v1 and store.resolve(config, name, "challenger") == v2
    t2 = _now()

    v3 = register(config, D3, STRONG)  # clearly better on the same recent window; through the stages this time
    assert run_stage("evaluate", config, D3, spark=spark) == 0
    assert run_stage("promote", config, D3, spark=spark) == 0
    assert _champion(config) == v3
    t3 = _now()

    rows = P.history(config)
    decisions = [(r["run_date"], r["action"], r["from_version"], r["to_version"]) for r in rows
                 if r["event"] == "decision"]
    assert decisions == [(D1, "promote", None, v1), (D2, "challenger", v1, v2), (D3, "promote", v1, v3)]
    d3 = next(r for r in rows if r["event"] == "decision" and r["run_date"] == D3)
    assert d3["candidate_value"] > d3["champion_value"] + 0.01 and d3["decided_by"] == "batchml evaluate"
    assert set(json.loads(d3["metrics_json"])["candidate"]["slices"]) == {"channel", "merchant_category"}
    assert [P.champion_at(config, t) for t in (t0, t1, t2, t3)] == [None, v1, v1, v3]

    # re-running evaluate / promote for a date changes nothing, even after a manual change
    P.set_champion(config, v2, by="ana", reason="incident 42: v3 misfires on atm")
    before = len(P.history(config))
    P.evaluate(config, D3, spark=spark)
    P.promote(config, D3, spark=spark)
    assert len(P.history(config)) == before and _champion(config) == v2
    assert P.rollback(config, by="ana", reason="incident resolved") == v3
    assert _champion(config) == v3
    manual = [(r["action"], r["from_version"], r["to_version"], r["decided_by"], r["reason"])
              for r in P.history(config)[-2:]]
    assert manual == [("manual_promote", v3, v2, "ana", "incident 42: v3 misfires on atm"),
                      ("rollback", v2, v3, "ana", "incident resolved")]
    assert P.champion_at(config, _now()) == v3


def test_training_jobs_run_the_training_stages_in_dag_order():
    jobs = ["build_training_set", "train", "evaluate", "promote"]
    stages = [re.search(r'run_job\("([^"]+)"', (REPO / "jobs" / f"{j}.py").read_text()).group(1) for j in jobs]
    assert stages == list(TRAINING_STAGES) and all(s in STAGES for s in stages)


def test_manual_commands_require_by_and_reason(registry, capsys):
    assert main(["model", "promote", "--version", "1"]) == 1
    assert "--by and --reason" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no version 99"):
        P.set_champion(registry, 99, by="ana", reason="typo")
