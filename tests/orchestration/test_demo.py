"""``make demo``'s own logic (the run itself is ``make demo``): the warm-up arrives as one historical load."""

from __future__ import annotations

import datetime as dt

from batchml.demo import DemoOptions, generate
from batchml.orchestration.demo import bundle_history
from tests.conftest import make_config


def test_the_warm_up_days_arrive_as_one_load_on_their_last_day(base_config, tmp_path):
    config = make_config(base_config, tmp_path)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(4)]
    generate(config.storage.landing_uri, DemoOptions(start=days[0], days=len(days), rows_per_day=1000))
    landing = tmp_path / "landing"
    before = {p.relative_to(landing): p.read_bytes() for p in landing.rglob("*") if p.is_file()}
    early = {str(d) for d in days[:2]}

    moved = bundle_history(config, days[:3])

    after = {p.relative_to(landing): p.read_bytes() for p in landing.rglob("*") if p.is_file()}
    assert moved == sum(1 for path in before if path.parent.name in early) > 0
    expected = {(path.parent.parent / str(days[2]) / path.name if path.parent.name in early else path): data
                for path, data in before.items()}
    assert after == expected  # the early days' files sit in the last warm-up day's folder, unchanged
    assert not any((landing / feed / day).exists() for feed in ("transactions", "chargebacks") for day in early)
