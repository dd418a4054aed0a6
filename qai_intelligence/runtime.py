"""The models in service: one tick at a time, hidden state carried, bad input kept out, swapped between ticks.

No rclpy import (torch, through the models). The node owns one `ModelSlot` per task and calls `step` from its
callbacks; everything here is plain and unit-tested in-process.

- `ModelSlot.step` refuses a feature vector with a NaN, an infinity or an out-of-range value (counted, the
  reason kept), resets the hidden state after a gap longer than `gap` seconds, passes the time since the last
  tick to the liquid cells, and records each inference's latency.
- `ModelSlot.prepare` (in a worker thread) warms a new model's state on the recent inputs; `swap` (on the
  executor thread, between two ticks) replays what arrived meanwhile and puts it in service: no tick is lost.
- `EnduranceWatch` decides `endurance_low`: the predicted endurance below what the return home needs.
- `AnomalyScorer` turns the anomaly model's predictions into a score and alarms.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from qai_intelligence.baselines import NOISE_CLIP, NOISE_TRACKING
from qai_intelligence.fast import Step, stepper
from qai_intelligence.features import FeatureSet
from qai_intelligence.metrics import WARM_UP

if TYPE_CHECKING:  # the engine's models step in numpy: torch is imported only where one must be
    from qai_intelligence.models import SequenceModel


class LatencyStats:
    """The last `size` latencies (seconds) past a warm-up; percentiles in milliseconds.

    The first `warm_up` samples after a start (or `restart`, when another model goes in service) are left
    out: they pay for first-call allocations and cold caches, not for a tick in service. `samples` counts
    what was kept since the start (the percentiles are over the last `size` of them).
    """

    def __init__(self, size: int = 2000, warm_up: int = 20):
        self._values: deque[float] = deque(maxlen=size)
        self.warm_up = warm_up
        self._cold = warm_up
        self.samples = 0
        self.discarded = 0

    def restart(self) -> None:
        """Discard the next `warm_up` samples again (a new model in service)."""
        self._cold = self.warm_up

    def add(self, seconds: float) -> None:
        if self._cold > 0:
            self._cold -= 1
            self.discarded += 1
            return
        self._values.append(seconds)
        self.samples += 1

    def __len__(self) -> int:
        return len(self._values)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self._values, float), q) * 1e3) if self._values else math.nan

    def values(self) -> list[float]:
        return list(self._values)


@dataclass
class Prepared:
    """A model ready to swap in: its state warmed on inputs up to tick `upto`."""

    model: SequenceModel
    version: str
    meta: dict[str, Any]
    state: Any  # the step's state (qai_intelligence.fast): a numpy array for a CfC, else a tensor
    upto: int
    step: Step | None = None


class ModelSlot:
    """One task's model in service."""

    def __init__(self, task: str, features: FeatureSet, model: SequenceModel, version: str, meta: dict[str, Any],
                 period: float, gap: float, history: int = 200):
        self.task = task
        self.features = features
        self.period = period  # s: the nominal tick
        self.gap = gap  # s without a tick after which the state starts afresh
        self.model, self.version, self.meta = model, version, meta
        self._step = stepper(model)  # numpy for a CfC (qai_intelligence.fast): the same outputs, faster
        self.state: Any = None
        self.last_tick: float | None = None
        self.ticks = 0
        self.skipped = 0
        self.last_skip_reason = ""
        self.resets = 0
        self.swaps = 0
        self.latency = LatencyStats()  # the model's step alone
        self.tick_latency = LatencyStats()  # the whole tick: features, step, scoring (the engine records it)
        self._recent: deque[tuple[int, list[float], float]] = deque(maxlen=history)
        self._lock = threading.Lock()  # guards _recent against a worker's snapshot

    def reset(self) -> None:
        self.state = None
        self.last_tick = None

    def step(self, features: Sequence[float], now: float) -> np.ndarray | None:
        """One tick: the outputs, or None when the features were refused (the tick is skipped and counted)."""
        problem = self.features.check_vector(features)
        if problem:
            self.skipped += 1
            self.last_skip_reason = problem
            return None
        if self.last_tick is not None and (now - self.last_tick > self.gap or now < self.last_tick):
            self.state = None
            self.resets += 1
        timespan = 1.0 if self.last_tick is None or self.state is None else \
            min(10.0, max(0.1, (now - self.last_tick) / self.period))
        self.last_tick = now
        x = np.array([features], dtype=np.float32)
        started = time.perf_counter()
        y, self.state = self._step(x, self.state, timespan)
        self.latency.add(time.perf_counter() - started)
        self.ticks += 1
        with self._lock:
            self._recent.append((self.ticks, list(features), timespan if self.state is not None else 1.0))
        return y[0]

    def prepare(self, model: SequenceModel, version: str, meta: dict[str, Any]) -> Prepared:
        """Warm `model`'s state on the recent inputs (call from a worker thread)."""
        with self._lock:
            recent = list(self._recent)
        state, step = None, stepper(model)
        for _, features, timespan in recent:
            _, state = step(np.array([features], dtype=np.float32), state, timespan)
        return Prepared(model, version, meta, state, recent[-1][0] if recent else 0, step)

    def swap(self, prepared: Prepared) -> None:
        """Put a prepared model in service (call on the thread that calls step, between two ticks)."""
        state, step = prepared.state, prepared.step or stepper(prepared.model)
        if self.state is not None:
            with self._lock:
                missed = [r for r in self._recent if r[0] > prepared.upto]
            for _, features, timespan in missed:
                _, state = step(np.array([features], dtype=np.float32), state, timespan)
        else:
            state = None
        self.model, self.version, self.meta, self.state = prepared.model, prepared.version, prepared.meta, state
        self._step = step
        self.swaps += 1
        self.latency.restart()
        self.tick_latency.restart()

    def status(self) -> dict[str, str]:
        return {f"{self.task}_version": self.version, f"{self.task}_cell": self.model.config.cell,
                f"{self.task}_ticks": str(self.ticks), f"{self.task}_skipped": str(self.skipped),
                f"{self.task}_resets": str(self.resets),
                f"{self.task}_latency_p50_ms": f"{self.latency.percentile_ms(50):.3f}",
                f"{self.task}_latency_p99_ms": f"{self.latency.percentile_ms(99):.3f}",
                f"{self.task}_latency_samples": str(self.latency.samples),
                f"{self.task}_tick_p50_ms": f"{self.tick_latency.percentile_ms(50):.3f}",
                f"{self.task}_tick_p99_ms": f"{self.tick_latency.percentile_ms(99):.3f}",
                f"{self.task}_tick_samples": str(self.tick_latency.samples),
                **({f"{self.task}_last_skipped": self.last_skip_reason} if self.last_skip_reason else {})}


# -- Endurance ------------------------------------------------------------------------------------

@dataclass
class ReturnPlan:
    """How the vehicle gets home (the I/O engine's return_home): climb, fly home, land."""

    speed: float = 3.0  # m/s horizontal
    climb_rate: float = 2.0  # m/s
    landing_speed: float = 0.8  # m/s
    altitude: float = 10.0  # m: climbs to at least this
    margin: float = 30.0  # s added to what the return takes
    margin_fraction: float = 0.2  # share of the return's time added on top

    def seconds(self, position: Sequence[float], home: Sequence[float]) -> float:
        """Time to return home and land from `position`, margin included."""
        altitude = max(self.altitude, position[2])
        climb = max(0.0, altitude - position[2]) / self.climb_rate
        cruise = math.hypot(position[0] - home[0], position[1] - home[1]) / self.speed
        land = altitude / self.landing_speed
        return (climb + cruise + land) * (1.0 + self.margin_fraction) + self.margin


class EnduranceWatch:
    """Decide `endurance_low`: once, when the predicted endurance falls below what the return needs.

    It is armed again only when the prediction has been above `rearm_ratio` times the need for `rearm_after`
    seconds (a landed, recharged vehicle).
    """

    def __init__(self, rearm_ratio: float = 1.5, rearm_after: float = 10.0):
        self.rearm_ratio = rearm_ratio
        self.rearm_after = rearm_after
        self.low = False
        self._above_since: float | None = None

    def update(self, endurance: float, need: float, now: float) -> bool:
        """Return True exactly when an endurance_low event should go out."""
        if not self.low:
            if endurance < need:
                self.low = True
                self._above_since = None
                return True
            return False
        if endurance > need * self.rearm_ratio:
            self._above_since = now if self._above_since is None else self._above_since
            if now - self._above_since >= self.rearm_after:
                self.low = False
        else:
            self._above_since = None
        return False


# -- Anomaly --------------------------------------------------------------------------------------

class AnomalyScorer:
    """Score each tick by how far the readings are from what the model predicted the tick before.

    The score is the largest, over the predicted features, of the root of an EWMA of squared errors in units
    of their usual spread (relative to the flight's slow noise level where that is higher, as
    baselines.smoothed_max does). An alarm is the score crossing the threshold, at most once per `refractory`
    seconds.
    """

    def __init__(self, targets: Sequence[str], inputs: Sequence[str], residual_std: Sequence[float], smoothing: float,
                 threshold: float, refractory: float = 2.0, warm_up: int = WARM_UP):
        if len(residual_std) != len(targets):
            raise ValueError(f"residual_std: expected {len(targets)} values, got {len(residual_std)}")
        self.targets = tuple(targets)
        self.index = np.array([list(inputs).index(name) for name in targets])
        self.residual_std = np.asarray(residual_std, dtype=float)
        self.smoothing = smoothing
        self.threshold = threshold
        self.refractory = refractory
        self.warm_up = warm_up  # updates after a reset in which the state settles: no alarm, nothing anomalous
        self.reset()
        self._last_alarm = -math.inf

    def reset(self) -> None:
        self._prediction: np.ndarray | None = None
        self._spread: np.ndarray | None = None
        self._ewma = np.zeros(len(self.targets))
        self._noise = np.ones(len(self.targets))  # slow noise level, as baselines.smoothed_max tracks it
        self.score = 0.0
        self.worst = ""
        self.above = False  # above the threshold, past the warm-up
        self._updates = 0

    def update(self, features: Sequence[float], prediction: np.ndarray, now: float,
               spread: np.ndarray | None = None) -> bool:
        """Score this tick's features against the last prediction, keep the new one; return True on an alarm.

        Errors are in units of the spread predicted with the prediction (if any) times residual_std.
        """
        actual = np.asarray(features, dtype=float)[self.index]
        if self._prediction is not None:
            scale = self.residual_std * (self._spread if self._spread is not None else 1.0)
            squared = np.minimum(((actual - self._prediction) / scale) ** 2, 1e6)
            self._ewma += self.smoothing * (squared - self._ewma)
            self._noise += NOISE_TRACKING * (np.minimum(squared, NOISE_CLIP) - self._noise)
            relative = self._ewma / np.maximum(self._noise, 1.0)
            worst = int(np.argmax(relative))
            self.score, self.worst = math.sqrt(relative[worst]), self.targets[worst]
        self._prediction = np.asarray(prediction, dtype=float)
        self._spread = None if spread is None else np.asarray(spread, dtype=float)
        self._updates += 1
        above = self.score > self.threshold and self._updates > self.warm_up  # the state settles first
        alarm = above and not self.above and now - self._last_alarm >= self.refractory
        self.above = above
        if alarm:
            self._last_alarm = now
        return alarm
