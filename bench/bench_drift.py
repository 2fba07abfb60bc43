"""Drift benchmark: PSI + KS + chi-square over 20 features (14 numeric, 6 categorical) of a
1M-row reference against a 1M-row batch, batchml against Evidently on the same data.

batchml: ``validation.distributions.compare_arrow`` (what ``batchml run monitor`` runs) on Arrow
tables in memory. Evidently: one Report of ``ValueDrift`` metrics (ks + psi per numeric column,
chisquare + psi per categorical one) on the same rows as pandas. The second floor is the script a user
would write with numpy/scipy on the same pandas frames: ``scipy.stats.ks_2samp`` and reference-decile
PSI per numeric column, value counts with ``scipy.stats.chisquare`` and PSI per categorical one
(``numpy_scipy_runner``). All start from data in memory.

Agreement is checked on the same data:
* KS statistic against ``scipy.stats.ks_2samp`` (Evidently's KS test calls it and reports only
  its p-value); goal: max difference <= 1e-6;
* chi-square: Evidently's p-value against the same goodness-of-fit test on batchml's counts;
* PSI: categorical PSI against Evidently's (same definition); numeric PSI against the exact
  reference-decile PSI (numpy quantiles). Evidently bins numeric PSI differently (Sturges
  equal-width bins over reference + batch), so that difference is reported, not gated.

    .venv/bin/python bench/bench_drift.py [--rows 1000000]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from common import Run, median, parse
from scipy import stats

NUMERIC = [f"num_{i}" for i in range(14)]
CATEGORICAL = [f"cat_{j}" for j in range(6)]
DRIFTED = {"num_0", "num_1", "num_2", "cat_0"}
KS_GOAL = 1e-6
PSI_TOLERANCE = 1e-9  # same exact decile edges: only float rounding may differ


def make(rows: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(14):
        s = shift if f"num_{i}" in DRIFTED else 0.0
        if i % 3 == 0:
            data[f"num_{i}"] = rng.normal(s, 1.0, rows)
        elif i % 3 == 1:
            data[f"num_{i}"] = rng.lognormal(0.0, 1.0 + 0.2 * s, rows)
        else:  # counts: heavy ties
            data[f"num_{i}"] = rng.poisson(3.0 + s, rows).astype(float)
    for j in range(6):
        k = 3 + 5 * j
        p = np.ones(k) / k
        if f"cat_{j}" in DRIFTED and shift:
            p = p * np.linspace(1 - shift, 1 + shift, k)
            p = p / p.sum()
        data[f"cat_{j}"] = rng.choice(np.array([f"v{x}" for x in range(k)]), rows, p=p)
    return pd.DataFrame(data)


def batchml_runner(ref: pd.DataFrame, cur: pd.DataFrame, out: dict):
    import pyarrow as pa

    from batchml.validation.distributions import compare_arrow
    from batchml.validation.spec import Distributions

    tables = [pa.Table.from_pandas(df, preserve_index=False) for df in (ref, cur)]
    spec = Distributions(numeric=NUMERIC, categorical=CATEGORICAL)

    def run() -> None:
        out["batchml"] = compare_arrow(tables[0], tables[1], spec)
    return run


def evidently_runner(ref: pd.DataFrame, cur: pd.DataFrame, out: dict):
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    metrics = [ValueDrift(column=c, method=m) for c in NUMERIC for m in ("ks", "psi")]
    metrics += [ValueDrift(column=c, method=m) for c in CATEGORICAL for m in ("chisquare", "psi")]

    def run() -> None:
        out["evidently"] = Report(metrics).run(Dataset.from_pandas(cur, data_definition=definition),
                                               Dataset.from_pandas(ref, data_definition=definition))
    return run


def numpy_scipy_runner(ref: pd.DataFrame, cur: pd.DataFrame, out: dict):
    def run() -> None:
        result = {}
        for c in NUMERIC:
            r, b = ref[c].to_numpy(), cur[c].to_numpy()
            result[c] = (stats.ks_2samp(r, b).statistic, decile_psi(r, b))
        for c in CATEGORICAL:
            counts = pd.concat([ref[c].value_counts(), cur[c].value_counts()], axis=1).fillna(0).to_numpy().T
            r, b = counts
            p, q = np.maximum(r / r.sum(), 1e-4), np.maximum(b / b.sum(), 1e-4)
            result[c] = (stats.chisquare(b, r * b.sum() / r.sum()).pvalue, float(((q - p) * np.log(q / p)).sum()))
        out["numpy_scipy"] = result
    return run


def evidently_values(snapshot) -> dict:
    return {(m["config"]["column"], m["config"]["method"]): float(m["value"]) for m in snapshot.dict()["metrics"]}


def decile_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10, method="inverted_cdf"))  # data values, as Spark
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    return float(((q - p) * np.log(q / p)).sum())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the reference and in the batch each")
    args = parse(parser)
    run = Run(args)
    ref, cur = make(args.rows, 1, 0.0), make(args.rows, 2, 0.3)
    out: dict = {}
    times = run.interleaved({"evidently": evidently_runner(ref, cur, out), "batchml": batchml_runner(ref, cur, out),
                             "numpy_scipy": numpy_scipy_runner(ref, cur, out)})
    drifts, evidently = out["batchml"], evidently_values(out["evidently"])
    batchml_seconds, evidently_seconds = median(times["batchml"]), median(times["evidently"])
    numpy_seconds = median(times["numpy_scipy"])

    ours = {d.column: d for d in drifts}
    ks_diff = max(abs(ours[c].statistic - stats.ks_2samp(ref[c], cur[c]).statistic) for c in NUMERIC)
    ks_p_diff = max(abs(ours[c].p_value - evidently[(c, "ks")]) for c in NUMERIC)
    chi_diff = 0.0
    for c in CATEGORICAL:
        r, b = np.array(ours[c].histogram, dtype=float).T
        chi_diff = max(chi_diff, abs(stats.chisquare(b, r * b.sum() / r.sum()).pvalue - evidently[(c, "chisquare")]))
    psi_cat = max(abs(ours[c].psi - evidently[(c, "psi")]) for c in CATEGORICAL)
    psi_script = max(abs(ours[c].psi - out["numpy_scipy"][c][1]) for c in NUMERIC + CATEGORICAL)
    psi_deciles = max(abs(ours[c].psi - decile_psi(ref[c].to_numpy(), cur[c].to_numpy())) for c in NUMERIC)
    psi_sturges = {c: round(ours[c].psi - evidently[(c, "psi")], 4) for c in NUMERIC}
    flagged = {c for c, d in ours.items() if d.psi > 0.1}
    flagged_evidently = {c for (c, m), v in evidently.items() if m == "psi" and v > 0.1}
    run.write(
        "drift",
        ratio=round(evidently_seconds / batchml_seconds, 2), goal=1.0, higher_is_better=True,
        ratio_means="Evidently seconds / batchml seconds (speed-up; > 1 is faster than Evidently)",
        rows=2 * args.rows, reference_rows=args.rows, batch_rows=args.rows,
        features={"numeric": len(NUMERIC), "categorical": len(CATEGORICAL)},
        floor=f"Evidently {__import__('evidently').__version__} Report of ValueDrift (ks, psi, chisquare) on pandas",
        batchml_seconds=batchml_seconds, evidently_seconds=evidently_seconds, runs_s=times,
        numpy_scipy_seconds=numpy_seconds,
        also=[{"name": "numpy/scipy", "ratio": round(numpy_seconds / batchml_seconds, 2), "goal": 1.0,
               "ratio_means": "numpy/scipy script seconds / batchml seconds (> 1 is faster than the script)",
               "floor": "a numpy/scipy/pandas script: ks_2samp, decile PSI, value counts + chisquare per column"}],
        agreement={
            "ks_statistic_max_abs_diff_vs_scipy": ks_diff, "ks_goal": KS_GOAL, "ks_ok": bool(ks_diff <= KS_GOAL),
            "ks_p_value_max_abs_diff_vs_evidently": ks_p_diff,
            "chisquare_p_value_max_abs_diff_vs_evidently": chi_diff,
            "psi_categorical_max_abs_diff_vs_evidently": psi_cat,
            "psi_numeric_max_abs_diff_vs_exact_reference_deciles": psi_deciles,
            "psi_max_abs_diff_vs_numpy_scipy_script": psi_script,
            "psi_tolerance": PSI_TOLERANCE, "psi_ok": bool(max(psi_cat, psi_deciles) <= PSI_TOLERANCE),
            "psi_numeric_diff_vs_evidently_sturges_bins": psi_sturges,
            "psi_over_0.1_batchml": sorted(flagged), "psi_over_0.1_evidently": sorted(flagged_evidently),
        },
        injected_drift=sorted(DRIFTED),
    )


if __name__ == "__main__":
    main()
