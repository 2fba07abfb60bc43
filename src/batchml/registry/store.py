"""MLflow access shared by training (writes models) and scoring / monitoring (read them).

A registered model version is an XGBoost booster, its input columns in order (``feature_columns`` in the logged
model's metadata, the ``MLmodel`` file, and ``feature_columns.json`` in the run's artifacts), and model-version
tags in the ``batchml.`` namespace (the contract every stage relies on):

* ``batchml.threshold``: the decision threshold chosen from the cost matrix;
* ``batchml.features_table`` / ``batchml.features_version``: the feature table and its Delta version;
* ``batchml.train_start`` / ``batchml.train_end`` / ``batchml.test_start`` / ``batchml.test_end``:
  event-date windows (ISO dates, inclusive) of the training data and of the test window;
* ``batchml.test_metrics``: JSON object of test-window metrics (``pr_auc``, ``roc_auc``, ``f1``,
  ``recall``, ``precision`` at the threshold), the baseline that monitoring compares against.

The train stage adds (optional for other writers): ``batchml.cutoff_date``, ``batchml.training_table`` /
``batchml.training_version`` (the pinned training set; promotion re-scores its test window from it),
``batchml.labels_versions``, ``batchml.dataset``, ``batchml.config_hash`` and ``batchml.code_version``, and
``batchml.calibration`` (``platt`` or ``isotonic``: the version's scores are calibrated, the threshold and band
are on that scale; the calibrator itself is in the model's metadata, see ``ModelVersion.predict``) and
``batchml.review_band`` (JSON ``{"low", "high", "below_share", "above_share"}``: the score interval whose
events go to human review, see docs/scoring.md). Versions registered before the feature list moved out of
the tags carry it as ``batchml.feature_columns``; ``load`` still reads that.

Only MLflow's ``RESOURCE_DOES_NOT_EXIST`` means "not found" here. Any other MLflow error (connection
refused, a 5xx, a timeout after MLflow's own retries) propagates: an outage must fail the task, never
read as "no model" (which would promote a first model or score a day with the fallback rules).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from batchml.config import Config

if TYPE_CHECKING:
    from batchml.training.calibration import Calibrator

log = logging.getLogger(__name__)

TAG = "batchml."
REQUIRED_TAGS = ("threshold", "features_table", "features_version",
                 "train_start", "train_end", "test_start", "test_end", "test_metrics")
FEATURES_KEY = "feature_columns"  # in the logged model's metadata (and the old versions' tags)
CATEGORIES_KEY = "categories"  # categorical input -> its categories in code order (model metadata; batchml.categories)
CALIBRATION_KEY = "calibration"  # raw score -> probability (model metadata; training/calibration.py)


class ModelUnusable(ValueError):
    """A registered version exists but cannot serve: its batchml tags are missing or its booster does not load."""


def not_found(exc: Exception) -> bool:
    """True only for MLflow's RESOURCE_DOES_NOT_EXIST (a ``RestException`` from a server carries the same code)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code == "RESOURCE_DOES_NOT_EXIST"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str
    booster: object  # xgboost.Booster
    feature_columns: tuple[str, ...]
    threshold: float
    tags: dict[str, str] = field(default_factory=dict)  # every batchml.* tag, prefix removed
    categories: dict[str, list[str]] = field(default_factory=dict)  # categorical inputs: their training categories
    calibrator: Calibrator | None = None  # None: the version scores raw (registered before calibration, or none)

    def predict(self, X) -> np.ndarray:
        """The version's scores of the model-input matrix ``X``: the booster's, calibrated if it has a calibrator.
        Every stage scores through this (or ``calibrator`` in the scoring tasks), never the bare booster."""
        raw = self.booster.inplace_predict(X).astype(np.float64)
        return raw if self.calibrator is None else self.calibrator(raw)

    @property
    def test_metrics(self) -> dict[str, float]:
        return json.loads(self.tags.get("test_metrics", "{}"))

    @property
    def review_band(self):
        """The ``ReviewBand`` the version was trained with, or None (it sends nothing to review)."""
        from batchml.training.review import ReviewBand

        return ReviewBand.from_tag(self.tags.get("review_band"))


def experiment_name(dataset: str) -> str:
    return f"batchml/{dataset}"


def client(config: Config):
    """An MlflowClient on the configured store; also points the ``mlflow`` module at it."""
    import mlflow
    from mlflow.tracking import MlflowClient

    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in logs and consoles
    uri = config.mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(config: Config, dataset: str) -> str:
    """The dataset's experiment, created with artifacts under ``mlflow.artifact_root``."""
    c = client(config)
    name = experiment_name(dataset)
    found = c.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = f"{config.mlflow.artifact_root.rstrip('/')}/{dataset}"
    return c.create_experiment(name, artifact_location=location)


def log_and_register(config: Config, registered_name: str, booster, feature_columns: list[str],
                     threshold: float, tags: dict[str, str], input_example=None,
                     descriptions: dict[str, str] | None = None,
                     categories: dict[str, list[str]] | None = None, calibrator=None) -> ModelVersion:
    """Log ``booster`` to the active MLflow run and register it with the contract's tags.

    ``descriptions``: ``{"model": ..., "version": ...}``, MLflow's descriptions of the registered model and of
    this version (the model card's words; ``describe_version`` sets one later). ``categories``: the category
    list of each categorical input, stored with the model so scoring codes values exactly as training did.
    ``calibrator``: the ``Calibrator`` fit on the validation window, stored in the model's metadata so every
    ``load`` scores calibrated; the tag ``batchml.calibration`` names its method.
    """
    import mlflow
    from mlflow.models import infer_signature

    descriptions = descriptions or {}
    missing = [k for k in REQUIRED_TAGS if k != "threshold" and k not in tags]
    if missing:
        raise ValueError(f"model tags missing: {missing}")
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_and_register needs an active MLflow run")
    signature = None
    if input_example is not None:
        signature = infer_signature(input_example, booster.inplace_predict(input_example))
    calibration = calibrator.to_dict() if calibrator is not None else {}
    info = mlflow.xgboost.log_model(booster, name="model", signature=signature, input_example=input_example,
                                    model_format="ubj", pip_requirements=_requirements(),
                                    metadata={FEATURES_KEY: list(feature_columns), CATEGORIES_KEY: categories or {},
                                              CALIBRATION_KEY: calibration})
    mlflow.log_dict({FEATURES_KEY: list(feature_columns)}, "feature_columns.json")  # for people: the inputs in order
    if categories:
        mlflow.log_dict({CATEGORIES_KEY: categories}, "categories.json")
    if calibration:
        mlflow.log_dict(calibration, "calibration.json")
        tags = {**tags, "calibration": calibration["method"]}
    c = client(config)
    if _registered_model(c, registered_name) is None:
        c.create_registered_model(registered_name, description=descriptions.get("model"))
    elif descriptions.get("model"):
        c.update_registered_model(registered_name, description=descriptions["model"])
    # model_id: a tracking server (unlike a local store) rejects a models:/m-... source without it
    mv = c.create_model_version(registered_name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id,
                                description=descriptions.get("version"))
    full = {"threshold": repr(float(threshold)), **tags}
    for key, value in full.items():
        c.set_model_version_tag(registered_name, mv.version, TAG + key, str(value))
    log.info("registered %s version %s (run %s)", registered_name, mv.version, run.info.run_id)
    return ModelVersion(registered_name, int(mv.version), run.info.run_id, booster, tuple(feature_columns),
                        float(threshold), {k: str(v) for k, v in full.items()}, dict(categories or {}), calibrator)


def describe_version(config: Config, registered_name: str, version: int, description: str) -> None:
    """MLflow's description of one model version (shown on its page in the registry)."""
    client(config).update_model_version(registered_name, str(version), description=description)


def _requirements() -> list[str]:
    """The booster's runtime, pinned to what trained it. Given explicitly: MLflow's inference would load the
    model in a subprocess per registration (10 s and more on a busy 2-core machine) to find the same."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("xgboost", "numpy", "scipy")]


def _registered_model(c, registered_name: str):
    """The registered model, or None when MLflow says it does not exist; other errors propagate."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_registered_model(registered_name)
    except MlflowException as exc:
        if not_found(exc):
            return None
        raise


def resolve(config: Config, registered_name: str, alias: str = "champion") -> int | None:
    """The version ``alias`` points at, or None when the model or alias does not exist.

    Read from the registered model's aliases: MLflow reports a missing alias as INVALID_PARAMETER_VALUE,
    a code that also means other things, so it is never caught.
    """
    model = _registered_model(client(config), registered_name)
    version = None if model is None else model.aliases.get(alias)
    return None if version is None else int(version)


def load(config: Config, registered_name: str, alias: str | None = "champion",
         version: int | None = None) -> ModelVersion | None:
    """Load a model version by alias (default ``champion``) or number; None if there is none.

    Raises ``ModelUnusable`` for a version that exists but cannot serve, and MLflow's errors otherwise.
    """
    if version is None:
        version = resolve(config, registered_name, alias or "champion")
        if version is None:
            return None
    c = client(config)
    mv = c.get_model_version(registered_name, str(version))
    tags = {k.removeprefix(TAG): v for k, v in mv.tags.items() if k.startswith(TAG)}
    missing = [k for k in REQUIRED_TAGS if k not in tags]
    if missing:
        raise ModelUnusable(f"model {registered_name} version {version} lacks batchml tags {missing}")
    from mlflow.artifacts import download_artifacts

    uri = download_artifacts(f"models:/{registered_name}/{version}")  # once: the booster and its MLmodel file
    booster = _booster(uri)
    from mlflow.models import Model

    from batchml.training.calibration import Calibrator

    metadata = Model.load(uri).metadata or {}
    categories = metadata.get(CATEGORIES_KEY) or {}
    return ModelVersion(registered_name, int(version), mv.run_id, booster, _feature_columns(uri, tags),
                        float(tags["threshold"]), tags, categories, Calibrator.from_dict(metadata.get(CALIBRATION_KEY)))


def _feature_columns(model_dir: str, tags: dict[str, str]) -> tuple[str, ...]:
    """The booster's inputs in order: the logged model's metadata, or an older version's tag."""
    from mlflow.models import Model

    listed = (Model.load(model_dir).metadata or {}).get(FEATURES_KEY)
    if listed is None and FEATURES_KEY in tags:
        listed = json.loads(tags[FEATURES_KEY])
    if not listed:
        raise ModelUnusable(f"{model_dir} lists no feature columns (model metadata {FEATURES_KEY!r})")
    return tuple(listed)


def _booster(uri: str):
    """The version's XGBoost booster; a file XGBoost cannot read makes the version unusable (not an outage)."""
    import mlflow
    from xgboost.core import XGBoostError

    try:
        return mlflow.xgboost.load_model(uri)
    except XGBoostError as exc:
        raise ModelUnusable(f"{uri}: the booster does not load: {exc}") from exc
