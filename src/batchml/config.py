"""Typed configuration: ``conf/base`` plus an environment overlay plus selected env vars.

Every YAML file is merged key by key; the origin of each key is remembered so a bad key
or type is reported with the file that set it.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from batchml.features.spec import FeatureSpec, tile_table_configs, tile_tables
from batchml.labels import LabelSpec
from batchml.monitoring.spec import AlertsConfig, MonitoringSpec
from batchml.online.spec import OnlineConfig
from batchml.rundays import KnownSince, RunCalendar
from batchml.scoring.spec import ScoringSpec
from batchml.training.spec import ModelSpec
from batchml.validation.spec import TableValidation

# Env vars that override single keys (documented in the README and docs/configuration.md).
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


# The master URLs Spark accepts (SparkContext.createTaskScheduler, SparkSubmit): anything else makes
# spark-submit exit with a JVM stack trace before Python sees an error.
SPARK_MASTER = re.compile(r"local(\[(\*|[1-9]\d*)(\s*,\s*\d+)?\])?|local-cluster\[\s*\d+\s*,\s*\d+\s*,\s*\d+\s*\]"
                          r"|spark://[^\s/,]+:\d+(,[^\s/,]+:\d+)*|yarn|k8s://\S+")


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

    @field_validator("master")
    @classmethod
    def _known_master(cls, master: str | None) -> str | None:
        if master is not None and not SPARK_MASTER.fullmatch(master):
            raise ValueError(f"{master!r} is not a Spark master URL (local, local[N], local[*], "
                             "spark://host:port, yarn, k8s://...)")
        return master


class MlflowConfig(Strict):
    tracking_uri: str = "sqlite:///{home}/mlflow/mlflow.db"  # tracking and registry store
    artifact_root: str = "{home}/mlflow/artifacts"  # models, plots, model cards (s3:// in prod)


class TableConfig(Strict):
    description: str = ""  # written to the Delta table's metadata (its description)
    columns: dict[str, str] = {}  # column -> description, written to the Delta schema (each column's comment)
    partition_by: list[str] = []
    allow_schema_evolution: bool = False


# The column ingest writes on every landed row: the run date it arrived. Bronze tables are partitioned by
# it, and every "known by date D" rule (features, labels) filters on it.
INGEST_COLUMN = "ingest_date"

ColumnType = Literal["string", "int32", "int64", "float64", "bool", "date", "timestamp"]


class ColumnContract(Strict):
    """One column of a landing feed's schema contract (docs/ingest.md)."""

    name: str
    type: ColumnType
    required: bool = False
    # Timestamps: values must carry an explicit UTC offset unless naive_timezone is set.
    naive_timezone: str | None = None
    # Timestamps finer than the stored microseconds (Parquet ns, text with 7-9 fraction digits):
    # quarantine the row, or round down / to nearest.
    sub_microsecond: Literal["reject", "floor", "round"] = "reject"
    # Accept a typed value of another type (a JSON number or boolean where a string is declared, a
    # Parquet int column for a bool, ...) by converting its text; counted in the manifest. Off: quarantined.
    coerce: bool = False

    @model_validator(mode="after")
    def _timestamp_options(self) -> "ColumnContract":
        if self.type != "timestamp" and (self.naive_timezone or self.sub_microsecond != "reject"):
            raise ValueError(f"column {self.name!r}: naive_timezone and sub_microsecond apply to timestamps only")
        if self.naive_timezone:
            try:
                ZoneInfo(self.naive_timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"column {self.name!r}: unknown time zone {self.naive_timezone!r}") from None
        return self


class SourceConfig(Strict):
    """One landing feed and the bronze table it lands in."""

    landing_prefix: str
    format: Literal["csv", "jsonl", "parquet"]
    table: str
    event_time_column: str
    allow_extra_columns: bool = False
    columns: list[ColumnContract]
    # From which run date the features may use a row (events feed only; docs/features.md, "Bulk history"):
    # ingest_date (strict: rows ingested by the run date) or event_time (a bulk history load: known at its
    # event time, so a backfill of earlier dates sees it; windows still end strictly before each event).
    known_since: KnownSince = "ingest_date"

    @model_validator(mode="after")
    def _event_time_is_a_timestamp(self) -> "SourceConfig":
        types = {c.name: c.type for c in self.columns}
        if types.get(self.event_time_column) != "timestamp":
            raise ValueError(f"event_time_column {self.event_time_column!r} must be a timestamp column")
        if len(types) != len(self.columns):
            raise ValueError("column names must be unique")
        return self


class DatasetConfig(Strict):
    description: str = ""  # what the events are and what is predicted: the model card's opening
    # The business time zone (IANA name): run date D is the local day [D 00:00, D+1 00:00) there. Storage
    # stays UTC; feature windows are durations on UTC instants (docs/features.md, "Run dates and time zones").
    timezone: str = "UTC"
    events: SourceConfig
    labels: SourceConfig | None = None
    # Reference feeds (weather, FX rates, merchant attributes): other time series that features join to
    # point in time (features.as_of). Each has its own contract and landing prefix, and is ingested and
    # gated like the events; its event_time_column is the time a row is valid from.
    reference: dict[str, SourceConfig] = {}
    tables: dict[str, TableConfig] = {}  # this dataset's tables (the shared ops.* tables live in conf/base)
    label: LabelSpec | None = None  # what the model learns: the label contract (docs/adding-a-dataset.md)
    validation: dict[str, TableValidation] = {}  # table name -> the gate's checks for it
    features: FeatureSpec | None = None
    model: ModelSpec | None = None  # training, evaluation and promotion (docs/training.md)
    monitoring: MonitoringSpec | None = None  # drift and realized performance (docs/monitoring.md)
    scoring: ScoringSpec | None = None  # nightly batch scoring (docs/scoring.md)

    @property
    def ingest_column(self) -> str:
        return INGEST_COLUMN

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _known_since_on_events_only(self) -> "DatasetConfig":
        for feed, src in self.feeds():
            if feed != "events" and src.known_since != "ingest_date":
                raise ValueError(f"{feed}: known_since {src.known_since!r} applies to the events feed only")
        return self

    def calendar(self) -> RunCalendar:
        """The run-date rules of this dataset: its time zone and the events' known-since rule."""
        return RunCalendar(self.timezone, self.events.known_since)

    def feeds(self) -> list[tuple[str, SourceConfig]]:
        """Every landing feed as (feed name, source): events, labels, then ``reference.<name>``."""
        named = [("events", self.events), ("labels", self.labels)]
        named += [(f"reference.{n}", src) for n, src in self.reference.items()]
        return [(feed, src) for feed, src in named if src is not None]

    @model_validator(mode="after")
    def _label_contract(self) -> "DatasetConfig":
        """A model or monitoring needs a label; its table defaults to the labels feed's accepted table."""
        if self.label is None:
            if self.model or self.monitoring:
                raise ValueError("a dataset with model: or monitoring: needs a label: section")
            return self
        if self.label.table is not None:
            return self
        if self.labels is None:
            raise ValueError("label.table is required when the dataset has no labels feed")
        gate = self.validation.get(self.labels.table)
        table = gate.accepted_table if gate else self.labels.table
        return self.model_copy(update={"label": self.label.model_copy(update={"table": table})})


class EmrServerlessConfig(Strict):
    """Where and how stage tasks run on EMR Serverless (values from ``terraform output``, docs/deploy.md)."""

    application_id: str
    execution_role_arn: str
    # One release uploaded by `make deploy`: the wheel, environment.tar.gz, jobs/, conf/ and sql/
    release_uri: str
    log_uri: str | None = None  # S3 prefix for driver and executor logs
    log_group: str | None = None  # CloudWatch Logs group
    aws_conn_id: str = "aws_default"
    region: str | None = None  # default: storage.s3.region
    spark_conf: dict[str, str] = {}  # extra --conf pairs, e.g. executor sizes
    # Wait for the job run: EMR's own timeout for one run, and how often Airflow polls it
    timeout_minutes: int = Field(60, gt=0)
    poll_seconds: int = Field(30, gt=0)

    @model_validator(mode="after")
    def _release_is_on_s3(self) -> "EmrServerlessConfig":
        if not self.release_uri.startswith("s3://"):
            raise ValueError(f"release_uri must be an s3:// URI, got {self.release_uri!r}")
        return self


class OrchestrationConfig(Strict):
    """How an Airflow stage task runs its Spark job; the DAG files are the same for every choice."""

    submit: Literal["spark-submit", "emr-serverless"] = "spark-submit"
    spark_conn_id: str = "spark_default"  # spark-submit: master, deploy mode, queue, spark-binary
    emr_serverless: EmrServerlessConfig | None = None
    # An http connection to Airflow's REST API: tasks set each DAG run's note through it (docs/airflow.md)
    airflow_api_conn_id: str = "airflow_api"

    @model_validator(mode="after")
    def _emr_needs_its_settings(self) -> "OrchestrationConfig":
        if self.submit == "emr-serverless" and self.emr_serverless is None:
            raise ValueError("submit: emr-serverless needs the emr_serverless section")
        return self


class Config(Strict):
    env: str
    home: str
    conf_dir: str  # where this config was read from; relative feature SQL paths resolve next to it
    storage: StorageConfig
    spark: SparkConfig = SparkConfig()
    mlflow: MlflowConfig
    tables: dict[str, TableConfig] = {}
    datasets: dict[str, DatasetConfig] = {}
    default_dataset: str
    alerts: AlertsConfig = AlertsConfig()  # extra alert sinks: webhook, email
    orchestration: OrchestrationConfig = OrchestrationConfig()
    online: OnlineConfig = OnlineConfig()  # the online feature store (docs/online.md)

    @model_validator(mode="before")
    @classmethod
    def _dataset_tables(cls, data):
        """Tables a dataset file declares join the shared ``tables:``; a name may be declared only once."""
        if not isinstance(data, dict):
            return data
        tables = dict(data.get("tables") or {})
        for name, ds in (data.get("datasets") or {}).items():
            own = ds.get("tables") if isinstance(ds, dict) else getattr(ds, "tables", None)
            for table, spec in (own or {}).items():
                if table in tables and tables[table] != spec:
                    raise ValueError(f"table {table!r} of dataset {name!r} is declared more than once")
                tables[table] = spec
            features = ds.get("features") if isinstance(ds, dict) else getattr(ds, "features", None)
            entities = (features.get("entities") if isinstance(features, dict)
                        else getattr(features, "entities", None)) or {}
            for table, spec in tile_table_configs(name, list(entities)).items():
                tables.setdefault(table, spec)  # tiling is an implementation choice: not in the dataset file
        return {**data, "tables": tables}

    @model_validator(mode="after")
    def _references_resolve(self) -> "Config":
        if self.default_dataset not in self.datasets:
            raise ValueError(f"default_dataset {self.default_dataset!r} is not among datasets {sorted(self.datasets)}")
        for name, ds in self.datasets.items():
            written = [src.table for _, src in ds.feeds()]
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


def default_conf_dir(environ: dict[str, str] | None = None) -> str:
    """``$BATCHML_CONF_DIR`` (a folder or an ``s3://`` prefix), else ``./conf``, else the conf/ inside the package."""
    environ = os.environ if environ is None else environ
    if environ.get("BATCHML_CONF_DIR"):
        return environ["BATCHML_CONF_DIR"]
    if (Path.cwd() / "conf" / "base").is_dir():
        return str(Path.cwd() / "conf")
    from batchml.resources import folder

    return str(folder("conf"))


class ConfFolder:
    """A config folder on local disk or under an ``s3://`` prefix (a release uploaded by ``make deploy``).

    S3 access uses the default AWS credential chain, ``AWS_REGION`` and, for tests, ``BATCHML_S3_ENDPOINT_URL``.
    """

    def __init__(self, uri: str, environ: dict[str, str]):
        from batchml.storage.location import StorageOptions, is_s3

        self.uri = uri.rstrip("/")
        endpoint = environ.get("BATCHML_S3_ENDPOINT_URL")
        storage = StorageOptions(endpoint_url=endpoint, allow_http=bool(endpoint and endpoint.startswith("http:")),
                                 region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                                 access_key_id=environ.get("AWS_ACCESS_KEY_ID"),
                                 secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY"))
        self.s3 = is_s3(uri)
        self.fs, self.root = storage.filesystem(self.uri) if self.s3 else (None, str(Path(uri).absolute()))

    def path(self, *parts: str) -> str:
        return "/".join([self.uri if self.s3 else self.root, *parts])

    def is_dir(self, *parts: str) -> bool:
        if not self.s3:
            return Path(self.root, *parts).is_dir()
        from pyarrow import fs

        # S3 has no folders: a prefix exists when something is below it
        below = self.fs.get_file_info(fs.FileSelector("/".join([self.root, *parts]), allow_not_found=True))
        return bool(below)

    def yaml_files(self, *parts: str) -> list[str]:
        if not self.s3:
            return [str(p) for p in sorted(Path(self.root, *parts).glob("*.yaml"))]
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector("/".join([self.root, *parts]), allow_not_found=True))
        return sorted(self.path(*parts, i.base_name) for i in infos
                      if i.type == fs.FileType.File and i.base_name.endswith(".yaml"))

    def read(self, path: str) -> str:
        if not self.s3:
            return Path(path).read_text()
        with self.fs.open_input_stream(path.removeprefix("s3://")) as stream:
            return stream.readall().decode()


def project_file(conf_dir: str, relative: str, environ: dict[str, str] | None = None) -> str:
    """The text of a project file named in config (feature SQL): absolute, or relative to the folder that
    holds ``conf/`` (the repository, a release on S3, or the package's own copy)."""
    environ = dict(os.environ if environ is None else environ)
    if Path(relative).is_absolute():
        return Path(relative).read_text()
    parent = conf_dir.rstrip("/").rsplit("/", 1)[0]
    folder = ConfFolder(parent, environ)
    path = folder.path(relative)
    try:
        return folder.read(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"file {relative!r} named in config not found at {path}") from None


def load_config(env: str | None = None, conf_dir: Path | str | None = None,
                environ: dict[str, str] | None = None) -> Config:
    environ = dict(os.environ if environ is None else environ)
    env = env or environ.get("BATCHML_ENV", "local")
    folder = ConfFolder(str(conf_dir or default_conf_dir(environ)), environ)
    if not folder.is_dir("base"):
        raise ConfigError(f"{folder.path('base')}: config folder not found (set BATCHML_CONF_DIR)")
    if not folder.is_dir(env):
        raise ConfigError(f"{folder.path(env)}: no overlay for environment {env!r}")

    merged: dict[str, Any] = {"env": env, "conf_dir": folder.uri if folder.s3 else folder.root}
    origin: dict[tuple[str, ...], str] = {("env",): "BATCHML_ENV"}
    for layer in ("base", env) if env != "base" else ("base",):
        for path in folder.yaml_files(layer):
            _merge(merged, _layer_doc(folder, path, layer), path, (), origin)
        for path in folder.yaml_files(layer, "datasets"):
            doc = {"datasets": {path.rsplit("/", 1)[1].removesuffix(".yaml"): _layer_doc(folder, path, layer)}}
            _merge(merged, doc, path, (), origin)
    for var, key in ENV_OVERRIDES.items():
        if environ.get(var):
            _merge(merged, _nest(key, environ[var]), f"env var {var}", (), origin)

    home = str(Path(merged.get("home", ".batchml")).expanduser().absolute())
    _check_home(Path(home), origin.get(("home",), "defaults"))
    merged["home"] = home
    merged = _interpolate(merged, {"home": home})
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None
    _check_contracts(config, origin)
    return config


def _check_contracts(config: Config, origin: dict[tuple[str, ...], str]) -> None:
    """Every dataset's keys against its own feeds' columns and tables (``batchml.contract``)."""
    from batchml.contract import problems

    found = [p for name, ds in config.datasets.items() for p in problems(name, ds, config.tables)]
    if found:
        lines = [f"{_origin(loc, origin)}: key '{'.'.join(loc)}': {reason}" for loc, reason in found]
        raise ConfigError("dataset config does not match its contract:\n  " + "\n  ".join(lines))


def _origin(loc: tuple[str, ...], origin: dict[tuple[str, ...], str]) -> str:
    return next((origin[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in origin), "defaults")


def _layer_doc(folder: ConfFolder, path: str, layer: str) -> dict[str, Any]:
    """A config file's mapping; an environment's files may not declare tables (only where storage lives)."""
    doc = _read_yaml(folder, path)
    if layer != "base" and "tables" in doc:
        raise ConfigError(f"{path}: key 'tables': tables are declared in conf/base (a dataset's in its own file "
                          "under conf/base/datasets/); an environment overrides only storage: (where tables live)")
    return doc


def _check_home(home: Path, source: str) -> None:
    """The home (lake, landing zone, MLflow, Spark scratch by default) must be a folder or creatable as one."""
    for path in (home, *home.parents):
        try:
            if not path.exists():
                continue
        except PermissionError as exc:
            raise ConfigError(f"home {home} (set by {source}) is not accessible ({exc.strerror})") from None
        if not path.is_dir():
            where = "is a file" if path == home else f"is under {path}, which is a file"
            raise ConfigError(f"home {home} (set by {source}) {where}; point BATCHML_HOME at a folder")
        return


def ensure_writable_home(config: Config) -> None:
    """Create the home folder if needed and prove it writable, before any stage writes under it."""
    home = Path(config.home)
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as exc:  # PermissionError, a read-only file system, ...
        raise ConfigError(f"home {home} is not writable ({exc.strerror or exc}); "
                          "set BATCHML_HOME to a folder you can write") from None


def _read_yaml(folder: ConfFolder, path: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(folder.read(path)) or {}
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
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n  " + "\n  ".join(lines)
