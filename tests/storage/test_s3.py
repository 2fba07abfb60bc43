"""The storage layer and ingest against a real S3 endpoint (moto's server on loopback)."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time

import boto3
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from batchml.config import TableConfig
from batchml.storage import Lake
from tests.conftest import make_config

pytestmark = pytest.mark.s3
BUCKET = "batchml-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    # A separate process: delta-rs holds the GIL while it waits on HTTP, so an in-process
    # (threaded) server would deadlock with it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        raise RuntimeError("moto server did not start on loopback")
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.terminate()
    server.wait(10)


@pytest.fixture
def s3_config(base_config, tmp_path, s3_endpoint, request):
    prefix = f"s3://{BUCKET}/{request.node.name}"
    s3 = base_config.storage.s3.model_copy(update={"endpoint_url": s3_endpoint, "allow_http": True,
                                                   "access_key_id": "test", "secret_access_key": "test"})
    cfg = make_config(base_config, tmp_path, {"test.events": TableConfig(partition_by=["d"])}, s3=s3)
    store = cfg.storage.model_copy(update={"lake_uri": f"{prefix}/lake", "landing_uri": f"{prefix}/landing"})
    return cfg.model_copy(update={"storage": store})


def test_spark_writes_and_reads_delta_on_s3(s3_config, spark):
    lake = Lake(s3_config, spark)
    df = spark.range(2000).select("id", F.expr("date_add(date'2024-01-01', cast(id % 2 as int))").alias("d"))
    assert lake.write(df, "test.events", txn=("load", 1)).version == 0
    assert lake.write(df, "test.events", txn=("load", 1)).skipped
    lake.write(df.where("d = date'2024-01-02'").withColumn("id", F.col("id") + 10_000), "test.events",
               mode="overwrite", replace_where=[("d", "=", dt.date(2024, 1, 2))])
    out = lake.read("test.events")
    assert out.count() == 2000 and out.where("id >= 10000").count() == 1000
    assert lake.read("test.events", version=0).where("id >= 10000").count() == 0
    assert lake.read("test.events").where(F.col("d") == dt.date(2024, 1, 1)).count() == 1000
    # A plain delta-rs reader on the same bucket agrees.
    table = DeltaTable(lake.uri("test.events"), storage_options=lake.storage.delta_rs(lake.uri("test.events")))
    assert table.version() == 1 and table.to_pyarrow_table().num_rows == 2000


def test_ingest_from_an_s3_landing_zone(s3_config, spark, s3_endpoint):
    from batchml.ingest.ingest import ingest

    source = s3_config.dataset().events
    header = ",".join(c.name for c in source.columns)
    row = "t{i},2024-01-01T10:00:00+01:00,c1,m1,grocery,9.99,EUR,pos,,,DE,DE,true,30"
    body = "\n".join([header, *(row.format(i=i) for i in range(50)), "broken"])
    key = s3_config.storage.landing_uri.removeprefix(f"s3://{BUCKET}/") + "/transactions/2024-01-01/a.csv"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    events = ingest(s3_config, dt.date(2024, 1, 1), spark=spark)[0]
    assert (events.rows_accepted, events.rows_quarantined) == (50, 1)
    lake = Lake(s3_config, spark)
    manifest = lake.read_arrow("ops.ingest_manifest").to_pylist()
    assert manifest[0]["path"].startswith("s3://") and len(manifest[0]["sha256"]) == 64
    assert lake.read("bronze.card_transactions").count() == 50
    assert ingest(s3_config, dt.date(2024, 1, 1), spark=spark)[0].files_new == 0
