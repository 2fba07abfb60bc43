"""Drift decisions: a real shift fails, a same-distribution batch never does, even at 5M rows."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from batchml.validation.distributions import compare
from batchml.validation.spec import Distributions

SPEC = Distributions(numeric=["x", "y"], categorical=["c"])


def sample(spark, rows, seed, shift=0.0):
    return spark.range(rows).select(
        (F.randn(seed) + F.lit(shift)).alias("x"),
        F.exp(F.randn(seed + 1)).alias("y"),  # heavy-tailed, like amounts
        F.element_at(F.array(*[F.lit(v) for v in "abcde"]), (F.rand(seed + 2) * 5).cast("int") + 1).alias("c"))


def by_column(results):
    return {r.column: r for r in results}


def test_one_std_covariate_shift_fails_ks_and_psi(spark, lake_slice):
    out = by_column(compare(lake_slice(sample(spark, 200_000, 1)), sample(spark, 50_000, 7, shift=1.0), SPEC))
    x = out["x"]
    assert x.drifted and x.p_value < 1e-10 and x.psi > 0.2 and x.wasserstein_std > 0.5
    assert 0.35 < x.statistic < 0.42  # the true KS distance between N(0,1) and N(1,1) is 0.383
    assert not out["y"].drifted and not out["c"].drifted


def test_category_mix_shift_fails_chi_square(spark, lake_slice):
    ref = lake_slice(sample(spark, 100_000, 1))
    cur = sample(spark, 50_000, 9).withColumn("c", F.when(F.rand(3) < 0.5, F.lit("a")).otherwise(F.col("c")))
    out = by_column(compare(ref, cur, SPEC))
    assert out["c"].drifted and out["c"].test == "chi2" and out["c"].psi > 0.1


@pytest.mark.slow
def test_no_false_alarm_on_5m_rows_from_the_same_distribution(spark, lake_slice):
    """At 5M rows, p-values alone flag trivial noise; the effect-size floor must not."""
    ref, cur = lake_slice(sample(spark, 5_000_000, 11)), sample(spark, 5_000_000, 23)
    out = compare(ref, cur, SPEC)
    assert [r.column for r in out if r.drifted] == []
    assert all(r.psi < 0.01 for r in out)


def test_a_tiny_but_significant_shift_at_scale_is_not_a_failure(spark, lake_slice):
    """A 0.03 std shift on 2M rows is 'significant' (p << 0.01) yet immaterial: it must pass."""
    ref = lake_slice(sample(spark, 2_000_000, 5))
    out = by_column(compare(ref, sample(spark, 2_000_000, 6, shift=0.03), SPEC))
    assert out["x"].p_value < 0.01 and not out["x"].drifted


def test_reference_summaries_match_the_exact_quantiles_and_counts(spark, lake_slice):
    """The read tasks' rank summaries give quantiles within 1/SUMMARY_POINTS of the rows in rank (as
    approxQuantile's 1e-3 would), and their histograms equal Spark counting the same rows."""
    import numpy as np

    from batchml.validation.distributions import SUMMARY_POINTS, _counts, _levels

    df = sample(spark, 300_000, 3).repartition(4)
    df = df.withColumn("x", F.when(F.rand(4) < 0.01, F.lit(None)).otherwise(F.col("x")))  # nulls are left out
    reference = lake_slice(df)
    probs = _levels(SPEC.bins)
    quantiles = reference.quantiles(["x", "y"], probs)
    for c in ("x", "y"):
        exact = np.sort(np.array([r[0] for r in df.select(c).dropna().collect()]))
        ranks = np.searchsorted(exact, quantiles[c], side="right") / len(exact)
        assert np.all(np.abs(ranks - np.array(probs)) <= 1 / SUMMARY_POINTS + 2 / len(exact)), c
    edges = {c: np.unique(quantiles[c]) for c in ("x", "y")}
    in_tasks = reference.histogram(["x", "y"], ["c"], edges)
    by_spark = _counts(df, 0, ["x", "y"], ["c"], edges)
    key = lambda r: (r["k"], r["v"] or "")  # noqa: E731
    assert sorted(in_tasks, key=key) == sorted(by_spark, key=key)
