"""Regenerate the results table in bench/README.md from bench/results/*.json: ``python bench/report.py``.

Every results file has ``bench``, ``ratio`` (batchml against the floor measured in the same run), ``goal``,
``higher_is_better``, ``rows`` and ``floor`` (what the floor is), and says what the ratio means in ``unit``
or ``ratio_means`` (bench/common.py). A result measured against a second floor in the same run lists it
under ``also`` (``name``, ``ratio``, ``goal``, ``floor``, ``ratio_means``): one more row. A test keeps the
README's table current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
START, END = "<!-- results:start (python bench/report.py) -->", "<!-- results:end -->"


def results(folder: Path = HERE / "results") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def table(rows: list[dict]) -> str:
    lines = ["| benchmark | rows | ratio | goal | met | ratio means | against (the floor) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, figure in [(f"`{r['bench']}`", r)] + [(f"`{r['bench']}` vs {a['name']}", {**r, **a})
                                                        for a in r.get("also", [])]:
            lines.append(f"| {name} | {r['rows']:,} | {figure['ratio']:g}{_noisy(r)} | {_goal(figure)} | "
                         f"{_met(figure)} | {figure.get('ratio_means') or figure.get('unit') or ''} | "
                         f"{figure['floor']} |")
    return "\n".join(lines)


def _noisy(r: dict) -> str:
    """A run on a busy machine (``--force``) says so next to its ratio, with the load it saw."""
    if not r.get("noisy"):
        return ""
    return f" (noisy: load {r['load_average']['before']:g})"


def _goal(r: dict) -> str:
    if r["goal"] is None:
        return "none"
    return f"{'≥' if r['higher_is_better'] else '≤'} {r['goal']:g}"


def _met(r: dict) -> str:
    if r["goal"] is None:
        return "-"
    ok = r["ratio"] >= r["goal"] if r["higher_is_better"] else r["ratio"] <= r["goal"]
    return "yes" if ok else "**no**"


def render(readme: str, rows: list[dict]) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(rows)}\n{END}{tail}"


def main() -> int:
    readme = HERE / "README.md"
    readme.write_text(render(readme.read_text(), results()))
    print(f"{readme}: {len(results())} result(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
