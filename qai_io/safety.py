"""The io_engine's safety supervisor: what stops the vehicle, what is refused, and what happens on low battery.

No rclpy import. The io_engine's core (qai_io.core) asks it before a motion task starts and every 50 ms
while one runs, and feeds it every battery reading, every pose and a periodic tick; it answers with
decisions (a refusal, a stop, notices to log and events to publish) and holds no ROS object. Its times are
steady (wall) time, which goes on when a simulated clock stops; only a task's timeout is on the ROS clock
(simulated time under use_sim_time), as every task duration is.

Motion tasks (navigate, hold/hover, land, return_home), one at a time:

- start only with fresh odometry, never toward a point outside the geofence (qai_io.planning checks
  each, naming the field); in the battery reserve only return_home, land and hold/hover start; navigate
  also needs a battery known to be good: a valid reading within `battery_timeout` s;
- stop the vehicle and end when canceled (canceled); when odometry is older than `odom_timeout` (failed,
  retryable, an `odometry_stale` event); when not done within the task's timeout (failed, retryable);
  a navigate, when the battery reserve is entered (failed, not retryable).

The battery is a latch with two states::

    NORMAL ──► RESERVE   a valid reading below `battery_reserve` (charge, 0..1) or `battery_min_voltage`
                         (V), at any time; or, airborne, no valid reading for `battery_timeout` s (the
                         readings stopped, or every one was rejected: out of range, NaN; judged
                         STALL_GAP s after a stall of this process, whose queued readings come late);
                         or the
                         intelligence engine's `endurance_low` event: the predicted flight time is
                         shorter than the way home needs (earlier than the fixed reserve)
    RESERVE ──► NORMAL   on the ground, every reading valid and healthy for `battery_recover_time` s;
                         or an operator's clear (`~/clear_battery_reserve`), refused while airborne or
                         while the battery still reads low

In RESERVE, /diagnostics says ERROR with the reason; navigate is refused and a running one is stopped;
and the `battery_reserve` event goes out at once, then again every `battery_event_period` s for as long
as the vehicle is airborne (a ground robot: away from home) and no return_home or land runs here, so a
mission engine that restarted or missed it still brings the vehicle home (its `event_missions` rule
starts config/missions/return_home.yaml). A vehicle on the ground gets no event: taking off on a
reserve battery is worse than staying where it is.

Never left in the air with no plan: when a return_home or land fails here while the vehicle is airborne,
it is stopped (holding its position) and a `return_home_failed` event goes out at once, then again every
`battery_event_period` s while it stays airborne and no return_home or land runs; the mission engine's rule
for it starts the return-home mission (the mission engine also says so itself when it could not send one).
"""

from __future__ import annotations

import enum
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from qai_edge.health import Level
from qai_edge.stall import StallHold
from qai_edge.tasks import TaskFailed
from qai_io.kinds import RESERVE_KINDS
from qai_io.motion import Pose

RETURNING_KINDS = frozenset({"return_home", "land"})  # while one runs, the reserve event is not repeated
# Ticks come a few times a second. A gap longer than this between two steps means this process was stalled
# (a loaded CPU): readings queued meanwhile are read after the late tick, so the silence is not judged
# until STALL_GAP s after the stall.
STALL_GAP = 1.0


class BatteryMode(enum.Enum):
    NORMAL = "normal"
    RESERVE = "reserve"


@dataclass(frozen=True)
class Notice:
    """Something the io_engine logs, and publishes on `events` when `publish`."""

    code: str
    message: str
    values: dict[str, Any] = field(default_factory=dict)
    severity: Level = Level.ERROR
    publish: bool = True


@dataclass(frozen=True)
class Stop:
    """Why a running motion task must stop: canceled, or failed with `message`."""

    message: str = ""
    retryable: bool = True
    canceled: bool = False
    notice: Notice | None = None


@dataclass(frozen=True)
class MotionWatch:
    """One motion task, as the supervisor follows it."""

    kind: str
    what: str  # how messages name it, e.g. "navigate"
    timeout: float | None  # s on the ROS clock; None: none
    started: float  # steady time
    started_ros: float


def _finite(values: Mapping[str, float]) -> dict[str, float]:
    return {key: round(value, 3) for key, value in values.items() if math.isfinite(value)}


class SafetySupervisor:
    """One vehicle's safety state.

    Thread-safe: readings and ticks come from the executor thread, task checks from task threads.
    `param(name)` reads a parameter live (battery_*, odom_timeout, landed_altitude, arrival_tolerance), so a
    change at run time applies at the next decision.
    """

    def __init__(self, param: Callable[[str], Any], vehicle_kind: str, now: float, battery_expected: bool = True):
        self.param = param
        self.vehicle_kind = vehicle_kind
        self.battery_expected = battery_expected  # a battery_state stream is watched (battery_min_rate > 0)
        self.started_at = now
        self.mode = BatteryMode.NORMAL
        self.reason = ""  # why the reserve was entered
        self.battery: dict[str, float] = {}  # the latest valid reading
        self.battery_at: float | None = None  # when it came
        self.rejected_since_valid = 0
        self.last_rejection = ""
        self.events_sent = 0  # battery_reserve events since the reserve was entered
        self.pose: Pose | None = None
        self.home: tuple[float, float, float] | None = None
        self.motion: MotionWatch | None = None
        self._healthy_since: float | None = None
        self._last_event_at: float | None = None
        self.stranded = ""  # why a return_home or land failed in the air (cleared on the ground)
        self._stranded_event_at: float | None = None
        self._stall = StallHold(gap=STALL_GAP, hold=STALL_GAP)  # we were stalled, not (necessarily) the battery
        self._lock = threading.RLock()

    # -- Where the vehicle is ------------------------------------------------------------------

    def on_pose(self, pose: Pose) -> None:
        self.pose = pose

    def airborne(self) -> bool:
        """Return whether a multirotor is above `landed_altitude`, or a ground robot away from home.

        A ground robot has no air to be in, but the same rules apply: it must come home, and only there may
        the reserve clear by itself.
        """
        pose = self.pose
        if pose is None:
            return False
        if self.vehicle_kind == "ground":
            return self.home is not None and math.dist(pose.position[:2], self.home[:2]) > self.param(
                "arrival_tolerance")
        return pose.z > self.param("landed_altitude")

    # -- The battery latch ---------------------------------------------------------------------

    @property
    def in_reserve(self) -> bool:
        return self.mode is BatteryMode.RESERVE

    def low_reason(self, values: Mapping[str, float]) -> str:
        """Why this valid reading is at the reserve, or ''."""
        reserve, min_voltage = self.param("battery_reserve"), self.param("battery_min_voltage")
        percentage, voltage = values.get("percentage"), values.get("voltage")
        if percentage is not None and percentage < reserve:
            return f"charge {percentage:.0%} is below battery_reserve {reserve:.0%}"
        if min_voltage > 0 and voltage is not None and voltage < min_voltage:
            return f"{voltage:.2f} V is below battery_min_voltage {min_voltage:g} V"
        return ""

    def battery_age(self, now: float) -> float:
        """Seconds since the last valid reading (since start, when none came yet)."""
        return now - (self.battery_at if self.battery_at is not None else self.started_at)

    def battery_known(self, now: float) -> bool:
        """Return whether a valid reading is recent enough to trust (or there is no battery to watch)."""
        if not self.battery_expected and self.battery_at is None:
            return True
        return self.battery_at is not None and self.battery_age(now) <= self.param("battery_timeout")

    def _silence(self, now: float) -> str:
        rejections = (f"; {self.rejected_since_valid} rejected, the last: {self.last_rejection}"
                      if self.rejected_since_valid else "")
        return f"no valid battery reading for {self.battery_age(now):.1f} s{rejections}"

    def on_battery(self, values: Mapping[str, float] | None, rejection: str, now: float) -> list[Notice]:
        """Take a battery reading: `values` when valid, else None and why it was rejected."""
        with self._lock:
            if values is None:
                self.rejected_since_valid += 1
                self.last_rejection = rejection
                self._healthy_since = None
                return self._step(now)
            self.battery, self.battery_at, self.rejected_since_valid = dict(values), now, 0
            low = self.low_reason(values)
            if low:
                self._healthy_since = None
            elif self._healthy_since is None:
                self._healthy_since = now
            notices = [self._enter(low, now)] if low and not self.in_reserve else []
            return notices + self._step(now)

    def on_endurance_low(self, why: str, now: float) -> list[Notice]:
        """Enter the reserve now: the intelligence engine predicts less flight time than the way home needs."""
        with self._lock:
            notices = [] if self.in_reserve else [self._enter(f"predicted endurance low ({why})", now)]
            self._healthy_since = None
            return notices + self._step(now)

    def on_return_failed(self, kind: str, why: str, now: float) -> list[Notice]:
        """Take a return_home or land that failed: airborne, the vehicle is stranded until it is down."""
        with self._lock:
            if not self.airborne():
                return []
            self.stranded, self._stranded_event_at = f"{kind} failed: {why}", None
            return self._step(now)

    def tick(self, now: float) -> list[Notice]:
        """Call a few times a second: readings that stopped, recovery, and the event's repeats."""
        with self._lock:
            return self._step(now)

    def _step(self, now: float) -> list[Notice]:
        notices = []
        airborne = self.airborne()
        if airborne:
            self._healthy_since = None  # recovery counts only on the ground
        self._stall.step(now)
        watched = self.battery_expected or self.battery_at is not None
        if (not self.in_reserve and airborne and watched and not self._stall.holding(now)
                and self.battery_age(now) > self.param("battery_timeout")):
            notices.append(self._enter(self._silence(now), now))
        if (self.in_reserve and not airborne and self._healthy_since is not None and self.battery_known(now)
                and now - self._healthy_since >= self.param("battery_recover_time")):
            notices.append(self._leave(f"healthy readings on the ground for {now - self._healthy_since:.1f} s"))
        returning = self.motion is not None and self.motion.kind in RETURNING_KINDS
        if self.stranded and not airborne:
            self.stranded = ""  # down: nothing is left to bring home
        if self.stranded and not returning and (
                self._stranded_event_at is None or now - self._stranded_event_at >= self.param("battery_event_period")):
            self._stranded_event_at = now
            notices.append(Notice("return_home_failed", f"{self.stranded}; holding position in the air: bring the "
                                  "vehicle home", {"reason": self.stranded}))
        if self.in_reserve and airborne and not returning and (
                self._last_event_at is None or now - self._last_event_at >= self.param("battery_event_period")):
            self._last_event_at = now
            self.events_sent += 1
            notices.append(Notice("battery_reserve", f"battery at its reserve: {self.reason}; bring the vehicle home",
                                  {**_finite(self.battery), "reason": self.reason, "repeat": self.events_sent - 1}))
        return notices

    def _enter(self, reason: str, now: float) -> Notice:
        self.mode, self.reason = BatteryMode.RESERVE, reason
        self._last_event_at, self.events_sent, self._healthy_since = None, 0, None
        where = "airborne" if self.airborne() else "on the ground: navigate refused until it clears"
        return Notice("battery_reserve_entered", f"battery reserve entered ({where}): {reason}",
                      _finite(self.battery), publish=False)

    def _leave(self, why: str) -> Notice:
        self.mode, self.reason = BatteryMode.NORMAL, ""
        return Notice("battery_reserve_cleared", f"battery reserve cleared: {why}", _finite(self.battery),
                      severity=Level.OK, publish=False)

    def clear_reserve(self, now: float) -> tuple[bool, str, list[Notice]]:
        """Clear the reserve for an operator: return (done, what happened, notices to log)."""
        with self._lock:
            if not self.in_reserve:
                return True, "the battery is not at its reserve", []
            if self.airborne():
                where = (f"at {self.pose.z:.2f} m, above landed_altitude {self.param('landed_altitude'):g} m"
                         if self.vehicle_kind != "ground" else "away from home")
                return False, f"refused: the vehicle is airborne ({where}); land it first", []
            low = self.low_reason(self.battery) if self.battery_known(now) else ""
            if low:
                return False, f"refused: the battery still reads low ({low})", []
            notice = self._leave("cleared by an operator")
            return True, "battery reserve cleared", [notice]

    # -- Motion tasks --------------------------------------------------------------------------

    def admit(self, kind: str, now: float) -> None:
        """Raise TaskFailed when a motion task of `kind` may not start now (the battery)."""
        with self._lock:
            if kind in RESERVE_KINDS:
                return
            if self.in_reserve:
                raise TaskFailed(f"battery at its reserve ({self.reason}): only return_home, land and hold run",
                                 retryable=False)
            if not self.battery_known(now):
                raise TaskFailed(f"{self._silence(now)}: {kind} needs a battery known to be good", retryable=True)

    def begin_motion(self, kind: str, what: str, timeout: float | None, now: float, ros_now: float) -> MotionWatch:
        """Take the vehicle for one motion task (TaskFailed when another has it, or `admit` refuses)."""
        with self._lock:
            if self.motion is not None:
                raise TaskFailed("another motion task is running on this vehicle", retryable=True)
            self.admit(kind, now)
            self.motion = MotionWatch(kind, what, timeout, now, ros_now)
            return self.motion

    def end_motion(self, watch: MotionWatch) -> None:
        with self._lock:
            if self.motion is watch:
                self.motion = None

    def check_motion(self, watch: MotionWatch, now: float, ros_now: float, canceled: bool,
                     odom_valid_at: float | None) -> Stop | None:
        """Whether the running task must stop now. Every figure in a message is taken at this check."""
        if canceled:
            return Stop(canceled=True)
        if watch.kind not in RESERVE_KINDS and self.in_reserve:
            return Stop(f"{watch.what}: battery at its reserve ({self.reason}); stopped the vehicle", retryable=False)
        age = now - (odom_valid_at if odom_valid_at is not None else watch.started)
        if age > self.param("odom_timeout"):
            message = f"{watch.what}: odometry stale for {age:.2f} s; stopped the vehicle"
            return Stop(message, notice=Notice("odometry_stale", message, {"age": round(age, 2)}))
        if watch.timeout is not None and ros_now - watch.started_ros > watch.timeout:
            return Stop(f"{watch.what}: not done after {watch.timeout:g} s")
        return None

    # -- Health --------------------------------------------------------------------------------

    def status(self) -> tuple[Level, str, dict[str, str]]:
        values = {"battery_reserve": "on" if self.in_reserve else "off"}
        if self.in_reserve:
            values["battery_reserve_reason"] = self.reason
            return Level.ERROR, f"battery at its reserve: {self.reason}", values
        return Level.OK, "", values
