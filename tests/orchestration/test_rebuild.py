"""``batchml rebuild``: two demo days run live, then rebuilt from the landing zone and the manifest alone
into a fresh lake; every table equals the live one row for row, except wall-clock columns.

The champion changes between the days (v1 scores day 1, v2 day 2 and is champion afterwards), so the
rebuild must score and monitor each day with the version its live run recorded, not today's champion.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from batchml.demo import DemoOptions, generate
from batchml.ingest.ingest import LandingChanged
from batchml.rebuild import NotFresh, rebuild, rebuild_config
from batchml.stages import run_stage
from batchml.storage import Lake
from batchml.validation.overrides import record_override
from tests.conftest import make_config
from tests.orchestration.helpers import AUDIT_COLUMNS
from tests.scoring import helpers as S

DAYS = [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]
CLOCKS = AUDIT_COLUMNS | {"queued_at"}  # when a job ran (the review queue's too), never which rows it made
STAGES = ("ingest", "validate", "features", "score", "monitor")  # the nightly DAG's, less the online store


@pytest.fixture(scope="module")
def live(base_config, tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("rebuild")
    config = make_config(base_config, root).model_copy(update={"home": str(root)})
    generate(config.storage.landing_uri, DemoOptions(start=DAYS[0], days=len(DAYS), rows_per_day=1100, seed=11))
    versions = [S.register(config, S.train(seed), 0.5) for seed in (1, 2)]
    store_alias(config, versions[0])
    for day in DAYS:
        if day == DAYS[1]:
            store_alias(config, versions[1])
            record_override(config, day, "bronze.card_transactions", "row_count", "ana", "replayed as recorded")
        for stage in STAGES:
            assert run_stage(stage, config, day, spark=spark) == 0, (stage, day)
    return config, root, versions


def store_alias(config, version: int) -> None:
    from batchml.registry import store

    store.client(config).set_registered_model_alias(config.dataset().model.registered_name, "champion", str(version))


def rows(config, of, table: str) -> list[tuple] | None:
    """The table's rows, sorted, wall-clock columns dropped, the lake's own location written as <lake>
    and its reports' (a retraining request's file) as <artifacts>."""
    from deltalake import DeltaTable

    lake_uri, artifacts = of.storage.lake_uri, of.storage.artifacts_uri
    path = Path(Lake(config).uri(table).replace(config.storage.lake_uri, lake_uri, 1))
    if not (path / "_delta_log").is_dir():
        return None
    frame = DeltaTable(str(path)).to_pandas()
    frame = frame[sorted(c for c in frame.columns if c not in CLOCKS)]
    return sorted(tuple(repr(v).replace(artifacts, "<artifacts>").replace(lake_uri, "<lake>") for v in row)
                  for row in frame.itertuples(index=False))


def test_rebuilt_tables_equal_the_live_ones_row_for_row(live, spark, tmp_path):
    config, _, versions = live
    into = str(tmp_path / "rebuilt")
    replays = rebuild(config, DAYS[0], DAYS[-1], into, spark=spark)
    assert [r.stages for r in replays] == [
        ["ingest", "validate", "features", f"score (model v{v})", f"monitor (model v{v})"] for v in versions]
    compared = 0
    for table in sorted(config.tables):
        live_rows = rows(config, config, table)
        assert live_rows == rows(config, rebuild_config(config, into), table), table
        compared += live_rows is not None
    assert compared >= 12  # bronze, silver, quarantine, manifest, gate, overrides, features, tiles, scores, ...


def test_a_rebuild_needs_a_fresh_lake_and_the_recorded_bytes(live, spark, tmp_path):
    config, _, _ = live
    with pytest.raises(NotFresh, match="live lake"):
        rebuild(config, DAYS[0], DAYS[0], config.storage.lake_uri, spark=spark)
    landed = sorted(Path(config.storage.landing_uri).rglob(f"*{DAYS[0]}*/*"))
    assert landed
    original = landed[0].read_bytes()
    landed[0].write_bytes(original + b"\n")  # the producer changed a file after it was ingested
    try:
        with pytest.raises(LandingChanged, match="manifest recorded"):
            rebuild(config, DAYS[0], DAYS[0], str(tmp_path / "changed"), spark=spark)
    finally:
        landed[0].write_bytes(original)
