"""Demo card-transaction feed: daily transaction files plus late chargeback (fraud label) files
in a landing zone.

Layout under ``root``::

    transactions/{D}/transactions_{D}_{NNN}.{ext}   NNN = chunk 000, 001, ... (UTC event date D)
    transactions/{D}/transactions_{D}_999.{ext}     injected unreadable file (bad_file_rate)
    chargebacks/{D}/chargebacks_{D}.{ext}           D = UTC delivery date of reported_at

Output is a pure function of the options: entities come from ``(seed, block)``, each day's
chunks from ``(seed, day ordinal, chunk)``, corruption and bad files from their own streams, so
turning corruption on does not change the clean rows. Memory is bounded by one chunk
(``CHUNK_ROWS``) plus the chargebacks not yet delivered (~1% of rows).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import posixpath
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow.fs as pafs

from . import entities as E
from . import simulate, writers

log = logging.getLogger("batchml.demo")

CHUNK_ROWS = 500_000
WEEKDAY_FACTOR = np.array([0.93, 0.95, 0.97, 1.00, 1.12, 1.13, 0.90])
WEEKDAY_FACTOR = WEEKDAY_FACTOR / WEEKDAY_FACTOR.mean()
DAILY_NOISE = 0.02
_DAY_TAG, _BAD_ROWS_TAG, _COUNT_TAG, _BAD_FILE_TAG = 3, 4, 5, 6
FORMATS = ("csv", "jsonl", "parquet")


@dataclass(frozen=True)
class DemoOptions:
    start: dt.date
    days: int
    rows_per_day: int = 20_000
    seed: int = 42
    fmt: Literal["csv", "jsonl", "parquet"] = "csv"
    drift_from: dt.date | None = None  # covariate drift from this date on
    concept_drift_from: dt.date | None = None  # the fraud pattern changes from this date on
    bad_rate: float = 0.0  # fraction of rows corrupted (CSV/JSONL all kinds; Parquet: required nulls)
    bad_file_rate: float = 0.0  # probability per day of an extra unreadable file

    def __post_init__(self) -> None:
        for name in ("start", "drift_from", "concept_drift_from"):
            value = getattr(self, name)
            if (value is not None or name == "start") and (
                not isinstance(value, dt.date) or isinstance(value, dt.datetime)
            ):
                raise ValueError(f"{name} must be a datetime.date, got {value!r}")
        for name, low in (("days", 1), ("rows_per_day", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        for name in ("bad_rate", "bad_file_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")

    @property
    def end(self) -> dt.date:
        """Last generated day (inclusive)."""
        return self.start + dt.timedelta(days=self.days - 1)


@dataclass
class DemoSummary:
    transactions: int = 0
    fraud: int = 0
    chargebacks: int = 0
    bad_rows: dict[str, int] = field(default_factory=dict)
    bad_files: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


def population_sizes(rows_per_day: int) -> tuple[int, int]:
    """(customers, merchants): about one transaction per customer and day."""
    return max(1_000, rows_per_day), max(500, rows_per_day // 20)


def daily_rows(options: DemoOptions, ordinal: int) -> int:
    """Rows on a day: the mean times a weekday factor and a little deterministic noise."""
    noise = np.random.default_rng([options.seed, _COUNT_TAG, ordinal]).normal(0.0, DAILY_NOISE)
    return max(1, round(options.rows_per_day * WEEKDAY_FACTOR[(ordinal - 1) % 7] * (1.0 + noise)))


def chunk_sizes(n: int, max_rows: int | None = None) -> list[int]:
    k = math.ceil(n / (max_rows or CHUNK_ROWS))
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


class _Landing:
    """Writes files below ``root`` and records them in the summary."""

    def __init__(self, root: str, filesystem: pafs.FileSystem | None, fmt: str, summary: DemoSummary):
        if filesystem is None:
            if "://" in root:
                filesystem, root = pafs.FileSystem.from_uri(root)
            else:
                filesystem, root = pafs.LocalFileSystem(), os.path.abspath(root)
        self.fs, self.root, self.ext = filesystem, root.rstrip("/"), writers.EXTENSIONS[fmt]
        self.summary, self._dirs = summary, set()

    def path(self, kind: str, date: str, suffix: str) -> str:
        return f"{self.root}/{kind}/{date}/{kind}_{date}{suffix}.{self.ext}"

    def write(self, path: str, data: bytes) -> None:
        folder = posixpath.dirname(path)
        if folder not in self._dirs:
            self.fs.create_dir(folder, recursive=True)
            self._dirs.add(folder)
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        self.summary.files.append(path)


def _chunk_bytes(options: DemoOptions, day: simulate.Day, rows: dict, first: int, chunk_no: int):
    cols = writers.transaction_arrays(rows, day.ordinal, first)
    rng = np.random.default_rng([options.seed, _BAD_ROWS_TAG, day.ordinal, chunk_no])
    if options.fmt == "parquet":
        return writers.to_parquet(cols, day.ordinal, rng, options.bad_rate)
    offset = E.utc_offset_minutes(rows["country"], day.start_s + rows["sod"], day.year)
    to_text = writers.to_csv if options.fmt == "csv" else writers.to_jsonl
    return to_text(cols, day.ordinal, offset, rng, options.bad_rate)


def _fraud_labels(day: simulate.Day, rows: dict, first: int) -> dict[str, np.ndarray]:
    idx = np.flatnonzero(rows["mode"] >= 0)
    return {
        "reported_s": day.start_s + rows["sod"][idx] + rows["delay"][idx],
        "tx_ordinal": np.full(idx.size, day.ordinal, np.int64),
        "tx_index": (first + idx).astype(np.int64),
        "mode": rows["mode"][idx],
        "amount": rows["amount"][idx],
    }


def _deliver(landing: _Landing, pending: dict[int, list[dict]], up_to: int | None, fmt: str) -> None:
    """Write chargeback files for delivery days <= ``up_to`` (all if None)."""
    for ordinal in sorted(o for o in pending if up_to is None or o <= up_to):
        parts = pending.pop(ordinal)
        cb = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if len(cb["reported_s"]):
            date = dt.date.fromordinal(ordinal).isoformat()
            landing.write(landing.path("chargebacks", date, ""), writers.chargebacks(cb, fmt))
            landing.summary.chargebacks += len(cb["reported_s"])


def generate(root: str, options: DemoOptions, filesystem: pafs.FileSystem | None = None) -> DemoSummary:
    """Write the demo feed below ``root`` and return what was written."""
    t0 = time.perf_counter()
    kinds = writers.PARQUET_KINDS if options.fmt == "parquet" else writers.TEXT_KINDS
    summary = DemoSummary(bad_rows={k: 0 for k in kinds})
    landing = _Landing(root, filesystem, options.fmt, summary)
    n_customers, n_merchants = population_sizes(options.rows_per_day)
    customers = E.build_customers(options.seed, n_customers)
    merchants = E.build_merchants(options.seed, n_merchants)
    drift = options.drift_from.toordinal() if options.drift_from else None
    concept = options.concept_drift_from.toordinal() if options.concept_drift_from else None
    pending: dict[int, list[dict]] = {}
    for ordinal in range(options.start.toordinal(), options.start.toordinal() + options.days):
        t_day, date, fraud_rows = time.perf_counter(), dt.date.fromordinal(ordinal).isoformat(), 0
        day = simulate.Day(
            ordinal,
            covariate_drift=drift is not None and ordinal >= drift,
            concept_drift=concept is not None and ordinal >= concept,
            customers=customers,
            merchants=merchants,
        )
        n_day, first, data = daily_rows(options, ordinal), 0, b""
        for chunk_no, n in enumerate(chunk_sizes(n_day)):
            rows = simulate.chunk(np.random.default_rng([options.seed, _DAY_TAG, ordinal, chunk_no]), day, n)
            data, counts = _chunk_bytes(options, day, rows, first, chunk_no)
            landing.write(landing.path("transactions", date, f"_{chunk_no:03d}"), data)
            for kind, count in counts.items():
                summary.bad_rows[kind] += count
            for delivery, part in _by_delivery(_fraud_labels(day, rows, first)):
                pending.setdefault(delivery, []).append(part)
                fraud_rows += len(part["reported_s"])
            first += n
            del rows
        bad_rng = np.random.default_rng([options.seed, _BAD_FILE_TAG, ordinal])
        if bad_rng.random() < options.bad_file_rate:
            path = landing.path("transactions", date, "_999")
            landing.write(path, writers.bad_file(bad_rng, options.fmt, data))
            summary.bad_files.append(path)
        _deliver(landing, pending, ordinal + 1, options.fmt)  # later days deliver >= ordinal + 2
        summary.transactions += n_day
        summary.fraud += fraud_rows
        seconds = time.perf_counter() - t_day
        log.info(
            "demo day %s: %d rows, %d fraud, %d rows total, %.0f rows/s",
            date, n_day, fraud_rows, summary.transactions, n_day / max(seconds, 1e-9),
        )  # fmt: skip
    _deliver(landing, pending, None, options.fmt)
    summary.seconds = time.perf_counter() - t0
    log.info(
        "demo done: %d transactions (%d fraud), %d chargebacks, %d files in %.1f s",
        summary.transactions, summary.fraud, summary.chargebacks, len(summary.files), summary.seconds,
    )  # fmt: skip
    return summary


def _by_delivery(labels: dict[str, np.ndarray]):
    delivery = labels["reported_s"] // 86400 + E.EPOCH_ORDINAL
    for ordinal in np.unique(delivery).tolist():
        sel = delivery == ordinal
        yield ordinal, {k: v[sel] for k, v in labels.items()}
