"""Exact KS at Spark scale: the statistic equals scipy's two-sample KS (what Evidently calls),
with continuous values, heavy ties, a shifted batch and an identical one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from batchml.validation.distributions import compare
from batchml.validation.spec import Distributions


def frame(spark, rng, n, shift):
    data = pd.DataFrame({
        "normal": rng.normal(shift, 1.0, n),
        "heavy": rng.lognormal(0.0, 1.0 + shift, n),
        "ties": rng.poisson(3.0 + 2 * shift, n).astype(float),  # few distinct values: every edge is a tie
        "cat": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3 + shift / 10, 0.2 - shift / 10]),
    })
    return data, spark.createDataFrame(data).repartition(4)


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.5])
def test_exact_ks_equals_scipy(spark, shift):
    rng = np.random.default_rng(3)
    ref, ref_df = frame(spark, rng, 30_000, 0.0)
    cur, cur_df = frame(spark, rng, 20_000, shift)
    spec = Distributions(numeric=["normal", "heavy", "ties"], categorical=["cat"])
    exact = {d.column: d for d in compare(ref_df, cur_df, spec, exact_ks=True)}
    approx = {d.column: d for d in compare(ref_df, cur_df, spec)}
    for c in spec.numeric:
        expected = stats.ks_2samp(ref[c], cur[c]).statistic
        assert exact[c].statistic == pytest.approx(expected, abs=1e-12), c
        assert exact[c].psi == approx[c].psi  # PSI and the rest are unchanged by the refinement
        assert approx[c].statistic <= expected + 1e-12  # bucket edges only: a lower bound
    assert exact["cat"].histogram == approx["cat"].histogram
    assert sum(r for r, _ in exact["cat"].histogram) == 30_000
