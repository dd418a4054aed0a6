"""Model inputs: sensor readings turned into feature vectors, checked before any model sees them. No rclpy import.

The same code builds features for training (qai_intelligence.data, from the simulator's vehicle model) and in
the node (from messages), so a model sees in service exactly what it saw in training.

A reading is a flat dict of named floats per stream, as the node converts messages:
  odom     x, y, z (m, odom frame), yaw (rad), vx, vy, vz (m/s, body frame: forward, left, up), yaw_rate
  imu      accel_x, accel_y, accel_z (m/s^2, body), gyro_x, gyro_y, gyro_z (rad/s)
  battery  voltage (V), current (A, positive while discharging), percentage (0..1), capacity_ah
  gps      east, north, up (m from the first fix)
  cmd      forward, left, up (m/s), yaw_rate (the velocity command the I/O engine sends)
A reading with a non-finite value or a value outside its field's range is refused (`check_reading`) and
counted by the caller; the feature vector is checked again (`check_vector`) before it reaches a model.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Sequence

# Plausible ranges per stream and field. Readings outside are refused, never used.
READING_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "odom": {"x": (-1e6, 1e6), "y": (-1e6, 1e6), "z": (-1e4, 1e5), "yaw": (-4.0, 4.0),
             "vx": (-100.0, 100.0), "vy": (-100.0, 100.0), "vz": (-100.0, 100.0), "yaw_rate": (-35.0, 35.0)},
    "imu": {"accel_x": (-160.0, 160.0), "accel_y": (-160.0, 160.0), "accel_z": (-160.0, 160.0),
            "gyro_x": (-35.0, 35.0), "gyro_y": (-35.0, 35.0), "gyro_z": (-35.0, 35.0)},
    "battery": {"voltage": (0.0, 1000.0), "current": (-1000.0, 1000.0), "percentage": (0.0, 1.0),
                "capacity_ah": (0.0, 10000.0)},
    "gps": {"east": (-1e6, 1e6), "north": (-1e6, 1e6), "up": (-1e5, 1e5)},
    "cmd": {"forward": (-100.0, 100.0), "left": (-100.0, 100.0), "up": (-100.0, 100.0), "yaw_rate": (-35.0, 35.0)},
    "target": {"x": (-1e6, 1e6), "y": (-1e6, 1e6), "z": (-1e4, 1e5)},
}
STREAMS = tuple(READING_RANGES)


def check_reading(stream: str, values: Mapping[str, float]) -> str:
    """Return why a reading must not be used ('' when it may): a missing, non-finite or out-of-range field."""
    ranges = READING_RANGES[stream]
    for key, (low, high) in ranges.items():
        if key not in values:
            return f"{stream}.{key} is missing"
        value = values[key]
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{stream}.{key} is {value!r}"
        if not low <= value <= high:
            return f"{stream}.{key} = {value:g} is outside [{low:g}, {high:g}]"
    return ""


@dataclass(frozen=True)
class FeatureSet:
    """The named inputs of one model, with the range each must lie in to reach it."""

    name: str
    features: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.features)

    def check_vector(self, vector: Sequence[float]) -> str:
        """Return why a feature vector must not reach the model ('' when it may)."""
        if len(vector) != len(self.features):
            return f"{self.name}: expected {len(self.features)} features, got {len(vector)}"
        for name, value, low, high in zip(self.features, vector, self.low, self.high):
            if not math.isfinite(value):
                return f"{self.name}.{name} is {value!r}"
            if not low <= value <= high:
                return f"{self.name}.{name} = {value:g} is outside [{low:g}, {high:g}]"
        return ""


def _feature_set(name: str, spec: Sequence[tuple[str, float, float]]) -> FeatureSet:
    return FeatureSet(name, tuple(s[0] for s in spec), tuple(s[1] for s in spec), tuple(s[2] for s in spec))


# -- Endurance: one tick per `endurance_period` (1 s) ------------------------------------------------

CHARGE_TIME_LIMIT = 20000.0  # s: the charge left over the present current, saturated (a landed vehicle)
# The pack the autopilot is configured for (a 4S LiPo); the baseline uses the same.
PACK = {"voltage_empty": 13.2, "voltage_full": 16.8, "internal_resistance": 0.02}

ENDURANCE = _feature_set("endurance", (
    ("voltage", 0.0, 100.0), ("current", -20.0, 500.0), ("power", -1000.0, 20000.0),
    ("percentage", 0.0, 1.0), ("remaining_ah", 0.0, 1000.0), ("horizontal_speed", 0.0, 60.0),
    ("vertical_speed", -30.0, 30.0), ("altitude", -100.0, 5000.0), ("payload", 0.0, 100.0),
    ("charge_time", 0.0, CHARGE_TIME_LIMIT)))


def endurance_features(battery: Mapping[str, float], odom: Mapping[str, float], payload: float) -> list[float]:
    """Return the endurance model's inputs from the latest battery and odometry readings and the payload.

    `charge_time` is the charge left over the present current, the charge being the lower of the reported
    percentage and the load-compensated voltage's (PACK: the pack the autopilot is configured for): the
    physics the model starts from and corrects. A sagging cell empties it, as it ends the flight.
    """
    remaining_ah = battery["percentage"] * battery["capacity_ah"]
    compensated = battery["voltage"] + battery["current"] * PACK["internal_resistance"]
    voltage_share = (compensated - PACK["voltage_empty"]) / (PACK["voltage_full"] - PACK["voltage_empty"])
    usable_ah = max(0.0, min(battery["percentage"], voltage_share)) * battery["capacity_ah"]
    charge_time = min(CHARGE_TIME_LIMIT, usable_ah * 3600.0 / max(battery["current"], 0.1))
    return [battery["voltage"], battery["current"], battery["voltage"] * battery["current"], battery["percentage"],
            remaining_ah, math.hypot(odom["vx"], odom["vy"]), odom["vz"], odom["z"], payload, charge_time]


# -- Anomaly: one tick per `anomaly_period` (0.05 s) -------------------------------------------------

AGE_LIMIT = 2.0  # s: a stream's age saturates here (a dead stream looks the same after 2 s as after 2 h)
# s of silence each stream may keep before its age counts: the io_engine's odom_timeout for odometry and the
# IMU, a few periods for the slow streams: the jitter of a busy machine is not a fault, a dead stream is.
AGE_ALLOWANCE = {"odom": 0.5, "imu": 0.5, "battery": 1.5, "gps": 1.0}
MOVED_WINDOW = 0.25  # s of odometry over which the position's rate of change is taken

ANOMALY = _feature_set("anomaly", (
    ("vx", -100.0, 100.0), ("vy", -100.0, 100.0), ("vz", -100.0, 100.0),
    ("moved_x", -200.0, 200.0), ("moved_y", -200.0, 200.0), ("moved_z", -200.0, 200.0), ("yaw_rate", -35.0, 35.0),
    ("accel_x", -160.0, 160.0), ("accel_y", -160.0, 160.0), ("accel_z", -160.0, 160.0),
    ("gyro_x", -35.0, 35.0), ("gyro_y", -35.0, 35.0), ("gyro_z", -35.0, 35.0),
    ("voltage", 0.0, 1000.0), ("current", -1000.0, 1000.0),
    ("age_odom", 0.0, AGE_LIMIT), ("age_imu", 0.0, AGE_LIMIT), ("age_battery", 0.0, AGE_LIMIT),
    ("age_gps", 0.0, AGE_LIMIT),
    ("cmd_forward", -100.0, 100.0), ("cmd_left", -100.0, 100.0), ("cmd_up", -100.0, 100.0)))
# What the anomaly model predicts for the next tick: every input but the command (which it is told).
ANOMALY_TARGETS = ANOMALY.features[:-3]


class AnomalyFeatureBuilder:
    """Builds the anomaly model's inputs each tick from the latest reading of each stream (sample and hold).

    `moved_*` is how fast the reported position moved over the last MOVED_WINDOW seconds of odometry (by the
    messages' stamps, in the body frame) less the reported velocity: near zero unless something is wrong (a
    position stuck while the velocity says otherwise), whatever the tick's jitter; the window averages the
    position noise out. A stream's age counts only beyond
    its allowance (AGE_ALLOWANCE). Streams never heard from hold zeros and a saturated age. Stateful (the
    previous position): one builder per flight, reset on a data gap.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._history: deque[tuple[float, tuple[float, float, float]]] = deque()  # (stamp, position)
        self._moved = (0.0, 0.0, 0.0)

    def build(self, latest: Mapping[str, Mapping[str, float]], ages: Mapping[str, float]) -> list[float]:
        odom = latest.get("odom")
        if odom is not None:
            position, stamp = (odom["x"], odom["y"], odom["z"]), odom.get("stamp", 0.0)
            if not self._history or stamp > self._history[-1][0]:
                self._history.append((stamp, position))
            elif stamp < self._history[-1][0]:  # time went back (a restarted simulator): start over
                self._history.clear()
                self._history.append((stamp, position))
            while len(self._history) > 2 and self._history[-1][0] - self._history[1][0] >= MOVED_WINDOW:
                self._history.popleft()
            first, last = self._history[0], self._history[-1]
            if last[0] > first[0]:
                ex, ey, ez = ((p - q) / (last[0] - first[0]) for p, q in zip(last[1], first[1]))
                cos_yaw, sin_yaw = math.cos(odom["yaw"]), math.sin(odom["yaw"])
                self._moved = (_clip(cos_yaw * ex + sin_yaw * ey, 100.0), _clip(-sin_yaw * ex + cos_yaw * ey, 100.0),
                               _clip(ez, 100.0))
            mismatch = [m - v for m, v in zip(self._moved, (odom["vx"], odom["vy"], odom["vz"]))]
            motion = [odom["vx"], odom["vy"], odom["vz"], *mismatch, odom["yaw_rate"]]
        else:
            motion = [0.0] * 7
        imu = latest.get("imu")
        inertial = [imu[k] for k in ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")] if imu \
            else [0.0, 0.0, 9.81, 0.0, 0.0, 0.0]
        battery = latest.get("battery")
        power = [battery["voltage"], battery["current"]] if battery else [0.0, 0.0]
        stream_ages = [min(AGE_LIMIT, max(0.0, ages.get(s, math.inf) - AGE_ALLOWANCE[s]))
                       for s in ("odom", "imu", "battery", "gps")]
        cmd = latest.get("cmd")
        command = [cmd["forward"], cmd["left"], cmd["up"]] if cmd else [0.0, 0.0, 0.0]
        return motion + inertial + power + stream_ages + command


# -- Policy: one tick per control/target message (each odometry message, 50 Hz) ---------------------

POLICY = _feature_set("policy", (
    ("target_forward", -20.0, 20.0), ("target_left", -20.0, 20.0), ("target_up", -20.0, 20.0),
    ("vx", -30.0, 30.0), ("vy", -30.0, 30.0), ("vz", -30.0, 30.0),
    ("target_vx", -10.0, 10.0), ("target_vy", -10.0, 10.0), ("target_vz", -10.0, 10.0),
    ("last_forward", -30.0, 30.0), ("last_left", -30.0, 30.0), ("last_up", -30.0, 30.0)))
POLICY_OUTPUTS = ("forward", "left", "up")
TARGET_REACH = 20.0  # m: a farther target is seen at this distance, in its direction
TARGET_SPEED_LIMIT = 10.0  # m/s: a target that jumps (the next leg) is seen moving at most this fast


def _clip(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))


class PolicyFeatureBuilder:
    """Builds the policy's inputs from a pose and the target the I/O engine publishes (control/target).

    Everything is in the body frame (forward, left, up), so the policy flies the same in any heading. The
    target's own motion (it slides along the leg, then stops at a waypoint) tells the policy when to brake.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._last_target: tuple[float, float, float] | None = None
        self._last_command = (0.0, 0.0, 0.0)

    def remember_command(self, command: Sequence[float]) -> None:
        self._last_command = (command[0], command[1], command[2])

    def build(self, odom: Mapping[str, float], target: Sequence[float], dt: float) -> list[float]:
        cos_yaw, sin_yaw = math.cos(odom["yaw"]), math.sin(odom["yaw"])

        def body(x: float, y: float) -> tuple[float, float]:
            return cos_yaw * x + sin_yaw * y, -sin_yaw * x + cos_yaw * y

        error = [t - p for t, p in zip(target, (odom["x"], odom["y"], odom["z"]))]
        reach = math.sqrt(sum(e * e for e in error))
        if reach > TARGET_REACH:
            error = [e * TARGET_REACH / reach for e in error]
        forward, left = body(error[0], error[1])
        last = self._last_target or tuple(target)
        self._last_target = tuple(target)
        moved = [(t - q) / max(dt, 1e-3) for t, q in zip(target, last)]
        target_vx, target_vy = body(moved[0], moved[1])
        return [forward, left, error[2], odom["vx"], odom["vy"], odom["vz"],
                _clip(target_vx, TARGET_SPEED_LIMIT), _clip(target_vy, TARGET_SPEED_LIMIT),
                _clip(moved[2], TARGET_SPEED_LIMIT), *self._last_command]
