"""An MLflow outage fails evaluate, promote and score loudly; nothing is decided or scored because of it.

A real ``mlflow server`` (SQLite store) runs on loopback. At each step the server is stopped just
before the call that step makes (``mlflow_server.outage_at``), the step must raise, and then:

* no decision or alias change is recorded in the audit table;
* no day is scored by the fallback rules, and no plan pins ``model_version = None``;
* once the server is back (resumed, or restarted on the same store and port), the re-run gives the
  same rows as an uninterrupted run of the same steps in a reference world (same lake and models,
  its own SQLite MLflow store and its own audit and scores tables).
"""

from __future__ import annotations

import datetime as dt

import pytest
from mlflow.exceptions import MlflowException

from batchml.config import TableConfig
from batchml.registry import promotion as P
from batchml.registry import store
from batchml.scoring.score import score
from batchml.storage import Lake
from batchml.training.dataset import build_training_set
from tests.conftest import make_config
from tests.registry.mlflow_server import FAST_CLIENT, MlflowServer, outage_at
from tests.registry.test_promotion import D1, D2, STRONG, WEAK, register
from tests.training import helpers as H

SCORE_DAY = H.START + dt.timedelta(days=14)
REFERENCE = {"audit": "ops.model_audit_reference", "scores": "scores.reference",
             "review": "scores.reference_review", "runs": "ops.scoring_runs_reference"}
# The REST calls of each step: the champion lookup (by the registered model or by the alias, whichever the
# code uses), loading a version, moving an alias
RESOLVE = {("GET", "/registered-models/get"), ("GET", "/registered-models/alias")}
LOAD = {("GET", "/model-versions/get")}
SET_ALIAS = {("POST", "/registered-models/alias")}
VOLATILE = {"recorded_at", "scored_at", "queued_at"}


def _with(config, **sections):
    ds = config.dataset()
    ds = ds.model_copy(update={k: getattr(ds, k).model_copy(update=v) for k, v in sections.items()})
    return config.model_copy(update={"datasets": {**config.datasets, config.default_dataset: ds}})


@pytest.fixture(scope="module")
def worlds(base_config, tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("outage")
    tables = {REFERENCE["audit"]: TableConfig(partition_by=["run_date"]),
              REFERENCE["runs"]: TableConfig(partition_by=["run_date"]),
              REFERENCE["scores"]: TableConfig(partition_by=["run_date", "chunk"]),
              REFERENCE["review"]: TableConfig(partition_by=["run_date", "chunk"])}
    config = H.small_model(make_config(base_config, root, tables=tables))
    rules = [r for r in config.dataset().scoring.fallback.rules if r.name == "large_amount"]  # columns it has
    config = _with(config, scoring={"fallback": config.dataset().scoring.fallback.model_copy(update={"rules": rules})})
    H.load(config, *H.synthetic())
    build_training_set(config, D1, spark=spark)
    server = MlflowServer(root / "server")
    try:
        server.start()
        with pytest.MonkeyPatch.context() as mp:
            for key, value in FAST_CLIENT.items():
                mp.setenv(key, value)
            outage = config.model_copy(update={"mlflow": config.mlflow.model_copy(update={"tracking_uri": server.uri})})
            reference = _with(config, model={"audit_table": REFERENCE["audit"]},
                              scoring={"table": REFERENCE["scores"], "review_table": REFERENCE["review"],
                                       "runs_table": REFERENCE["runs"]})
            for world in (outage, reference):  # the same two models, numbered alike, in both registries
                assert [register(world, D1, WEAK), register(world, D2, STRONG)] == [1, 2]
                P.evaluate(world, D1, spark=spark)
                P.promote(world, D1, spark=spark)
            yield {"outage": outage, "reference": reference, "server": server, "lake": Lake(config, spark)}
    finally:
        server.stop()  # also when the setup failed: no server outlives the module


def _rows(lake, table, day, drop=VOLATILE) -> list[dict]:
    rows = lake.read_arrow(table, [("run_date", "=", day)]).to_pylist() if lake.exists(table) else []
    return sorted(({k: v for k, v in r.items() if k not in drop} for r in rows), key=repr)


def _audit(world, day, event) -> list[dict]:
    return [r for r in _rows(Lake(world), world.dataset().model.audit_table, day) if r["event"] == event]


def test_evaluate_records_nothing_during_an_outage_and_the_same_decision_after(worlds, spark):
    outage, reference, server = worlds["outage"], worlds["reference"], worlds["server"]
    for calls in (RESOLVE, LOAD):  # the champion lookup (once "no champion: promote"), then loading
        with outage_at(server, calls) as fired, pytest.raises(MlflowException):
            P.evaluate(outage, D2, spark=spark)
        assert fired and _audit(outage, D2, "decision") == [], f"a decision was recorded at {fired}"
    P.evaluate(outage, D2, spark=spark)
    P.evaluate(reference, D2, spark=spark)
    decided = _audit(outage, D2, "decision")
    assert [(r["action"], r["from_version"], r["to_version"]) for r in decided] == [("promote", 1, 2)]
    assert decided == _audit(reference, D2, "decision")


def test_promote_moves_no_alias_during_an_outage_and_the_same_one_after(worlds, spark):
    outage, reference, server = worlds["outage"], worlds["reference"], worlds["server"]
    for world in (outage, reference):
        P.evaluate(world, D2, spark=spark)  # recorded by the test before (a no-op then)
    with outage_at(server, SET_ALIAS) as fired, pytest.raises(MlflowException):
        P.promote(outage, D2, spark=spark)
    assert fired and _audit(outage, D2, "alias") == []
    assert P.promote(outage, D2, spark=spark) == P.promote(reference, D2, spark=spark) == "promote"
    assert _audit(outage, D2, "alias") == _audit(reference, D2, "alias") != []
    name = outage.dataset().model.registered_name
    assert store.resolve(outage, name) == store.resolve(reference, name) == 2


def test_score_never_falls_back_because_of_an_outage(worlds, spark):
    outage, reference, server, lake = worlds["outage"], worlds["reference"], worlds["server"], worlds["lake"]
    spec = outage.dataset().scoring
    for world in (outage, reference):  # the champion: version 2 (a no-op after the tests before)
        P.evaluate(world, D2, spark=spark)
        P.promote(world, D2, spark=spark)
    # the plan's champion lookup: the server dies; nothing is planned, nothing scored
    with outage_at(server, RESOLVE, how="kill") as fired, pytest.raises(MlflowException):
        score(outage, SCORE_DAY, spark=spark)
    assert fired and _rows(lake, spec.runs_table, SCORE_DAY) == [] and _rows(lake, spec.table, SCORE_DAY) == []
    server.start()  # the same store and port
    # loading the pinned version after the plan committed: the run fails instead of using the rules
    with outage_at(server, LOAD) as fired, pytest.raises(MlflowException):
        score(outage, SCORE_DAY, spark=spark)
    runs = _rows(lake, spec.runs_table, SCORE_DAY)
    assert fired and [(r["event"], r["model_version"]) for r in runs] == [("planned", 2)]
    assert _rows(lake, spec.table, SCORE_DAY) == []
    resumed = score(outage, SCORE_DAY, spark=spark)
    uninterrupted = score(reference, SCORE_DAY, spark=spark)
    assert (resumed.model_version, resumed.fallback_rows, resumed.rows) == (2, 0, uninterrupted.rows)
    assert _rows(lake, spec.table, SCORE_DAY) == _rows(lake, REFERENCE["scores"], SCORE_DAY)
    assert _rows(lake, spec.runs_table, SCORE_DAY) == _rows(lake, REFERENCE["runs"], SCORE_DAY)
