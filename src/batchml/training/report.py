"""What a training run leaves behind for people: PNG plots and the Markdown model card."""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def reliability(path: Path, tables: dict[str, list[dict]]) -> Path:
    """Observed positive rate against mean score per bin, one curve per table (raw, calibrated)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    for name, table in tables.items():
        ax.plot([b["mean_score"] for b in table], [b["positive_rate"] for b in table], marker="o", label=name)
    ax.set(xlabel="mean score", ylabel="observed positive rate", title="Calibration, test window")
    ax.legend()
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


COUNTS = ("rows", "positives")  # whole numbers, whatever type the metric dict holds them in


def _fmt(x, count: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if count:
        return f"{int(x):,}"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _cells(metrics: dict, cols: list[str]) -> str:
    return " | ".join(_fmt(metrics.get(c), c in COUNTS) for c in cols)


def model_card(*, name: str, dataset: str, run_date, windows: dict, lineage: dict, metrics: dict, baseline: dict,
               slices: dict, threshold: float, costs, params: dict, features: list[str], maturity_days: int,
               code_version: str, config_hash: str, contract: "CardContext", band=None, decisions: dict | None = None,
               capacity_warning: str | None = None, reliability: "Reliability | None" = None) -> str:
    cols = ["rows", "positives", "pr_auc", "roc_auc", "precision", "recall", "f1", "fbeta", "brier"]
    lines = [
        f"# Model card: {name} (trained {run_date})", "",
        *_intended_use(dataset, contract), "",
        "## Data", "",
        "| window | event dates |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in windows.items()], "",
        f"Labels: {contract.label_definition}. {_label_rule(contract, run_date, maturity_days)}", "",
        "| input table | Delta version |", "|---|---|",
        *[f"| `{t}` | {v} |" for t, v in lineage.items()], "",
        f"Code version `{code_version}`, config hash `{config_hash[:16]}`.", "",
        "## Threshold and costs",
        f"Threshold **{threshold:.4f}**, chosen on the validation window to minimise "
        f"{costs.false_negative:g} x false negative + {costs.false_positive:g} x false positive; "
        f"F-beta uses beta = {costs.beta:g}.", "",
        *_decisions(contract, threshold, band, decisions or {}, capacity_warning),
        "## Test-window metrics", "",
        "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|",
        f"| xgboost | {_cells(metrics, cols)} |",
        f"| baseline (logistic) | {_cells(baseline, cols)} |", "",
        *(_calibration(reliability) if reliability else []),
        "## By slice", "",
    ]
    for column, values in slices.items():
        lines += [f"### {column}", "", "| value | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {v} | {_cells(m, cols)} |" for v, m in values.items()]
        lines.append("")
    lines += [
        "## Hyperparameters", "", "```", *[f"{k}: {v}" for k, v in sorted(params.items())], "```", "",
        f"## Inputs ({len(features)} features)", "", ", ".join(f"`{f}`" for f in features), "",
        "## Known limits", *_limits(contract, maturity_days, reliability),
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CardContext:
    """What the card says about the dataset, from its config: description, label, decision names."""

    description: str
    label_description: str  # what a positive means, in words
    label_definition: str  # the rule, with table and columns
    label_kind: str  # presence | value
    decisions: dict  # positive / negative / review -> the scoring decision names


def _intended_use(dataset: str, c: CardContext) -> list[str]:
    about = c.description.strip() or f"Events of the `{dataset}` dataset."
    flow = (f"In the nightly batch scoring, events scoring at or above the threshold get `{c.decisions['positive']}`, "
            f"the others `{c.decisions['negative']}`; the events nearest the threshold go to human review "
            f"(`{c.decisions['review']}`).") if c.decisions else "It ranks events in the nightly batch scoring."
    what = f" ({c.label_description})" if c.label_description else ", as the label contract below defines it"
    return ["## Intended use", f"{about} The model scores how likely an event is positive{what}. {flow} "
            "Not for decisions about individual people without human review."]


def _label_rule(c: CardContext, run_date, maturity_days: int) -> str:
    if c.label_kind == "presence":
        return (f"A label counts when it was ingested and known by the cut-off {run_date}; an event without one is "
                f"a negative once it is {_days(maturity_days)} old (label maturity).")
    return (f"Every event's outcome arrives as its own row; the latest one ingested and known by the cut-off "
            f"{run_date} is the label, and events whose outcome is not known yet are left out. Only events at "
            f"least {_days(maturity_days)} old count.")


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _decisions(c: CardContext, threshold: float, band, d: dict, warning: str | None) -> list[str]:
    if not d:
        return []
    names = c.decisions or {"positive": "positive", "review": "review"}
    text = ["## Decisions at the threshold (test window, expected)", ""]
    if band is not None:
        text.append(f"Review band: scores in [{band.low:.4g}, {band.high:.4g}): on the validation window, the "
                    f"{band.below_share:.2%} of events just below the threshold and the {band.above_share:.2%} at or "
                    "just above it (fewer where fewer scored there).")
    else:
        text.append("No review band: the dataset declares no scoring section.")
    text += ["", "| decision | share of events |", "|---|---|",
             f"| `{names['positive']}` (automatic, score >= {threshold:.4g}) | {d['positive_rate']:.2%} |",
             f"| `{names['review']}` (queued for people) | {d['review_rate']:.2%} |",
             f"| in the band, over the daily capacity (model decision kept) | {d['overflow_rate']:.2%} |", "",
             f"About {d['rows_per_day']:.0f} events a day, {d['band_rows_per_day']:.0f} of them in the review "
             "band.", ""]
    if warning:
        text += [f"**Warning:** {warning}.", ""]
    return text


def _limits(c: CardContext, maturity_days: int, reliability: "Reliability | None" = None) -> list[str]:
    late = ("labels can still arrive after that, so recent positives are under-counted and recall is slightly "
            "pessimistic" if c.label_kind == "presence" else
            "events whose outcome had not arrived by the cut-off are left out of training and test")
    return [f"- Labels younger than {_days(maturity_days)} are not final: {late}.",
            "- The test window is short; slice metrics with few positives are noisy.",
            *_calibration_limit(reliability),
            "- Trained on past behaviour; drift in the inputs or in what makes an event positive degrades it "
            "(see monitoring)."]


CALIBRATION_HEADING = "Calibration (test window)"  # the HTML card puts the reliability plot below it


@dataclass(frozen=True)
class Reliability:
    """Calibration on the test window, before (raw booster scores) and after the calibrator."""

    method: str | None  # the calibrator in words; None: ``model.calibration: none``
    raw: dict  # brier, ece
    raw_table: list[dict]  # metrics.calibration's reliability bins
    calibrated: dict
    calibrated_table: list[dict]
    reweighted: bool = True  # the fit weighted the classes (scale_pos_weight != 1)

    def curves(self) -> dict[str, list[dict]]:
        """The reliability tables to plot: raw, and calibrated when there is a calibrator."""
        return {"raw": self.raw_table, **({"calibrated": self.calibrated_table} if self.method else {})}

    def doc(self) -> dict:
        return {"method": self.method, "raw": {**self.raw, "bins": self.raw_table},
                "calibrated": {**self.calibrated, "bins": self.calibrated_table}}


def _calibration(r: Reliability) -> list[str]:
    if r.method is None:
        text = ("Scores are the booster's raw scores (`model.calibration: none`)"
                + (", not probabilities: `scale_pos_weight` shifts them." if r.reweighted else "."))
        rows = [("raw", r.raw, r.raw_table)]
    else:
        text = (f"Scores are calibrated probabilities: {r.method}, fit on the validation window's raw scores. "
                "The threshold and the review band are on the calibrated scale; reason codes stay in raw log-odds.")
        rows = [("raw (before)", r.raw, r.raw_table), ("calibrated (after)", r.calibrated, r.calibrated_table)]
    lines = [f"## {CALIBRATION_HEADING}", "", text, "",
             "| scores | expected calibration error | Brier |", "|---|---|---|",
             *[f"| {name} | {_fmt(m.get('ece'))} | {_fmt(m.get('brier'))} |" for name, m, _ in rows], "",
             "Reliability (equal-width score bins: events, mean score, observed positive rate):", "",
             "| bin | " + " | ".join(f"{name.split()[0]}: {k}" for name, _, _ in rows
                                   for k in ("events", "mean score", "positive rate")) + " |",
             "|---" * (1 + 3 * len(rows)) + "|"]
    for lo, hi in sorted({(b["lo"], b["hi"]) for _, _, table in rows for b in table}):
        cells = []
        for _, _, table in rows:
            b = next((b for b in table if b["lo"] == lo), None)
            cells += [f"{b['n']:,}", f"{b['mean_score']:.4f}", f"{b['positive_rate']:.4f}"] if b else ["0", "", ""]
        close = "]" if hi >= 1 else ")"
        lines.append(f"| [{lo:.2f}, {hi:.2f}{close} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _calibration_limit(r: Reliability | None) -> list[str]:
    if r is not None and r.method is not None:
        return ["- The calibration was fit on the validation window only: when the positive rate moves, scores "
                "drift off probabilities until the next training (see the expected calibration error above)."]
    if r is not None and not r.reweighted:
        return []
    return ["- Scores are not calibrated probabilities when `scale_pos_weight` is set (see the Brier score and "
            "reliability table); use the threshold, not the raw score, for decisions."]


def card_summary(*, name: str, version: int, run_date, dataset: str, metrics: dict, baseline: dict,
                 threshold: float, decisions: dict | None, contract: "CardContext", card_path: str) -> str:
    """A few lines from the model card: MLflow's run and model-version description."""
    names = contract.decisions or {"positive": "positive", "review": "review"}
    lines = [f"**{name} v{version}**, trained {run_date} on `{dataset}`. Test window: PR-AUC "
             f"{_fmt(metrics.get('pr_auc'))} (logistic baseline {_fmt(baseline.get('pr_auc'))}), ROC-AUC "
             f"{_fmt(metrics.get('roc_auc'))}, recall {_fmt(metrics.get('recall'))}, precision "
             f"{_fmt(metrics.get('precision'))} at the threshold {threshold:.4g}."]
    if decisions:
        lines.append(f"Expected decisions: `{names['positive']}` {decisions['positive_rate']:.2%} of events, "
                     f"`{names['review']}` {decisions['review_rate']:.2%}.")
    lines.append(f"Full model card: `{card_path}`.")
    return "\n\n".join(lines)


def intended_use(dataset: str, contract: "CardContext") -> str:
    """The card's intended-use paragraph: MLflow's registered-model description."""
    return "\n".join(_intended_use(dataset, contract)[1:])
