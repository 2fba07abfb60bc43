"""Run dates as time: the one place a run date becomes UTC instants (docs/features.md, "Run dates and time zones").

A dataset's ``timezone:`` (default UTC) defines its business day: run date ``D`` is the local day
``[D 00:00, D+1 00:00)`` in that zone, which is 23 or 25 hours long on a DST change. Storage stays UTC:
event times are UTC instants, and window lengths are durations on those instants (24h is 86,400 s, even
across a DST change). Only which events belong to ``D``, and where a run date starts and ends, depend on
the zone.

``known_since`` (on the events feed) says from which run date an event row may be used by the features:
``ingest_date`` (default, strict: a build of ``D`` sees the rows ingested by ``D``) or ``event_time`` (a
bulk history load declares its rows known at their event time: a build sees every row ingested so far,
the windows still take only events strictly before each event's time).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

UTC_NAME = "UTC"
KnownSince = Literal["ingest_date", "event_time"]


def day_bounds(day: dt.date, timezone: str = UTC_NAME) -> tuple[dt.datetime, dt.datetime]:
    """Run date ``day`` in ``timezone`` as UTC instants ``[start, end)``: local midnight to local midnight."""
    zone = ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def local_date(instant: dt.datetime, timezone: str = UTC_NAME) -> dt.date:
    """The run date an (aware) instant belongs to."""
    if instant.tzinfo is None:
        raise ValueError(f"{instant} has no time zone: event times are UTC instants")
    return instant.astimezone(ZoneInfo(timezone)).date()


def utc_days(day: dt.date, timezone: str = UTC_NAME) -> list[dt.date]:
    """The UTC days that run date ``day`` overlaps (one for UTC, two for any other offset)."""
    start, end = day_bounds(day, timezone)
    last = (end - dt.timedelta(microseconds=1)).date()
    return [start.date() + dt.timedelta(days=i) for i in range((last - start.date()).days + 1)]


@dataclass(frozen=True)
class RunCalendar:
    """A dataset's run-date rules: its business ``timezone`` and the events' ``known_since`` rule."""

    timezone: str = UTC_NAME
    known_since: KnownSince = "ingest_date"

    def bounds(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        return day_bounds(day, self.timezone)

    def bounds_us(self, day: dt.date) -> tuple[int, int]:
        """``bounds`` as epoch microseconds."""
        start, end = self.bounds(day)
        return _us(start), _us(end)

    def utc_days(self, day: dt.date) -> list[dt.date]:
        return utc_days(day, self.timezone)

    def events_known(self, day: dt.date) -> dt.date:
        """The last ingest date whose event rows a build of ``day`` may read: ``day`` itself under the strict
        rule; every ingest date under ``event_time`` (the windows bound the events by time instead)."""
        return day if self.known_since == "ingest_date" else dt.date.max


UTC_CALENDAR = RunCalendar()


def _us(instant: dt.datetime) -> int:
    delta = instant - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
