"""Sensor streams: rate, staleness, stuck values and invalid readings; scan statistics. No rclpy import.

The io_engine converts each message to a flat dict of named floats (qai_io.node) and offers it here. A
reading with NaN, infinity or a value outside its field's range is rejected and counted, never used.
A scan collects the accepted readings of every stream while it runs (Scans) and shapes them into the
scan task's result (scan_result).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from qai_edge.health import Level
from qai_edge.tasks import TaskFailed

STREAM_NAMES = ("odom", "imu", "battery", "gps")

# Plausible ranges per stream and field (a field not listed must only be finite).
VALID_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "odom": {"x": (-1e6, 1e6), "y": (-1e6, 1e6), "z": (-1e4, 1e5), "speed": (0.0, 200.0)},
    "imu": {"accel_x": (-160.0, 160.0), "accel_y": (-160.0, 160.0), "accel_z": (-160.0, 160.0),
            "gyro_x": (-35.0, 35.0), "gyro_y": (-35.0, 35.0), "gyro_z": (-35.0, 35.0)},
    "battery": {"voltage": (0.0, 1000.0), "percentage": (0.0, 1.0), "current": (-1000.0, 1000.0)},
    "gps": {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0), "altitude": (-1000.0, 1e5)},
}


@dataclass(frozen=True)
class StreamSpec:
    name: str  # odom, imu, battery, gps
    min_rate: float  # Hz: below it the stream is WARN
    stale_after: float  # s without a valid reading: ERROR
    stuck_after: int = 50  # identical readings in a row: WARN (real sensors have noise)
    startup_grace: float = 5.0  # s after start during which "no reading yet" is WARN, not ERROR


@dataclass
class StreamMonitor:
    spec: StreamSpec
    received: int = 0
    rejected: int = 0
    last_reject_reason: str = ""
    last_valid_at: float | None = None
    last_values: dict[str, float] = field(default_factory=dict)
    repeats: int = 0
    no_fix: bool = False  # gps only: the receiver reports no fix
    started_at: float = 0.0
    _times: deque = field(default_factory=lambda: deque(maxlen=200))

    def offer(self, values: Mapping[str, float], now: float) -> bool:
        """Check a reading; True when it may be used."""
        self.received += 1
        problem = self._problem(values)
        if problem:
            self.rejected += 1
            self.last_reject_reason = problem
            return False
        self.repeats = self.repeats + 1 if dict(values) == self.last_values else 0
        self.last_values = dict(values)
        self.last_valid_at = now
        self._times.append(now)
        return True

    def _problem(self, values: Mapping[str, float]) -> str:
        ranges = VALID_RANGES.get(self.spec.name, {})
        for key, value in values.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"{key} is {value}"
            low, high = ranges.get(key, (-math.inf, math.inf))
            if not low <= value <= high:
                return f"{key} = {value:g} is outside [{low:g}, {high:g}]"
        return ""

    def rate(self, now: float, window: float = 2.0) -> float:
        recent = [t for t in self._times if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def fresh(self, now: float) -> bool:
        return self.last_valid_at is not None and now - self.last_valid_at <= self.spec.stale_after

    def status(self, now: float) -> tuple[Level, str, dict[str, str]]:
        rate = self.rate(now)
        values = {"rate_hz": f"{rate:.1f}", "received": str(self.received), "rejected": str(self.rejected)}
        if self.last_reject_reason:
            values["last_rejected"] = self.last_reject_reason
        if self.last_valid_at is None:
            if now - self.started_at < self.spec.startup_grace:
                return Level.WARN, "waiting for the first reading", values
            return Level.ERROR, "no valid reading yet", values
        age = now - self.last_valid_at
        values["age_s"] = f"{age:.2f}"
        if age > self.spec.stale_after:
            return Level.ERROR, f"stale: no valid reading for {age:.1f} s", values
        if self.no_fix:
            return Level.ERROR, "no GPS fix", values
        if self.repeats >= self.spec.stuck_after:
            return Level.WARN, f"stuck: the same reading {self.repeats + 1} times in a row", values
        if rate < self.spec.min_rate:
            return Level.WARN, f"rate {rate:.1f} Hz below {self.spec.min_rate:g} Hz", values
        if self.rejected and self.rejected * 10 > self.received:
            return Level.WARN, f"{self.rejected} of {self.received} readings rejected", values
        return Level.OK, f"{rate:.0f} Hz", values


class ScanSummary:
    """Running statistics per field, over the readings of a scan (Welford)."""

    def __init__(self):
        self._stats: dict[str, list[float]] = {}  # field -> [n, mean, M2, min, max]

    def add(self, prefix: str, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            name = f"{prefix}.{key}"
            stats = self._stats.setdefault(name, [0, 0.0, 0.0, math.inf, -math.inf])
            stats[0] += 1
            delta = value - stats[1]
            stats[1] += delta / stats[0]
            stats[2] += delta * (value - stats[1])
            stats[3] = min(stats[3], value)
            stats[4] = max(stats[4], value)

    def result(self) -> dict[str, dict[str, float]]:
        return {name: {"n": n, "mean": mean, "std": math.sqrt(m2 / n) if n > 1 else 0.0, "min": low, "max": high}
                for name, (n, mean, m2, low, high) in sorted(self._stats.items())}


class Scans:
    """The scans running now: every accepted reading goes into each of them.

    Thread-safe: readings arrive on the executor thread, scans open and close in task threads.
    """

    def __init__(self):
        self._open: list[ScanSummary] = []
        self._lock = threading.Lock()

    def open(self) -> ScanSummary:
        summary = ScanSummary()
        with self._lock:
            self._open.append(summary)
        return summary

    def close(self, summary: ScanSummary) -> None:
        with self._lock:
            self._open.remove(summary)

    def add(self, stream: str, values: Mapping[str, float]) -> None:
        if not self._open:  # the common case, without the lock
            return
        with self._lock:
            for summary in self._open:
                summary.add(stream, values)


def scan_result(summary: ScanSummary, sensors: Sequence[str], duration: float,
                position: Sequence[float] | None, gps: Sequence[float] | None) -> dict:
    """Shape the scan task's result from what it collected.

    Raises TaskFailed (retryable) when no sensor asked for gave a valid reading.
    """
    stats = {name: value for name, value in summary.result().items() if name.split(".")[0] in sensors}
    if not stats:
        raise TaskFailed(f"scan: no valid reading from {', '.join(sensors)} in {duration:g} s", retryable=True)
    samples = {s: max((v["n"] for k, v in stats.items() if k.startswith(f"{s}.")), default=0) for s in sensors}
    return {"summary": {k: {m: round(x, 6) for m, x in v.items()} for k, v in stats.items()},
            "samples": samples, "position": [round(c, 3) for c in position] if position else None,
            "gps": [round(c, 8) for c in gps] if gps else None, "duration": duration}
