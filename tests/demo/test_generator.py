"""Demo feed generator: determinism, file contract, labels, fraud signal, drift, bad data."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq
import pytest

from batchml.demo import DemoOptions, DemoSummary, generate
from batchml.demo import generator as G

START = dt.date(2024, 3, 29)  # spans the EU switch to summer time on 2024-03-31
TX_COLUMNS = [
    "transaction_id", "event_time", "customer_id", "merchant_id", "merchant_category", "amount",
    "currency", "channel", "device_type", "device_id", "country", "customer_country",
    "card_present", "customer_tenure_days",
]  # fmt: skip
CB_COLUMNS = ["chargeback_id", "transaction_id", "reported_at", "reason_code", "amount"]
EXT = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
LOCAL_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
UTC_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
RISKY = ["electronics", "gift_cards", "gaming"]


def run(tmp: Path, name: str = "out", **kw) -> tuple[Path, DemoSummary]:
    kw = {"start": START, "days": 3, "rows_per_day": 5_000, **kw}
    root = tmp / name
    return root, generate(str(root), DemoOptions(**kw))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_text(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


def load(root: Path, kind: str, fmt: str = "parquet") -> pd.DataFrame:
    files = sorted((root / kind).glob(f"*/{kind}_*.{EXT[fmt]}"))
    files = [f for f in files if not f.stem.endswith("_999")]
    if fmt == "parquet":
        return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    return pd.concat([read_text(f, fmt) for f in files], ignore_index=True)


@pytest.fixture(scope="module")
def feed(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame, DemoSummary]:
    """A clean Parquet feed big enough for the statistical checks (7 days x 8k rows)."""
    root, s = run(tmp_path_factory.mktemp("feed"), days=7, rows_per_day=8_000, fmt="parquet")
    tx, cb = load(root, "transactions"), load(root, "chargebacks")
    tx["y"] = tx.transaction_id.isin(cb.transaction_id).astype(int)
    return tx.sort_values(["event_time", "transaction_id"], ignore_index=True), cb, s


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"days": 0}, "days"),
        ({"rows_per_day": 0}, "rows_per_day"),
        ({"bad_rate": 1.5}, "bad_rate"),
        ({"bad_file_rate": -0.1}, "bad_file_rate"),
        ({"fmt": "xml"}, "fmt"),
        ({"start": "2024-03-01"}, "start"),
        ({"drift_from": dt.datetime(2024, 3, 1)}, "drift_from"),
    ],
)
def test_options_are_validated(kw, message):
    with pytest.raises(ValueError, match=message):
        DemoOptions(**{"start": START, "days": 1, **kw})


# --- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_same_seed_gives_identical_bytes(tmp_path, fmt):
    kw = {"days": 2, "rows_per_day": 3_000, "fmt": fmt, "bad_rate": 0.01, "bad_file_rate": 0.5}
    a, sa = run(tmp_path, "a", **kw)
    b, sb = run(tmp_path, "b", **kw)
    c, _ = run(tmp_path, "c", seed=7, **kw)
    assert tree(a) == tree(b)
    assert (sa.transactions, sa.fraud, sa.chargebacks, sa.bad_rows) == (
        sb.transactions, sb.fraud, sb.chargebacks, sb.bad_rows,
    )  # fmt: skip
    ta, tc = tree(a), tree(c)
    shared = set(ta) & set(tc)
    assert shared and all(ta[k] != tc[k] for k in shared)


def test_later_start_gives_same_transactions(tmp_path):
    a, _ = run(tmp_path, "a", days=3)
    b, _ = run(tmp_path, "b", start=START + dt.timedelta(days=1), days=2)
    ta, tb = tree(a), tree(b)
    tx_b = {k: v for k, v in tb.items() if k.startswith("transactions")}
    assert tx_b and all(ta[k] == v for k, v in tx_b.items())


def test_corruption_does_not_change_clean_rows(tmp_path):
    clean, _ = run(tmp_path, "clean", days=1, fmt="jsonl")
    dirty, _ = run(tmp_path, "dirty", days=1, fmt="jsonl", bad_rate=0.05)
    path = f"transactions/{START}/transactions_{START}_000.jsonl"
    a = (clean / path).read_text().splitlines()
    b = (dirty / path).read_text().splitlines()
    same = sum(x == y for x, y in zip(a, b))
    assert len(a) == len(b) and 0.9 * len(a) < same < len(a)


# --- file contract --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_layout_and_columns(tmp_path, fmt):
    root, s = run(tmp_path, fmt=fmt, days=3, rows_per_day=2_000)
    ext = EXT[fmt]
    days = [(START + dt.timedelta(days=i)).isoformat() for i in range(3)]
    assert sorted(p.name for p in (root / "transactions").iterdir()) == days
    n_rows = 0
    for d in days:
        files = sorted((root / "transactions" / d).iterdir())
        assert [f.name for f in files] == [f"transactions_{d}_000.{ext}"]
        if fmt == "parquet":
            table = pq.read_table(files[0])
            assert table.column_names == TX_COLUMNS
            types = dict(zip(table.column_names, table.schema.types))
            assert types["event_time"] == pa.timestamp("us", tz="UTC")
            assert types["amount"] == pa.float64() and types["card_present"] == pa.bool_()
            assert types["customer_tenure_days"] == pa.int32()
            df = table.to_pandas()
            utc_dates = df.event_time.dt.date.astype(str)
        else:
            df = read_text(files[0], fmt)
            if fmt == "jsonl":
                assert all(list(json.loads(line)) == TX_COLUMNS for line in files[0].read_text().splitlines())
            assert list(df.columns) == TX_COLUMNS
            assert df.event_time.str.match(LOCAL_TS).all()
            utc_dates = pd.to_datetime(df.event_time, utc=True, format="ISO8601").dt.date.astype(str)
            df["amount"] = df.amount.astype(float)
            df["card_present"] = df.card_present.map({"true": True, "false": False, True: True, False: False})
        assert (utc_dates == d).all()
        assert df.transaction_id.is_unique and df.customer_id.notna().all()
        assert (df.amount > 0).all() and (df.amount.round(2) == df.amount).all()
        assert set(df.channel) == {"pos", "ecom", "atm"}
        assert df.device_type[df.channel != "ecom"].isna().all() and df.device_id[df.channel != "ecom"].isna().all()
        assert df.device_id[df.channel == "ecom"].notna().all()
        assert not df.card_present[df.channel == "ecom"].any()
        assert 10 <= df.merchant_category.nunique() <= 14
        assert (df.currency[df.country == "GB"] == "GBP").all() and (df.currency[df.country == "DE"] == "EUR").all()
        n_rows += len(df)
    assert n_rows == s.transactions
    for f in (root / "chargebacks").rglob(f"*.{ext}"):
        assert f.name == f"chargebacks_{f.parent.name}.{ext}"
        if fmt == "parquet":
            cb = pq.read_table(f)
            assert cb.column_names == CB_COLUMNS and cb.schema.field("reported_at").type == pa.timestamp("us", tz="UTC")
            reported = cb.column("reported_at").to_pandas()
        else:
            cb = read_text(f, fmt)
            assert list(cb.columns) == CB_COLUMNS and cb.reported_at.str.match(UTC_TS).all()
            reported = pd.to_datetime(cb.reported_at, utc=True)
        assert len(cb) > 0 and (reported.dt.date.astype(str) == f.parent.name).all()


def test_event_time_offsets_follow_country_and_dst(tmp_path):
    root, _ = run(tmp_path, fmt="csv", days=4, rows_per_day=2_000, start=dt.date(2024, 3, 29))
    df = load(root, "transactions", "csv")
    offset = df.event_time.str[-6:]
    day = pd.to_datetime(df.event_time, utc=True, format="ISO8601").dt.date.astype(str)
    de = df.country == "DE"
    assert set(offset[de & (day == "2024-03-29")]) == {"+01:00"}
    assert set(offset[de & (day == "2024-04-01")]) == {"+02:00"}
    assert set(offset[df.country == "US"]) == {"-04:00"}  # US summer time began 2024-03-10
    assert set(offset[df.country == "SG"]) <= {"+08:00"}


def test_multiple_chunks_per_day(tmp_path, monkeypatch):
    monkeypatch.setattr(G, "CHUNK_ROWS", 1_500)
    root, s = run(tmp_path, days=1, rows_per_day=4_000, fmt="csv")
    names = sorted(p.name for p in (root / "transactions" / START.isoformat()).iterdir())
    assert names == [f"transactions_{START}_{i:03d}.csv" for i in range(len(names))] and len(names) >= 3
    df = load(root, "transactions", "csv")
    assert len(df) == s.transactions and df.transaction_id.is_unique


# --- labels ---------------------------------------------------------------------------------


def test_chargebacks_late_and_only_for_fraud(feed):
    tx, cb, s = feed
    assert s.chargebacks == s.fraud == len(cb) and cb.transaction_id.is_unique
    joined = cb.merge(tx, on="transaction_id", suffixes=("", "_tx"), validate="one_to_one")
    assert len(joined) == len(cb)
    delay_days = (joined.reported_at - joined.event_time).dt.total_seconds() / 86400
    assert delay_days.min() >= 1 and delay_days.max() <= 45
    assert ((delay_days >= 5) & (delay_days <= 20)).mean() > 0.6
    assert (joined.amount == joined.amount_tx).all()
    assert joined.reason_code.str.startswith("fraud_").all() and joined.reason_code.nunique() >= 3
    # deliveries past the last generated day are written too
    assert joined.reported_at.max().date() > tx.event_time.max().date()


def test_fraud_rate_and_learnable_signal(feed):
    tx, _, _ = feed
    base = tx.y.mean()
    assert 0.005 <= base <= 0.015
    log_amount = np.log(tx.amount)
    typical = tx.groupby("customer_id").amount.transform(lambda a: np.log(a).median())
    foreign = tx.country != tx.customer_country
    first_use = tx.groupby(["customer_id", "device_id"]).event_time.transform("min")
    seen = tx.event_time - first_use > pd.Timedelta(hours=12)  # device known for half a day
    ecom = tx.channel == "ecom"
    combo = foreign & ecom & (log_amount - typical > 0.7)
    assert tx.y[combo].mean() > 5 * base
    assert tx.y[ecom & ~seen].mean() > 3 * tx.y[ecom & seen].mean()
    assert tx.y[tx.merchant_category.isin(RISKY)].mean() > 3 * base
    # bursts: fraud rows usually have another transaction of the same card within 3 hours
    t = (tx.event_time - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    gap = pd.concat([t.groupby(tx.customer_id).diff(), -t.groupby(tx.customer_id).diff(-1)], axis=1).min(axis=1)
    assert (gap[tx.y == 1] < 3 * 3600).mean() > 0.5 > (gap[tx.y == 0] < 3 * 3600).mean()
    # no single column value gives the label away
    for col in ["merchant_category", "channel", "device_type", "country", "customer_country", "card_present", "currency"]:
        rates = tx.groupby(col, dropna=False).y.agg(["mean", "size"])
        assert rates["mean"][rates["size"] >= 100].max() < 0.25, col
        assert (tx[tx.y == 1][col].value_counts(dropna=False) > 0).sum() >= 2, col


def test_weekly_seasonality_and_rows_per_day():
    options = DemoOptions(start=dt.date(2024, 3, 4), days=7, rows_per_day=10_000)
    counts = [G.daily_rows(options, options.start.toordinal() + i) for i in range(7)]
    assert abs(np.mean(counts) / 10_000 - 1) < 0.03
    assert counts[5] > 1.1 * counts[6]  # Saturday busier than Sunday


# --- drift ----------------------------------------------------------------------------------


def test_covariate_drift(tmp_path):
    drift = START + dt.timedelta(days=2)
    plain, _ = run(tmp_path, "plain", days=4, fmt="parquet")
    root, _ = run(tmp_path, "drift", days=4, fmt="parquet", drift_from=drift)
    a, b = tree(plain), tree(root)
    for key in a:
        if key.startswith("transactions") and key.split("/")[1] < drift.isoformat():
            assert a[key] == b[key]
    tx = load(root, "transactions")
    la = np.log(tx.amount)
    after = tx.event_time.dt.date >= drift
    assert (la[after].mean() - la[~after].mean()) / la[~after].std() >= 0.8
    assert (tx.channel[after] == "ecom").mean() > (tx.channel[~after] == "ecom").mean() + 0.1
    foreign = tx.country != tx.customer_country
    assert foreign[after].mean() > 1.5 * foreign[~after].mean()


def test_concept_drift(tmp_path):
    drift = START + dt.timedelta(days=3)
    plain, _ = run(tmp_path, "plain", days=6, rows_per_day=8_000, fmt="parquet")
    root, _ = run(tmp_path, "drift", days=6, rows_per_day=8_000, fmt="parquet", concept_drift_from=drift)
    a, b = tree(plain), tree(root)
    for key in a:
        if key.startswith("transactions") and key.split("/")[1] < drift.isoformat():
            assert a[key] == b[key]
    tx, cb = load(root, "transactions"), load(root, "chargebacks")
    tx["y"] = tx.transaction_id.isin(cb.transaction_id)
    after = tx.event_time.dt.date >= drift
    risky = tx.merchant_category.isin(RISKY)
    everyday = tx.merchant_category.isin(["grocery", "restaurants", "health", "fuel"])
    assert tx.y[~after & risky].mean() > 3 * tx.y[after & risky].mean()
    assert tx.y[after & everyday].mean() > 1.5 * tx.y[~after & everyday].mean()
    foreign = tx.country != tx.customer_country
    assert tx.y[after & foreign].mean() < 0.6 * tx.y[~after & foreign].mean()
    # marginals move only a little
    share = lambda m: tx.merchant_category[m].value_counts(normalize=True)  # noqa: E731
    assert (share(after) - share(~after)).abs().max() < 0.02
    assert abs(np.log(tx.amount[after]).mean() - np.log(tx.amount[~after]).mean()) < 0.1


# --- bad data -------------------------------------------------------------------------------


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _is_timestamp(s: str) -> bool:
    try:
        return dt.datetime.fromisoformat(s).tzinfo is not None
    except ValueError:
        return False


def _count_csv(path: Path, counts: dict[str, int]) -> None:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == TX_COLUMNS
        for row in reader:
            if len(row) != len(TX_COLUMNS):
                counts["wrong_column_count"] += 1
                continue
            r = dict(zip(TX_COLUMNS, row))
            counts["bad_amount"] += not _is_float(r["amount"])
            counts["missing_field"] += r["customer_id"] == "" or r["merchant_id"] == ""
            counts["bad_timestamp"] += not _is_timestamp(r["event_time"])
            counts["bad_tenure"] += not r["customer_tenure_days"].isdigit()


def _count_jsonl(path: Path, counts: dict[str, int]) -> None:
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            counts["wrong_column_count"] += 1
            continue
        counts["bad_amount"] += not isinstance(r["amount"], (int, float))
        counts["missing_field"] += "customer_id" not in r or "merchant_id" not in r
        counts["bad_timestamp"] += not _is_timestamp(r["event_time"])
        counts["bad_tenure"] += not isinstance(r["customer_tenure_days"], int)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_bad_rows_are_counted(tmp_path, fmt):
    root, s = run(tmp_path, fmt=fmt, days=2, rows_per_day=4_000, bad_rate=0.03)
    counts = dict.fromkeys(s.bad_rows, 0)
    for path in sorted((root / "transactions").rglob(f"*.{EXT[fmt]}")):
        if fmt == "csv":
            _count_csv(path, counts)
        elif fmt == "jsonl":
            _count_jsonl(path, counts)
        else:
            table = pq.read_table(path)
            required = ["transaction_id", "event_time", "customer_id", "merchant_id", "amount"]
            nulls = np.zeros(table.num_rows, dtype=bool)
            for col in required:
                nulls |= table.column(col).is_null().to_numpy(zero_copy_only=False)
            counts["null_required"] += int(nulls.sum())
    assert counts == s.bad_rows
    expected_kinds = 1 if fmt == "parquet" else 5
    assert len(s.bad_rows) == expected_kinds and all(v > 0 for v in s.bad_rows.values())
    assert 0.02 < sum(s.bad_rows.values()) / s.transactions < 0.04


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_bad_files_are_unreadable(tmp_path, fmt):
    root, s = run(tmp_path, fmt=fmt, days=4, rows_per_day=1_000, bad_file_rate=1.0)
    assert len(s.bad_files) == 4 and set(s.bad_files) <= set(s.files)
    for path in s.bad_files:
        assert Path(path).name.endswith(f"_999.{EXT[fmt]}")
        reader = {"csv": pcsv.read_csv, "jsonl": pjson.read_json, "parquet": pq.read_table}[fmt]
        with pytest.raises((pa.ArrowInvalid, OSError)):
            reader(path)
    _, none = run(tmp_path, "none", fmt=fmt, days=4, rows_per_day=1_000, bad_file_rate=0.0)
    assert none.bad_files == [] and not list((tmp_path / "none").rglob("*_999.*"))


# --- progress -------------------------------------------------------------------------------


def test_progress_is_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="batchml.demo")
    _, s = run(tmp_path, days=3, rows_per_day=1_000)
    lines = [r.getMessage() for r in caplog.records if r.name == "batchml.demo" and "demo day" in r.getMessage()]
    assert len(lines) == 3
    assert all(str(START + dt.timedelta(days=i)) in line for i, line in enumerate(lines))
    assert f"{s.transactions} rows total" in lines[-1] and "rows/s" in lines[-1] and "fraud" in lines[-1]


def test_writes_through_a_pyarrow_filesystem(tmp_path):
    from pyarrow.fs import LocalFileSystem, SubTreeFileSystem

    fs = SubTreeFileSystem(str(tmp_path), LocalFileSystem())
    s = generate("landing", DemoOptions(start=START, days=1, rows_per_day=500), filesystem=fs)
    assert s.files[0] == f"landing/transactions/{START}/transactions_{START}_000.csv"
    assert (tmp_path / s.files[0]).is_file()
    assert io.BytesIO((tmp_path / s.files[0]).read_bytes()).readline().decode().strip() == ",".join(TX_COLUMNS)
