"""Drift of a batch against a reference, at Spark scale, in two Spark jobs.

1. reference quantiles for numeric columns (``approxQuantile``, 1 job);
2. histograms of reference and batch together (1 job): numeric values bucketed on those
   quantiles, categorical values counted as they are.

From the histograms: KS statistic (max CDF gap at the bucket edges) and its asymptotic p-value,
PSI on reference deciles, Wasserstein-1 on the bucket grid in units of the reference's robust
standard deviation (IQR / 1.349), and chi-square for categories. A column drifts when the test
is significant AND the effect is material (see ``spec.Distributions``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from batchml.validation.spec import Distributions

_FINE = 100  # quantile buckets for KS / Wasserstein
_EPS = 1e-4  # PSI floor for empty buckets
_KEY = 1024  # numeric histogram key = column index * _KEY + bucket


@dataclass(frozen=True)
class Drift:
    column: str
    kind: str  # numeric | categorical
    test: str  # ks | chi2
    statistic: float
    p_value: float
    psi: float
    wasserstein_std: float | None
    reference_rows: int
    batch_rows: int
    drifted: bool


def compare(reference, batch, spec: Distributions) -> list[Drift]:
    from pyspark.sql import functions as F

    numeric, categorical = list(spec.numeric), list(spec.categorical)
    probs = [i / _FINE for i in range(1, _FINE)]
    quantiles = reference.approxQuantile(numeric, probs, 1e-3) if numeric else []
    edges = {c: np.unique(np.array(q, dtype=float)) for c, q in zip(numeric, quantiles)}

    def long(df, side):
        # One int key per numeric (column, bucket) and a string per category: cheap to explode and group.
        df = _bucketed(df, numeric, categorical, edges)
        items = [F.struct((F.lit(i * _KEY) + F.col(f"_b_{c}").cast("int")).alias("k"),
                          F.lit(None).cast("string").alias("v")) for i, c in enumerate(numeric)]
        items += [F.struct(F.lit(-1 - j).alias("k"), F.coalesce(F.col(c).cast("string"), F.lit("<null>")).alias("v"))
                  for j, c in enumerate(categorical)]
        return df.select(F.lit(side).alias("side"), F.explode(F.array(*items)).alias("kv")).select("side", "kv.k", "kv.v")

    counts = long(reference, 0).unionByName(long(batch, 1)).groupBy("side", "k", "v").count().collect()
    table: dict[str, dict[str, list[int]]] = {}
    for r in counts:
        if r["k"] >= 0:
            column, value = numeric[r["k"] // _KEY], str(r["k"] % _KEY)
        else:
            column, value = categorical[-1 - r["k"]], r["v"]
        table.setdefault(column, {}).setdefault(value, [0, 0])[r["side"]] += r["count"]

    out = []
    for c in numeric:
        out.append(_numeric(c, edges[c], table.get(c, {}), spec))
    for c in categorical:
        out.append(_categorical(c, table.get(c, {}), spec))
    return out


def _bucketed(df, numeric: list[str], categorical: list[str], edges: dict):
    """Add ``_b_<col>``: the reference-quantile bucket of each numeric value (NaN/null: invalid bucket)."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    df = df.select(*[F.coalesce(F.col(c).cast("double"), F.lit(float("nan"))).alias(f"_n_{c}") for c in numeric],
                   *categorical)
    if not numeric:
        return df
    splits = [[-float("inf"), *map(float, edges[c]), float("inf")] for c in numeric]
    return Bucketizer(splitsArray=splits, inputCols=[f"_n_{c}" for c in numeric],
                      outputCols=[f"_b_{c}" for c in numeric], handleInvalid="keep").transform(df)


def _numeric(column: str, edges: np.ndarray, hist: dict, spec: Distributions) -> Drift:
    k = len(edges) + 1
    ref, cur = np.zeros(k), np.zeros(k)
    for v, (r, b) in hist.items():
        i = int(v)
        if i < k:  # index k is Bucketizer's bucket for null / NaN
            ref[i], cur[i] = r, b
    n, m = ref.sum(), cur.sum()
    if n == 0 or m == 0:
        return Drift(column, "numeric", "ks", 0.0, 1.0, 0.0, 0.0, int(n), int(m), False)
    F_ref, F_cur = np.cumsum(ref)[:-1] / n, np.cumsum(cur)[:-1] / m
    gaps = np.abs(F_ref - F_cur)
    ks = float(gaps.max()) if len(gaps) else 0.0
    en = n * m / (n + m)
    p = float(special.kolmogorov(np.sqrt(en) * ks)) if ks > 0 else 1.0
    # Wasserstein-1 on the edge grid, scaled by the reference's robust std (heavy tails safe).
    widths = np.diff(edges)
    w1 = float((gaps[:-1] * widths).sum()) if len(widths) else 0.0
    q25, q75 = np.interp([0.25, 0.75], np.linspace(1 / _FINE, 1 - 1 / _FINE, len(edges)), edges) \
        if len(edges) > 1 else (0.0, 0.0)
    scale = (q75 - q25) / 1.349 or (float(edges[-1] - edges[0]) or 1.0)
    w_std = w1 / scale
    psi = _psi(_coarsen(ref, spec.bins), _coarsen(cur, spec.bins))
    drifted = p < spec.p_value and (psi >= spec.min_psi or w_std >= spec.min_wasserstein_std)
    return Drift(column, "numeric", "ks", ks, p, psi, w_std, int(n), int(m), drifted)


def _categorical(column: str, hist: dict, spec: Distributions) -> Drift:
    values = sorted(hist)
    ref = np.array([hist[v][0] for v in values], dtype=float)
    cur = np.array([hist[v][1] for v in values], dtype=float)
    n, m = ref.sum(), cur.sum()
    if n == 0 or m == 0 or len(values) < 2:
        return Drift(column, "categorical", "chi2", 0.0, 1.0, 0.0, None, int(n), int(m), False)
    chi2, p, _, _ = stats.chi2_contingency(np.vstack([ref, cur]) + 0.5)  # +0.5: categories seen on one side only
    psi = _psi(ref, cur)
    drifted = p < spec.p_value and psi >= spec.min_psi
    return Drift(column, "categorical", "chi2", float(chi2), float(p), psi, None, int(n), int(m), drifted)


def _coarsen(counts: np.ndarray, bins: int) -> np.ndarray:
    """Merge the fine quantile buckets into ``bins`` reference-equal-mass buckets."""
    groups = np.array_split(np.arange(len(counts)), bins)
    return np.array([counts[g].sum() for g in groups if len(g)])


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    p = np.maximum(ref / max(ref.sum(), 1), _EPS)
    q = np.maximum(cur / max(cur.sum(), 1), _EPS)
    return float(((q - p) * np.log(q / p)).sum())
