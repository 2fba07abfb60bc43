"""Typed configuration: ``conf/base`` plus an environment overlay plus selected env vars.

Every YAML file is merged key by key; the origin of each key is remembered so a bad key
or type is reported with the file that set it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from batchml.features.spec import FeatureSpec, tile_tables
from batchml.monitoring.spec import AlertsConfig, MonitoringSpec
from batchml.scoring.spec import ScoringSpec
from batchml.training.spec import ModelSpec
from batchml.validation.spec import TableValidation

# Env vars that override single keys (documented in the README).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "BATCHML_HOME": ("home",),
    "BATCHML_SPARK_MASTER": ("spark", "master"),
    "BATCHML_SPARK_REMOTE": ("spark", "remote"),
    "BATCHML_LANDING_URI": ("storage", "landing_uri"),
    "BATCHML_LAKE_URI": ("storage", "lake_uri"),
    "BATCHML_ARTIFACTS_URI": ("storage", "artifacts_uri"),
    "BATCHML_S3_ENDPOINT_URL": ("storage", "s3", "endpoint_url"),
    "BATCHML_STORAGE_ENGINE": ("storage", "engine"),
    "BATCHML_MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
}


class ConfigError(ValueError):
    """A config file is missing, unreadable or does not match the schema."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Config(Strict):
    endpoint_url: str | None = None
    region: str = "us-east-1"
    allow_http: bool = False
    # Credentials normally come from the environment or an instance role, never from files.
    access_key_id: str | None = None
    secret_access_key: str | None = None


class StorageConfig(Strict):
    engine: Literal["delta-rs", "delta-spark"] = "delta-rs"
    landing_uri: str
    lake_uri: str
    artifacts_uri: str
    s3: S3Config = S3Config()
    target_file_rows: int = Field(1_000_000, gt=0)
    vacuum_min_retention_hours: int = Field(168, ge=0)


class SparkConfig(Strict):
    master: str | None = "local[2]"  # null: let spark-submit / the cluster decide
    # sc://host:port of a running Spark Connect server: jobs attach to it instead of starting a JVM
    # (`batchml spark-server`; training always starts its own, xgboost.spark needs the classic API)
    remote: str | None = None
    app_name: str = "batchml"
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(8, gt=0)
    java_options: str = ""  # extra JVM flags for the driver and executors, after -Duser.timezone=UTC
    conf: dict[str, str] = {}


class MlflowConfig(Strict):
    tracking_uri: str = "sqlite:///{home}/mlflow/mlflow.db"  # tracking and registry store
    artifact_root: str = "{home}/mlflow/artifacts"  # models, plots, model cards (s3:// in prod)


class TableConfig(Strict):
    description: str = ""
    partition_by: list[str] = []
    allow_schema_evolution: bool = False


ColumnType = Literal["string", "int32", "int64", "float64", "bool", "date", "timestamp"]


class ColumnContract(Strict):
    name: str
    type: ColumnType
    required: bool = False
    # Timestamps: values must carry an explicit UTC offset unless naive_timezone is set.
    naive_timezone: str | None = None


class SourceConfig(Strict):
    """One landing feed and the bronze table it lands in."""

    landing_prefix: str
    format: Literal["csv", "jsonl", "parquet"]
    table: str
    event_time_column: str
    allow_extra_columns: bool = False
    columns: list[ColumnContract]

    @model_validator(mode="after")
    def _event_time_is_a_timestamp(self) -> "SourceConfig":
        types = {c.name: c.type for c in self.columns}
        if types.get(self.event_time_column) != "timestamp":
            raise ValueError(f"event_time_column {self.event_time_column!r} must be a timestamp column")
        if len(types) != len(self.columns):
            raise ValueError("column names must be unique")
        return self


class DatasetConfig(Strict):
    description: str = ""
    events: SourceConfig
    labels: SourceConfig | None = None
    validation: dict[str, TableValidation] = {}  # table name -> the gate's checks for it
    features: FeatureSpec | None = None
    model: ModelSpec | None = None  # training, evaluation and promotion (docs/training.md)
    monitoring: MonitoringSpec | None = None  # drift and realized performance (docs/monitoring.md)
    scoring: ScoringSpec | None = None  # nightly batch scoring (docs/scoring.md)


class Config(Strict):
    env: str
    home: str
    storage: StorageConfig
    spark: SparkConfig = SparkConfig()
    mlflow: MlflowConfig
    tables: dict[str, TableConfig] = {}
    datasets: dict[str, DatasetConfig] = {}
    default_dataset: str
    alerts: AlertsConfig = AlertsConfig()  # extra alert sinks: webhook, email

    @model_validator(mode="after")
    def _references_resolve(self) -> "Config":
        if self.default_dataset not in self.datasets:
            raise ValueError(f"default_dataset {self.default_dataset!r} is not among datasets {sorted(self.datasets)}")
        for name, ds in self.datasets.items():
            written = [src.table for src in filter(None, (ds.events, ds.labels))]
            written += [v.accepted_table for v in ds.validation.values()]
            written += [ds.model.training_table] if ds.model else []
            written += [ds.scoring.table, ds.scoring.review_table, ds.scoring.runs_table] if ds.scoring else []
            written += list(tile_tables(name, ds.features).values()) if ds.features else []
            for table in written + list(ds.validation):
                if table not in self.tables:
                    raise ValueError(f"dataset {name!r} uses table {table!r}, which is not declared under tables")
        return self

    def dataset(self, name: str | None = None) -> DatasetConfig:
        name = name or self.default_dataset
        if name not in self.datasets:
            raise ConfigError(f"unknown dataset {name!r}; configured: {sorted(self.datasets)}")
        return self.datasets[name]


def default_conf_dir() -> Path:
    """``$BATCHML_CONF_DIR``, else ``./conf``, else the repository's ``conf/``."""
    if os.environ.get("BATCHML_CONF_DIR"):
        return Path(os.environ["BATCHML_CONF_DIR"])
    if (Path.cwd() / "conf" / "base").is_dir():
        return Path.cwd() / "conf"
    return Path(__file__).resolve().parents[2] / "conf"


def load_config(env: str | None = None, conf_dir: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    environ = dict(os.environ if environ is None else environ)
    env = env or environ.get("BATCHML_ENV", "local")
    conf_dir = Path(conf_dir or default_conf_dir())
    if not (conf_dir / "base").is_dir():
        raise ConfigError(f"{conf_dir / 'base'}: config folder not found (set BATCHML_CONF_DIR)")
    if not (conf_dir / env).is_dir():
        raise ConfigError(f"{conf_dir / env}: no overlay for environment {env!r}")

    merged: dict[str, Any] = {"env": env}
    origin: dict[tuple[str, ...], str] = {("env",): "BATCHML_ENV"}
    for layer in ("base", env) if env != "base" else ("base",):
        for path in sorted((conf_dir / layer).glob("*.yaml")):
            _merge(merged, _read_yaml(path), str(path), (), origin)
        for path in sorted((conf_dir / layer / "datasets").glob("*.yaml")):
            doc = {"datasets": {path.stem: _read_yaml(path)}}
            _merge(merged, doc, str(path), (), origin)
    for var, key in ENV_OVERRIDES.items():
        if environ.get(var):
            _merge(merged, _nest(key, environ[var]), f"env var {var}", (), origin)

    home = str(Path(merged.get("home", ".batchml")).expanduser().absolute())
    merged["home"] = home
    merged = _interpolate(merged, {"home": home})
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(doc).__name__}")
    return doc


def _merge(into: dict, new: dict, source: str, prefix: tuple[str, ...], origin: dict) -> None:
    for key, value in new.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, source, path, origin)
        else:
            into[key] = value
        origin[path] = source
        if isinstance(value, dict):
            for sub in _leaf_paths(value, path):
                origin[sub] = source


def _leaf_paths(doc: dict, prefix: tuple[str, ...]):
    for key, value in doc.items():
        path = (*prefix, str(key))
        yield path
        if isinstance(value, dict):
            yield from _leaf_paths(value, path)


def _nest(key: tuple[str, ...], value: str) -> dict:
    return {key[0]: value} if len(key) == 1 else {key[0]: _nest(key[1:], value)}


def _interpolate(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, replacement in names.items():  # literal: regexes like {3} must survive
            value = value.replace("{" + name + "}", replacement)
        return value
    if isinstance(value, dict):
        return {k: _interpolate(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, names) for v in value]
    return value


def _describe(exc: ValidationError, origin: dict[tuple[str, ...], str]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        source = next((origin[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in origin), "defaults")
        key = ".".join(loc) or "<root>"
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{source}: key '{key}': {reason}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
