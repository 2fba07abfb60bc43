"""Typed config: base + overlay + env vars, and errors that name the file and key."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from batchml.config import ConfigError, load_config
from tests.conftest import REPO


@pytest.fixture
def conf(tmp_path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(REPO / "conf", target)
    return target


def test_overlay_and_env_overrides(conf, tmp_path):
    cfg = load_config("test", conf, environ={"BATCHML_HOME": str(tmp_path / "h"), "BATCHML_SPARK_MASTER": "local[1]"})
    assert cfg.spark.shuffle_partitions == 2  # conf/test overrides conf/base's 8
    assert cfg.spark.master == "local[1]"  # env var beats files
    assert cfg.storage.lake_uri == str(tmp_path / "h" / "lake")  # {home} expands
    assert cfg.dataset().events.table == "bronze.card_transactions"


def test_home_defaults_to_a_folder_in_the_working_directory(conf, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert load_config("local", conf, environ={}).home == str(tmp_path / ".batchml")


def test_unknown_key_names_file_and_key(conf):
    (conf / "test" / "batchml.yaml").write_text("spark:\n  mastr: local[1]\n")
    with pytest.raises(ConfigError, match=r"conf/test/batchml.yaml: key 'spark.mastr': unknown key"):
        load_config("test", conf, environ={})


def test_wrong_type_names_file_and_key(conf):
    (conf / "test" / "batchml.yaml").write_text("spark:\n  shuffle_partitions: many\n")
    with pytest.raises(ConfigError, match=r"conf/test/batchml.yaml: key 'spark.shuffle_partitions'"):
        load_config("test", conf, environ={})


def test_dataset_files_are_checked_too(conf):
    path = conf / "base" / "datasets" / "card_transactions.yaml"
    path.write_text(path.read_text().replace("type: float64", "type: money", 1))
    with pytest.raises(ConfigError, match=r"card_transactions.yaml: key 'datasets.card_transactions.events.columns.5.type'"):
        load_config("test", conf, environ={})


def test_missing_environment_overlay(conf):
    with pytest.raises(ConfigError, match="no overlay for environment 'staging'"):
        load_config("staging", conf, environ={})


def test_prod_overlay_is_valid(conf):
    cfg = load_config("prod", conf, environ={})
    assert cfg.storage.lake_uri.startswith("s3://")


def test_demo_overlay_changes_only_what_it_says(conf):
    demo, local = load_config("demo", conf, environ={}), load_config("local", conf, environ={})
    assert demo.spark.shuffle_partitions == 2 and demo.spark.conf["spark.sql.codegen.wholeStage"] == "false"
    assert (demo.dataset().model.label_maturity_days, demo.dataset().monitoring.maturity_days) == (7, 7)
    assert demo.dataset().monitoring.window_days == 3 and local.dataset().monitoring.window_days == 7
    assert demo.dataset().features == local.dataset().features  # the same features and scoring as everywhere
    assert demo.dataset().scoring == local.dataset().scoring


def test_java_options_follow_the_utc_flag_on_driver_and_executors(conf):
    from batchml.spark import log4j_option, session_conf

    plain, demo = load_config("local", conf, environ={}), load_config("demo", conf, environ={})
    assert session_conf(plain)["spark.driver.extraJavaOptions"] == f"-Duser.timezone=UTC {log4j_option()}"
    flags = session_conf(demo)
    assert flags["spark.driver.extraJavaOptions"] == f"-Duser.timezone=UTC {log4j_option()} {demo.spark.java_options}"
    assert flags["spark.executor.extraJavaOptions"] == flags["spark.driver.extraJavaOptions"]
    assert "-XX:CompileThresholdScaling" in demo.spark.java_options


# -- the dataset contract, checked at load ---------------------------------------------------------------
def _edit(conf, dataset: str, old: str, new: str) -> Path:
    path = conf / "base" / "datasets" / f"{dataset}.yaml"
    assert old in path.read_text(), old
    path.write_text(path.read_text().replace(old, new, 1))
    return path


def test_a_missing_key_column_names_the_file_and_key(conf):
    path = _edit(conf, "flight_delays", "  id_column: flight_id\n", "")
    with pytest.raises(ConfigError, match=rf"{path}: key 'datasets.flight_delays.features.id_column': Field required"):
        load_config("test", conf, environ={})


@pytest.mark.parametrize("old, new, key, column", [
    ("  id_column: flight_id", "  id_column: flight_no", "features.id_column", "flight_no"),
    ("      keys: [origin]", "      keys: [airport]", "features.entities.origin.keys.0", "airport"),
    ("  key: flight_id\n  time_column: known_at", "  key: flight\n  time_column: known_at", "label.key", "flight"),
    ("column: distance_km, min: 50", "column: distance, min: 50", "validation.bronze.flights.row_checks.1.column",
     "distance"),
    ("      keys: [origin, dest]", "      keys: [origin, arrival]", "features.label_features.route.keys.1", "arrival"),
    ("      keys: {origin: airport}", "      keys: {origin: station}", "features.as_of.origin_weather.keys.origin",
     "station"),
    ("      columns: [wind_kt, visibility_km]", "      columns: [wind]", "features.as_of.origin_weather.columns.0",
     "wind"),
])
def test_keys_must_name_columns_of_the_feed_they_read(conf, old, new, key, column):
    path = _edit(conf, "flight_delays", old, new)
    with pytest.raises(ConfigError, match=rf"{path}: key 'datasets.flight_delays.{key}': '{column}' is not a column"):
        load_config("test", conf, environ={})


def test_tables_are_the_datasets_own_and_partitioned_as_written(conf):
    cfg = load_config("test", conf, environ={})
    assert cfg.tables["features.flights"].partition_by == ["departure_date"]  # declared in the dataset file only
    assert "features.flights" not in (conf / "base" / "batchml.yaml").read_text()
    path = _edit(conf, "flight_delays", "    partition_by: [departure_date]", "    partition_by: [run_date]")
    with pytest.raises(ConfigError, match=rf"{path}: key 'datasets.flight_delays.features.table': table "
                                          r"'features.flights' must be partitioned by \['departure_date'\]"):
        load_config("test", conf, environ={})


def test_a_table_is_declared_once(conf):
    (conf / "base" / "batchml.yaml").write_text((conf / "base" / "batchml.yaml").read_text()
                                                + "  scores.flights:\n    partition_by: [run_date]\n")
    with pytest.raises(ConfigError, match="table 'scores.flights' of dataset 'flight_delays' is declared more"):
        load_config("test", conf, environ={})


def test_a_model_needs_one_kind_of_label(conf):
    path = conf / "base" / "datasets" / "flight_delays.yaml"
    text = path.read_text()
    path.write_text(re.sub(r"\nlabel:\n(  .*\n)+", "\n", text))
    with pytest.raises(ConfigError, match=r"flight_delays.yaml: key 'datasets.flight_delays': .*needs a label:"):
        load_config("test", conf, environ={})
    path.write_text(text.replace("  value: ", "  presence: true\n  value: "))
    with pytest.raises(ConfigError, match="give either presence: true"):
        load_config("test", conf, environ={})


def test_the_old_absolute_review_band_is_explained(conf):
    _edit(conf, "flight_delays", "  review: {share_below: 0.05, share_above: 0.05,",
          "  review: {below: 0.05, above: 0.05,")
    with pytest.raises(ConfigError, match="review.below / review.above were absolute score distances"):
        load_config("test", conf, environ={})


def test_environments_do_not_declare_tables(conf):
    (conf / "test" / "datasets").mkdir()
    path = conf / "test" / "datasets" / "flight_delays.yaml"
    path.write_text("tables:\n  scores.flights: {partition_by: [run_date, chunk], allow_schema_evolution: true}\n")
    with pytest.raises(ConfigError, match=rf"{path}: key 'tables': tables are declared in conf/base"):
        load_config("test", conf, environ={})


def test_the_time_zone_and_the_known_since_rule_are_checked(conf):
    path = _edit(conf, "flight_delays", "timezone: Europe/Berlin", "timezone: Europe/Berlinn")
    with pytest.raises(ConfigError, match=rf"{path}: key 'datasets.flight_delays.timezone': .*unknown time zone"):
        load_config("test", conf, environ={})
    _edit(conf, "flight_delays", "timezone: Europe/Berlinn", "timezone: Europe/Berlin")
    _edit(conf, "flight_delays", "  table: bronze.flight_outcomes\n", "  table: bronze.flight_outcomes\n"
          "  known_since: event_time\n")
    with pytest.raises(ConfigError, match="labels: known_since 'event_time' applies to the events feed only"):
        load_config("test", conf, environ={})
    _edit(conf, "flight_delays", "  table: bronze.flight_outcomes\n  known_since: event_time\n",
          "  table: bronze.flight_outcomes\n")
    ds = load_config("test", conf, environ={}).dataset("flight_delays")  # its bulk history: events known at event time
    assert (ds.calendar().timezone, ds.calendar().known_since) == ("Europe/Berlin", "event_time")
    _edit(conf, "flight_delays", "  known_since: event_time\n", "")
    ds = load_config("test", conf, environ={}).dataset("flight_delays")
    assert ds.calendar().known_since == "ingest_date"  # the default: the strict rule
