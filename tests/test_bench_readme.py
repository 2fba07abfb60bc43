"""bench/README.md's results table is what bench/report.py makes of bench/results/*.json."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def test_the_benchmark_table_is_current():
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    readme = (REPO / "bench" / "README.md").read_text()
    rows = report.results()
    assert rows and readme == report.render(readme, rows), "run `python bench/report.py` and commit bench/README.md"
    for r in rows:
        assert f"| `{r['bench']}` |" in readme
