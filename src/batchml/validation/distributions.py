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

from dataclasses import dataclass, replace

import numpy as np
from scipy import special, stats

from batchml.validation.spec import Distributions

_FINE = 100  # quantile buckets for KS / Wasserstein
_EPS = 1e-4  # PSI floor for empty buckets
_KEY = 1024  # numeric histogram key = column index * _KEY * sub + bucket * sub + sub-bucket
_SUB = 64  # exact KS: equal-width sub-buckets per quantile bucket


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
    # PSI bins as (reference count, batch count) pairs: reference-decile buckets or categories
    histogram: tuple[tuple[int, int], ...] = ()


def compare(reference, batch, spec: Distributions, exact_ks: bool = False) -> list[Drift]:
    """Drift of every configured column. ``exact_ks``: KS statistics equal to the exact two-sample
    statistic (``scipy.stats.ks_2samp``), at the cost of one more Spark job over the few rows that
    can still hold the maximum (see ``_refine_ks``)."""
    from pyspark.sql import functions as F

    numeric, categorical = list(spec.numeric), list(spec.categorical)
    probs = [i / _FINE for i in range(1, _FINE)]
    quantiles = reference.approxQuantile(numeric, probs, 1e-3) if numeric else []
    edges = {c: np.unique(np.array(q, dtype=float)) for c, q in zip(numeric, quantiles)}
    sub = _SUB if exact_ks else 1

    def long(df, side):
        # One int key per numeric (column, bucket) and a string per category: cheap to explode and group.
        df = _bucketed(df, numeric, categorical, edges, sub)
        # x carries numeric values so each bucket also reports its smallest and largest value.
        items = [F.struct((F.lit(i * _KEY * sub) + F.col(f"_f_{c}")).alias("k"), F.lit(None).cast("string").alias("v"),
                          F.col(f"_n_{c}").alias("x")) for i, c in enumerate(numeric)]
        items += [F.struct(F.lit(-1 - j).cast("long").alias("k"),
                           F.coalesce(F.col(c).cast("string"), F.lit("<null>")).alias("v"),
                           F.lit(None).cast("double").alias("x"))
                  for j, c in enumerate(categorical)]
        return (df.select(F.lit(side).alias("side"), F.explode(F.array(*items)).alias("kv"))
                .select("side", "kv.k", "kv.v", "kv.x"))

    counts = (long(reference, 0).unionByName(long(batch, 1)).groupBy("side", "k", "v")
              .agg(F.count(F.lit(1)).alias("count"), F.min("x").alias("lo"), F.max("x").alias("hi"))
              .toArrow().to_pylist())
    table: dict[str, dict[str, list[int]]] = {}
    fine = {c: np.zeros(((len(edges[c]) + 2) * sub, 2)) for c in numeric}  # last bucket: null / NaN
    single = {c: np.zeros((len(edges[c]) + 2) * sub, bool) for c in numeric}  # one distinct value
    spans: dict[tuple[str, int], set] = {}
    for r in counts:
        if r["k"] >= 0:
            column, bucket = numeric[r["k"] // (_KEY * sub)], r["k"] % (_KEY * sub)
            fine[column][bucket, r["side"]] += r["count"]
            spans.setdefault((column, bucket), set()).update((r["lo"], r["hi"]))
        else:
            table.setdefault(categorical[-1 - r["k"]], {}).setdefault(r["v"], [0, 0])[r["side"]] += r["count"]
    for (column, bucket), values in spans.items():
        single[column][bucket] = len(values) == 1
    for c in numeric:  # the quantile buckets' counts
        coarse = fine[c].reshape(-1, sub, 2).sum(axis=1)
        table[c] = {str(i): [int(coarse[i, 0]), int(coarse[i, 1])] for i in np.flatnonzero(coarse.sum(axis=1))}

    out = [_numeric(c, edges[c], table.get(c, {}), spec) for c in numeric]
    if exact_ks and numeric:
        out = _refine_ks(reference, batch, numeric, categorical, edges, fine, single, out)
    out += [_categorical(c, table.get(c, {}), spec) for c in categorical]
    return out


def _refine_ks(reference, batch, numeric, categorical, edges, fine, single, drifts: list[Drift]) -> list[Drift]:
    """Exact KS: the CDF gap is exact at every bucket edge; inside a bucket it can move by at most
    the bucket's reference or batch share. Only buckets whose bound exceeds the best edge gap, and
    that hold more than one distinct value, can hold the maximum; their rows are counted per exact
    value (one Spark job) and walked in order."""
    from pyspark.sql import functions as F

    candidates, start, n_m = {}, {}, {}
    for c in numeric:
        ref, cur = fine[c][:-_SUB, 0], fine[c][:-_SUB, 1]  # without the null / NaN bucket
        n, m = ref.sum(), cur.sum()
        if n == 0 or m == 0:
            continue
        left = np.concatenate([[0.0], np.cumsum(ref)[:-1] / n - np.cumsum(cur)[:-1] / m])
        best = np.abs(left).max()
        bound = np.maximum(np.abs(left - cur / m), np.abs(left + ref / n))
        candidates[c] = np.flatnonzero((bound > best + 1e-12) & ~single[c][:-_SUB])
        start[c], n_m[c] = left, (n, m)
    wanted = {c: b for c, b in candidates.items() if len(b)}
    exact: dict[str, float] = {c: float(np.abs(start[c]).max()) for c in candidates}
    if wanted:
        def long(df, side):
            df = _bucketed(df, numeric, categorical, edges, _SUB)
            items = [F.when(F.col(f"_f_{c}").isin([int(b) for b in wanted[c]]),
                            F.struct((F.lit(i * _KEY * _SUB) + F.col(f"_f_{c}")).alias("k"), F.col(f"_n_{c}").alias("v")))
                     for i, c in enumerate(numeric) if c in wanted]
            return (df.select(F.lit(side).alias("side"), F.explode(F.array(*items)).alias("kv"))
                    .where(F.col("kv").isNotNull()).select("side", "kv.k", "kv.v"))

        rows = long(reference, 0).unionByName(long(batch, 1)).groupBy("side", "k", "v").count().toArrow()
        k, v = rows.column("k").to_numpy(), rows.column("v").to_numpy()
        side, cnt = rows.column("side").to_numpy(), rows.column("count").to_numpy().astype(float)
        for key in np.unique(k):
            c, bucket = numeric[key // (_KEY * _SUB)], key % (_KEY * _SUB)
            n, m = n_m[c]
            sel = k == key
            values, inverse = np.unique(v[sel], return_inverse=True)
            step = np.zeros(len(values))
            np.add.at(step, inverse, np.where(side[sel] == 0, cnt[sel] / n, -cnt[sel] / m))
            exact[c] = max(exact[c], float(np.abs(start[c][bucket] + np.cumsum(step)).max()))
    out = []
    for d in drifts:
        if d.column in exact:
            ks = exact[d.column]
            en = d.reference_rows * d.batch_rows / (d.reference_rows + d.batch_rows)
            p = float(special.kolmogorov(np.sqrt(en) * ks)) if ks > 0 else 1.0
            d = replace(d, statistic=ks, p_value=p)
        out.append(d)
    return out


def _bucketed(df, numeric: list[str], categorical: list[str], edges: dict, sub: int = 1):
    """Add ``_f_<col>``: ``sub`` x the reference-quantile bucket of each numeric value (NaN/null: the
    last bucket) plus, for inner buckets, its equal-width sub-bucket in ``[0, sub)``. The
    sub-bucket is monotone in the value, so fine buckets are ordered intervals too."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    df = df.select(*[F.coalesce(F.col(c).cast("double"), F.lit(float("nan"))).alias(f"_n_{c}") for c in numeric],
                   *categorical)
    if not numeric:
        return df
    splits = [[-float("inf"), *map(float, edges[c]), float("inf")] for c in numeric]
    df = Bucketizer(splitsArray=splits, inputCols=[f"_n_{c}" for c in numeric],
                    outputCols=[f"_b_{c}" for c in numeric], handleInvalid="keep").transform(df)
    for c in numeric:
        parent = F.col(f"_b_{c}").cast("long")
        fine = parent * sub
        if sub > 1 and len(edges[c]) > 1:
            grid = F.array(*[F.lit(float(e)) for e in edges[c]])
            at = F.least(F.greatest(parent, F.lit(1)), F.lit(len(edges[c]) - 1)).cast("int")  # 1-based, in range
            lo, hi = F.element_at(grid, at), F.element_at(grid, at + 1)
            inner = (parent >= 1) & (parent < len(edges[c]))
            offset = F.least(F.greatest(F.floor((F.col(f"_n_{c}") - lo) / (hi - lo) * sub), F.lit(0)), F.lit(sub - 1))
            fine = fine + F.when(inner, offset).otherwise(F.lit(0)).cast("long")
        df = df.withColumn(f"_f_{c}", fine)
    return df


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
    coarse_ref, coarse_cur = _coarsen(ref, spec.bins), _coarsen(cur, spec.bins)
    psi = _psi(coarse_ref, coarse_cur)
    drifted = p < spec.p_value and (psi >= spec.min_psi or w_std >= spec.min_wasserstein_std)
    return Drift(column, "numeric", "ks", ks, p, psi, w_std, int(n), int(m), drifted,
                 tuple(zip(coarse_ref.astype(int).tolist(), coarse_cur.astype(int).tolist())))


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
    return Drift(column, "categorical", "chi2", float(chi2), float(p), psi, None, int(n), int(m), drifted,
                 tuple(zip(ref.astype(int).tolist(), cur.astype(int).tolist())))


def _coarsen(counts: np.ndarray, bins: int) -> np.ndarray:
    """Merge the fine quantile buckets into ``bins`` reference-equal-mass buckets."""
    groups = np.array_split(np.arange(len(counts)), bins)
    return np.array([counts[g].sum() for g in groups if len(g)])


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    p = np.maximum(ref / max(ref.sum(), 1), _EPS)
    q = np.maximum(cur / max(cur.sum(), 1), _EPS)
    return float(((q - p) * np.log(q / p)).sum())
