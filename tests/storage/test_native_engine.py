"""Contract test for the optional delta-spark engine. It needs delta-spark's JARs, which
cannot be fetched on machines without Maven access; point BATCHML_DELTA_SPARK_JARS at them
(comma-separated paths) to run it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.delta_spark
JARS = os.environ.get("BATCHML_DELTA_SPARK_JARS")


@pytest.mark.skipif(not JARS, reason="delta-spark JARs not available (set BATCHML_DELTA_SPARK_JARS)")
def test_native_engine_honours_the_lake_contract(tmp_path):
    script = textwrap.dedent(f"""
        import datetime as dt
        from batchml.config import load_config, TableConfig
        from batchml.storage import Lake
        from batchml.spark import get_spark
        cfg = load_config("test", environ={{"BATCHML_HOME": "{tmp_path}", "BATCHML_STORAGE_ENGINE": "delta-spark"}})
        spark_conf = {{**cfg.spark.conf, "spark.jars": "{JARS}"}}
        cfg = cfg.model_copy(update={{"spark": cfg.spark.model_copy(update={{"conf": spark_conf}}),
                                      "tables": {{**cfg.tables, "t.e": TableConfig(partition_by=["d"])}}}})
        spark = get_spark(cfg)
        lake = Lake(cfg, spark)
        df = spark.range(100).selectExpr("id", "date_add(date'2024-01-01', cast(id % 2 as int)) as d")
        assert lake.write(df, "t.e", txn=("a", 1)).version == 0
        assert lake.write(df, "t.e", txn=("a", 1)).skipped
        lake.write(df.where("d = date'2024-01-02'"), "t.e", mode="overwrite",
                   replace_where=[("d", "=", dt.date(2024, 1, 2))])
        assert lake.read("t.e").count() == 100 and lake.read("t.e", version=0).count() == 100
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
