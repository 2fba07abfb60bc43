"""What a training run leaves behind for people: PNG plots and the Markdown model card."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on workers or CI
    import matplotlib.pyplot as plt

    return plt


def pr_curve(path: Path, y: np.ndarray, curves: dict[str, np.ndarray]) -> Path:
    from sklearn.metrics import precision_recall_curve

    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, p in curves.items():
        if y.min() != y.max():
            precision, recall, _ = precision_recall_curve(y, p)
            ax.plot(recall, precision, label=name)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test window")
    ax.legend()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def reliability(path: Path, table: list[dict]) -> Path:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.plot([b["mean_score"] for b in table], [b["fraud_rate"] for b in table], marker="o")
    ax.set(xlabel="mean score", ylabel="observed fraud rate", title="Calibration, test window")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def importance(path: Path, gains: dict[str, float], top: int = 20) -> Path:
    plt = _figure()
    items = sorted(gains.items(), key=lambda kv: kv[1])[-top:]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel="total gain", title="Feature importance")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _fmt(x) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else str(int(x)) if x.is_integer() and x > 1 else f"{x:.4f}"
    return str(x)


def model_card(*, name: str, dataset: str, run_date, windows: dict, lineage: dict, metrics: dict, baseline: dict,
               slices: dict, threshold: float, costs, params: dict, features: list[str], maturity_days: int,
               code_version: str, config_hash: str) -> str:
    cols = ["rows", "positives", "pr_auc", "roc_auc", "precision", "recall", "f1", "fbeta", "brier"]
    lines = [
        f"# Model card: {name} (trained {run_date})", "",
        "## Intended use",
        f"Ranks `{dataset}` events by fraud risk in the nightly batch scoring; flags events whose score is "
        f">= the threshold for review. Not for decisions on individual customers without human review.", "",
        "## Data", "",
        "| window | event dates |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in windows.items()], "",
        f"Labels: an event is fraud if a chargeback for it was ingested and reported by the cut-off {run_date}; "
        f"only events at least {maturity_days} days old at the cut-off count (label maturity).", "",
        "| input table | Delta version |", "|---|---|",
        *[f"| `{t}` | {v} |" for t, v in lineage.items()], "",
        f"Code version `{code_version}`, config hash `{config_hash[:16]}`.", "",
        "## Threshold and costs",
        f"Threshold **{threshold:.4f}**, chosen on the validation window to minimise "
        f"{costs.missed_fraud:g} x missed fraud + {costs.false_alarm:g} x false alarm; "
        f"F-beta uses beta = {costs.beta:g}.", "",
        "## Test-window metrics", "",
        "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|",
        "| xgboost | " + " | ".join(_fmt(metrics.get(c)) for c in cols) + " |",
        "| baseline (logistic) | " + " | ".join(_fmt(baseline.get(c)) for c in cols) + " |", "",
        "## By slice", "",
    ]
    for column, values in slices.items():
        lines += [f"### {column}", "", "| value | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {v} | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |" for v, m in values.items()]
        lines.append("")
    lines += [
        "## Hyperparameters", "", "```", *[f"{k}: {v}" for k, v in sorted(params.items())], "```", "",
        f"## Inputs ({len(features)} features)", "", ", ".join(f"`{f}`" for f in features), "",
        "## Known limits",
        f"- Labels younger than {maturity_days} days are not final: chargebacks can arrive later, so recent "
        "fraud is under-counted and metrics are slightly pessimistic for recall.",
        "- The test window is short; slice metrics with few fraud cases are noisy.",
        "- Scores are not calibrated probabilities when `scale_pos_weight` is set (see the Brier score and "
        "reliability plot); use the threshold, not the raw score, for decisions.",
        "- Trained on past behaviour; drift in merchants, channels or fraud patterns degrades it (see monitoring).",
    ]
    return "\n".join(lines) + "\n"
