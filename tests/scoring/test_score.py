"""The score stage on a real feature table, a real MLflow registry and real Delta tables."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import xgboost as xgb
from deltalake import DeltaTable

from batchml.registry import store
from batchml.scoring.score import CRASH_AT, SimulatedCrash, score
from batchml.stages import run_stage
from batchml.storage import Lake
from tests.scoring import helpers as h

DAY = {i: dt.date(2024, 2, i) for i in range(1, 11)}
# chunk_rows 250 (helpers.OVERLAY)
ROWS = {1: 600, 2: 600, 3: 400, 4: 400, 5: 400, 6: 400, 7: 300, 8: 300, 9: 300, 10: 300}
SCORES, REVIEW, RUNS = "scores.card_transactions", "scores.card_transactions_review", "ops.scoring_runs"


@pytest.fixture(scope="module")
def env(tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("scoring")
    config = h.scoring_config(root)
    h.write_features(config, {DAY[i]: n for i, n in ROWS.items()})
    booster = h.train(seed=1)
    h.register(config, booster, threshold=0.2)
    first = score(config, DAY[1], spark=spark)
    return {"root": root, "config": config, "booster": booster, "lake": Lake(config, spark), "first": first}


def features(env, day):
    return env["lake"].read_arrow("features.card_transactions", [("event_date", "=", day)])


def scores(env, day, table=SCORES):
    return env["lake"].read_arrow(table, [("run_date", "=", day)]).to_pandas()


def assert_exactly_once(env, day, booster=None, threshold=0.2):
    """One row per event, with the model's own prediction (same feature rows: no skew)."""
    rows = features(env, day)
    got = scores(env, day).set_index("transaction_id")
    assert got.index.is_unique and set(got.index) == set(rows.column("transaction_id").to_pylist())
    expected = (booster or env["booster"]).inplace_predict(h.matrix(rows))
    got = got.loc[rows.column("transaction_id").to_pylist()]
    np.testing.assert_allclose(got["score"].to_numpy(), expected, atol=1e-6)
    assert (got["threshold"] == threshold).all() and not got["fallback"].any()


def test_scores_every_event_with_the_champion(env):
    s = env["first"]
    assert (s.rows, s.chunks, s.chunks_written, s.model_version, s.fallback_rows) == (600, 3, 3, 1, 0)
    assert_exactly_once(env, DAY[1])
    got = scores(env, DAY[1])
    assert set(got["model_name"]) == {"card_transactions_fraud"} and set(got["model_version"]) == {1}
    assert set(got["chunk"]) == {0, 1, 2} and set(got["generation"]) == {1}
    automatic = got[~got["review"]]
    assert ((automatic["score"] >= 0.2) == (automatic["decision"] == "decline")).all()
    assert set(automatic["decision"]) == {"approve", "decline"}
    runs = scores(env, DAY[1], RUNS)
    assert sorted(runs["event"]) == ["completed", "planned"] and runs["rows"].max() == 600


def test_review_band_capacity_and_overflow(env):
    got = scores(env, DAY[1])
    in_band = (got["score"] >= 0.1) & (got["score"] < 0.3)
    assert in_band.sum() > 12  # the fixture's band overflows the capacity of 12 (4 per chunk)
    assert (got["review"] == (got["decision"] == "review")).all()
    assert (got["review"] | got["review_overflow"]).eq(in_band).all()
    assert not (got["review"] & got["review_overflow"]).any()
    for _, chunk in got[in_band].groupby("chunk"):  # closest to the threshold first, ties by id
        ranked = chunk.assign(d=(chunk["score"] - 0.2).abs()).sort_values(["d", "transaction_id"])
        assert ranked["review"].tolist() == [True] * 4 + [False] * (len(ranked) - 4)
    queue = scores(env, DAY[1], REVIEW)
    assert sorted(queue["transaction_id"]) == sorted(got[got["review"]]["transaction_id"])
    for _, chunk in queue.groupby("chunk"):
        assert chunk.sort_values("priority")["distance"].is_monotonic_increasing
    assert queue["reason_codes"].notna().all()


def test_reason_codes_are_the_top_contributions(env):
    got = scores(env, DAY[1]).set_index("transaction_id")
    flagged = got["score"] >= 0.1  # rows: flagged -> inside the band or above the threshold
    assert got.loc[flagged, "reason_codes"].notna().all() and got.loc[~flagged, "reason_codes"].isna().all()
    rows = features(env, DAY[1])
    contribs = env["booster"].predict(xgb.DMatrix(h.matrix(rows), missing=np.nan), pred_contribs=True,
                                      approx_contribs=True)[:, :-1]
    for i, tx in enumerate(rows.column("transaction_id").to_pylist()):
        if flagged[tx]:
            codes = list(got.loc[tx, "reason_codes"])  # list<struct<feature, contribution>>
            top = np.argsort(-contribs[i], kind="stable")[:3]
            assert [c["feature"] for c in codes] == [h.FEATURES[j] for j in top]
            np.testing.assert_allclose([c["contribution"] for c in codes], contribs[i][top], atol=1e-5)


def test_a_second_run_changes_nothing(env, spark):
    lake = env["lake"]
    before = [lake.version(t) for t in (SCORES, REVIEW, RUNS)]
    again = score(env["config"], DAY[1], spark=spark)
    assert again.already_done and again.rows == 600
    assert [lake.version(t) for t in (SCORES, REVIEW, RUNS)] == before


def test_rescore_replaces_exactly_that_date_with_the_reason(env, spark):
    config, lake = env["config"], env["lake"]
    score(config, DAY[2], spark=spark)
    day1_before = scores(env, DAY[1]).sort_values("transaction_id").reset_index(drop=True)
    with pytest.raises(ValueError, match="at least 10 characters"):
        score(config, DAY[2], spark=spark, rescore_reason="oops")
    v2 = h.train(seed=2, rounds=5)
    name = config.dataset(h.DATASET).model.registered_name
    version = h.register(config, v2, threshold=0.3)
    try:
        s = score(config, DAY[2], spark=spark, rescore_reason="rolled back to v2 after incident 42")
    finally:
        store.client(config).set_registered_model_alias(name, "champion", "1")
    assert (s.generation, s.model_version, s.rows, s.chunks_written) == (2, version, 600, 3)
    assert_exactly_once(env, DAY[2], booster=v2, threshold=0.3)
    got = scores(env, DAY[2])
    assert set(got["generation"]) == {2} and set(got["model_version"]) == {version}
    assert set(scores(env, DAY[2], REVIEW)["generation"]) == {2}
    runs = scores(env, DAY[2], RUNS)
    assert set(runs[runs["generation"] == 2]["rescore_reason"]) == {"rolled back to v2 after incident 42"}
    after = scores(env, DAY[1]).sort_values("transaction_id").reset_index(drop=True)
    assert after.equals(day1_before)  # other dates untouched
    assert lake.read_arrow(SCORES).num_rows == 1200


@pytest.mark.parametrize("day, point, written_on_resume", [
    (3, "after-plan", 2),
    (4, "before-commit:1", 1),  # the storage layer dies after writing chunk 1's files, before its commit
    (5, "after-scores:0", 1),   # chunk 0's scores committed, its review queue not yet
])
def test_a_crash_anywhere_resumes_to_exactly_one_row_per_event(env, spark, day, point, written_on_resume):
    config, lake = env["config"], env["lake"]
    spark.conf.set(CRASH_AT, point)
    try:
        with pytest.raises(Exception) as crash:
            score(config, DAY[day], spark=spark)
    finally:
        spark.conf.unset(CRASH_AT)
    if point != "before-commit:1":
        assert crash.type is SimulatedCrash
    partial = scores(env, DAY[day]) if lake.exists(SCORES) else None
    assert partial is None or partial["transaction_id"].is_unique and len(partial) < ROWS[day]
    assert "completed" not in set(scores(env, DAY[day], RUNS)["event"])
    resumed = score(config, DAY[day], spark=spark)
    assert (resumed.generation, resumed.chunks, resumed.chunks_written) == (1, 2, written_on_resume)
    assert_exactly_once(env, DAY[day])
    queue = scores(env, DAY[day], REVIEW)
    got = scores(env, DAY[day])
    assert sorted(queue["transaction_id"]) == sorted(got[got["review"]]["transaction_id"])


def killed_score(env, day, point: str, *args: str) -> None:
    """A real ``batchml run score`` process that dies (os._exit) at ``point``."""
    root = env["root"]
    vars_ = {"BATCHML_HOME": str(root), "BATCHML_ENV": "test", "BATCHML_CONF_DIR": str(root / "conf"),
             "BATCHML_TESTING_SCORING_CRASH_AT": point, "BATCHML_TESTING_HARD_CRASH": "1"}
    proc = subprocess.run([sys.executable, "-m", "batchml.cli", "run", "score", "--run-date", str(day), *args],
                          env={**os.environ, **vars_}, capture_output=True, text=True)
    assert proc.returncode == 137, proc.stderr[-2000:]


def test_a_killed_process_resumes(env, spark):
    """A real ``batchml run score`` process dies (os._exit) after its first chunk; a new run finishes."""
    killed_score(env, DAY[6], "after-scores:0")
    assert 0 < len(scores(env, DAY[6])) < ROWS[6]
    resumed = score(env["config"], DAY[6], spark=spark)
    assert resumed.chunks_written == 1
    assert_exactly_once(env, DAY[6])


def alerts(env) -> list[dict]:
    path = Path(env["root"]) / "alerts" / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_no_champion_scores_with_flagged_fallback_rules(env, spark):
    config = h.with_scoring(env["config"], registered_model="no_such_model")
    assert run_stage("score", config, DAY[7], spark=spark) == 3  # scoring.fallback.exit_code
    got = scores(env, DAY[7]).set_index("transaction_id")
    assert got["fallback"].all() and got["model_version"].isna().all()
    assert got["fallback_reason"].str.contains("no version of model 'no_such_model'").all()
    rows = features(env, DAY[7]).to_pandas().set_index("transaction_id").loc[got.index]
    rules = config.dataset(h.DATASET).scoring.fallback
    expect = np.select(
        [(rows.is_foreign == 1) & (rows.card_present_flag == 0) & (rows.amount_to_customer_mean_30d > 5),
         (rows.new_device_for_customer == 1) & (rows.customer_count_1h >= 3), rows.amount > 2000],
        ["large_foreign_cnp", "new_device_burst", "large_amount"], "default")
    assert (got["fallback_rule"] == expect).all()
    by_rule = {r.name: r.score for r in rules.rules}
    assert (got["score"] == [by_rule.get(e, rules.default_score) for e in expect]).all()
    assert (got["threshold"] == rules.threshold).all()
    assert any(a["kind"] == "scoring_fallback" and a["run_date"] == str(DAY[7]) for a in alerts(env))
    runs = scores(env, DAY[7], RUNS)
    done = runs[runs["event"] == "completed"].iloc[0]
    assert done["fallback_rows"] == ROWS[7] and "no_such_model" in done["fallback_reason"]


def test_a_model_that_fails_on_its_batches_falls_back(env, spark):
    config = h.with_scoring(env["config"], registered_model="broken_model")
    # The booster takes five inputs, its contract names four: every batch fails inside XGBoost.
    version = h.register(config, env["booster"], threshold=0.2, name="broken_model", columns=h.FEATURES[:4])
    s = score(config, DAY[8], spark=spark)
    assert (s.model_version, s.fallback_rows) == (version, ROWS[8]) and "model failed on a batch" in s.fallback_reason
    got = scores(env, DAY[8])
    assert got["fallback"].all() and set(got["model_version"]) == {version}
    assert got["fallback_reason"].str.contains("Number of columns").all()
    assert any(a["kind"] == "scoring_fallback" and a["run_date"] == str(DAY[8]) for a in alerts(env))


def test_consumers_read_the_table_with_deltalake_as_documented(env):
    doc = (h.REPO / "docs" / "scoring.md").read_text()
    snippet = re.search(r"```python\n(# consumer read.*?)```", doc, re.S).group(1)
    namespace: dict = {}
    exec(snippet.replace(".batchml/lake", str(Path(env["root"]) / "lake")), namespace)  # noqa: S102
    df = namespace["df"]
    assert len(df) == 600 and set(df["run_date"].astype(str)) == {"2024-02-01"}
    assert DeltaTable(env["lake"].uri(SCORES)).metadata().partition_columns == ["run_date", "chunk"]
    assert pc.sum(env["lake"].read_arrow(SCORES, [("run_date", "=", DAY[1])]).column("review")).as_py() == 12


def test_the_scores_table_carries_its_contract_for_consumers(env):
    """Read with deltalake alone, as a consumer would: typed reason codes, descriptions, commit info."""
    table = DeltaTable(env["lake"].uri(SCORES))
    config = env["config"].tables[SCORES]
    schema = pa.schema(table.schema().to_arrow())
    assert schema.field("reason_codes").type == pa.list_(pa.struct([("feature", pa.string()),
                                                                     ("contribution", pa.float64())]))
    assert table.metadata().description == config.description
    comments = {f.name: f.metadata.get("comment") for f in table.schema().fields}
    assert comments == {name: config.columns.get(name) for name in schema.names} and None not in comments.values()
    codes = table.to_pyarrow_table(filters=[("run_date", "=", DAY[1])], columns=["reason_codes"]).column(0)
    first = next(c for c in codes.to_pylist() if c)
    assert [set(item) for item in first] == [{"feature", "contribution"}] * 3 and first[0]["feature"] in h.FEATURES
    chunk_commits = [c for c in table.history() if c.get("batchml.job") == "score" and "batchml.chunk" in c]
    assert chunk_commits and all(c["batchml.runDate"] and c["batchml.generation"] and c["batchml.modelVersion"]
                                 for c in chunk_commits)
    first_day = [c for c in chunk_commits if c["batchml.runDate"] == str(DAY[1])]
    assert {(c["batchml.generation"], c["batchml.modelVersion"]) for c in first_day} == {("1", str(env["first"]
                                                                                             .model_version))}


def test_polars_reads_the_scores_table_with_typed_reason_codes(env):
    """A consumer on polars, no Spark and no batchml: the same rows, reason codes as a list of structs."""
    import polars as pl

    day = pl.read_delta(env["lake"].uri(SCORES)).filter(pl.col("run_date") == DAY[1])
    assert day.height == env["lake"].read_arrow(SCORES, [("run_date", "=", DAY[1])]).num_rows > 0
    assert day.schema["reason_codes"] == pl.List(pl.Struct({"feature": pl.String, "contribution": pl.Float64}))
    top = day.filter(pl.col("reason_codes").is_not_null()).select(pl.col("reason_codes").list.first()).unnest("reason_codes")
    assert top.height > 0 and set(top["feature"]) <= set(h.FEATURES)


def test_an_old_layout_table_is_refused_until_migrated(tmp_path, capsys):
    """Scores written before reason codes were typed: scoring stops with what to do; --migrate converts once."""
    from batchml.cli import main
    from batchml.scoring import layout

    config = h.scoring_config(tmp_path)
    lake, spec = Lake(config), config.dataset(h.DATASET).scoring
    old = pa.table({"transaction_id": ["a", "b", "c"], "score": [0.9, 0.1, 0.4], "fallback": [False, False, True],
                    "fallback_rule": [None, None, "large_amount"], "run_date": [DAY[1]] * 3, "chunk": [0, 0, 0],
                    "reason_codes": ['[{"feature": "amount", "contribution": 1.25}]', None, '[{"rule": "large_amount"}]']})
    lake.write_arrow(old, SCORES)
    argv = ["--env", "test", "run", "score", "--run-date", str(DAY[2])]
    environ = {"BATCHML_HOME": str(tmp_path), "BATCHML_CONF_DIR": str(tmp_path / "conf")}
    with pytest.MonkeyPatch.context() as m:
        for k, v in environ.items():
            m.setenv(k, v)
        assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reason_codes as a JSON string" in err and "--migrate" in err
    assert lake.version(SCORES) == 0  # nothing written
    layout.check(lake, spec, migrate=True, command="unused")
    migrated = lake.read_arrow(SCORES).sort_by("transaction_id")
    assert migrated.column("reason_codes").to_pylist() == [[{"feature": "amount", "contribution": 1.25}], None, None]
    assert migrated.column("fallback_rule").to_pylist() == [None, None, "large_amount"]
    assert layout.old_tables(lake, spec) == [] and lake.read_arrow(SCORES, version=0).column("reason_codes").type \
        == pa.string()  # time travel still reads the old layout
    assert [c["batchml.change"] for c in lake.history(SCORES) if c.get("batchml.job") == "migrate"] == [
        "reason_codes: JSON string -> list<struct>"]


def test_rescore_flag_needs_a_reason_and_the_score_stage(capsys):
    from batchml.cli import main

    assert main(["run", "score", "--run-date", "2024-02-01", "--rescore"]) == 1
    assert main(["run", "features", "--run-date", "2024-02-01", "--rescore", "--reason", "a long enough one"]) == 1
    assert capsys.readouterr().err.count("--rescore applies to the score stage and needs --reason") == 2


def test_a_rescore_killed_before_its_plan_is_carried_out_by_the_next_run(env, spark):
    """The request is recorded before anything else: a plain run after the kill performs the re-score
    instead of reporting the date "already complete"."""
    config, reason = env["config"], "model v1 re-run after the feature fix (ticket 7)"
    score(config, DAY[9], spark=spark)
    killed_score(env, DAY[9], "after-request", "--rescore", "--reason", reason)
    runs = scores(env, DAY[9], RUNS)
    assert sorted(zip(runs["generation"], runs["event"])) == [(1, "completed"), (1, "planned"), (2, "requested")]
    resumed = score(config, DAY[9], spark=spark)  # no --rescore
    assert not resumed.already_done and (resumed.generation, resumed.chunks_written) == (2, 2)
    assert_exactly_once(env, DAY[9])
    assert set(scores(env, DAY[9])["generation"]) == {2} and set(scores(env, DAY[9], REVIEW)["generation"]) == {2}
    runs = scores(env, DAY[9], RUNS)
    assert set(runs[runs["generation"] == 2]["rescore_reason"]) == {reason}
    assert sorted(runs[runs["generation"] == 2]["event"]) == ["completed", "planned", "requested"]
    again = score(config, DAY[9], spark=spark)
    assert again.already_done and again.generation == 2


def test_rows_the_read_tasks_write_equal_the_spark_writers(env, spark, monkeypatch):
    """Rows outside the review band are written by the read tasks (decided by the threshold), the band by
    Spark: no file mixes the two. A re-score with Spark writing every row (the native engine's path) mixes
    them in its files and gives the same table."""
    config, lake = env["config"], env["lake"]

    def table():
        rows = lake.read_arrow(SCORES, [("run_date", "=", DAY[10])])
        return rows.drop_columns(["generation", "scored_at"]).sort_by("transaction_id")

    def band_share_per_file() -> list[float]:
        actions = pa.table(DeltaTable(lake.uri(SCORES)).get_add_actions(flatten=True)).to_pylist()
        files = [pq.read_table(Path(lake.uri(SCORES), a["path"]), columns=["review", "review_overflow"])
                 for a in actions if a["partition.run_date"] == DAY[10]]
        return [pc.mean(pc.or_(f["review"], f["review_overflow"]).cast(pa.int8())).as_py() for f in files]

    direct = score(config, DAY[10], spark=spark)
    by_tasks, shares = table(), band_share_per_file()
    monkeypatch.setattr(Lake, "tasks_write_files", property(lambda self: False))
    score(config, DAY[10], spark=spark, rescore_reason="the same rows through Spark's writer")
    assert direct.rows == ROWS[10] and len(set(by_tasks.column("decision").to_pylist())) == 3
    assert set(shares) == {0.0, 1.0} and any(0 < s < 1 for s in band_share_per_file())
    assert by_tasks.equals(table())
