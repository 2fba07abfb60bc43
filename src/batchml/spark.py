"""The one place a SparkSession is built: UTC everywhere, the Delta data source registered."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from batchml.config import Config


class JavaNotFound(RuntimeError):
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


def get_spark(config: Config):
    """The active session, or a new one configured from ``config.spark``."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    # Workers must run the same interpreter (the project venv) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    scratch = Path(config.home) / "spark"
    scratch.mkdir(parents=True, exist_ok=True)
    s = config.spark
    builder = SparkSession.builder.appName(s.app_name)
    if s.master:
        builder = builder.master(s.master)
    builder = (
        builder
        .config("spark.driver.memory", s.driver_memory)
        .config("spark.sql.shuffle.partitions", str(s.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.python.filterPushdown.enabled", "true")
        .config("spark.local.dir", str(scratch / "local"))
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    if config.storage.engine == "delta-spark":  # its JARs must already be on the classpath
        from batchml.storage.native import SESSION_CONF

        for key, value in SESSION_CONF.items():
            builder = builder.config(key, value)
    for key, value in s.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if config.storage.engine == "delta-rs":
        register(spark)
    return spark


def register(spark) -> None:
    from batchml.storage.spark_source import DeltaDataSource

    spark.dataSource.register(DeltaDataSource)
