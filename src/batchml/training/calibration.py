"""Score calibration: a monotone map from the booster's raw score to a probability (pure numpy).

``scale_pos_weight`` (set by default from the class counts, ``training/fit.py``) weights every positive
``w`` times, which shifts the booster's log-odds by about ``log(w)``: its scores rank well but are not
probabilities. Training fits a calibrator on the validation window's raw scores (``model.calibration``)
and registers it with the booster, so every loaded version scores calibrated (``registry.store``).

* ``platt``: ``sigmoid(a * logit(raw) + b)``, fit by Newton's method on Platt's smoothed targets. Strictly
  increasing (``a > 0``): the ranking, hence PR-AUC and ROC-AUC, is unchanged. It undoes a pure
  log-odds shift exactly, which is what reweighting does.
* ``isotonic``: pool-adjacent-violators on the validation window, then linear interpolation between the
  centroids (mean raw score, positive rate) of the pooled blocks; constant beyond the outermost centroids.
  Strictly increasing between them, so it keeps the ranking there; ties only at the two ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("platt", "isotonic", "none")
_EPS = 1e-7


@dataclass(frozen=True)
class Calibrator:
    """Raw score in, probability out. ``a``, ``b``: Platt's coefficients; ``x``, ``y``: isotonic knots."""

    method: str
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "platt":
            return _sigmoid(self.a * _logit(raw) + self.b)
        return np.interp(raw, self.x, self.y)

    def to_dict(self) -> dict:
        if self.method == "platt":
            return {"method": "platt", "a": self.a, "b": self.b}
        return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, doc: dict | None) -> Calibrator | None:
        """The calibrator stored with a model version; None for a version without one (raw scores)."""
        if not doc:
            return None
        if doc["method"] == "platt":
            return cls("platt", a=float(doc["a"]), b=float(doc["b"]))
        if doc["method"] == "isotonic":
            return cls("isotonic", x=tuple(map(float, doc["x"])), y=tuple(map(float, doc["y"])))
        raise ValueError(f"unknown calibration method {doc['method']!r} in the model's metadata")

    def describe(self) -> str:
        if self.method == "platt":
            return f"Platt scaling, sigmoid({self.a:.4g} x logit(raw) {'-' if self.b < 0 else '+'} {abs(self.b):.4g})"
        return f"isotonic regression, {len(self.x)} knots"


class CalibrationFailed(ValueError):
    """The validation window cannot calibrate the model (one class only, or scores that rank backwards)."""


def fit(method: str, y: np.ndarray, raw: np.ndarray, window: str = "the validation window") -> Calibrator | None:
    """The calibrator ``method`` fit on labels ``y`` and raw scores ``raw``; None for ``none``."""
    if method == "none":
        return None
    y, raw = np.asarray(y, dtype=np.float64), np.asarray(raw, dtype=np.float64)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise CalibrationFailed(f"calibration: {window} has {positives} positive(s) of {len(y)} rows; it needs "
                                "both classes (lengthen model.splits.validation_days, or model.calibration: none)")
    if method == "platt":
        return platt(y, raw, window)
    if method == "isotonic":
        return isotonic(y, raw)
    raise ValueError(f"unknown calibration method {method!r}; one of {METHODS}")


def platt(y: np.ndarray, raw: np.ndarray, window: str = "the validation window") -> Calibrator:
    """Logistic regression of ``y`` on ``logit(raw)`` (Platt 1999, with his smoothed 0/1 targets)."""
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    z = _logit(raw)
    w = np.array([1.0, 0.0])  # a, b: start from the identity
    for _ in range(100):
        q = _sigmoid(w[0] * z + w[1])
        grad = np.array([np.dot(q - t, z), np.sum(q - t)])
        s = q * (1 - q) + 1e-12
        hess = np.array([[np.dot(s, z * z), np.dot(s, z)], [np.dot(s, z), s.sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.abs(step).max() < 1e-10:
            break
    if not w[0] > 0:
        raise CalibrationFailed(f"calibration: on {window} the raw scores rank positives below negatives "
                                f"(Platt slope {w[0]:.4g}); the model did not learn, so it cannot be calibrated")
    return Calibrator("platt", a=float(w[0]), b=float(w[1]))


def isotonic(y: np.ndarray, raw: np.ndarray) -> Calibrator:
    """Pool-adjacent-violators over the raw scores (equal scores pooled first); knots at block centroids."""
    order = np.argsort(raw, kind="stable")
    xs, ys = raw[order], y[order]
    _, start = np.unique(xs, return_index=True)
    weight = np.diff(np.r_[start, len(xs)]).astype(np.float64)
    sum_x, sum_y = np.add.reduceat(xs, start), np.add.reduceat(ys, start)
    blocks: list[list[float]] = []  # [weight, sum of raw, sum of y]
    for block in zip(weight, sum_x, sum_y):
        blocks.append(list(block))
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][0] >= blocks[-1][2] / blocks[-1][0]:
            w, sx, sy = blocks.pop()
            blocks[-1] = [blocks[-1][0] + w, blocks[-1][1] + sx, blocks[-1][2] + sy]
    knots_x = tuple(float(sx / w) for w, sx, _ in blocks)
    knots_y = tuple(float(sy / w) for w, _, sy in blocks)
    return Calibrator("isotonic", x=knots_x, y=knots_y)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # no overflow warning for large |z|
