"""A tiny generator for the ``flight_delays`` dataset: flight schedules (JSON Lines) and, a day later,
one outcome row per flight (CSV, local Berlin time without an offset).

Disruptions grow with congestion: the number of flights that left the same airport in the three
hours before, which is exactly the ``origin_count_3h`` feature. Planted: one flight whose origin is
its destination (the gate quarantines it), one flight whose outcome never arrives (it has no
label, so training leaves it out) and, on the last day, flights of a carrier never seen before (a
category unseen at training: scored as a missing value and counted).

Flights are scheduled in Berlin local time (the dataset's ``timezone:``): each day's file holds the flights
of that local day. Planted on the fourth day: one flight at 23:30 and one at 00:30 local (``night``); the
latter departs on the previous UTC day (22:30 UTC) and still belongs to its local run date.

A reference feed, hourly weather per airport (``weather/<day>/``, the day's observations delivered that
day), drives part of the risk: wind at the origin above 15 kt. One observation of the second-to-last
day is delivered a day late (``late_weather``): that day's flights must not see it.

Onboarding: with ``history_days=K`` the K days before ``START`` are the dataset's history, delivered in
ONE bulk load on ``START`` (``<feed>/<START>/history-*``): their flights, their outcomes and their weather,
beside ``START``'s own daily files. Daily deliveries follow. The history has its own random streams, so
the daily days are the same with or without it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

UTC, BERLIN = dt.timezone.utc, ZoneInfo("Europe/Berlin")
START = dt.date(2024, 5, 6)
AIRPORTS = {"FRA": True, "MUC": True, "BER": False, "HAM": False, "CGN": False, "STR": False}  # hub?
CARRIERS = {"LH": 0.45, "EW": 0.25, "DE": 0.2, "XQ": 0.1}
BANKS = (7, 8, 17, 18)  # hub departure banks (Berlin hours)


@dataclass
class Generated:
    flights: dict[dt.date, list[dict]] = field(default_factory=dict)  # by scheduled date
    outcomes: dict[str, dict] = field(default_factory=dict)  # by flight id, with the truth
    same_airport: str = ""  # quarantined by the gate
    no_outcome: str = ""  # never labelled
    new_carrier: list[str] = field(default_factory=list)  # last day: carrier NEW, unseen at training
    weather: list[dict] = field(default_factory=list)  # every observation, with the date it was delivered
    late_weather: dict = field(default_factory=dict)  # delivered the day after its own
    night: dict[str, str] = field(default_factory=dict)  # "23:30" / "00:30" local -> flight id (fourth day)
    history: list[dt.date] = field(default_factory=list)  # the days before START, delivered in bulk on START

    def disrupted(self, flight_id: str) -> int:
        o = self.outcomes[flight_id]
        return int(o["status"] == "cancelled" or o["arr_delay_min"] > 15)


def generate(landing: Path, days: int = 6, per_day: int = 500, seed: int = 5, history_days: int = 0) -> Generated:
    rng, history_rng, out = random.Random(seed), random.Random(seed + 2), Generated()
    out.history = [START - dt.timedelta(days=d) for d in range(history_days, 0, -1)]
    out.weather = _weather(random.Random(seed + 3), START - dt.timedelta(days=history_days), history_days,
                           delivered=START) + _weather(random.Random(seed + 1), START, days)
    wind = {(w["airport"], w["valid_from"]): w["wind_kt"] for w in out.weather}
    for d in range(-history_days, days):
        day, r = START + dt.timedelta(days=d), rng if d >= 0 else history_rng
        flights = [_flight(r, day, i) for i in range(per_day)]
        if d == 3:
            for f, (hour, minute) in zip(flights[10:12], ((23, 30), (0, 30))):
                f["scheduled_departure"] = dt.datetime.combine(day, dt.time(hour, minute), BERLIN).astimezone(UTC)
                out.night[f"{hour:02d}:{minute:02d}"] = f["flight_id"]
        out.flights[day] = flights
        for f in flights:
            hour = f["scheduled_departure"].replace(minute=0) - dt.timedelta(hours=1)
            out.outcomes[f["flight_id"]] = _outcome(r, f, _congestion(flights, f), wind[(f["origin"], hour)])
    out.same_airport = out.flights[START + dt.timedelta(days=1)][0]["flight_id"]
    bad = out.flights[START + dt.timedelta(days=1)][0]
    bad["dest"] = bad["origin"]
    out.no_outcome = out.flights[START + dt.timedelta(days=2)][1]["flight_id"]
    del out.outcomes[out.no_outcome]
    for f in out.flights[START + dt.timedelta(days=days - 1)][2:7]:
        f["carrier"] = "NEW"
        out.new_carrier.append(f["flight_id"])
    late = next(w for w in out.weather if w["valid_from"] == dt.datetime.combine(
        START + dt.timedelta(days=days - 2), dt.time(4), UTC) and w["airport"] == "FRA")  # before the 07:00 bank
    late["delivered"] += dt.timedelta(days=1)
    out.late_weather = late
    _write(landing, out)
    return out


def _write(landing: Path, out: Generated) -> None:
    """Each day's files in its own landing folder; the history's in one bulk file per feed, on START."""
    bulk = [f for day in out.history for f in out.flights[day]]
    if bulk:
        name = f"history-{out.history[0]}-{out.history[-1]}"
        _write_jsonl(landing / "flights" / f"{START}" / f"{name}.jsonl", bulk)
        _write_csv(landing / "flight_outcomes" / f"{START}" / f"{name}.csv",
                   [out.outcomes[f["flight_id"]] for f in bulk if f["flight_id"] in out.outcomes])
        _write_csv(landing / "weather" / f"{START}" / f"{name}.csv",
                   [w for w in out.weather if w["valid_from"].date() < START], WEATHER)
    for day, flights in out.flights.items():
        if day in out.history:
            continue
        _write_csv(landing / "weather" / day.isoformat() / f"weather-{day}.csv",
                   [w for w in out.weather if w["delivered"] == day and w["valid_from"].date() >= START], WEATHER)
        _write_jsonl(landing / "flights" / day.isoformat() / f"flights-{day}.jsonl", flights)
        delivered = [out.outcomes[f["flight_id"]] for f in flights if f["flight_id"] in out.outcomes]
        next_day = day + dt.timedelta(days=1)
        _write_csv(landing / "flight_outcomes" / next_day.isoformat() / f"outcomes-{next_day}.csv", delivered)


def _flight(rng: random.Random, day: dt.date, i: int) -> dict:
    origin = rng.choice(list(AIRPORTS))
    hub_bank = AIRPORTS[origin] and rng.random() < 0.6
    hour = rng.choice(BANKS) if hub_bank else rng.randrange(5, 23)
    departure = dt.datetime.combine(day, dt.time(hour, rng.randrange(0, 60, 5)), BERLIN).astimezone(UTC)
    carrier = rng.choices(list(CARRIERS), weights=list(CARRIERS.values()))[0]
    return {"flight_id": f"{carrier}{day:%m%d}{i:04d}", "scheduled_departure": departure,
            "carrier": carrier, "origin": origin, "dest": rng.choice([a for a in AIRPORTS if a != origin]),
            "distance_km": round(rng.uniform(200, 900) if rng.random() < 0.9 else rng.uniform(3000, 9000), 1),
            "seats": rng.choice([150, 180, 220, None])}


def _congestion(flights: list[dict], f: dict) -> int:
    """Flights from the same airport in the 3 hours before (none fly before 05:00: one day is enough)."""
    t = f["scheduled_departure"]
    return sum(1 for o in flights if o["origin"] == f["origin"]
               and t - dt.timedelta(hours=3) <= o["scheduled_departure"] < t)


def _weather(rng: random.Random, first: dt.date, days: int, delivered: dt.date | None = None) -> list[dict]:
    """Hourly observations per airport (a gusty spell now and then), each delivered on its own day (or all on
    ``delivered``: the bulk history)."""
    out = []
    for airport in AIRPORTS:
        wind = 8.0
        for h in range(days * 24):
            at = dt.datetime.combine(first, dt.time(), UTC) + dt.timedelta(hours=h)
            wind = max(0.0, min(45.0, wind + rng.gauss(0, 4) + (8 - wind) * 0.1))
            out.append({"airport": airport, "valid_from": at, "wind_kt": round(wind, 1),
                        "visibility_km": None if rng.random() < 0.05 else round(rng.uniform(2, 10), 1),
                        "delivered": delivered or at.date()})
    return out


def _outcome(rng: random.Random, f: dict, congestion: int, wind_kt: float) -> dict:
    windy = max(0.0, wind_kt - 15)
    p = 1 / (1 + math.exp(-(-3.0 + 0.2 * congestion + 0.5 * (f["carrier"] == "XQ") + 0.15 * windy)))
    cancelled = rng.random() < 0.03
    delay = None if cancelled else (16 + rng.expovariate(1 / 30) if rng.random() < p else rng.uniform(-10, 14))
    duration = dt.timedelta(hours=f["distance_km"] / 750 + 0.5, minutes=delay or 0)
    known = (f["scheduled_departure"] + (dt.timedelta(hours=1) if cancelled else duration)).replace(microsecond=0)
    return {"flight_id": f["flight_id"], "known_at": known, "status": "cancelled" if cancelled else "arrived",
            "arr_delay_min": None if delay is None else round(delay, 1)}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps({**r, "scheduled_departure": r["scheduled_departure"].strftime("%Y-%m-%dT%H:%M:%SZ")})
                    + "\n")


WEATHER = ("airport", "valid_from", "wind_kt", "visibility_km")


def _write_csv(path: Path, rows: list[dict], columns: tuple[str, ...] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        if columns:  # the weather feed: UTC with an offset
            w.writerow(columns)
            for r in rows:
                w.writerow([r["valid_from"].strftime("%Y-%m-%dT%H:%M:%SZ") if c == "valid_from" else
                            "" if r[c] is None else r[c] for c in columns])
            return
        w.writerow(["flight_id", "known_at", "status", "arr_delay_min"])
        for r in rows:  # the ops log writes Berlin wall-clock time, no offset (the contract's naive_timezone)
            local = r["known_at"].astimezone(BERLIN).strftime("%Y-%m-%d %H:%M:%S")
            w.writerow([r["flight_id"], local, r["status"], "" if r["arr_delay_min"] is None else r["arr_delay_min"]])
