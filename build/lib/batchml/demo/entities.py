"""Reference data (countries, categories, time zones) and the customer/merchant populations.

Populations depend only on the seed and their size, never on the date range: customer ``i``
is generated in a fixed block of ``BLOCK`` customers from ``default_rng([seed, tag, block])``,
so a run starting later (or with more rows per day) sees the same entities.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

BLOCK = 8192
EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
REFERENCE_ORDINAL = dt.date(2024, 1, 1).toordinal()  # customer tenure is anchored here
_CUSTOMER_TAG, _MERCHANT_TAG = 1, 2
NO_DST, EU_DST, US_DST = 0, 1, 2

# code, currency, standard UTC offset (min), DST rule, currency units per EUR, home weight,
# legit travel weight, cross-border e-commerce weight, fraud destination weight
_COUNTRY_ROWS = [
    ("DE", "EUR", 60, EU_DST, 1.00, 0.24, 0.08, 0.10, 0.05),
    ("FR", "EUR", 60, EU_DST, 1.00, 0.15, 0.12, 0.05, 0.04),
    ("GB", "GBP", 0, EU_DST, 0.85, 0.15, 0.08, 0.20, 0.12),
    ("NL", "EUR", 60, EU_DST, 1.00, 0.08, 0.05, 0.15, 0.08),
    ("ES", "EUR", 60, EU_DST, 1.00, 0.09, 0.15, 0.02, 0.04),
    ("IT", "EUR", 60, EU_DST, 1.00, 0.09, 0.12, 0.02, 0.03),
    ("BE", "EUR", 60, EU_DST, 1.00, 0.04, 0.03, 0.02, 0.01),
    ("AT", "EUR", 60, EU_DST, 1.00, 0.03, 0.05, 0.01, 0.01),
    ("IE", "EUR", 0, EU_DST, 1.00, 0.03, 0.03, 0.10, 0.02),
    ("PT", "EUR", 0, EU_DST, 1.00, 0.02, 0.06, 0.01, 0.01),
    ("PL", "PLN", 60, EU_DST, 4.30, 0.04, 0.03, 0.01, 0.08),
    ("CH", "CHF", 60, EU_DST, 0.95, 0.00, 0.06, 0.04, 0.03),
    ("US", "USD", -300, US_DST, 1.08, 0.04, 0.08, 0.20, 0.20),
    ("CA", "CAD", -300, US_DST, 1.47, 0.00, 0.02, 0.02, 0.06),
    ("AE", "AED", 240, NO_DST, 3.97, 0.00, 0.02, 0.01, 0.10),
    ("SG", "SGD", 480, NO_DST, 1.45, 0.00, 0.01, 0.04, 0.08),
    ("BR", "BRL", -180, NO_DST, 5.40, 0.00, 0.01, 0.00, 0.12),
]
COUNTRY_CODES = [r[0] for r in _COUNTRY_ROWS]
N_COUNTRIES = len(_COUNTRY_ROWS)
COUNTRY_PA = pa.array(COUNTRY_CODES)
CURRENCY_PA = pa.array([r[1] for r in _COUNTRY_ROWS])
STD_OFFSET_MIN = np.array([r[2] for r in _COUNTRY_ROWS], dtype=np.int64)
DST_RULE = np.array([r[3] for r in _COUNTRY_ROWS], dtype=np.int8)
FX_PER_EUR = np.array([r[4] for r in _COUNTRY_ROWS])
HOME_W, TRAVEL_W, ECOM_W, FRAUD_DEST_W = (np.array([r[i] for r in _COUNTRY_ROWS]) for i in (5, 6, 7, 8))
# Documented for downstream stages that want amounts in a single currency.
FX_RATES_PER_EUR = {r[1]: r[4] for r in _COUNTRY_ROWS}

# name, popularity, log-amount offset, probability of e-commerce
_CATEGORY_ROWS = [
    ("grocery", 0.22, 0.0, 0.06),
    ("restaurants", 0.14, -0.2, 0.08),
    ("fuel", 0.08, 0.4, 0.0),
    ("retail", 0.10, 0.3, 0.30),
    ("fashion", 0.07, 0.6, 0.45),
    ("electronics", 0.04, 1.5, 0.50),
    ("travel", 0.04, 1.9, 0.70),
    ("entertainment", 0.06, 0.0, 0.40),
    ("health", 0.05, 0.2, 0.15),
    ("utilities", 0.04, 0.9, 0.80),
    ("gift_cards", 0.02, 0.8, 0.55),
    ("gaming", 0.03, -0.2, 0.85),
    ("atm_cash", 0.07, 1.0, 0.0),
]
CATEGORY_NAMES = [r[0] for r in _CATEGORY_ROWS]
CAT = {name: i for i, name in enumerate(CATEGORY_NAMES)}
N_CATEGORIES = len(_CATEGORY_ROWS)
CATEGORY_PA = pa.array(CATEGORY_NAMES)
CATEGORY_W = np.array([r[1] for r in _CATEGORY_ROWS])
CATEGORY_LOG_OFFSET = np.array([r[2] for r in _CATEGORY_ROWS])
CATEGORY_P_ECOM = np.array([r[3] for r in _CATEGORY_ROWS])

POS, ECOM, ATM = 0, 1, 2
CHANNEL_PA = pa.array(["pos", "ecom", "atm"])
DEVICE_TYPE_PA = pa.array(["mobile", "desktop", "tablet"])
DEVICE_TYPE_W = np.array([0.62, 0.30, 0.08])
DEVICE_ID_SPACE = 10**12


def cdf(weights: np.ndarray) -> np.ndarray:
    c = np.cumsum(np.asarray(weights, dtype=np.float64))
    return c / c[-1]


def draw(rng: np.random.Generator, cdf_: np.ndarray, n: int, ascending: bool = False) -> np.ndarray:
    """n indices drawn from a categorical distribution given as a CDF. ``ascending`` returns
    them sorted, which is much faster for large CDFs (cache-friendly search); only use it where
    row order carries no meaning yet."""
    u = rng.random(n)
    if ascending:
        u.sort()
    return np.minimum(np.searchsorted(cdf_, u, side="right"), len(cdf_) - 1)


def draw_foreign(rng: np.random.Generator, weights: np.ndarray, home: np.ndarray) -> np.ndarray:
    """Per-row country drawn from ``weights`` but never equal to the row's home country."""
    c = cdf(weights)
    out = draw(rng, c, len(home))
    for _ in range(20):
        clash = np.flatnonzero(out == home)
        if clash.size == 0:
            return out
        out[clash] = draw(rng, c, clash.size)
    us, gb = COUNTRY_CODES.index("US"), COUNTRY_CODES.index("GB")
    clash = out == home
    out[clash] = np.where(home[clash] == us, gb, us)
    return out


# --- time zones -----------------------------------------------------------------------------


def _nth_sunday(year: int, month: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def _last_sunday(year: int, month: int) -> dt.date:
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() + 1) % 7)


def _epoch(d: dt.date, hour_utc: int) -> int:
    return (d.toordinal() - EPOCH_ORDINAL) * 86400 + hour_utc * 3600


@lru_cache(maxsize=64)
def _dst_windows(year: int) -> np.ndarray:
    """[rule] -> (start, end) epoch seconds of summer time; EU switches at 01:00 UTC,
    the US/Canada (Eastern time) at 02:00 local."""
    return np.array(
        [
            (0, 0),
            (_epoch(_last_sunday(year, 3), 1), _epoch(_last_sunday(year, 10), 1)),
            (_epoch(_nth_sunday(year, 3, 2), 7), _epoch(_nth_sunday(year, 11, 1), 6)),
        ],
        dtype=np.int64,
    )


def utc_offset_minutes(country: np.ndarray, epoch_s: np.ndarray | int, year: int) -> np.ndarray:
    """Local UTC offset (minutes) of each country at the given instant(s) of ``year``."""
    win = _dst_windows(year)[DST_RULE[country]]
    summer = (epoch_s >= win[:, 0]) & (epoch_s < win[:, 1])
    return STD_OFFSET_MIN[country] + 60 * summer


# --- populations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Customers:
    home: np.ndarray  # country index
    log_typical: np.ndarray  # mean log-amount in EUR of the customer's purchases
    activity_cdf: np.ndarray  # who transacts
    victim_cdf: np.ndarray  # who gets compromised (young accounts are over-represented)
    tenure_at_reference: np.ndarray  # days since sign-up at REFERENCE_ORDINAL (may be < 0)
    n_devices: np.ndarray
    device_ids: np.ndarray  # (n, 3)
    device_types: np.ndarray  # (n, 3)

    @property
    def size(self) -> int:
        return len(self.home)


def build_customers(seed: int, n: int) -> Customers:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("home", "mu", "act", "ten", "nd", "did", "dty")}
    home_cdf, dev_cdf = cdf(HOME_W), cdf(DEVICE_TYPE_W)
    for block in range(-(-n // BLOCK)):
        rng = np.random.default_rng([seed, _CUSTOMER_TAG, block])
        parts["home"].append(draw(rng, home_cdf, BLOCK).astype(np.int16))
        parts["mu"].append(rng.normal(3.2, 0.55, BLOCK))
        parts["act"].append(rng.lognormal(0.0, 0.8, BLOCK))
        parts["ten"].append((rng.exponential(1100.0, BLOCK) - 45.0).astype(np.int32))
        parts["nd"].append(draw(rng, cdf([0.5, 0.35, 0.15]), BLOCK).astype(np.int8) + 1)
        parts["did"].append(rng.integers(0, DEVICE_ID_SPACE, (BLOCK, 3)))
        parts["dty"].append(draw(rng, dev_cdf, BLOCK * 3).reshape(BLOCK, 3).astype(np.int8))
    cat = {k: np.concatenate(v)[:n] for k, v in parts.items()}
    young = np.where(cat["ten"] < 180, 3.0, 1.0)
    return Customers(
        home=cat["home"],
        log_typical=cat["mu"],
        activity_cdf=cdf(cat["act"]),
        victim_cdf=cdf(cat["act"] * young),
        tenure_at_reference=cat["ten"],
        n_devices=cat["nd"],
        device_ids=cat["did"],
        device_types=cat["dty"],
    )


@dataclass(frozen=True)
class Merchants:
    country: np.ndarray
    category: np.ndarray
    order: np.ndarray  # merchant indices sorted by (country, category)
    group_start: np.ndarray  # per (country * N_CATEGORIES + category)
    group_count: np.ndarray

    def pick(self, country: np.ndarray, category: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A merchant of the given country and category; low ranks are more popular."""
        g = country.astype(np.int64) * N_CATEGORIES + category
        rank = (self.group_count[g] * u**2).astype(np.int64)
        return self.order[self.group_start[g] + rank]


def build_merchants(seed: int, n: int) -> Merchants:
    n_groups = N_COUNTRIES * N_CATEGORIES
    n = max(n, n_groups)
    country_w = HOME_W + TRAVEL_W + ECOM_W
    countries, categories = [], []
    for block in range(-(-n // BLOCK)):
        rng = np.random.default_rng([seed, _MERCHANT_TAG, block])
        countries.append(draw(rng, cdf(country_w), BLOCK))
        categories.append(draw(rng, cdf(CATEGORY_W), BLOCK))
    country = np.concatenate(countries)[:n]
    category = np.concatenate(categories)[:n]
    # the first n_groups merchants cover every (country, category) pair
    country[:n_groups] = np.arange(n_groups) // N_CATEGORIES
    category[:n_groups] = np.arange(n_groups) % N_CATEGORIES
    key = country * N_CATEGORIES + category
    order = np.argsort(key, kind="stable")
    count = np.bincount(key, minlength=n_groups)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    return Merchants(country.astype(np.int16), category.astype(np.int16), order, start, count)
