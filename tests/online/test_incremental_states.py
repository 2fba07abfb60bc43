"""Entity states moved forward night by night (only the keys a night can change are recomputed) serve exactly
what states written in full serve, after every night: with late arrivals, a redelivery that moves an event
to another key, and a key whose only event leaves the lookback."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pyarrow as pa
import pytest

from batchml.features.build import build_features, feature_spec
from batchml.online.changes import change_days
from batchml.online.client import OnlineStore
from batchml.online.materialize import materialize
from batchml.storage import Lake
from tests.conftest import make_config
from tests.features.helpers import BRONZE_SCHEMA, at, event, random_events
from tests.online.test_materialize import SILVER, with_online

D = dt.date(2024, 3, 10)
NIGHTS = [D + dt.timedelta(days=n) for n in (-2, -1, 0, 1)]


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def source_rows() -> list[dict]:
    rows = random_events(day(-33), 35, 12, seed=5, customers=8, merchants=4)
    # in the lookback of night -2 only (lookback 30 days): its keys must be deleted on night -1
    rows.append(event("lonely", at(day(-31), 12), "c_lonely", "m_lonely", 5.0, device_id="d_lonely"))
    # its keys' only event, on a day no boundary touches on night 0, moves to another customer on night 0
    moved = event("moved", at(day(-8), 9), "c_once", "m1", 20.0, device_id="d_once")
    rows += [moved, {**moved, "customer_id": "c_twice", "_source_file": "redelivery", "ingest_date": D}]
    # late arrivals ingested on night 0: a new key, and an old day of an existing one
    rows += [event("late_new", at(day(-12), 8), "c_late", "m2", 7.0, ingest=D, device_id="d_late"),
             event("late_old", at(day(-15), 8), "c1", "m2", 9.5, ingest=D, device_id="d1")]
    return rows


@pytest.fixture(scope="module")
def lake_with_tiles(base_config, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("incremental")
    config = make_config(base_config, root)
    lake = Lake(config, spark)
    rows = source_rows()
    for ingest in sorted({r["ingest_date"] for r in rows}):
        lake.write_arrow(pa.Table.from_pylist([r for r in rows if r["ingest_date"] == ingest], BRONZE_SCHEMA), SILVER)
    build_features(config, NIGHTS[0], spark=spark, end=NIGHTS[-1])
    return config, root


def incremental(config, path):
    config = with_online(config, path)
    return config.model_copy(update={"online": config.online.model_copy(update={"incremental_states": True})})


def _entity_keys(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {k for (k,) in db.execute("SELECT key FROM records WHERE key LIKE '%/entity/%'")}


def _answers(config, keys: dict[str, list]) -> dict:
    store = OnlineStore(config)
    try:
        return {name: store.get_entity_state(name, values) for name, values in keys.items()}
    finally:
        store.close()


def _all_keys(*paths) -> dict[str, list]:
    out: dict[str, list] = {}
    for key in set().union(*(_entity_keys(p) for p in paths)):
        name, _, values = key.split("/entity/", 1)[1].partition("/")
        out.setdefault(name, []).append(json.loads(values))
    return {name: sorted(values) for name, values in out.items()}


def test_incremental_states_equal_full_states_after_every_night(lake_with_tiles, spark):
    config, root = lake_with_tiles
    nightly = incremental(config, root / "nightly.sqlite")
    shrank = []
    for night in NIGHTS:
        moved = materialize(nightly, night, spark=spark)
        full = materialize(with_online(config, root / f"full-{night}.sqlite"), night, spark=spark)
        assert full.incremental_from is None and moved.state_as_of == full.state_as_of == night
        assert moved.incremental_from == (None if night == NIGHTS[0] else night - dt.timedelta(days=1))
        keys = _all_keys(root / "nightly.sqlite", root / f"full-{night}.sqlite")
        assert _answers(nightly, keys) == _answers(with_online(config, root / f"full-{night}.sqlite"), keys), night
        shrank.append(sum(moved.entities.values()) < sum(full.entities.values()))
        if night == day(-1):  # the lonely key's only event left the lookback: its records are gone
            assert moved.deleted_states["customer"] >= 1
            assert not [k for k in _entity_keys(root / "nightly.sqlite") if "lonely" in k]
        if night == D:  # the moved event's old keys are recomputed although none of their days is touched
            assert day(-8) not in change_days(feature_spec(config)[1], "customer", D)
            assert [a["status"] for a in _answers(nightly, {"customer": ["c_once", "c_twice"]})["customer"]] == [
                "not_found", "found"]
    assert all(shrank[1:]), shrank  # the incremental nights wrote fewer states than the full ones


def test_a_skipped_night_writes_every_state(lake_with_tiles, spark):
    config, root = lake_with_tiles
    skipping = incremental(config, root / "skipping.sqlite")
    materialize(skipping, day(-2), spark=spark)
    later = materialize(skipping, D, spark=spark)
    assert later.incremental_from is None and "(full)" in later.line()
    full = with_online(config, root / "full-skip.sqlite")
    materialize(full, D, spark=spark)
    keys = _all_keys(root / "skipping.sqlite", root / "full-skip.sqlite")
    assert "c_lonely" in str(keys) and _answers(skipping, keys) == _answers(full, keys)  # stale records stay unread
    assert materialize(full, day(1), spark=spark).incremental_from is None  # off by default (SQLite)
