"""Calibrators on scores reweighted the way ``scale_pos_weight`` reweights them (pure numpy, no Spark)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from batchml.training import calibration as C
from batchml.training import card_html, report
from batchml.training import metrics as M


def _reweighted(seed: int, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores): true log-odds plus log(w), w = negatives / positives, as a reweighted fit learns."""
    rng = np.random.default_rng(seed)
    logit = -3.0 + 1.5 * rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    w = (1 - y.mean()) / y.mean()
    return y, 1 / (1 + np.exp(-(logit + np.log(w))))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrated_scores_are_closer_to_probabilities_on_held_out_data(method):
    y_fit, raw_fit = _reweighted(seed=1)
    y, raw = _reweighted(seed=2)  # held out: another draw
    calibrator = C.fit(method, y_fit, raw_fit)
    before, _ = M.calibration(y, raw, 10)
    after, _ = M.calibration(y, calibrator(raw), 10)
    assert before["ece"] > 0.2 and after["ece"] < 0.02 and after["ece"] < before["ece"] / 10
    assert after["brier"] < before["brier"]


def test_platt_keeps_the_ranking_exactly_and_undoes_the_log_odds_shift():
    y, raw = _reweighted(seed=1)
    calibrator = C.fit("platt", y, raw)
    w = (1 - y.mean()) / y.mean()
    assert calibrator.a == pytest.approx(1.0, abs=0.05) and calibrator.b == pytest.approx(-np.log(w), abs=0.1)
    p = calibrator(raw)
    assert (np.diff(p[np.argsort(raw)]) >= 0).all()
    assert M.ranking(y, p) == pytest.approx(M.ranking(y, raw), abs=1e-12)


def test_isotonic_is_monotone_and_ties_only_beyond_its_outermost_knots():
    y_fit, raw_fit = _reweighted(seed=1)
    y, raw = _reweighted(seed=2)
    calibrator = C.fit("isotonic", y_fit, raw_fit)
    assert all(np.diff(calibrator.x) > 0) and all(np.diff(calibrator.y) > 0)  # strictly increasing knots
    p = calibrator(raw)
    assert (np.diff(p[np.argsort(raw)]) >= 0).all()
    inside = (raw >= calibrator.x[0]) & (raw <= calibrator.x[-1])
    assert len(np.unique(p[inside])) == len(np.unique(raw[inside]))  # no new ties between the knots
    clipped = np.clip(raw, calibrator.x[0], calibrator.x[-1])  # the same ranking as the clipped raw score
    assert M.ranking(y, p)["roc_auc"] == pytest.approx(M.ranking(y, clipped)["roc_auc"], abs=1e-12)
    assert M.ranking(y, p)["roc_auc"] == pytest.approx(M.ranking(y, raw)["roc_auc"], abs=0.005)


def test_isotonic_pools_violators_into_their_mean():
    calibrator = C.isotonic(np.array([0, 1, 0, 1, 1.0]), np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert calibrator.x == pytest.approx((0.1, 0.25, 0.45)) and calibrator.y == pytest.approx((0, 0.5, 1))
    assert calibrator(np.array([0.0, 0.175, 0.35, 0.9])) == pytest.approx([0, 0.25, 0.75, 1])


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_a_calibrator_round_trips_through_the_models_json_metadata(method):
    y, raw = _reweighted(seed=3, n=2000)
    calibrator = C.fit(method, y, raw)
    again = C.Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    assert again == calibrator and np.array_equal(again(raw), calibrator(raw))
    assert C.Calibrator.from_dict({}) is None and C.fit("none", y, raw) is None


def test_a_window_that_cannot_calibrate_fails_naming_it():
    raw = np.linspace(0.1, 0.9, 50)
    with pytest.raises(C.CalibrationFailed, match=r"^calibration: the validation window 2024-03-10\.\.2024-03-11 has "
                                                  r"0 positive\(s\) of 50 rows; it needs both classes"):
        C.fit("isotonic", np.zeros(50), raw, "the validation window 2024-03-10..2024-03-11")
    backwards = (raw < 0.3).astype(float)  # the positives score lowest
    with pytest.raises(C.CalibrationFailed, match="rank positives below negatives"):
        C.fit("platt", backwards, raw)


def test_the_card_gives_ece_and_brier_before_and_after_or_warns_when_nothing_was_calibrated():
    y, raw = _reweighted(seed=4, n=5000)
    calibrator = C.fit("isotonic", y, raw)
    r = report.Reliability(calibrator.describe(), *M.calibration(y, raw, 10), *M.calibration(y, calibrator(raw), 10))
    text = "\n".join([*report._calibration(r), *report._calibration_limit(r)])
    assert f"| raw (before) | {r.raw['ece']:.4f} | {r.raw['brier']:.4f} |" in text
    assert f"| calibrated (after) | {r.calibrated['ece']:.4f} | {r.calibrated['brier']:.4f} |" in text
    assert "isotonic regression" in text and "not calibrated" not in text and "| [0.90, 1.00] |" in text
    events = [int(row.split("|")[2].replace(",", "")) for row in text.splitlines() if row.startswith("| [")]
    assert sum(events) == len(y)  # every event in one raw bin
    page = card_html.to_html("\n".join(report._calibration(r)), "card",
                             {report.CALIBRATION_HEADING: card_html.reliability_svg(r.curves())})
    assert "<h2>Calibration (test window)</h2><figure><svg" in page.replace("\n", "")
    assert page.count("<polyline") == 2 and page.count("<circle") == len(r.raw_table) + len(r.calibrated_table)
    plain = report.Reliability(None, *M.calibration(y, raw, 10), *M.calibration(y, raw, 10))
    text = "\n".join([*report._calibration(plain), *report._calibration_limit(plain)])
    assert "`model.calibration: none`" in text and "calibrated (after)" not in text
    assert "Scores are not calibrated probabilities when `scale_pos_weight` is set" in text
    assert list(plain.curves()) == ["raw"]
