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


def test_a_day_s_later_stages_overlap_only_the_next_day_s_gate(monkeypatch):
    """The demo's two threads: gates in date order on the caller's thread; a day's features and
    score start after its own gate, never beside another day's, and a blocked day gets none."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from batchml.orchestration import demo

    events, timed, lock = [], [], threading.Lock()

    def run_day(config, day, stages, spark):
        t0 = time.monotonic()
        with lock:
            events.append(("start", day, tuple(stages), threading.current_thread().name))
        time.sleep(0.2 if stages == demo.GATE_STAGES else 0.4)  # a gate ends inside the other thread's stage
        with lock:
            events.append(("end", day, tuple(stages), threading.current_thread().name))
            timed.append((day, tuple(stages), t0, time.monotonic()))
        return not (stages == demo.GATE_STAGES and day.day == 3)  # day 3's gate stays blocked

    monkeypatch.setattr(demo, "_run_day", run_day)
    days = [dt.date(2024, 1, d) for d in range(1, 6)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="later") as later:
        demo._overlapped(None, None, days, demo.HISTORY_LATER, later, monitored=False)

    gates = [e for e in events if e[2] == demo.GATE_STAGES]
    assert [e[1] for e in gates if e[0] == "start"] == days
    assert {e[3] for e in gates} == {threading.current_thread().name}
    rest = [e for e in events if e[2] == demo.HISTORY_LATER]
    assert [e[1] for e in rest if e[0] == "start"] == [d for d in days if d.day != 3]
    assert all(e[3].startswith("later") for e in rest)
    for day in days:
        if day.day == 3:
            continue
        gate_end = events.index(("end", day, demo.GATE_STAGES, threading.current_thread().name))
        start = next(i for i, e in enumerate(events) if e[:3] == ("start", day, demo.HISTORY_LATER))
        assert gate_end < start
    running = 0
    for kind, _, stages, _ in events:
        if stages == demo.HISTORY_LATER:
            running += 1 if kind == "start" else -1
            assert running <= 1  # never two days' later stages at once
    spans = {(day, stages): (t0, t1) for day, stages, t0, t1 in timed}
    overlapped = [d for d in days[1:] if (d, demo.GATE_STAGES) in spans and (d - dt.timedelta(days=1),
                  demo.HISTORY_LATER) in spans and _overlap(spans[d, demo.GATE_STAGES],
                                                            spans[d - dt.timedelta(days=1), demo.HISTORY_LATER])]
    assert overlapped == [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 5)]


def _overlap(a, b):
    return a[0] < b[1] and b[0] < a[1]
