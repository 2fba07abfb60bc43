"""The trigger form's params: Airflow's schema checks and batchml's cross-field rules."""

from __future__ import annotations

import datetime as dt

import pytest

from batchml.orchestration.params import ParamError, nightly_params, resolve

INTERVAL = dt.datetime(2024, 1, 5, tzinfo=dt.timezone.utc)
OVERRIDE = {"override_table": "bronze.card_transactions", "override_checks": ["row_count"], "override_by": "ana",
            "override_reason": "short day, confirmed with the source team"}


def test_run_date_is_the_data_interval_start_unless_given():
    assert resolve({}, INTERVAL).run_date == "2024-01-05"
    assert resolve({"run_date": "2024-01-02"}, INTERVAL).run_date == "2024-01-02"
    with pytest.raises(ParamError, match="run_date is required"):
        resolve({}, None)
    with pytest.raises(ParamError, match="run_date: not a date"):
        resolve({"run_date": "2024-13-01"}, INTERVAL)


def test_override_needs_all_four_fields_and_a_real_reason():
    spec = resolve(OVERRIDE, INTERVAL)
    assert spec.override_checks == ["row_count"] and spec.override_by == "ana"
    with pytest.raises(ParamError, match="missing: override_by, override_reason"):
        resolve({"override_table": "bronze.card_transactions", "override_checks": ["row_count"]}, INTERVAL)
    with pytest.raises(ParamError, match="missing: override_checks"):
        resolve({**OVERRIDE, "override_checks": [" "]}, INTERVAL)
    with pytest.raises(ParamError, match="at least 10 characters"):
        resolve({**OVERRIDE, "override_reason": "because  "}, INTERVAL)
    assert resolve({"override_checks": []}, INTERVAL).override_checks == []


def test_airflow_rejects_bad_values_in_the_form():
    from airflow.sdk import ParamsDict

    params = ParamsDict(nightly_params())
    params.validate()  # the defaults are valid: a scheduled run needs no input
    for key, bad in [("run_date", "5 Jan 2024"), ("override_reason", "too short"), ("dataset", "a b")]:
        with pytest.raises(Exception, match=key):
            ParamsDict({**nightly_params(), key: nightly_params()[key].__class__(
                bad, **nightly_params()[key].schema)}).validate()


def test_the_form_marks_no_field_required_and_says_which_date_wins():
    """Airflow's trigger form marks a field required unless its type allows null: every batchml param is optional."""
    params = nightly_params()
    assert all("null" in p.schema["type"] for p in params.values()), {k: p.schema["type"] for k, p in params.items()}
    assert "wins" in params["run_date"].description and "Logical date" in params["run_date"].description
    assert resolve({"override_checks": None}, INTERVAL).override_checks == []
