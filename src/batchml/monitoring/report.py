"""The monitoring report: one self-contained HTML page with inline SVG plots (no scripts, no CDN).

Plots: PSI per monitored column over run dates (with the alert line), the score distribution
against the reference on reference-decile bins, and realized performance per scoring date
(filled markers: matured labels).
"""

from __future__ import annotations

import html
from collections import defaultdict

W, H, PAD = 640, 240, 40
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def render(outcome, history: list[dict], spec) -> str:
    verdict = outcome.verdict
    status = "ALERT" if outcome.reasons else "OK"
    reasons = "".join(f"<li>{html.escape(_reason(r))}</li>" for r in outcome.reasons) or "<li>none</li>"
    score = next((d for d in outcome.drift if d.column == "score"), None)
    rows = "".join(
        f"<tr><td>{html.escape(d.column)}</td><td>{d.test}</td><td>{d.statistic:.4g}</td><td>{d.p_value:.3g}</td>"
        f"<td>{d.psi:.4f}</td><td>{d.reference_rows}</td><td>{d.batch_rows}</td></tr>" for d in outcome.drift)
    perf = "".join(
        f"<tr><td>{p.scoring_date}</td><td>{p.age_days}</td><td>{'yes' if p.matured else 'no'}</td><td>{p.rows}</td>"
        f"<td>{p.positives}</td><td>{_f(p.precision)}</td><td>{_f(p.recall)}</td><td>{_f(p.f1)}</td>"
        f"<td>{_f(p.pr_auc)}</td><td>{_pct(p.positive_decision_rate)}</td><td>{_pct(p.review_rate)}</td>"
        f"<td>{_pct(p.overflow_rate)}</td></tr>" for p in outcome.performance)
    verdict_text = (f"{verdict.metric} on {len(verdict.dates)} matured dates: {_f(verdict.value)} vs champion "
                    f"{_f(verdict.baseline)} (drop {_f(verdict.relative_drop)}, p {_f(verdict.p_value)}, "
                    f"{verdict.positives} positives) - {verdict.status}")
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>batchml monitoring {html.escape(outcome.dataset)} {outcome.run_date}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}.ALERT{{color:#b00}}.OK{{color:#070}}</style></head><body>
<h1>Monitoring: {html.escape(outcome.dataset)}, run date {outcome.run_date}</h1>
<p>Champion version {outcome.model_version}. Verdict: <b class="{status}">{status}</b></p><ul>{reasons}</ul>
<p>Performance: {html.escape(verdict_text)}</p>
<h2>PSI per column over time (alert above {spec.psi_alert})</h2>{_psi_plot(history, spec.psi_alert)}
<h2>Score distribution against the reference (reference-decile bins)</h2>{_bars(score)}
<h2>Realized performance per scoring date (filled: labels matured)</h2>{_perf_plot(outcome.performance)}
<h2>Drift, this run</h2><table><tr><th>column</th><th>test</th><th>statistic</th><th>p</th><th>PSI</th>
<th>reference rows</th><th>batch rows</th></tr>{rows}</table>
<h2>Performance, this run</h2><table><tr><th>scoring date</th><th>age (days)</th><th>matured</th><th>rows</th>
<th>positives</th><th>precision</th><th>recall</th><th>F1</th><th>PR-AUC</th><th>positive decisions</th>
<th>review</th><th>review overflow</th></tr>{perf}</table>
</body></html>"""


def _reason(r: dict) -> str:
    if r["kind"] == "performance":
        return f"performance: {r['metric']} {_f(r['value'])} vs {_f(r['baseline'])} (drop {_f(r['relative_drop'])})"
    return f"{r['kind']}: {r['column']} PSI {r['psi']:.3f} > {r['threshold']}"


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _pct(x) -> str:
    return "-" if x is None else f"{x:.2%}"


def _svg(body: str, y_max: float, x_labels: list[str]) -> str:
    ticks = "".join(f'<text x="{PAD - 4}" y="{_y(v, y_max) + 4:.1f}" font-size="10" text-anchor="end">{v:.2f}</text>'
                    for v in (0, y_max / 2, y_max))
    labels = ""
    if x_labels:
        for i in sorted({0, len(x_labels) // 2, len(x_labels) - 1}):
            labels += (f'<text x="{_x(i, len(x_labels)):.1f}" y="{H - 8}" font-size="10" '
                       f'text-anchor="middle">{html.escape(x_labels[i])}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">'
            f'<rect width="{W}" height="{H}" fill="white"/><line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" '
            f'y2="{H - PAD}" stroke="#444"/><line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>'
            f"{ticks}{labels}{body}</svg>")


def _x(i: int, n: int) -> float:
    return PAD + (W - PAD - 20) * (i / max(n - 1, 1))


def _y(v: float, y_max: float) -> float:
    return H - PAD - (H - PAD - 10) * min(v / y_max, 1.0)


def _psi_plot(history: list[dict], alert: float) -> str:
    dates = sorted({str(r["run_date"]) for r in history})
    series: dict[str, dict[str, float]] = defaultdict(dict)
    for r in history:
        series[r["column"]][str(r["run_date"])] = r["psi"]
    y_max = max([alert * 1.5] + [r["psi"] for r in history])
    body = (f'<line x1="{PAD}" x2="{W - 10}" y1="{_y(alert, y_max):.1f}" y2="{_y(alert, y_max):.1f}" '
            'stroke="#b00" stroke-dasharray="4"/>')
    for k, (column, values) in enumerate(sorted(series.items())):
        pts = " ".join(f"{_x(dates.index(d), len(dates)):.1f},{_y(v, y_max):.1f}" for d, v in sorted(values.items()))
        color = COLORS[k % len(COLORS)]
        body += (f'<polyline points="{pts}" fill="none" stroke="{color}"><title>{html.escape(column)}</title>'
                 "</polyline>")
        last = max(values)
        body += (f'<circle cx="{_x(dates.index(last), len(dates)):.1f}" cy="{_y(values[last], y_max):.1f}" r="2" '
                 f'fill="{color}"><title>{html.escape(column)}: {values[last]:.3f}</title></circle>')
    return _svg(body, y_max, dates)


def _bars(score) -> str:
    if score is None or not score.histogram or not score.batch_rows:
        return "<p>no scores for this run date</p>"
    ref_n = sum(r for r, _ in score.histogram) or 1
    cur_n = sum(c for _, c in score.histogram) or 1
    shares = [(r / ref_n, c / cur_n) for r, c in score.histogram]
    y_max = max(max(shares, key=max)) * 1.1 or 1.0
    slot = (W - PAD - 20) / len(shares)
    body = ""
    for i, (r, c) in enumerate(shares):
        x = PAD + i * slot
        for j, (v, color) in enumerate(((r, "#999"), (c, "#1f77b4"))):
            body += (f'<rect x="{x + 2 + j * slot / 2 - j * 2:.1f}" y="{_y(v, y_max):.1f}" width="{slot / 2 - 3:.1f}" '
                     f'height="{H - PAD - _y(v, y_max):.1f}" fill="{color}"><title>bin {i + 1}: {v:.3f}</title></rect>')
    body += '<text x="60" y="20" font-size="11" fill="#999">reference</text>'
    body += '<text x="140" y="20" font-size="11" fill="#1f77b4">this batch</text>'
    return _svg(body, y_max, [f"bin {i + 1}" for i in range(len(shares))])


def _perf_plot(dates: list) -> str:
    if not dates:
        return "<p>no scored dates with labels yet</p>"
    labels = [d.scoring_date.isoformat() for d in dates]
    body = ""
    for k, metric in enumerate(("recall", "precision", "pr_auc")):
        color = COLORS[k]
        pts = [(i, getattr(d, metric), d.matured) for i, d in enumerate(dates) if getattr(d, metric) is not None]
        body += (f'<polyline fill="none" stroke="{color}" points="'
                 + " ".join(f"{_x(i, len(dates)):.1f},{_y(v, 1.0):.1f}" for i, v, _ in pts) + '"/>')
        body += "".join(f'<circle cx="{_x(i, len(dates)):.1f}" cy="{_y(v, 1.0):.1f}" r="2.5" stroke="{color}" '
                        f'fill="{color if m else "white"}"><title>{metric} {labels[i]}: {v:.3f}</title></circle>'
                        for i, v, m in pts)
        body += f'<text x="{PAD + 10 + 80 * k}" y="20" font-size="11" fill="{color}">{metric}</text>'
    return _svg(body, 1.0, labels)
