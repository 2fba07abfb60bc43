"""The train stage: search, fit, evaluate on the test window, log to MLflow, register.

Idempotent per run date: a finished MLflow run tagged ``batchml.run_date = D`` that registered a
model is reused instead of training again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchml import categories as cat
from batchml.config import Config
from batchml.registry import store
from batchml.storage import Lake
from batchml.training import fit as fitting
from batchml.training import metrics as M
from batchml.storage.artifacts import write_text
from batchml.training import calibration, card_html, report, review
from batchml.training.dataset import CUTOFF, build_training_set, model_spec, training_set_lineage
from batchml.training.spec import ModelSpec
from batchml.training.splits import SplitPlan, plan_splits

log = logging.getLogger(__name__)

RUN_DATE_TAG = "batchml.run_date"
DATASET_TAG = "batchml.dataset"
VERSION_TAG = "batchml.model_version"
NUMERIC = ("int", "bigint", "smallint", "tinyint", "float", "double", "boolean")  # and decimal(p,s): cast to double


@dataclass(frozen=True)
class TrainResult:
    version: int
    run_id: str
    metrics: dict
    reused: bool = False


class UnusableColumn(ValueError):
    """A feature-table column that cannot be a model input and is not excluded."""


def feature_columns(schema, spec: ModelSpec, id_column: str, date_column: str, time_column: str | None = None
                    ) -> list[str]:
    """Model inputs: every column of the training set but the id, event time, dates, the label and
    ``model.exclude_columns``. Numbers, booleans, decimals (cast to double) and the string columns of
    ``model.categorical`` are inputs; any other type fails here, naming the column, so nothing is ever
    dropped without a word."""
    skip = {id_column, date_column, time_column, CUTOFF, fitting.LABEL, *spec.exclude_columns}
    absent = [c for c in spec.categorical if c not in schema.fieldNames()]
    if absent:
        raise UnusableColumn(f"model.categorical names {absent}, which the feature table does not have")
    out = []
    for f in schema.fields:
        if f.name in skip:
            continue
        kind = f.dataType.simpleString()
        if f.name in spec.categorical and kind != "string":
            raise UnusableColumn(f"categorical column {f.name!r} has type {kind}; model.categorical takes strings")
        if kind not in NUMERIC and not kind.startswith("decimal(") and f.name not in spec.categorical:
            raise UnusableColumn(f"feature column {f.name!r} has type {kind}, which cannot be a model input; "
                                 "list it in model.exclude_columns (or, for a string, in model.categorical)")
        out.append(f.name)
    return out


def config_hash(config: Config, dataset: str) -> str:
    """Hash of the dataset's config (contract, gate, features, model): what decides the model."""
    doc = config.dataset(dataset).model_dump(mode="json")
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def code_version() -> str:
    """The git commit of the checkout (``+dirty`` if modified), else the package version."""
    from importlib.metadata import version

    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--", str(here.parent)], cwd=here,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return f"batchml=={version('batchml')}"


def finished_run(config: Config, dataset: str, run_date: dt.date):
    """The finished run of ``run_date`` that registered a model, or None."""
    c = store.client(config)
    runs = c.search_runs([store.experiment_id(config, dataset)],
                         filter_string=f"tags.`{RUN_DATE_TAG}` = '{run_date}' and attributes.status = 'FINISHED'",
                         order_by=["attributes.start_time DESC"])
    return next((r for r in runs if VERSION_TAG in r.data.tags), None)


def prepare(lake: Lake, spec: ModelSpec, table: str, version: int, cutoff: dt.date, id_column: str,
            date_column: str, time_column: str | None = None) -> tuple[fitting.Prepared, SplitPlan]:
    """The training set as the fits see it, and its split plan. Categorical inputs are coded with the
    categories of the plan's training window (``batchml.categories``)."""
    from pyspark.sql import functions as F

    rows = lake.read(table, version=version, where=[(CUTOFF, "=", cutoff)])
    features = feature_columns(rows.schema, spec, id_column, date_column, time_column)
    if not features:
        raise ValueError(f"{table} has no feature columns to train on")
    counts = {r[0]: (r[1], r[2] or 0) for r in
              rows.groupBy(date_column).agg(F.count("*"), F.sum(fitting.LABEL)).collect()}
    if not counts:
        raise ValueError(f"training set {table} for cut-off {cutoff} is empty; check the features history "
                         "and model.label_maturity_days")
    plan = plan_splits(min(counts), max(counts), spec.splits)
    categories = _categories(rows.withColumnRenamed(date_column, fitting.DATE), spec.categorical, plan)

    def model_input(c: str):
        return (cat.spark_codes(c, categories[c]) if c in categories else F.col(c).cast("double")).alias(c)

    frame = fitting.partitioned(rows.select(*[model_input(c) for c in features], F.col(fitting.LABEL),
                                            F.col(date_column).alias(fitting.DATE),
                                            *[F.col(s).alias(fitting.slice_column(s)) for s in spec.slices]),
                                spec).persist()
    return fitting.Prepared(frame, features, counts, categories), plan


def _categories(rows, columns: list[str], plan: SplitPlan) -> dict[str, list[str]]:
    """The sorted distinct values of each categorical column in the final fit's training window."""
    from pyspark.sql import functions as F

    if not columns:
        return {}
    found = rows.where(plan.train.column_filter(fitting.DATE)).agg(
        *[F.collect_set(c).alias(c) for c in columns]).collect()[0]
    return {c: sorted(found[c]) for c in columns}


def train(config: Config, run_date: dt.date, dataset: str | None = None, spark=None) -> TrainResult:
    import mlflow

    name, spec = model_spec(config, dataset)
    feats = config.dataset(name).features
    done = finished_run(config, name, run_date)
    if done is not None:
        version = int(done.data.tags[VERSION_TAG])
        log.info("train %s %s: already trained (run %s, %s version %s); nothing to do", name, run_date,
                 done.info.run_id, spec.registered_name, version)
        test = {k.removeprefix("test_"): v for k, v in done.data.metrics.items() if k.startswith("test_")}
        return TrainResult(version, done.info.run_id, test, reused=True)

    from batchml.spark import get_spark

    lake = Lake(config, spark or get_spark(config))
    if lake.exists(feats.table):  # fail before any work when a feature column cannot be an input
        feature_columns(lake.read(feats.table).schema, spec, feats.id_column, feats.date_column,
                        feats.event_time_column)
    if not lake.exists(spec.training_table) or not lake.committed(
            spec.training_table, (f"training-set/{name}/{run_date}", 1)):
        log.info("train %s %s: no training set for this cut-off yet; building it first", name, run_date)
        build_training_set(config, run_date, name, lake.spark)
    lineage = training_set_lineage(lake, spec.training_table, run_date)
    prep, plan = prepare(lake, spec, spec.training_table, lineage[spec.training_table], run_date,
                         feats.id_column, feats.date_column, feats.event_time_column)
    try:
        log.info("train %s %s: %d rows, %d features; train %s, validation %s, test %s, %d CV fold(s)", name,
                 run_date, sum(n for n, _ in prep.day_counts.values()), len(prep.features), plan.train,
                 plan.validation, plan.test, len(plan.folds))
        with mlflow.start_run(experiment_id=store.experiment_id(config, name), run_name=f"train {run_date}",
                              tags={RUN_DATE_TAG: str(run_date), DATASET_TAG: name}) as run:
            result = _train_and_log(config, name, spec, run_date, lake, prep, plan, lineage)
            mlflow.set_tag(VERSION_TAG, str(result.version))  # marks the run complete for re-runs
            return TrainResult(result.version, run.info.run_id, result.metrics)
    finally:
        prep.frame.unpersist()


@dataclass(frozen=True)
class _Logged:
    version: int
    metrics: dict


def _train_and_log(config, name, spec, run_date, lake, prep, plan, lineage) -> _Logged:
    import mlflow

    trials = fitting.search(prep, plan, spec)
    chosen = fitting.best(trials)
    booster = fitting.fit(prep, plan.train, spec, chosen.params)

    validation = prep.collect(plan.validation)
    raw_validation = fitting.predict(booster, validation, prep.features)
    calibrator = calibration.fit(spec.calibration, validation[fitting.LABEL].to_numpy(), raw_validation,
                                 f"the validation window {plan.validation}")
    p_validation = _calibrated(calibrator, raw_validation)  # threshold, band and metrics: on the model's scale
    threshold = M.cost_threshold(validation[fitting.LABEL].to_numpy(), p_validation, spec.costs)
    test = prep.collect(plan.test, extra=[*map(fitting.slice_column, spec.slices), fitting.DATE])
    y = test[fitting.LABEL].to_numpy()
    raw = fitting.predict(booster, test, prep.features)
    p = _calibrated(calibrator, raw)
    band, decisions, warning = _review(config, name, run_date, p_validation, threshold, p,
                                       test[fitting.DATE].to_numpy())
    overall = M.evaluate(y, p, threshold, spec.costs, spec.calibration_bins)
    slices = M.by_slice(y, p, {s: test[fitting.slice_column(s)].to_numpy() for s in spec.slices}, threshold, spec.costs,
                        spec.calibration_bins)
    base_p = _baseline_scores(prep, plan, spec, validation, test)
    base_threshold = M.cost_threshold(validation[fitting.LABEL].to_numpy(), base_p["validation"], spec.costs)
    baseline = M.evaluate(y, base_p["test"], base_threshold, spec.costs, spec.calibration_bins)
    reliability = report.Reliability(calibrator.describe() if calibrator else None,
                                     *M.calibration(y.astype(float), raw, spec.calibration_bins),
                                     *M.calibration(y.astype(float), p, spec.calibration_bins),
                                     reweighted=_reweighted(spec, chosen.params))

    feats = config.dataset(name).features
    label_versions = {t: v for t, v in lineage.items() if t not in (feats.table, spec.training_table)}
    windows = {"train": str(plan.train), "validation": str(plan.validation), "test": str(plan.test)}
    hashed, code = config_hash(config, name), code_version()
    params = {**spec.params, **chosen.params, "num_workers": spec.num_workers, "seed": spec.seed,
              "label_maturity_days": spec.label_maturity_days, "threshold": threshold,
              "objective": spec.estimator.objective, "calibration": spec.calibration,
              "cost_false_negative": spec.costs.false_negative,
              "cost_false_positive": spec.costs.false_positive}
    _log_training_input(lake, spec.training_table, lineage[spec.training_table], run_date, prep.features)
    mlflow.log_params({k: str(v) for k, v in params.items()})
    mlflow.log_metrics({f"test_{k}": v for k, v in overall.items() if np.isfinite(v)})
    mlflow.log_metrics({f"baseline_test_{k}": v for k, v in baseline.items() if np.isfinite(v)})
    mlflow.log_metrics({f"test_raw_{k}": v for k, v in reliability.raw.items() if np.isfinite(v)})
    mlflow.log_metrics({f"test_expected_{k}": v for k, v in decisions.items() if np.isfinite(v)})
    mlflow.log_metrics({f"slice_{col}_{val}_{k}": v for col, vals in slices.items() for val, m in vals.items()
                        for k, v in m.items() if k in ("pr_auc", "roc_auc", "f1", "rows") and np.isfinite(v)})
    for t in trials:
        mlflow.log_metric("search_cv_pr_auc", t.score if np.isfinite(t.score) else 0.0, step=t.number)
    mlflow.log_metric("search_trials", len(trials))
    mlflow.set_tags({"batchml.lineage": json.dumps(lineage), "batchml.config_hash": hashed,
                     "batchml.code_version": code,
                     **{f"batchml.input_version.{t}": str(v) for t, v in lineage.items()}})
    gains = booster.get_score(importance_type="total_gain")
    card = report.model_card(
        name=spec.registered_name, dataset=name, run_date=run_date, windows=windows, lineage=lineage,
        metrics=overall, baseline=baseline, slices=slices, threshold=threshold, costs=spec.costs,
        params=params, features=prep.features, maturity_days=spec.label_maturity_days, code_version=code,
        config_hash=hashed, contract=card_context(config, name), band=band, decisions=decisions,
        capacity_warning=warning, reliability=reliability)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        report.pr_curve(d / "pr_curve.png", y, {"xgboost": p, "baseline": base_p["test"]})
        report.reliability(d / "calibration.png", reliability.curves())
        report.importance(d / "feature_importance.png", gains)
        (d / "model_card.md").write_text(card)
        (d / "metrics.json").write_text(json.dumps(
            {"test": overall, "baseline": baseline, "slices": slices, "calibration": reliability.doc(),
             "review_band": json.loads(band.tag()) if band else None, "expected_decisions": decisions,
             "capacity_warning": warning,
             "search": [t.__dict__ for t in trials]}, indent=2, default=str))
        mlflow.log_artifacts(str(d), artifact_path="report")

    tags = {"features_table": feats.table, "features_version": str(lineage[feats.table]),
            "training_table": spec.training_table, "training_version": str(lineage[spec.training_table]),
            "labels_versions": json.dumps(label_versions),
            "train_start": str(plan.train.start), "train_end": str(plan.train.end),
            "test_start": str(plan.test.start), "test_end": str(plan.test.end),
            "test_metrics": json.dumps(M.contract(overall)), "cutoff_date": str(run_date), "dataset": name,
            "config_hash": hashed, "code_version": code, **({"review_band": band.tag()} if band else {})}
    example = test[prep.features].head(5).astype("float32")
    mv = store.log_and_register(config, spec.registered_name, booster, prep.features, threshold, tags,
                                input_example=example, categories=prep.categories, calibrator=calibrator,
                                descriptions={"model": report.intended_use(name, card_context(config, name))})
    page = card_html.to_html(card, f"Model card: {spec.registered_name} v{mv.version}",
                             {report.CALIBRATION_HEADING: card_html.reliability_svg(reliability.curves())})
    card_uri = write_text(lake.storage, config.storage.artifacts_uri, card_path(name, spec.registered_name, mv.version),
                          page)
    summary = report.card_summary(name=spec.registered_name, version=mv.version, run_date=run_date, dataset=name,
                                  metrics=overall, baseline=baseline, threshold=threshold, decisions=decisions,
                                  contract=card_context(config, name), card_path=card_uri)
    store.describe_version(config, spec.registered_name, mv.version, summary)
    mlflow.set_tag("mlflow.note.content", summary)  # the run's description in the MLflow UI
    log.info("train %s %s: version %s, test PR-AUC %.4f (baseline %.4f), ROC-AUC %.4f, threshold %.4f",
             name, run_date, mv.version, overall["pr_auc"], baseline["pr_auc"], overall["roc_auc"], threshold)
    return _Logged(mv.version, overall)


def _calibrated(calibrator: calibration.Calibrator | None, raw: np.ndarray) -> np.ndarray:
    return raw if calibrator is None else calibrator(raw)


def _reweighted(spec: ModelSpec, chosen: dict) -> bool:
    """Whether the fit weighted the classes (``fit.fit`` sets ``scale_pos_weight`` unless the config does)."""
    weight = {**spec.params, **chosen}.get("scale_pos_weight")
    return weight is None or float(weight) != 1.0


def card_path(dataset: str, registered_name: str, version: int) -> str:
    """The model card's HTML page below ``storage.artifacts_uri``, next to the other reports."""
    return f"reports/models/{dataset}/{registered_name}-v{version}.html"


def _log_training_input(lake: Lake, table: str, version: int, cutoff: dt.date, features: list[str]) -> None:
    """The training table at its pinned Delta version as the run's input dataset (MLflow's Datasets)."""
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema

    source = DeltaDatasetSource(path=lake.uri(table), delta_table_version=version)
    schema = Schema([ColSpec("double", f) for f in features])
    mlflow.log_input(MetaDataset(source, name=f"{table}@v{version}", digest=f"{version}-{cutoff}"[:36], schema=schema),
                     context="training", tags={"cutoff_date": str(cutoff)})


def card_context(config: Config, name: str) -> report.CardContext:
    """The dataset's own words for the model card: its description, its label and its decision names."""
    ds = config.dataset(name)
    return report.CardContext(ds.description, ds.label.description, ds.label.definition(ds.label.table),
                               ds.label.kind, dict(ds.scoring.decisions) if ds.scoring else {})


def _review(config: Config, name: str, run_date: dt.date, p_validation: np.ndarray, threshold: float,
            p_test: np.ndarray, test_days: np.ndarray):
    """The review band (from the validation window) and the decisions expected with it on the test window."""
    scoring = config.dataset(name).scoring
    rules = scoring.review if scoring else None
    band = review.band(p_validation, threshold, rules.share_below, rules.share_above) if rules else None
    expected = review.expected_decisions(p_test, test_days, threshold, band, rules.daily_capacity if rules else 0)
    warning = review.capacity_warning(expected, rules.daily_capacity, rules.capacity_warning_factor) if rules else None
    if warning:
        log.warning("train %s %s: %s", name, run_date, warning)
    return band, expected, warning


def _baseline_scores(prep, plan, spec: ModelSpec, validation, test) -> dict[str, np.ndarray]:
    """A logistic regression on a seeded sample of the training window: the bar xgboost must clear."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pyspark.sql import functions as F

    rows, _ = prep.counts(plan.train)
    frame = prep.frame.where(plan.train.column_filter(fitting.DATE))
    if rows > spec.baseline_sample_rows:  # a hash sample: the same rows whatever the partitioning
        keep = int(spec.baseline_sample_rows / rows * 1_000_000)
        bucket = F.pmod(F.xxhash64(F.lit(spec.seed), *prep.features, fitting.LABEL, fitting.DATE), F.lit(1_000_000))
        frame = frame.where(bucket < keep)
    sample = frame.select(*prep.features, fitting.LABEL).toArrow().to_pandas()
    model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                          LogisticRegression(max_iter=500, class_weight="balanced"))
    model.fit(sample[prep.features].to_numpy(dtype=float, na_value=np.nan), sample[fitting.LABEL].to_numpy())

    def score(df):
        return model.predict_proba(df[prep.features].to_numpy(dtype=float, na_value=np.nan))[:, 1]

    return {"validation": score(validation), "test": score(test)}
