"""Model metrics on a scored window: pure functions of labels and scores (numpy in, dicts out)."""

from __future__ import annotations

import math

import numpy as np

from batchml.training.spec import Costs


def cost_threshold(y: np.ndarray, p: np.ndarray, costs: Costs) -> float:
    """The score cut-off with the least expected cost ``false_negative * FN + false_positive * FP``."""
    if len(p) == 0 or y.sum() == 0:
        return 1.0  # nothing to catch: flag nothing
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    tp = np.cumsum(ys)  # flagging the top k scores
    fp = np.cumsum(1 - ys)
    fn = ys.sum() - tp
    cost = costs.false_negative * fn + costs.false_positive * fp
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]  # a threshold cannot split tied scores
    cost = np.where(last_of_tie, cost, np.inf)
    k = int(np.argmin(cost))
    flag_none = costs.false_negative * ys.sum()
    if flag_none <= cost[k]:
        return 1.0
    return float(ps[k])


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float, beta: float) -> dict[str, float]:
    flagged = p >= threshold
    tp = float(np.sum(flagged & (y == 1)))
    fp = float(np.sum(flagged & (y == 0)))
    fn = float(np.sum(~flagged & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0

    def f(b: float) -> float:
        d = b * b * precision + recall
        return (1 + b * b) * precision * recall / d if d else 0.0

    return {"precision": precision, "recall": recall, "f1": f(1.0), "fbeta": f(beta),
            "flag_rate": float(flagged.mean()) if len(p) else 0.0}


def calibration(y: np.ndarray, p: np.ndarray, bins: int) -> tuple[dict[str, float], list[dict]]:
    """Brier score, expected calibration error and the reliability table (equal-width bins)."""
    if len(p) == 0:
        return {"brier": math.nan, "ece": math.nan}, []
    idx = np.minimum((p * bins).astype(int), bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        if n:
            mean_p, frac = float(p[sel].mean()), float(y[sel].mean())
            ece += n / len(p) * abs(mean_p - frac)
            table.append({"bin": b, "lo": b / bins, "hi": (b + 1) / bins, "n": n,
                          "mean_score": mean_p, "positive_rate": frac})
    return {"brier": float(np.mean((p - y) ** 2)), "ece": ece}, table


def ranking(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """PR-AUC (average precision) and ROC-AUC; NaN when the window holds one class only."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(y) == 0 or y.min() == y.max():
        return {"pr_auc": math.nan, "roc_auc": math.nan}
    return {"pr_auc": float(average_precision_score(y, p)), "roc_auc": float(roc_auc_score(y, p))}


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float, costs: Costs, bins: int) -> dict[str, float]:
    """Every scalar metric of one window (or slice) at ``threshold``."""
    y = np.asarray(y, dtype=np.int8)
    p = np.asarray(p, dtype=np.float64)
    out = {"rows": float(len(y)), "positives": float(y.sum()), **ranking(y, p),
           **at_threshold(y, p, threshold, costs.beta), **calibration(y, p, bins)[0]}
    flagged = p >= threshold
    missed, alarms = np.sum(~flagged & (y == 1)), np.sum(flagged & (y == 0))
    out["cost"] = float(costs.false_negative * missed + costs.false_positive * alarms)
    return out


def by_slice(y: np.ndarray, p: np.ndarray, columns: dict[str, np.ndarray], threshold: float, costs: Costs,
             bins: int) -> dict[str, dict[str, dict[str, float]]]:
    """{slice column: {value: metrics}} for every value of every slice column."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, values in columns.items():
        values = np.asarray(values, dtype=object)
        out[name] = {}
        for v in sorted({str(x) for x in values}):
            sel = values.astype(str) == v
            out[name][v] = evaluate(y[sel], p[sel], threshold, costs, bins)
    return out


CONTRACT_METRICS = ("pr_auc", "roc_auc", "f1", "recall", "precision")


def contract(metrics: dict[str, float]) -> dict[str, float]:
    """The subset the registry's ``batchml.test_metrics`` tag promises (monitoring's baseline)."""
    return {k: metrics[k] for k in CONTRACT_METRICS}
