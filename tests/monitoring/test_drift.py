"""Monitoring's in-memory drift statistics: KS equals scipy's two-sample statistic (what Evidently
calls) with continuous values, heavy ties, a shifted batch and an identical one; PSI and the
category counts agree with the Spark implementation the validation gate runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from batchml.validation.distributions import compare, compare_arrow
from batchml.validation.spec import Distributions


def frame(rng, n, shift):
    data = pd.DataFrame({
        "normal": rng.normal(shift, 1.0, n),
        "heavy": rng.lognormal(0.0, 1.0 + shift, n),
        "ties": rng.poisson(3.0 + 2 * shift, n).astype(float),  # few distinct values: every edge is a tie
        "cat": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3 + shift / 10, 0.2 - shift / 10]),
    })
    data.loc[:9, "normal"] = np.nan  # nulls / NaN are left out of the numeric tests on both paths
    return data


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.5])
def test_in_memory_drift_is_exact_and_agrees_with_spark(spark, lake_slice, shift):
    rng = np.random.default_rng(3)
    ref, cur = frame(rng, 30_000, 0.0), frame(rng, 20_000, shift)
    spec = Distributions(numeric=["normal", "heavy", "ties"], categorical=["cat"])
    local = {d.column: d for d in compare_arrow(pa.Table.from_pandas(ref), pa.Table.from_pandas(cur), spec)}
    on_spark = {d.column: d for d in compare(lake_slice(spark.createDataFrame(ref).repartition(4)),
                                             spark.createDataFrame(cur).repartition(4), spec)}
    for c in spec.numeric:
        expected = stats.ks_2samp(ref[c].dropna(), cur[c].dropna()).statistic
        assert local[c].statistic == pytest.approx(expected, abs=1e-12), c
        assert on_spark[c].statistic <= expected + 1e-12  # Spark: bucket edges only, a lower bound
        assert local[c].psi == pytest.approx(on_spark[c].psi, abs=2e-3), c  # the summaries' rank error
        assert local[c].reference_rows == on_spark[c].reference_rows == ref[c].notna().sum()
    assert local["ties"].psi == on_spark["ties"].psi  # ties: the same edges exactly
    assert local["cat"].histogram == on_spark["cat"].histogram
    assert sum(r for r, _ in local["cat"].histogram) == 30_000
    drifted = {c for c, d in local.items() if d.drifted}
    assert drifted == ({"normal", "heavy", "ties"} if shift == 0.5 else set()), drifted


def test_excluded_columns_are_never_compared():
    from batchml.monitoring.drift import monitored_columns
    from batchml.monitoring.spec import MonitoringSpec
    from batchml.registry.store import ModelVersion

    model = ModelVersion("m", 1, "run", None, ("amount", "day_of_week", "hour_of_day"), 0.5)
    tables = dict(scores_table="s.t", drift_table="d.t", performance_table="p.t")
    spec = MonitoringSpec(**tables, exclude_columns=["day_of_week"])
    assert monitored_columns(spec, model) == (["amount", "hour_of_day"], [])
    explicit = MonitoringSpec(**tables, numeric=["amount", "day_of_week"], categorical=["channel"],
                              exclude_columns=["day_of_week"])
    assert monitored_columns(explicit, model) == (["amount"], ["channel"])
