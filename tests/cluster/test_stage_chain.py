"""One stage chain, ingest -> validate -> features -> score, for two demo days in this process.

It runs in the Spark 4.0.2 environment (``make test-spark40``), the version AWS's emr-spark-8.0.0 ships,
so the pipeline is proven on the oldest Spark batchml supports as well as on the pinned one.
"""

from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc
import pyspark
import pytest

from batchml.config import load_config
from batchml.demo import DemoOptions, generate
from batchml.stages import run_stage
from batchml.storage import Lake
from tests.conftest import REPO
from tests.scoring import helpers as models

DAYS = [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]
# On the pinned Spark the rehearsal's local run (tests/cluster/test_rehearsal.py) runs this same chain.
pytestmark = pytest.mark.skipif(not pyspark.__version__.startswith("4.0."),
                                reason="proves Spark 4.0 in `make test-spark40`; the rehearsal covers the pinned Spark")


@pytest.fixture(scope="module")
def chain(tmp_path_factory, spark):
    home = tmp_path_factory.mktemp("chain")
    config = load_config("test", REPO / "conf", {"BATCHML_HOME": str(home)})
    generate(config.storage.landing_uri, DemoOptions(start=DAYS[0], days=len(DAYS), rows_per_day=1500, seed=5))
    champion = models.register(config, models.train(seed=5), threshold=0.2)
    codes = {(stage, day): run_stage(stage, config, day, spark=spark)
             for day in DAYS for stage in ("ingest", "validate", "features", "score")}
    return {"lake": Lake(config, spark), "codes": codes, "champion": champion}


def test_every_stage_succeeds_and_every_accepted_event_is_scored_once(chain):
    assert set(chain["codes"].values()) == {0}, chain["codes"]
    lake = chain["lake"]
    silver = lake.read_arrow("silver.card_transactions")
    features = lake.read_arrow("features.card_transactions")
    scores = lake.read_arrow("scores.card_transactions")
    for day in DAYS:
        accepted = silver.filter(pc.equal(silver["ingest_date"], day))
        on_day = features.filter(pc.equal(features["event_date"], day))
        scored = scores.filter(pc.equal(scores["run_date"], day))
        assert accepted.num_rows > 1000
        assert on_day.num_rows == len(set(on_day["transaction_id"].to_pylist())) > 0
        assert sorted(scored["transaction_id"].to_pylist()) == sorted(on_day["transaction_id"].to_pylist())
    assert set(scores["model_version"].to_pylist()) == {chain["champion"]}
    assert not any(scores["fallback"].to_pylist())
    print(f"stage chain on pyspark {pyspark.__version__}: {scores.num_rows} events scored")
