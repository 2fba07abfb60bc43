"""The one place a SparkSession is built: UTC everywhere, the Delta data source registered."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from batchml.config import Config

if TYPE_CHECKING:
    import pyarrow as pa


class JavaNotFound(RuntimeError):
    pass


class SparkServerUnreachable(RuntimeError):
    pass


class SparkMasterUnreachable(RuntimeError):
    pass


def check_java() -> str:
    """Return the Java version line, or raise JavaNotFound with what to do about it."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise JavaNotFound(
            "Java was not found (Spark needs Java 17 or 21). Install it, e.g. "
            "`apt-get install openjdk-17-jre-headless`, or set JAVA_HOME to a JDK folder.")
    out = subprocess.run([java, "-version"], capture_output=True, text=True)
    line = (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else ""
    if out.returncode != 0:
        raise JavaNotFound(f"`{java} -version` failed: {line or out.returncode}")
    return line


def log4j_option() -> str:
    """The JVM flag that points Spark's logging at batchml's config (warnings and errors only, to stderr)."""
    from batchml.resources import folder

    return f"-Dlog4j2.configurationFile=file:{folder('spark') / 'log4j2.properties'}"


def session_conf(config: Config) -> dict[str, str]:
    """Every Spark setting batchml needs, for an in-process session and for a Connect server alike."""
    scratch = Path(config.home) / "spark"
    s = config.spark
    java_options = " ".join(filter(None, ["-Duser.timezone=UTC", log4j_option(), s.java_options.strip()]))
    conf = {
        "spark.driver.memory": s.driver_memory,
        "spark.sql.shuffle.partitions": str(s.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # off: Spark reuses one pushed plan per scanned Python data source relation (wrong files
        # skipped for another filter on the same DataFrame); reads prune with Lake.read(where=...)
        "spark.sql.python.filterPushdown.enabled": "false",
        "spark.local.dir": str(scratch / "local"),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": java_options,
        "spark.executor.extraJavaOptions": java_options,
    }
    if config.storage.engine == "delta-spark":  # its JARs must already be on the classpath
        from batchml.storage.native import SESSION_CONF

        conf.update(SESSION_CONF)
    conf.update(s.conf)
    return conf


def without_remote(config: Config) -> Config:
    """``config`` with ``spark.remote`` cleared: for a session that must run in this process."""
    return config.model_copy(update={"spark": config.spark.model_copy(update={"remote": None})})


def get_spark(config: Config, extra_conf: dict[str, str] | None = None):
    """The active session, or a new one configured from ``config.spark`` (plus ``extra_conf``); with
    ``spark.remote`` set, a session on that Spark Connect server (no JVM in this process)."""
    from pyspark.sql import SparkSession

    if config.spark.remote:
        return _connect(config)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    if config.spark.master:
        _probe_master(config.spark.master)
    # Workers must run the same interpreter (the project venv) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    (Path(config.home) / "spark").mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.appName(config.spark.app_name)
    if config.spark.master:
        builder = builder.master(config.spark.master)
    for key, value in {**session_conf(config), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if config.storage.engine == "delta-rs":
        register(spark)
    return spark


_CONNECTED: dict[str, object] = {}


def _connect(config: Config):
    # the Connect builder itself: the generic one refuses when spark-submit has set MASTER
    from pyspark.sql.connect.session import SparkSession

    url = config.spark.remote
    if url in _CONNECTED:
        return _CONNECTED[url]
    _probe(url)  # the Connect client would retry an unreachable server for minutes
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # pyspark.sql.functions then build Connect columns
    spark = SparkSession.builder.remote(url).getOrCreate()
    # the server started with batchml's settings; this config's session-level ones apply per session
    for key, value in session_conf(config).items():
        if key.startswith("spark.sql.") and spark.conf.isModifiable(key):
            spark.conf.set(key, value)
    if config.storage.engine == "delta-rs":
        register(spark)
    _CONNECTED[url] = spark
    return spark


def _probe(url: str) -> None:
    parsed = urlparse(url.replace("sc://", "http://", 1))
    try:
        _connect_once(parsed.hostname or "localhost", parsed.port or 15002)
    except OSError as exc:
        raise SparkServerUnreachable(
            f"cannot reach the Spark Connect server at {url} ({exc}). Start it with `batchml spark-server "
            "start`, or unset spark.remote / BATCHML_SPARK_REMOTE to start Spark in this process.") from None


def _probe_master(master: str) -> None:
    """A standalone master must answer: Spark itself would retry it for minutes, then print stack traces."""
    if not master.startswith("spark://"):
        return
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        try:
            _connect_once(host, int(port))
            return
        except OSError as exc:
            error = exc
    raise SparkMasterUnreachable(f"cannot reach the Spark master {master} ({error}); check spark.master / "
                                 "BATCHML_SPARK_MASTER, or unset it to run Spark in this process (local[2])")


def _connect_once(host: str, port: int) -> None:
    import socket

    socket.create_connection((host, port), timeout=5).close()


def activate(spark) -> None:
    """Make ``spark`` the active session of this thread's JVM side, as PySpark's createDataFrame does.

    PySpark pins each Python thread to a JVM thread of its own, which starts with no active session,
    and Spark looks Python data sources (the Delta writer) up through the active session.
    """
    if not is_connect(spark):
        from pyspark.sql import SparkSession

        SparkSession._get_j_spark_session_class(spark._jvm).setActiveSession(spark._jsparkSession)


def is_connect(spark) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def default_parallelism(spark) -> int:
    """Task slots of the session's cluster (a Connect session has no SparkContext to ask)."""
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    explicit = spark.conf.get("spark.default.parallelism", None)
    if explicit:
        return int(explicit)
    local = re.fullmatch(r"local\[(\d+|\*)\]", spark.conf.get("spark.master", None) or "")
    if local:
        return (os.cpu_count() or 1) if local.group(1) == "*" else int(local.group(1))
    return int(spark.conf.get("spark.sql.shuffle.partitions"))


def freeze_worker_imports() -> None:
    """Keep Spark's Python workers from rescanning long-lived objects after every task.

    A reused worker runs a full ``gc.collect()`` after each task (``pyspark.daemon``). With pandas,
    pyarrow and deltalake imported that walks about 100k objects, roughly 0.2 s of CPU per task:
    most of the Python workers' CPU in ``make demo``. Modules that run in workers call this once,
    after their imports: what exists then lives as long as the process, so it moves to the
    permanent generation (``gc.freeze``) and later collections scan only what tasks create.
    """
    import gc

    gc.freeze()


def arrow_schema(schema) -> "pa.Schema":
    """A Spark schema as Arrow, timestamps in UTC: pyspark 4.1+ takes ``timezone=``, 4.0 is UTC by default."""
    import inspect

    from pyspark.sql.pandas.types import to_arrow_schema

    if "timezone" in inspect.signature(to_arrow_schema).parameters:
        return to_arrow_schema(schema, timezone="UTC")
    return to_arrow_schema(schema)


def register(spark) -> None:
    from batchml.storage.spark_source import DeltaDataSource

    spark.dataSource.register(DeltaDataSource)
