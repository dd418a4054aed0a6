"""The classical baselines each model is measured against, on the same data. No rclpy import, no torch.

Endurance: the autopilot's estimate (as PX4's battery estimator does it): the state of charge is the lower of
the reported percentage and a load-compensated voltage estimate between the pack's empty and full voltages;
the charge left over a filtered current is the time left. Its two coefficients (scale, offset) are fitted by
least squares on the training flights, so it is calibrated on exactly what the model learns from.

Endurance, a stronger one: a ridge regression on the model's own inputs and that estimate (`LinearEndurance`),
its strength tuned on the validation flights.

Anomaly: a z-score detector: each feature's value and its tick-to-tick change against the mean and standard
deviation measured on clean training flights; the score is the largest |z|, smoothed as the model's is.

Anomaly, by rule (`RuleDetector`): what an autopilot's failsafes check. Each stream's silence against the
io_engine's own stale limit, a stream whose readings repeat exactly (stuck), and a one-sided CUSUM on the
drops of the load-compensated pack voltage (a failing cell). Its CUSUM slack is fitted on clean training
flights; its threshold, like the z-score's, is tuned on the validation flights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from qai_intelligence.features import AGE_LIMIT, ANOMALY, ENDURANCE

_E = {name: index for index, name in enumerate(ENDURANCE.features)}


@dataclass
class EnduranceBaseline:
    """Time left = scale * (charge left / filtered current) + offset, with the charge from percentage and voltage."""

    voltage_empty: float = 13.2  # the pack the autopilot is configured for (4S LiPo)
    voltage_full: float = 16.8
    internal_resistance: float = 0.02
    current_filter: float = 30.0  # s, time constant of the current's moving average
    scale: float = 1.0
    offset: float = 0.0
    _current: float | None = field(default=None, repr=False)

    def reset(self) -> None:
        self._current = None

    def raw(self, features: Sequence[float], dt: float) -> float:
        """Return the uncalibrated estimate, seconds; update the current filter."""
        voltage, current = features[_E["voltage"]], features[_E["current"]]
        percentage, remaining_ah = features[_E["percentage"]], features[_E["remaining_ah"]]
        alpha = 1.0 if self._current is None else min(1.0, dt / self.current_filter)
        self._current = current if self._current is None else self._current + alpha * (current - self._current)
        compensated = voltage + current * self.internal_resistance
        voltage_soc = (compensated - self.voltage_empty) / (self.voltage_full - self.voltage_empty)
        soc = max(0.0, min(percentage, voltage_soc))
        capacity_ah = remaining_ah / percentage if percentage > 1e-6 else 0.0
        return soc * capacity_ah * 3600.0 / max(self._current, 0.5)

    def predict(self, features: Sequence[float], dt: float) -> float:
        return max(0.0, self.scale * self.raw(features, dt) + self.offset)

    def flight(self, features: np.ndarray, dt: float) -> np.ndarray:
        """Estimate the time left at every tick (the current filter starts afresh)."""
        self.reset()
        return np.array([self.predict(row, dt) for row in features])

    def fit(self, flights: Sequence[tuple[np.ndarray, np.ndarray]], dt: float) -> None:
        """Least-squares scale and offset over (features, remaining) of the training flights."""
        raw, truth = [], []
        for features, remaining in flights:
            self.reset()
            raw.extend(self.raw(row, dt) for row in features)
            truth.extend(remaining)
        a = np.stack([np.array(raw), np.ones(len(raw))], axis=1)
        (self.scale, self.offset), *_ = np.linalg.lstsq(a, np.array(truth), rcond=None)
        self.scale, self.offset = float(self.scale), float(self.offset)


@dataclass
class LinearEndurance:
    """A ridge regression of the time left on what the model sees: its features and the autopilot estimate.

    Fitted on the model's own training flights (standardised inputs, closed form); its ridge strength is
    chosen on the validation flights from a grid (`fit_tuned`), so the model is measured against a tuned
    regressor, not a default one.
    """

    estimate: EnduranceBaseline
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.ones(0))
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intercept: float = 0.0
    alpha: float = 1.0

    def _inputs(self, features: np.ndarray, dt: float) -> np.ndarray:
        x = np.asarray(features, dtype=float)
        return np.concatenate([x, self.estimate.flight(x, dt)[:, None]], axis=1)

    def fit(self, flights: Sequence[tuple[np.ndarray, np.ndarray]], dt: float, alpha: float = 1.0) -> None:
        x = np.concatenate([self._inputs(f, dt) for f, _ in flights])
        y = np.concatenate([np.asarray(r, dtype=float) for _, r in flights])
        self.mean, self.std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-9)
        z = (x - self.mean) / self.std
        self.alpha = alpha
        self.intercept = float(y.mean())
        self.coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - self.intercept))

    def fit_tuned(self, train: Sequence[tuple[np.ndarray, np.ndarray]], validation: Sequence[tuple[np.ndarray,
                  np.ndarray]], dt: float, alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)) -> None:
        """Fit with each ridge strength; keep the one with the lowest mean per-flight MAE on `validation`."""
        def score(alpha: float) -> float:
            self.fit(train, dt, alpha)
            return float(np.mean([np.abs(self.flight(f, dt) - r).mean() for f, r in validation]))

        best = min(alphas, key=score)
        self.fit(train, dt, best)

    def flight(self, features: np.ndarray, dt: float) -> np.ndarray:
        """Predict the time left at every tick, never below 0."""
        return np.maximum(0.0, ((self._inputs(features, dt) - self.mean) / self.std) @ self.coef + self.intercept)


@dataclass
class ZScoreDetector:
    """|z| of each anomaly feature and of its change since the previous tick, against clean training data."""

    mean: np.ndarray
    std: np.ndarray
    delta_mean: np.ndarray
    delta_std: np.ndarray
    smoothing: float = 0.3  # EWMA weight of the newest squared z (the model's score uses the same)
    scale: np.ndarray | None = None  # per feature: its clean 99.9th percentile (set by calibrate)

    @classmethod
    def fit(cls, flights: Sequence[np.ndarray], smoothing: float = 0.3) -> "ZScoreDetector":
        values = np.concatenate([f for f in flights])
        deltas = np.concatenate([np.diff(f, axis=0) for f in flights])
        return cls(values.mean(0), values.std(0).clip(1e-3), deltas.mean(0), deltas.std(0).clip(1e-3), smoothing)

    def squared(self, features: np.ndarray) -> np.ndarray:
        """Return, per tick and feature, the larger squared |z| of the value and of its change."""
        n = len(ANOMALY.features) - 3  # the command is an input, not something to judge
        z = np.abs((features[:, :n] - self.mean[:n]) / self.std[:n])
        deltas = np.diff(features, axis=0, prepend=features[:1])
        dz = np.abs((deltas[:, :n] - self.delta_mean[:n]) / self.delta_std[:n])
        return np.maximum(z, dz) ** 2

    def calibrate(self, clean: Sequence[np.ndarray]) -> None:
        """Scale each feature by its own clean 99.9th percentile, so heavy-tailed ones do not set the threshold."""
        self.scale = feature_scales([self.squared(f) for f in clean], self.smoothing)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Return the score of every tick of one flight."""
        squared = self.squared(features)
        if self.scale is not None:
            squared = squared / self.scale ** 2
        return smoothed_max(squared, self.smoothing)


def smoothed(squared_errors: np.ndarray, alpha: float) -> np.ndarray:
    """Return, per tick and feature, the square root of an EWMA of squared normalised errors."""
    state = np.zeros(squared_errors.shape[1])
    out = np.empty(squared_errors.shape)
    for t, row in enumerate(squared_errors):
        state = state + alpha * (np.minimum(row, 1e6) - state)
        out[t] = state
    return np.sqrt(out)


def feature_scales(squared_errors: Sequence[np.ndarray], alpha: float, quantile: float = 99.9) -> np.ndarray:
    """Return, per feature, the `quantile` of its smoothed score on clean flights (at least 1)."""
    pooled = np.concatenate([smoothed(e, alpha)[20:] for e in squared_errors])
    return np.maximum(np.percentile(pooled, quantile, axis=0), 1.0)


NOISE_TRACKING = 0.005  # EWMA weight of the slow noise level (time constant 200 ticks, 10 s at 20 Hz)
NOISE_CLIP = 25.0  # squared errors above this do not raise the noise level (a fault's spike is not noise)


def smoothed_max(squared_errors: np.ndarray, alpha: float, beta: float = NOISE_TRACKING) -> np.ndarray:
    """Score each tick: the worst feature's fast EWMA of squared errors over its slow noise level.

    The square root of a fast EWMA of squared normalised errors, divided by a slow EWMA of them when that is
    above the calibrated level (1): a flight noisier than any seen in calibration (stronger gusts) raises the
    bar, a sudden change still stands out. The node's AnomalyScorer computes the same.
    """
    fast = np.zeros(squared_errors.shape[1])
    slow = np.ones(squared_errors.shape[1])
    out = np.empty(len(squared_errors))
    for t, row in enumerate(np.minimum(squared_errors, 1e6)):
        fast += alpha * (row - fast)
        slow += beta * (np.minimum(row, NOISE_CLIP) - slow)
        out[t] = math.sqrt((fast / np.maximum(slow, 1.0)).max())
    return out


_A = {name: index for index, name in enumerate(ANOMALY.features)}
# The io_engine's stale limits (qai_io.core: max(3 / min rate, 0.5 s) at its default min rates: battery 6 s,
# GPS 3 s), but no longer than the features' ages go (they saturate at AGE_LIMIT).
STREAM_TIMEOUTS = {"age_odom": 0.5, "age_imu": 0.5, "age_battery": min(6.0, AGE_LIMIT), "age_gps": min(3.0, AGE_LIMIT)}
STUCK_FEATURES = {"odom": ("vx", "vy", "vz"), "imu": ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")}


@dataclass
class RuleDetector:
    """Failsafe rules as one score: a score of 1 is where each rule's own limit lies (see the module docstring).

    Per tick: each stream's age over its timeout; the ticks its readings have repeated exactly over
    `stuck_ticks`; the CUSUM of the compensated voltage's drops (less the slack `k`) over `h`. The largest wins.
    """

    internal_resistance: float = 0.02  # ohm, as the endurance estimate assumes
    k: float = 0.01  # V a tick of drop that is normal (fitted: see fit)
    h: float = 0.3  # V of drop, summed beyond the slack, that is a sag
    stuck_ticks: int = 10  # 0.5 s at the anomaly tick's 20 Hz

    @classmethod
    def fit(cls, clean: Sequence[np.ndarray], quantile: float = 99.9) -> "RuleDetector":
        """Set the CUSUM slack to the clean flights' `quantile` of tick-to-tick drops of the compensated voltage."""
        detector = cls()
        drops = np.concatenate([-np.diff(detector._compensated(f)) for f in clean])
        detector.k = float(max(np.percentile(drops, quantile), 1e-3))
        return detector

    def _compensated(self, features: np.ndarray) -> np.ndarray:
        return features[:, _A["voltage"]] + features[:, _A["current"]] * self.internal_resistance

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Return the score of every tick of one flight."""
        ages = np.max(np.stack([features[:, _A[name]] / limit for name, limit in STREAM_TIMEOUTS.items()]), axis=0)
        stuck = np.zeros(len(features))
        for names in STUCK_FEATURES.values():
            columns = features[:, [_A[n] for n in names]]
            same = np.concatenate([[False], np.all(columns[1:] == columns[:-1], axis=1)])
            run = np.zeros(len(features))
            for t in range(1, len(features)):
                run[t] = run[t - 1] + 1 if same[t] else 0
            stuck = np.maximum(stuck, run / self.stuck_ticks)
        drops = np.concatenate([[0.0], -np.diff(self._compensated(features))])
        cusum = np.zeros(len(features))
        for t in range(1, len(features)):
            cusum[t] = max(0.0, cusum[t - 1] + drops[t] - self.k)
        return np.maximum(np.maximum(ages, stuck), cusum / self.h)
