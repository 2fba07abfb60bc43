"""Native categorical model inputs (``model.categorical``): string columns as XGBoost category codes.

The category set of a column is the sorted distinct values of the final fit's training window; a
value's code is its position in that list. Training, evaluation, promotion, scoring and monitoring
encode with the list stored with the model (``registry.store``), so codes always match. A null or a
value not in the list (unseen at training) becomes NaN: XGBoost's missing value. Scoring counts the
unseen values (``ops.scoring_runs.unseen_categories``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Categories = Mapping[str, Sequence[str]]  # column -> its categories, in code order


def codes(values: pa.Array | pa.ChunkedArray, categories: Sequence[str]) -> np.ndarray:
    """Float64 codes of string ``values``; NaN for nulls and values not in ``categories``."""
    index = pc.index_in(values.cast(pa.string()), value_set=pa.array(list(categories), pa.string()))
    return index.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)


def unseen(values: pa.Array | pa.ChunkedArray, categories: Sequence[str]) -> int:
    """How many non-null ``values`` are not in ``categories``."""
    known = pc.is_in(values.cast(pa.string()), value_set=pa.array(list(categories), pa.string()))
    return int(pc.sum(pc.invert(known).cast(pa.int64())).as_py() or 0) - values.null_count


def spark_codes(column: str, categories: Sequence[str]):
    """The same codes as a Spark column expression (double; null for nulls and unseen values)."""
    from pyspark.sql import functions as F

    position = F.array_position(F.array(*[F.lit(c) for c in categories]), F.col(column))  # 1-based, 0: absent
    return F.when(position > 0, position - 1).cast("double")


def feature_types(columns: Sequence[str], categories: Categories) -> list[str]:
    """XGBoost ``feature_types``: ``c`` for a categorical input, ``q`` (quantitative) for the rest."""
    return ["c" if c in categories else "q" for c in columns]
