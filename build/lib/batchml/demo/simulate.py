"""One chunk of one day's card transactions: legitimate behaviour plus injected fraud bursts.

Everything is numpy-vectorised and driven by the ``Generator`` handed in, so a chunk is a pure
function of (seed, day, chunk number, options).

Fraud model
-----------
Fraud arrives as *bursts*: a compromised card makes 1..8 transactions within a few hours, in one
of three modes (card-not-present e-commerce, lost/stolen card at a POS, ATM cash-out). Fraud rows
differ from the victim's own behaviour through interacting signals - amount relative to the
customer's typical amount, a foreign country, an unseen device, night hours, risky categories,
burst velocity - while legitimate rows show each of these signals on their own now and then.
A share of fraud rows ("mimics") look exactly like the customer's normal purchases. Concept
drift swaps the modes for ones that favour domestic, small, day-time purchases in everyday
categories.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from . import entities as E

FRAUD_ROW_RATE = 0.009  # expected share of fraud rows
MIMIC_SHARE = 0.2  # fraud rows indistinguishable from the customer's normal purchases
MAX_BURST = 8
AMOUNT_SIGMA = 0.6
TAIL_SHARE, TAIL_ALPHA = 0.04, 2.0
NEW_DEVICE_RATE = 0.03  # legitimate e-commerce from a device the customer never used
MANUAL_KEY_RATE = 0.02  # legitimate POS transactions keyed in without the card
# covariate drift
DRIFT_LOG_SHIFT = 1.0  # ~1 std of the reference log-amount distribution (std ~1.04)
DRIFT_ECOM_PULL = 0.35
DRIFT_FOREIGN_FACTOR = 2.0
# chargeback delay: log-normal around 11 days, hard-bounded to [1, 45] days
DELAY_MEDIAN_S, DELAY_LOG_SIGMA = 11 * 86400, 0.5
DELAY_MIN_S, DELAY_MAX_S = 1 * 86400, 45 * 86400

# local-hour activity profile (weekday); weekends shift to later mornings and evenings
_HOURS = np.array(
    [0.8, 0.5, 0.35, 0.3, 0.3, 0.5, 1.2, 2.5, 3.8, 4.5, 5.0, 5.5,
     6.5, 6.2, 5.5, 5.2, 5.5, 6.2, 6.8, 6.5, 5.5, 4.2, 2.8, 1.6]
)  # fmt: skip
_WEEKEND = np.ones(24)
_WEEKEND[7:10], _WEEKEND[20:24] = 0.6, 1.25
HOUR_CDF = (E.cdf(_HOURS), E.cdf(_HOURS * _WEEKEND))
NIGHT_CDF = E.cdf(np.r_[np.ones(6), np.zeros(18)])  # 00:00-05:59


@dataclass(frozen=True)
class FraudMode:
    reason: str
    weight: float
    channel: int
    categories: dict[str, float]
    p_foreign: float
    foreign_w: np.ndarray
    log_mult: tuple[float, float]  # amount vs the customer's typical, in log space
    p_night: float
    p_new_device: float
    burst_lambda: float  # burst length is 1 + Poisson(lambda), capped at MAX_BURST


MODES = (
    FraudMode("fraud_card_not_present", 0.65, E.ECOM,
              {"electronics": 0.30, "gift_cards": 0.22, "gaming": 0.18, "travel": 0.10,
               "fashion": 0.10, "retail": 0.06, "entertainment": 0.04},
              0.55, E.FRAUD_DEST_W, (1.1, 0.6), 0.55, 0.85, 1.6),
    FraudMode("fraud_lost_stolen", 0.20, E.POS,
              {"electronics": 0.25, "retail": 0.20, "fashion": 0.15, "grocery": 0.15,
               "fuel": 0.10, "restaurants": 0.05, "health": 0.10},
              0.10, E.TRAVEL_W, (0.8, 0.6), 0.15, 0.0, 1.6),
    FraudMode("fraud_counterfeit", 0.15, E.ATM, {"atm_cash": 1.0},
              0.50, E.FRAUD_DEST_W, (1.3, 0.4), 0.50, 0.0, 1.2),
)  # fmt: skip
MODES_AFTER_CONCEPT_DRIFT = (
    FraudMode("fraud_card_not_present", 0.55, E.ECOM,
              {"grocery": 0.20, "restaurants": 0.15, "health": 0.15, "entertainment": 0.15,
               "utilities": 0.15, "fashion": 0.10, "retail": 0.10},
              0.08, E.ECOM_W, (-0.3, 0.4), 0.05, 0.5, 3.0),
    FraudMode("fraud_lost_stolen", 0.35, E.POS,
              {"grocery": 0.30, "fuel": 0.25, "restaurants": 0.20, "health": 0.15, "retail": 0.10},
              0.05, E.TRAVEL_W, (-0.2, 0.4), 0.05, 0.0, 3.0),
    FraudMode("fraud_counterfeit", 0.10, E.ATM, {"atm_cash": 1.0},
              0.05, E.TRAVEL_W, (0.2, 0.3), 0.05, 0.0, 2.0),
)  # fmt: skip
REASON_CODES = [m.reason for m in MODES]


@dataclass(frozen=True)
class Day:
    ordinal: int
    covariate_drift: bool
    concept_drift: bool
    customers: E.Customers
    merchants: E.Merchants

    @property
    def start_s(self) -> int:
        return (self.ordinal - E.EPOCH_ORDINAL) * 86400

    @property
    def weekend(self) -> bool:
        return (self.ordinal - 1) % 7 >= 5  # date.fromordinal(1) is a Monday

    @property
    def year(self) -> int:
        return dt.date.fromordinal(self.ordinal).year


COLUMNS = ("sod", "customer", "merchant", "category", "amount", "channel", "device_type",
           "device_id", "country", "card_present", "mode")  # fmt: skip


def _local_to_utc_sod(day: Day, local_sod: np.ndarray, home: np.ndarray) -> np.ndarray:
    """Second of the UTC day for a local time of day of the customer's home time zone."""
    offset = E.utc_offset_minutes(home, day.start_s + 43200, day.year)
    return (local_sod - offset * 60) % 86400


def _local_sod(rng: np.random.Generator, hour_cdf: np.ndarray, n: int) -> np.ndarray:
    return E.draw(rng, hour_cdf, n) * 3600 + rng.integers(0, 3600, n)


def _amount(rng, day: Day, cust, category, country, log_mult) -> np.ndarray:
    """Heavy-tailed amount in the currency of ``country``, 2 decimals (ATM: multiples of 10)."""
    n = len(cust)
    log_eur = day.customers.log_typical[cust] + E.CATEGORY_LOG_OFFSET[category] + log_mult
    if day.covariate_drift:
        log_eur = log_eur + DRIFT_LOG_SHIFT
    eur = np.exp(log_eur)
    tail = rng.random(n) < TAIL_SHARE
    eur = np.where(tail, eur * (1.0 + rng.pareto(TAIL_ALPHA, n)), eur)
    local = np.clip(eur, 0.5, 50_000.0) * E.FX_PER_EUR[country]
    atm = category == E.CAT["atm_cash"]
    return np.where(atm, np.maximum(10.0, np.round(local, -1)), np.round(local, 2))


def _devices(rng, day: Day, cust, channel, p_new) -> tuple[np.ndarray, np.ndarray]:
    """(device_type, device_id) per row, -1 where there is none (POS / ATM)."""
    n = len(cust)
    c = day.customers
    k = (rng.random(n) * c.n_devices[cust]).astype(np.int64)
    dev_id, dev_type = c.device_ids[cust, k], c.device_types[cust, k].astype(np.int8)
    new = rng.random(n) < p_new
    dev_id = np.where(new, rng.integers(0, E.DEVICE_ID_SPACE, n), dev_id)
    dev_type = np.where(new, E.draw(rng, E.cdf(E.DEVICE_TYPE_W), n), dev_type).astype(np.int8)
    ecom = channel == E.ECOM
    return np.where(ecom, dev_type, -1).astype(np.int8), np.where(ecom, dev_id, -1)


def legit(rng: np.random.Generator, day: Day, n: int, cust=None, sod=None) -> dict:
    """Ordinary purchases; ``cust``/``sod`` force who and when (used for fraud mimics)."""
    c = day.customers
    if cust is None:
        cust = E.draw(rng, c.activity_cdf, n, ascending=True)  # rows get shuffled by time later
        home = c.home[cust]
        sod = _local_to_utc_sod(day, _local_sod(rng, HOUR_CDF[day.weekend], n), home)
    home = c.home[cust]
    category = E.draw(rng, E.cdf(E.CATEGORY_W), n)
    p_ecom = E.CATEGORY_P_ECOM[category]
    p_foreign_by_channel = np.array([0.03, 0.12, 0.04])
    if day.covariate_drift:
        p_ecom = np.where(p_ecom > 0, p_ecom + DRIFT_ECOM_PULL * (1 - p_ecom), 0.0)
        p_foreign_by_channel = p_foreign_by_channel * DRIFT_FOREIGN_FACTOR
    channel = np.where(rng.random(n) < p_ecom, E.ECOM, E.POS)
    channel = np.where(category == E.CAT["atm_cash"], E.ATM, channel).astype(np.int8)
    foreign = rng.random(n) < p_foreign_by_channel[channel]
    abroad = np.where(
        channel == E.ECOM, E.draw_foreign(rng, E.ECOM_W, home), E.draw_foreign(rng, E.TRAVEL_W, home)
    )
    country = np.where(foreign, abroad, home).astype(np.int16)
    device_type, device_id = _devices(rng, day, cust, channel, NEW_DEVICE_RATE)
    keyed = (channel == E.POS) & (rng.random(n) < MANUAL_KEY_RATE)
    return {
        "sod": sod.astype(np.int64),
        "customer": cust,
        "merchant": day.merchants.pick(country, category, rng.random(n)),
        "category": category.astype(np.int16),
        "amount": _amount(rng, day, cust, category, country, rng.normal(0, AMOUNT_SIGMA, n)),
        "channel": channel,
        "device_type": device_type,
        "device_id": device_id,
        "country": country,
        "card_present": (channel != E.ECOM) & ~keyed,
        "mode": np.full(n, -1, np.int8),
    }


def _fraud_rows(rng: np.random.Generator, day: Day, mode_idx: int, mode: FraudMode, n_events: int) -> dict:
    c = day.customers
    cust_e = E.draw(rng, c.victim_cdf, n_events)
    home_e = c.home[cust_e]
    night = rng.random(n_events) < mode.p_night
    by_night, by_day = _local_sod(rng, NIGHT_CDF, n_events), _local_sod(rng, HOUR_CDF[day.weekend], n_events)
    local = np.where(night, by_night, by_day)
    start_e = _local_to_utc_sod(day, local, home_e)
    foreign_e = rng.random(n_events) < mode.p_foreign
    country_e = np.where(foreign_e, E.draw_foreign(rng, mode.foreign_w, home_e), home_e)
    new_dev_e = rng.random(n_events) < mode.p_new_device
    dev_id_e = rng.integers(0, E.DEVICE_ID_SPACE, n_events)
    dev_type_e = E.draw(rng, E.cdf([0.45, 0.5, 0.05]), n_events).astype(np.int8)
    length = np.minimum(1 + rng.poisson(mode.burst_lambda, n_events), MAX_BURST)

    ev = np.repeat(np.arange(n_events), length)
    n = len(ev)
    first = np.cumsum(length) - length
    gaps = rng.exponential(1200.0, n)
    gaps[first] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first], length)
    cust = cust_e[ev]
    cats = np.array([E.CAT[k] for k in mode.categories])
    category = cats[E.draw(rng, E.cdf(list(mode.categories.values())), n)]
    country = country_e[ev].astype(np.int16)
    channel = np.full(n, mode.channel, np.int8)
    known_type, known_id = _devices(rng, day, cust, channel, 0.0)
    use_new = new_dev_e[ev] & (channel == E.ECOM)
    log_mult = rng.normal(mode.log_mult[0], mode.log_mult[1], n)
    return {
        "sod": np.minimum(start_e[ev] + elapsed.astype(np.int64), 86399),
        "customer": cust,
        "merchant": day.merchants.pick(country, category, rng.random(n)),
        "category": category.astype(np.int16),
        "amount": _amount(rng, day, cust, category, country, log_mult),
        "channel": channel,
        "device_type": np.where(use_new, dev_type_e[ev], known_type).astype(np.int8),
        "device_id": np.where(use_new, dev_id_e[ev], known_id),
        "country": country,
        "card_present": np.full(n, mode.channel != E.ECOM),
        "mode": np.full(n, mode_idx, np.int8),
    }


def fraud(rng: np.random.Generator, day: Day, n_rows: int) -> dict:
    modes = MODES_AFTER_CONCEPT_DRIFT if day.concept_drift else MODES
    mean_len = sum(m.weight * (1 + m.burst_lambda) for m in modes)
    n_events = rng.poisson(n_rows * FRAUD_ROW_RATE / mean_len)
    per_mode = rng.multinomial(n_events, [m.weight for m in modes])
    parts = [_fraud_rows(rng, day, i, m, k) for i, (m, k) in enumerate(zip(modes, per_mode))]
    rows = {col: np.concatenate([p[col] for p in parts]) for col in COLUMNS}
    n = len(rows["sod"])
    mimic = rng.random(n) < MIMIC_SHARE
    normal = legit(rng, day, n, cust=rows["customer"], sod=rows["sod"])
    for col in COLUMNS:
        if col != "mode":
            rows[col] = np.where(mimic, normal[col], rows[col]).astype(rows[col].dtype)
    return rows


def chunk(rng: np.random.Generator, day: Day, n_rows: int) -> dict:
    """``n_rows`` transactions sorted by time, with ``mode`` >= 0 on fraud rows and the
    chargeback delay (seconds) in ``delay``."""
    bad = fraud(rng, day, n_rows)
    keep = min(len(bad["sod"]), n_rows // 10)
    good = legit(rng, day, n_rows - keep)
    rows = {col: np.concatenate([good[col], bad[col][:keep]]) for col in COLUMNS}
    order = np.argsort(rows["sod"], kind="stable")
    rows = {col: v[order] for col, v in rows.items()}
    delay = np.exp(rng.normal(np.log(DELAY_MEDIAN_S), DELAY_LOG_SIGMA, n_rows))
    rows["delay"] = np.clip(np.round(delay), DELAY_MIN_S, DELAY_MAX_S).astype(np.int64)
    rows["home"] = day.customers.home[rows["customer"]]
    rows["tenure"] = np.maximum(
        0, day.customers.tenure_at_reference[rows["customer"]] + (day.ordinal - E.REFERENCE_ORDINAL)
    ).astype(np.int32)
    return rows
