"""Training set, splits, search + fit, MLflow logging, reproducibility: one small trained model per module."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pytest

from batchml.registry import store
from batchml.storage import Lake
from batchml.training import metrics as M
from batchml.training.dataset import build_training_set, mature_window
from batchml.training.fit import sample_params
from batchml.training.spec import Costs, Param, Splits
from batchml.training.splits import NotEnoughHistory, plan_splits
from batchml.training.train import UnusableColumn, feature_columns, finished_run, train
from tests.conftest import make_config
from tests.orchestration.browser import check_reports
from tests.training import helpers as H

D = H.CUTOFF
DAY = dt.timedelta(days=1)


def _at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), dt.timezone.utc)


@pytest.fixture(scope="module")
def world(base_config, tmp_path_factory, spark):
    """Synthetic features + chargebacks, with planted late labels and immature events; trained once."""
    root = tmp_path_factory.mktemp("training")
    config = H.small_model(make_config(base_config, root))
    features, chargebacks = H.synthetic()
    fraud = set(chargebacks.column("transaction_id").to_pylist())
    clean = [t for t in features.column("transaction_id").to_pylist() if t not in fraud]
    late_report, late_delivery, on_time = clean[10], clean[11], clean[12]
    planted = pa.Table.from_pylist([
        # reported after the cut-off: invisible
        {"chargeback_id": "p1", "transaction_id": late_report, "reported_at": _at(D + DAY), "reason_code": "fraud_x",
         "amount": 1.0, "ingest_date": D + DAY},
        # reported before the cut-off but delivered after it: invisible
        {"chargeback_id": "p2", "transaction_id": late_delivery, "reported_at": _at(D - DAY), "reason_code": "fraud_x",
         "amount": 1.0, "ingest_date": D + DAY},
        # reported and delivered by the cut-off: visible
        {"chargeback_id": "p3", "transaction_id": on_time, "reported_at": _at(D, 23), "reason_code": "fraud_x",
         "amount": 1.0, "ingest_date": D},
    ], H.CHARGEBACKS_SCHEMA)
    immature, _ = H.synthetic(seed=9, per_day=50, start=D - 3 * DAY, days=2)  # too young at the cut-off
    H.load(config, pa.concat_tables([features, immature]), pa.concat_tables([chargebacks, planted]))
    result = train(config, D, spark=spark)  # no training set yet: train builds it first
    return {"config": config, "root": root, "result": result, "features": features, "fraud": fraud,
            "late": (late_report, late_delivery), "on_time": on_time}


def _training_rows(world) -> dict[str, dict]:
    spec = world["config"].dataset().model
    rows = Lake(world["config"]).read_arrow(spec.training_table, filters=[("cutoff_date", "=", D)])
    return {r["transaction_id"]: r for r in rows.select(["transaction_id", "label", "event_date"]).to_pylist()}


def test_label_maturity_hides_labels_after_the_cutoff(world):
    rows = _training_rows(world)
    window = mature_window(world["config"].dataset().model, D)
    assert window.end == D - 5 * DAY
    assert all(r["event_date"] <= window.end for r in rows.values())  # immature events are out
    assert len(rows) == world["features"].num_rows
    for tx in world["late"]:
        assert rows[tx]["label"] == 0, "a label delivered or reported after the cut-off leaked in"
    assert rows[world["on_time"]]["label"] == 1
    assert sum(r["label"] for r in rows.values()) == len(world["fraud"]) + 1


def test_training_set_is_built_once_per_cutoff(world):
    config = world["config"]
    lake = Lake(config)
    table = config.dataset().model.training_table
    before = lake.version(table)
    lineage = build_training_set(config, D)  # recorded transaction: no Spark job, no new version
    assert lake.version(table) == before and lineage[table] == before
    assert lineage["features.card_transactions"] == lake.version("features.card_transactions")


def test_search_space_sampling_is_seeded_and_bounded():
    space = {"max_depth": Param(choices=[3, 4, 6]), "learning_rate": Param(low=0.01, high=0.3, log=True),
             "min_child_weight": Param(low=1, high=20, integer=True)}
    draws = [sample_params(space, random.Random(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    many = [sample_params(space, rng) for rng in [random.Random(1)] for _ in range(50)]
    assert {d["max_depth"] for d in many} == {3, 4, 6}
    assert all(0.01 <= d["learning_rate"] <= 0.3 and isinstance(d["min_child_weight"], int) for d in many)


def test_splits_are_ordered_in_time():
    s = Splits(test_days=3, validation_days=2, cv_folds=3, cv_fold_days=2, min_train_days=3)
    first, last = dt.date(2024, 1, 1), dt.date(2024, 1, 20)
    plan = plan_splits(first, last, s)
    assert plan.train.start == first and plan.test.end == last
    assert plan.train.end < plan.validation.start and plan.validation.end < plan.test.start
    assert (plan.validation.start - plan.train.end).days == 1 and (plan.test.start - plan.validation.end).days == 1
    assert len(plan.folds) == 3
    for fold in plan.folds:
        assert fold.train.start == first and fold.train.end < fold.validation.start
        assert fold.validation.end <= plan.validation.end  # the test window is never searched on
    assert [f.validation.start for f in plan.folds] == sorted(f.validation.start for f in plan.folds)
    with pytest.raises(NotEnoughHistory, match="at least 8"):
        plan_splits(first, first + 6 * DAY, s)


def test_old_cost_names_load_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="missed_fraud is deprecated; call it false_negative"):
        costs = Costs.model_validate({"missed_fraud": 20, "false_alarm": 2})
    assert (costs.false_negative, costs.false_positive) == (20, 2)
    with pytest.raises(ValueError, match="give false_negative only"):
        Costs.model_validate({"missed_fraud": 20, "false_negative": 20})


def test_cost_threshold_follows_the_costs():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9])
    assert M.cost_threshold(y, p, Costs(false_negative=100, false_positive=1)) == 0.5  # catch all three
    assert M.cost_threshold(y, p, Costs(false_negative=1, false_positive=100)) == 0.7  # no false positive at all
    m = M.at_threshold(y, p, 0.5, beta=2)
    assert (m["precision"], m["recall"]) == (0.75, 1.0)


def test_train_registers_model_with_contract_lineage_and_card(world):
    config, result = world["config"], world["result"]
    spec = config.dataset().model
    mv = store.load(config, spec.registered_name, version=result.version)
    tags = mv.tags
    assert tags["train_end"] < tags["test_start"]  # time-ordered, never a random split
    assert set(json.loads(tags["test_metrics"])) == set(M.CONTRACT_METRICS)
    run = store.client(config).get_run(mv.run_id)
    lineage = json.loads(run.data.tags["batchml.lineage"])
    lake = Lake(config)
    assert lineage == {"features.card_transactions": lake.version("features.card_transactions"),
                       "silver.card_chargebacks": lake.version("silver.card_chargebacks"),
                       spec.training_table: lake.version(spec.training_table)}
    assert len(run.data.tags["batchml.config_hash"]) == 64 and run.data.tags["batchml.code_version"]
    metrics = run.data.metrics
    assert metrics["search_trials"] == 2
    positive_rate = metrics["test_positives"] / metrics["test_rows"]
    assert metrics["test_pr_auc"] > 2 * positive_rate and metrics["test_roc_auc"] > 0.7  # it learned the signal
    for key in ("baseline_test_pr_auc", "test_brier", "test_fbeta", "slice_channel_ecom_pr_auc",
                "slice_merchant_category_travel_roc_auc"):
        assert key in metrics
    artifacts = {a.path for a in store.client(config).list_artifacts(mv.run_id, "report")}
    assert {"report/model_card.md", "report/pr_curve.png", "report/calibration.png",
            "report/feature_importance.png"} <= artifacts
    card = open(store.client(config).download_artifacts(mv.run_id, "report/model_card.md")).read()
    for section in ("## Intended use", "## Threshold and costs", "### channel", "## Known limits",
                    f"| `{spec.training_table}` |", "## Decisions at the threshold (test window, expected)",
                    config.dataset().description, config.dataset().label.description):
        assert section in card
    band = mv.review_band  # by rank on the validation window: 1% of events on each side of the threshold
    assert band.low < mv.threshold <= band.high and (band.below_share, band.above_share) == (0.01, 0.01)
    expected = {k.removeprefix("test_expected_"): v for k, v in metrics.items() if k.startswith("test_expected_")}
    assert 0 < expected["band_rate"] < 0.05 and expected["overflow_rate"] == 0  # 300 rows a day, capacity 500
    assert expected["review_rate"] == expected["band_rate"]
    assert f"| `decline` (automatic, score >= {mv.threshold:.4g}) | {expected['positive_rate']:.2%} |" in card
    # every column but keys, time, dates and model.exclude_columns is an input: the decimal too
    assert list(mv.feature_columns) == ["amount", "risk_signal", "noise", "customer_count_24h", "channel_ecom", "share"]
    # the Spark fit's model is the classifier's kind: a binary:logistic booster scoring probabilities
    assert json.loads(mv.booster.save_config())["learner"]["objective"]["name"] == "binary:logistic"
    X = np.random.default_rng(0).normal(size=(200, len(mv.feature_columns))).astype(np.float32)
    p = mv.booster.inplace_predict(X)
    assert p.shape == (200,) and ((p >= 0) & (p <= 1)).all() and p.std() > 0
    outputs = mlflow.models.get_model_info(f"models:/{spec.registered_name}/{result.version}").signature.outputs
    assert [s.type for s in outputs.inputs] == [np.dtype("float32")]  # one float tensor: the probability
    counts = [row.split("|")[2:4] for row in card.splitlines()  # rows and positives of every metrics table
              if row.count("|") == 11 and "---" not in row and "positives" not in row]
    assert counts and all(c.strip().replace(",", "").isdigit() for pair in counts for c in pair)  # 1, not 1.0000


def test_the_registered_model_scores_calibrated_probabilities_with_the_ranking_kept(world):
    """Platt (the default) fit on the validation window: on the held-out test window, re-scored here from the
    pinned training set with the loaded version, the raw scores of the reweighted fit (scale_pos_weight) are
    far off probabilities, the calibrated ones closer, and PR-AUC / ROC-AUC are those of the raw ranking."""
    config, result = world["config"], world["result"]
    spec = config.dataset().model
    mv = store.load(config, spec.registered_name, version=result.version)
    assert mv.calibrator.method == "platt" and mv.tags["calibration"] == "platt" and mv.calibrator.a > 0
    start, end = (dt.date.fromisoformat(mv.tags[k]) for k in ("test_start", "test_end"))
    rows = Lake(config).read_arrow(spec.training_table, [("cutoff_date", "=", D), ("event_date", ">=", start),
                                                         ("event_date", "<=", end)]).to_pandas()
    X = rows[list(mv.feature_columns)].astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)
    y, raw, p = rows["label"].to_numpy(), mv.booster.inplace_predict(X), mv.predict(X)
    np.testing.assert_allclose(p, mv.calibrator(raw))
    metrics = store.client(config).get_run(mv.run_id).data.metrics
    assert metrics["test_rows"] == len(rows)
    for k, v in M.ranking(y, raw).items():  # a strictly increasing map: the ranking metrics are the raw ones
        assert metrics[f"test_{k}"] == pytest.approx(v, abs=1e-9) == M.ranking(y, p)[k]
    before, _ = M.calibration(y.astype(float), raw, spec.calibration_bins)
    after, _ = M.calibration(y.astype(float), p, spec.calibration_bins)
    assert (metrics["test_raw_ece"], metrics["test_ece"]) == pytest.approx((before["ece"], after["ece"]), abs=1e-6)
    assert after["ece"] < before["ece"] / 2 and after["brier"] < before["brier"]
    assert M.at_threshold(y, p, mv.threshold, 1)["recall"] == pytest.approx(metrics["test_recall"])  # same scale
    card = open(store.client(config).download_artifacts(mv.run_id, "report/model_card.md")).read()
    assert f"| raw (before) | {before['ece']:.4f} | {before['brier']:.4f} |" in card
    assert f"| calibrated (after) | {after['ece']:.4f} | {after['brier']:.4f} |" in card
    assert "Platt scaling" in card and "not calibrated" not in card


def test_mlflow_describes_run_model_and_version_and_lists_inputs(world, tmp_path):
    config, result = world["config"], world["result"]
    spec, c = config.dataset().model, store.client(config)
    version = c.get_model_version(spec.registered_name, str(result.version))
    run = c.get_run(result.run_id)
    assert "batchml.feature_columns" not in version.tags  # the inputs are an artifact, not a tag
    listed = json.load(open(c.download_artifacts(result.run_id, "feature_columns.json")))
    assert listed["feature_columns"] == list(store.load(config, spec.registered_name, version=result.version)
                                             .feature_columns)
    assert version.description.startswith(f"**{spec.registered_name} v{result.version}**") and "PR-AUC" in \
        version.description and "Full model card" in version.description
    assert run.data.tags["mlflow.note.content"] == version.description
    assert config.dataset().description in c.get_registered_model(spec.registered_name).description
    table_version = Lake(config).version(spec.training_table)
    inputs = [(i.dataset.name, json.loads(i.dataset.source), sorted(t.value for t in i.tags))
              for i in run.inputs.dataset_inputs]
    assert [(name, source["path"], source.get("delta_table_version", 0), tags) for name, source, tags in inputs] == [
        (f"{spec.training_table}@v{table_version}", Lake(config).uri(spec.training_table), table_version,
         [str(D), "training"])]  # MLflow leaves a version 0 out of the source
    page = Path(config.storage.artifacts_uri, "reports/models", config.default_dataset,
                f"{spec.registered_name}-v{result.version}.html")
    assert "<h2>Intended use</h2>" in page.read_text() and "<table>" in page.read_text()
    assert f"Full model card: `{page}`" in version.description
    check_reports({page: ["Model card", "Intended use", "Decisions at the threshold", "Test-window metrics",
                          "By slice", "Known limits"]}, tmp_path / "chromium")


def test_rerun_for_the_same_date_reuses_the_model(world):
    config = world["config"]
    again = train(config, D)
    assert again.reused and again.version == world["result"].version
    assert len(store.client(config).search_model_versions(
        f"name='{config.dataset().model.registered_name}'")) == 1


def test_same_inputs_config_and_seed_give_the_same_metrics(world, base_config, spark):
    """Tolerance: 1e-6 absolute on every test metric (observed: identical)."""
    first = world["config"]
    other_store = make_config(base_config, world["root"] / "second")
    config = first.model_copy(update={"mlflow": other_store.mlflow})  # same lake, fresh MLflow
    assert finished_run(config, config.default_dataset, D) is None
    second = train(config, D, spark=spark)
    assert not second.reused
    for key in ("pr_auc", "roc_auc", "f1", "precision", "recall", "brier"):
        assert second.metrics[key] == pytest.approx(world["result"].metrics[key], abs=1e-6), key


def test_a_string_feature_column_fails_training_naming_it_unless_excluded(world, spark):
    config = world["config"]
    ds = config.dataset()
    model = ds.model.model_copy(update={"exclude_columns": ["merchant_category"]})  # channel no longer excluded
    bad = config.model_copy(update={"datasets": {**config.datasets,
                                                 config.default_dataset: ds.model_copy(update={"model": model})}})
    with pytest.raises(UnusableColumn, match=r"^feature column 'channel' has type string, which cannot be a model "
                                             r"input; list it in model.exclude_columns \(or, for a string, in "
                                             r"model.categorical\)$"):
        train(bad, D + DAY, spark=spark)  # at the start: no training set is built for this cut-off
    assert not Lake(config).read_arrow(ds.model.training_table, filters=[("cutoff_date", "=", D + DAY)]).num_rows
    # the world's config excludes channel and merchant_category (strings): it trained, see the test above


def test_every_demo_feature_column_is_a_model_input_or_excluded(base_config, spark):
    """customer_count_24h_to_daily_30d (once decimal, dropped without a word) is an input; the demo's
    exclude_columns names every string column (else feature_columns raises)."""
    from batchml.features.compute import compute_features, load_sql
    from tests.features.helpers import bronze_frame, event

    ds = base_config.dataset("card_transactions")
    rows = [event("a", dt.datetime(2024, 3, 1, 9, tzinfo=dt.timezone.utc)),
            event("b", dt.datetime(2024, 3, 2, 9, tzinfo=dt.timezone.utc))]
    schema = compute_features(bronze_frame(spark, rows), ds.features, dt.date(2024, 3, 2), dt.date(2024, 3, 3),
                              load_sql(ds.features, base_config.conf_dir)).schema
    inputs = feature_columns(schema, ds.model, ds.features.id_column, ds.features.date_column,
                             ds.features.event_time_column)
    assert "customer_count_24h_to_daily_30d" in inputs and "amount" in inputs and "channel" not in inputs
    assert set(schema.fieldNames()) - set(inputs) == {*ds.model.exclude_columns, ds.features.id_column,
                                                      ds.features.event_time_column, ds.features.date_column}


def test_the_fit_trains_the_classifiers_booster_without_its_label_count_job(spark):
    """``fit.estimator('binary')`` skips SparkXGBClassifier's countDistinct job, not its model."""
    from xgboost.spark import SparkXGBClassifier

    from batchml.training.fit import estimator

    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 4))
    rows = pa.table({**{f"f{i}": x[:, i] for i in range(4)},
                     "label": (x[:, 0] + rng.normal(size=4000) > 1.5).astype(np.int32)})
    frame = spark.createDataFrame(rows.to_pandas()).repartition(2).persist()
    params = {"features_col": [f"f{i}" for i in range(4)], "label_col": "label", "num_workers": 2,
              "n_estimators": 5, "max_depth": 3, "random_state": 7}
    jobs = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("ours", "ours")
    ours = estimator("binary", **params).fit(frame).get_booster()
    spark.sparkContext.setJobGroup("classifier", "classifier")
    theirs = SparkXGBClassifier(**params).fit(frame).get_booster()
    frame.unpersist()
    assert ours.save_raw("json") == theirs.save_raw("json")
    assert len(jobs.getJobIdsForGroup("ours")) == len(jobs.getJobIdsForGroup("classifier")) - 1
    with pytest.raises(ValueError, match="contradicts model.estimator.objective"):
        estimator("binary", objective="reg:squarederror", **params)
