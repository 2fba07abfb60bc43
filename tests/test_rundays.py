"""Run dates as UTC instants: the one helper every day boundary goes through."""

from __future__ import annotations

import datetime as dt

import pytest

from batchml.rundays import RunCalendar, day_bounds, local_date, utc_days

UTC = dt.timezone.utc


def test_a_run_date_is_its_local_day_23_or_25_hours_long_on_a_dst_change():
    assert day_bounds(dt.date(2024, 3, 31)) == (dt.datetime(2024, 3, 31, tzinfo=UTC),
                                                dt.datetime(2024, 4, 1, tzinfo=UTC))
    start, end = day_bounds(dt.date(2024, 3, 31), "Europe/Berlin")  # clocks go forward at 02:00
    assert (start, end - start) == (dt.datetime(2024, 3, 30, 23, tzinfo=UTC), dt.timedelta(hours=23))
    start, end = day_bounds(dt.date(2024, 10, 27), "Europe/Berlin")  # and back at 03:00
    assert (start, end - start) == (dt.datetime(2024, 10, 26, 22, tzinfo=UTC), dt.timedelta(hours=25))
    start, end = day_bounds(dt.date(2024, 3, 10), "America/New_York")
    assert (start, end) == (dt.datetime(2024, 3, 10, 5, tzinfo=UTC), dt.datetime(2024, 3, 11, 4, tzinfo=UTC))


def test_23_30_local_lands_on_its_local_date_the_next_or_previous_utc_day():
    assert local_date(dt.datetime(2024, 3, 11, 3, 30, tzinfo=UTC), "America/New_York") == dt.date(2024, 3, 10)
    assert local_date(dt.datetime(2024, 5, 8, 22, 30, tzinfo=UTC), "Europe/Berlin") == dt.date(2024, 5, 9)  # 00:30
    assert local_date(dt.datetime(2024, 5, 8, 21, 30, tzinfo=UTC), "Europe/Berlin") == dt.date(2024, 5, 8)  # 23:30
    with pytest.raises(ValueError, match="no time zone"):
        local_date(dt.datetime(2024, 5, 8, 21, 30), "Europe/Berlin")


def test_the_utc_days_a_run_date_overlaps_and_what_a_build_may_read():
    assert utc_days(dt.date(2024, 5, 8)) == [dt.date(2024, 5, 8)]
    assert utc_days(dt.date(2024, 5, 8), "Europe/Berlin") == [dt.date(2024, 5, 7), dt.date(2024, 5, 8)]
    assert utc_days(dt.date(2024, 5, 8), "America/New_York") == [dt.date(2024, 5, 8), dt.date(2024, 5, 9)]
    assert RunCalendar().events_known(dt.date(2024, 5, 8)) == dt.date(2024, 5, 8)
    assert RunCalendar(known_since="event_time").events_known(dt.date(2024, 5, 8)) == dt.date.max
    assert RunCalendar("Europe/Berlin").bounds_us(dt.date(2024, 5, 8))[0] == int(
        dt.datetime(2024, 5, 7, 22, tzinfo=UTC).timestamp()) * 1_000_000
