"""Drift of a batch against a reference, two ways with the same statistics:

* ``compare`` for a reference of any size in the lake against a batch DataFrame (the validation
  gate): reference quantiles merged from rank summaries made inside the read tasks, then
  histograms (numeric values bucketed on those quantiles, categorical values counted as they
  are), the reference's counted inside its read tasks and the batch's by one Spark job;
* ``compare_arrow`` in memory with numpy (monitoring: one day against a bounded reference
  sample): exact quantiles and the exact KS statistic.

From the histograms: KS statistic (max CDF gap at the bucket edges) and its asymptotic p-value,
PSI on reference deciles, Wasserstein-1 on the bucket grid in units of the reference's robust
standard deviation (IQR / 1.349), and chi-square for categories. A column drifts when the test
is significant AND the effect is material (see ``spec.Distributions``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special, stats

from batchml.validation.spec import Distributions

_FINE = 100  # percentile buckets for KS / Wasserstein
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
    # PSI bins as (reference count, batch count) pairs: reference-decile buckets or categories
    histogram: tuple[tuple[int, int], ...] = ()
    bins: tuple[str, ...] = ()  # each histogram bin's label: a value range, or the category


def compare(reference: "LakeSlice", batch, spec: Distributions) -> list[Drift]:
    """Drift of every configured column: a reference of any size in the lake (summarised inside its
    read tasks, so its rows never enter Spark) against a batch DataFrame (the validation gate).
    KS is measured at the quantile-bucket edges, so it is a lower bound of the exact statistic."""
    numeric, categorical = list(spec.numeric), list(spec.categorical)
    probs = _levels(spec.bins)
    quantiles = reference.quantiles(numeric, probs)
    edges = {c: np.unique(np.array(q, dtype=float)) for c, q in quantiles.items()}
    counts = _counts(batch, 1, numeric, categorical, edges) + reference.histogram(numeric, categorical, edges)
    table: dict[str, dict[str, list[int]]] = {}
    for r in counts:
        k = r["k"]
        column, key = (numeric[k // _KEY], str(k % _KEY)) if k >= 0 else (categorical[-1 - k], r["v"])
        table.setdefault(column, {}).setdefault(key, [0, 0])[r["side"]] += r["count"]
    return ([_numeric(c, probs, np.array(quantiles[c], dtype=float), table.get(c, {}), spec) for c in numeric]
            + [_categorical(c, table.get(c, {}), spec) for c in categorical])


def _counts(df, side: int, numeric: list[str], categorical: list[str], edges: dict) -> list[dict]:
    """``{"side", "k", "v", "count"}`` per numeric (column, bucket) and per category of a DataFrame, by one
    Spark job."""
    from pyspark.sql import functions as F

    # One int key per numeric (column, bucket) and a string per category: cheap to explode and group.
    df = _bucketed(df, numeric, categorical, edges)
    items = [F.struct((F.lit(i * _KEY) + F.col(f"_b_{c}").cast("long")).alias("k"),
                      F.lit(None).cast("string").alias("v")) for i, c in enumerate(numeric)]
    items += [F.struct(F.lit(-1 - j).cast("long").alias("k"),
                       F.coalesce(F.col(c).cast("string"), F.lit("<null>")).alias("v"))
              for j, c in enumerate(categorical)]
    long = df.select(F.lit(side).alias("side"), F.explode(F.array(*items)).alias("kv")).select("side", "kv.k", "kv.v")
    return long.groupBy("side", "k", "v").count().toArrow().to_pylist()


@dataclass(frozen=True)
class LakeSlice:
    """Rows of a lake table matching ``where`` (the gate's reference window), summarised inside the
    read tasks (``Lake.read(transform=)``): only the summaries enter Spark, never the rows."""

    lake: object  # storage.Lake (driver side only)
    table: str
    where: list

    def quantiles(self, numeric: list[str], probs: list[float]) -> dict[str, list[float]]:
        """Each column's quantiles at ``probs``, from per-task rank summaries: within ``1 / SUMMARY_POINTS``
        of the rows in rank (``approxQuantile`` with relative error 1e-3 allows ``1e-3``)."""
        rows = self._read(_RankSummary(tuple(numeric)), numeric).to_pylist() if numeric else []
        out = {}
        for c in numeric:
            values = np.concatenate([np.array(r["values"]) for r in rows if r["column"] == c] or [np.array([])])
            weights = np.concatenate([np.full(len(r["values"]), r["count"] / len(r["values"]))
                                      for r in rows if r["column"] == c and r["values"]] or [np.array([])])
            out[c] = _weighted_quantiles(values, weights, probs)
        return out

    def histogram(self, numeric: list[str], categorical: list[str], edges: dict) -> list[dict]:
        """``_counts``'s rows for side 0 (the reference), counted in the read tasks."""
        counter = _Histogram(tuple(numeric), tuple(categorical), tuple(tuple(edges[c].tolist()) for c in numeric))
        counts = self._read(counter, [*numeric, *categorical]).group_by(["k", "v"]).aggregate([("count", "sum")])
        return [{"side": 0, "k": r["k"], "v": r["v"], "count": r["count_sum"]} for r in counts.to_pylist()]

    def _read(self, transform, columns: list[str]) -> pa.Table:
        names = list(dict.fromkeys([*columns, *(c for c, _, _ in self.where)]))
        return self.lake.read(self.table, columns=names, where=self.where, transform=transform).toArrow()


SUMMARY_POINTS = 4096  # per read task and column: rank error at most 1/4096 of the rows


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, probs: list[float]) -> list[float]:
    """The smallest value whose cumulative weight reaches ``p`` of the total (``inverted_cdf``), per ``p``."""
    if not len(values):
        return [float("nan")] * len(probs)
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    at = np.searchsorted(cumulative, np.array(probs) * cumulative[-1] * (1 - 1e-12), side="left")
    return values[order][np.minimum(at, len(values) - 1)].tolist()


@dataclass(frozen=True)
class _RankSummary:
    """Per read task and numeric column: the count of non-NaN values and ``SUMMARY_POINTS`` of them at
    evenly spaced ranks, each standing for ``count / points`` rows."""

    numeric: tuple[str, ...]
    schema = pa.schema([("column", pa.string()), ("count", pa.int64()), ("values", pa.list_(pa.float64()))])

    def map_task(self, batches):
        batches = list(batches)
        if not batches:
            return
        data = pa.Table.from_batches(batches)
        for c in self.numeric:
            x = _finite_sorted(data.column(c))
            points = min(SUMMARY_POINTS, len(x))
            picks = x[((np.arange(points) + 0.5) * len(x) / points).astype(np.int64)] if points else x
            yield pa.RecordBatch.from_pylist([{"column": c, "count": len(x), "values": picks.tolist()}], self.schema)


@dataclass(frozen=True)
class _Histogram:
    """Per read task: rows per numeric (column, bucket) on the reference edges (Bucketizer's numbering,
    NaN and null in the last bucket) and per category, keyed as ``_counts`` keys them."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]
    schema = pa.schema([("k", pa.int64()), ("v", pa.string()), ("count", pa.int64())])

    def map_task(self, batches):
        edges = [np.array(e) for e in self.edges]
        numeric = [np.zeros(len(e) + 2, np.int64) for e in edges]
        categories: list[dict] = [{} for _ in self.categorical]
        for batch in batches:
            for i, c in enumerate(self.numeric):
                x = pc.fill_null(pc.cast(batch.column(c), pa.float64()), np.nan).to_numpy(zero_copy_only=False)
                bucket = np.searchsorted(edges[i], x, side="right")
                bucket[np.isnan(x)] = len(edges[i]) + 1
                numeric[i] += np.bincount(bucket, minlength=len(edges[i]) + 2)
            for j, c in enumerate(self.categorical):
                values = pc.fill_null(pc.cast(batch.column(c), pa.string()), "<null>")
                for item in pc.value_counts(values).to_pylist():
                    categories[j][item["values"]] = categories[j].get(item["values"], 0) + item["counts"]
        rows = [{"k": i * _KEY + b, "v": None, "count": int(n)} for i, counts in enumerate(numeric)
                for b, n in enumerate(counts) if n]
        rows += [{"k": -1 - j, "v": v, "count": n} for j, counts in enumerate(categories) for v, n in counts.items()]
        if rows:
            yield pa.RecordBatch.from_pylist(rows, self.schema)


def compare_arrow(reference: pa.Table, batch: pa.Table, spec: Distributions) -> list[Drift]:
    """The same statistics in memory (numpy), for data that fits one process (monitoring: a day
    against a bounded reference sample). Reference quantiles are exact, and so is KS: it equals
    ``scipy.stats.ks_2samp``'s statistic."""
    probs = _levels(spec.bins)
    out = []
    for c in spec.numeric:
        ref, cur = _finite_sorted(reference.column(c)), _finite_sorted(batch.column(c))
        # inverted_cdf picks data values, as Spark's approxQuantile does
        quantiles = np.quantile(ref, probs, method="inverted_cdf") if len(ref) else np.zeros(len(probs))
        edges = np.unique(quantiles)
        r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
        b = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
        drift = _numeric(c, probs, quantiles, {str(i): [int(r[i]), int(b[i])] for i in np.flatnonzero(r + b)}, spec)
        if len(ref) and len(cur):
            ks = _exact_ks(ref, cur)
            drift = replace(drift, statistic=ks, p_value=_ks_p_value(ks, len(ref), len(cur)))
        out.append(drift)
    for c in spec.categorical:
        hist: dict[str, list[int]] = {}
        for side, t in enumerate((reference, batch)):
            values = pc.fill_null(pc.cast(t.column(c), pa.string()), "<null>")
            for item in pc.value_counts(values).to_pylist():
                hist.setdefault(item["values"], [0, 0])[side] += item["counts"]
        out.append(_categorical(c, hist, spec))
    return out


def _finite_sorted(column) -> np.ndarray:
    x = pc.cast(column, pa.float64()).drop_null().to_numpy()
    x = x[~np.isnan(x)]
    x.sort()
    return x


def _exact_ks(ref: np.ndarray, cur: np.ndarray) -> float:
    """Largest CDF gap over all observed values (both arrays sorted), as ``ks_2samp`` computes it."""
    values = np.concatenate([ref, cur])
    gap = np.searchsorted(ref, values, side="right") / len(ref) - np.searchsorted(cur, values, side="right") / len(cur)
    return float(np.abs(gap).max())


def _ks_p_value(ks: float, n: int, m: int) -> float:
    return float(special.kolmogorov(np.sqrt(n * m / (n + m)) * ks)) if ks > 0 else 1.0


def _bucketed(df, numeric: list[str], categorical: list[str], edges: dict):
    """Add ``_b_<col>``: the reference-quantile bucket of each numeric value (NaN / null: the last one)."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    df = df.select(*[F.coalesce(F.col(c).cast("double"), F.lit(float("nan"))).alias(f"_n_{c}") for c in numeric],
                   *categorical)
    if not numeric:
        return df
    splits = [[-float("inf"), *map(float, edges[c]), float("inf")] for c in numeric]
    return Bucketizer(splitsArray=splits, inputCols=[f"_n_{c}" for c in numeric],
                      outputCols=[f"_b_{c}" for c in numeric], handleInvalid="keep").transform(df)


def _levels(bins: int) -> list[float]:
    """Reference quantile levels: percentiles (KS, Wasserstein) plus the PSI bin edges ``j / bins``."""
    return sorted({round(i / _FINE, 12) for i in range(1, _FINE)} | {round(j / bins, 12) for j in range(1, bins)})


def _numeric(column: str, probs: list[float], quantiles: np.ndarray, hist: dict, spec: Distributions) -> Drift:
    """``hist``: reference and batch counts per bucket of ``unique(quantiles)`` (Bucketizer's numbering)."""
    edges = np.unique(quantiles)
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
    p = _ks_p_value(ks, int(n), int(m))
    # Wasserstein-1 on the edge grid, scaled by the reference's robust std (heavy tails safe).
    widths = np.diff(edges)
    w1 = float((gaps[:-1] * widths).sum()) if len(widths) else 0.0
    q25, q75 = quantiles[probs.index(0.25)], quantiles[probs.index(0.75)]
    scale = (q75 - q25) / 1.349 or (float(edges[-1] - edges[0]) or 1.0)
    w_std = w1 / scale
    levels = {round(j / spec.bins, 12) for j in range(1, spec.bins)}
    psi_edges = np.unique([q for p, q in zip(probs, quantiles) if p in levels])
    coarse_ref, coarse_cur = _coarsen(ref, edges, psi_edges), _coarsen(cur, edges, psi_edges)
    psi = _psi(coarse_ref, coarse_cur)
    drifted = p < spec.p_value and (psi >= spec.min_psi or w_std >= spec.min_wasserstein_std)
    return Drift(column, "numeric", "ks", ks, p, psi, w_std, int(n), int(m), drifted,
                 tuple(zip(coarse_ref.astype(int).tolist(), coarse_cur.astype(int).tolist())), _ranges(psi_edges))


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
                 tuple(zip(ref.astype(int).tolist(), cur.astype(int).tolist())), tuple(str(v) for v in values))


def _ranges(edges: np.ndarray) -> tuple[str, ...]:
    """Short labels of the bins that ``edges`` cut, by upper edge: ``< e1``, ``< e2``, ..., ``>= ek``."""
    e = [f"{x:.3g}" for x in edges]
    return (*(f"< {x}" for x in e), f">= {e[-1]}") if e else ("all",)


def _coarsen(counts: np.ndarray, edges: np.ndarray, psi_edges: np.ndarray) -> np.ndarray:
    """Counts per PSI bin. Every PSI edge is also a fine edge, so each fine bucket
    ``[edges[i-1], edges[i])`` falls into exactly one PSI bin."""
    lower = np.concatenate([[-np.inf], edges])
    into = np.searchsorted(psi_edges, lower, side="right")
    return np.bincount(into, weights=counts, minlength=len(psi_edges) + 1)


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    p = np.maximum(ref / max(ref.sum(), 1), _EPS)
    q = np.maximum(cur / max(cur.sum(), 1), _EPS)
    return float(((q - p) * np.log(q / p)).sum())
