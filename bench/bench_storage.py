"""Storage benchmark: 5M rows x 20 columns written and read through the Spark Delta path
(executors write Parquet, the driver commits through delta-rs) against two floors on the same machine,
in the same run: ``pyarrow.dataset.write_dataset`` with the lake's writer options (snappy, the same
dictionary columns, file and row-group sizes) on all cores, which writes Parquet files and no Delta log
(the stronger floor, the write ratio's), and ``deltalake.write_deltalake`` of the same Arrow table.

    .venv/bin/python bench/bench_storage.py [--rows 5000000]
"""

from __future__ import annotations

import argparse
import shutil

from common import Run, bench_config, median, parse


def frame(spark, rows: int):
    from pyspark.sql import functions as F

    cols = [F.col("id")]
    cols += [(F.rand(seed=i) * 1000).alias(f"f{i}") for i in range(12)]
    cols += [(F.col("id") * (i + 3) % 100_003).alias(f"i{i}") for i in range(4)]
    cols += [F.concat(F.lit("k"), (F.col("id") % (10 ** (i + 2))).cast("string")).alias(f"s{i}") for i in range(2)]
    cols += [F.expr("date_add(date'2024-01-01', cast(id % 10 as int))").alias("d")]
    return spark.range(rows).select(*cols)


def arrow_frame(rows: int):
    """The same schema and value patterns as ``frame``, built in Arrow for the pyarrow floor."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = np.arange(rows, dtype=np.int64)
    rng = np.random.default_rng(0)
    cols = {"id": ids}
    cols.update({f"f{i}": rng.random(rows) * 1000 for i in range(12)})
    cols.update({f"i{i}": ids * (i + 3) % 100_003 for i in range(4)})
    for i in range(2):
        cols[f"s{i}"] = pc.binary_join_element_wise("k", pc.cast(pa.array(ids % (10 ** (i + 2))), pa.string()), "")
    cols["d"] = pa.array(np.datetime64("2024-01-01") + (ids % 10).astype("timedelta64[D]"), pa.date32())
    return pa.table(cols)


def plain_parquet(data, base_dir: str, file_rows: int) -> None:
    """The lake's Parquet writer options (storage/files.py), as a user would call pyarrow: threads on."""
    import pyarrow.dataset as pads

    from batchml.storage.files import ROWS_PER_GROUP, _dictionary_columns

    group = min(file_rows, ROWS_PER_GROUP)
    pads.write_dataset(data, base_dir=base_dir, format="parquet",
                       file_options=pads.ParquetFileFormat().make_write_options(
                           compression="snappy", use_dictionary=_dictionary_columns(data.schema)),
                       max_rows_per_file=file_rows, min_rows_per_group=group, max_rows_per_group=group,
                       use_threads=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parse(parser)
    run = Run(args)

    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from batchml.config import TableConfig
    from batchml.spark import get_spark
    from batchml.storage import Lake

    config, home = bench_config()
    config = config.model_copy(update={"tables": {**config.tables, "bench.wide": TableConfig(),
                                                  "bench.warmup": TableConfig()}})
    spark = get_spark(config)
    lake = Lake(config, spark)
    out: dict = {}
    try:
        lake.write(frame(spark, 10_000), "bench.warmup")  # start Python workers once
        lake.read("bench.warmup").count()
        df = frame(spark, args.rows).repartition(spark.sparkContext.defaultParallelism).cache()
        df.count()
        data = arrow_frame(args.rows)
        assert data.schema.names == df.columns
        mb = data.nbytes / 1e6
        floor_uri = str(home / "floor" / "wide")

        def spark_write():
            out["result"] = lake.write(df, "bench.wide", mode="overwrite")

        def spark_read():
            lake.read("bench.wide").write.format("noop").mode("overwrite").save()

        def dataset_write():
            shutil.rmtree(home / "floor" / "dataset", ignore_errors=True)
            plain_parquet(data, str(home / "floor" / "dataset"), config.storage.target_file_rows)

        def pyarrow_read():
            out["back"] = DeltaTable(floor_uri).to_pyarrow_table()

        runs = run.interleaved({"dataset_write": dataset_write,
                                "pyarrow_write": lambda: write_deltalake(floor_uri, data, mode="overwrite"),
                                "spark_write": spark_write})
        runs |= run.interleaved({"pyarrow_read": pyarrow_read, "spark_read": spark_read})
        t = {f"{side}_s": median(seconds) for side, seconds in runs.items()}
        result, back = out["result"], out["back"]
        assert back.num_rows == result.rows_written == args.rows
        assert pa.table(DeltaTable(lake.uri("bench.wide")).to_pyarrow_table()).num_rows == args.rows
    finally:
        spark.stop()
        shutil.rmtree(home, ignore_errors=True)

    common = {"rows": args.rows, "columns": 20, "data_mb": round(mb, 1), "higher_is_better": True,
              "unit": "ratio of throughputs (batchml / floor)", "timings_s": t, "runs_s": runs}
    run.write("storage_write", ratio=round(t["dataset_write_s"] / t["spark_write_s"], 3), goal=0.5,
              floor="pyarrow.dataset.write_dataset of an in-memory Arrow table with the same schema, rows and value "
                    "patterns and the lake's writer options, on all cores (Parquet only, no Delta log)",
              also=[{"name": "write_deltalake", "ratio": round(t["pyarrow_write_s"] / t["spark_write_s"], 3),
                     "goal": None, "floor": "deltalake.write_deltalake of the same Arrow table (Parquet + Delta log)"}],
              batchml_rows_per_s=round(args.rows / t["spark_write_s"]),
              floor_rows_per_s=round(args.rows / t["dataset_write_s"]),
              write_deltalake_rows_per_s=round(args.rows / t["pyarrow_write_s"]), **common)
    run.write("storage_read", ratio=round(t["pyarrow_read_s"] / t["spark_read_s"], 3), goal=None,
              floor="DeltaTable.to_pyarrow_table of the floor's table",
              batchml_rows_per_s=round(args.rows / t["spark_read_s"]),
              floor_rows_per_s=round(args.rows / t["pyarrow_read_s"]), **common)


if __name__ == "__main__":
    main()
