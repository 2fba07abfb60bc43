"""Optional engine: Spark's own ``format("delta")`` (delta-spark), for clusters that ship its JARs.

Selected with ``storage.engine: delta-spark``. The lake's contract is unchanged: same table
names, modes, replace-where predicates and transaction ids (delta-spark's ``txnAppId`` /
``txnVersion``). Use one engine per table: delta-rs and delta-spark must not both write it.
"""

from __future__ import annotations

from batchml.storage import predicates
from batchml.storage.commit import WritePlan, WriteResult

SESSION_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


class NativeDeltaEngine:
    def __init__(self, lake):
        self.lake = lake

    def read(self, name, columns, version, timestamp):
        reader = self.lake._spark().read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        elif timestamp is not None:
            reader = reader.option("timestampAsOf", str(timestamp))
        df = reader.load(self.lake.uri(name))
        return df.select(*columns) if columns else df

    @staticmethod
    def narrow(df, where, transform):
        """``Lake.read``'s ``where`` and ``transform`` as Spark operators (no read-task hook here)."""
        if where:
            df = df.where(predicates.describe(where))
        if transform is not None:
            from pyspark.sql.pandas.types import from_arrow_schema

            from batchml.storage.spark_source import transformed

            df = df.mapInArrow(lambda batches: transformed(transform, batches), from_arrow_schema(transform.schema))
        return df

    def write(self, df, name, plan: WritePlan) -> WriteResult:
        writer = df.write.format("delta").mode(plan.mode)
        if plan.partition_by:
            writer = writer.partitionBy(*plan.partition_by)
        if plan.replace_where:
            writer = writer.option("replaceWhere", predicates.describe(plan.replace_where))
        if plan.txn:
            writer = writer.option("txnAppId", plan.txn[0]).option("txnVersion", plan.txn[1])
        if plan.allow_schema_evolution:
            writer = writer.option("mergeSchema", "true")
        writer.option("userMetadata", plan.metadata.get("writeId", "")).save(plan.table_uri)
        version = self.lake._spark().sql(f"DESCRIBE HISTORY delta.`{plan.table_uri}` LIMIT 1").first()["version"]
        return WriteResult(plan.table_uri, version, skipped=False)
