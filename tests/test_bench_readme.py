"""The benchmark table in bench/README.md is generated from bench/results/*.json (bench/report.py)."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


def test_the_benchmark_table_is_current():
    report = _report()
    readme = (REPO / "bench" / "README.md").read_text()
    assert report.render(readme, report.results()) == readme, "run `python bench/report.py` and commit bench/README.md"


def test_a_second_floor_is_its_own_row_with_its_own_verdict():
    report = _report()
    drift = {"bench": "drift", "rows": 2_000_000, "ratio": 10.8, "goal": 1.0, "higher_is_better": True,
             "floor": "Evidently", "ratio_means": "speed-up",
             "also": [{"name": "numpy/scipy", "ratio": 0.8, "goal": 1.0, "floor": "a numpy/scipy script"}]}
    first, second = report.table([drift]).splitlines()[2:]
    assert first.startswith("| `drift` | 2,000,000 | 10.8 | ≥ 1 | yes |") and first.endswith("| Evidently |")
    assert second.startswith("| `drift` vs numpy/scipy | 2,000,000 | 0.8 | ≥ 1 | **no** |")
    assert second.endswith("| a numpy/scipy script |")
