"""Motion: controllers that turn a pose and a target into a velocity command; the plans of the motion kinds.

The plans are those behind navigate, hold, land and return_home. No rclpy import.

The io_engine calls `MotionRun.on_odometry` on every odometry message and publishes the command it
returns at once, so a command is never older than the odometry it answers.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol, Sequence

from qai_edge.geo import wrap_angle


@dataclass(frozen=True)
class Pose:
    x: float
    y: float
    z: float
    yaw: float
    vx: float = 0.0  # world frame, m/s
    vy: float = 0.0
    vz: float = 0.0

    @property
    def position(self) -> tuple[float, float, float]:
        return self.x, self.y, self.z

    @property
    def speed(self) -> float:
        return math.sqrt(self.vx ** 2 + self.vy ** 2 + self.vz ** 2)


Command = tuple[float, float, float, float]  # body frame: forward, left, up (m/s), yaw rate (rad/s)
STOP: Command = (0.0, 0.0, 0.0, 0.0)


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    return math.sqrt(sum((p - q) ** 2 for p, q in zip(a, b)))


def world_to_body(vx: float, vy: float, yaw: float) -> tuple[float, float]:
    return math.cos(yaw) * vx + math.sin(yaw) * vy, -math.sin(yaw) * vx + math.cos(yaw) * vy


def body_to_world(forward: float, left: float, yaw: float) -> tuple[float, float]:
    return math.cos(yaw) * forward - math.sin(yaw) * left, math.sin(yaw) * forward + math.cos(yaw) * left


class Controller(Protocol):
    """Steers toward `target`, braking to stop `goal_distance` metres ahead.

    Implementations: PositionController (default); ExternalController, the io_engine's `external` mode,
    takes commands from another node (e.g. the intelligence engine's learned policy) instead.
    """

    def reset(self) -> None: ...

    def command(self, pose: Pose, target: Sequence[float], goal_distance: float, speed: float,
                dt: float) -> Command: ...


@dataclass
class PositionController:
    """PI on position error with a braking-distance speed profile.

    Multirotor: holonomic, holds its yaw. Ground robot (unicycle): turns toward the target, drives forward
    only when roughly facing it.
    """

    kind: str = "multirotor"
    kp: float = 1.0
    ki: float = 0.5
    integral_zone: float = 2.0  # m: integrate only near a target (trims what the wind estimate misses)
    integral_limit: float = 4.0  # m*s
    deceleration: float = 1.5  # m/s^2 used to brake into the target
    max_climb_rate: float = 2.0
    yaw_gain: float = 2.0
    max_yaw_rate: float = 1.5
    wind_filter_time: float = 1.5  # s: how quickly the wind estimate follows the observed drift
    max_wind: float = 10.0  # m/s

    def __post_init__(self):
        self.reset()

    def reset(self) -> None:
        self._integral = [0.0, 0.0, 0.0]
        self.wind = [0.0, 0.0]  # estimated, world frame
        self._last_air_command = [0.0, 0.0]  # world frame

    def _observe_wind(self, pose: Pose, dt: float) -> None:
        """Drift = ground velocity minus the air velocity asked for; filtered, it is the wind."""
        if self.kind != "multirotor" or pose.z <= 0.1:
            return
        beta = min(1.0, dt / self.wind_filter_time)
        residual = (pose.vx - self._last_air_command[0], pose.vy - self._last_air_command[1])
        self.wind = [w + (r - w) * beta for w, r in zip(self.wind, residual)]
        norm = math.hypot(*self.wind)
        if norm > self.max_wind:
            self.wind = [w * self.max_wind / norm for w in self.wind]

    def command(self, pose: Pose, target: Sequence[float], goal_distance: float, speed: float,
                dt: float) -> Command:
        error = [t - p for t, p in zip(target, pose.position)]
        if self.kind == "ground":
            error[2] = 0.0
        dist = math.sqrt(sum(e * e for e in error))
        if dist < self.integral_zone and self.kind == "multirotor":
            self._integral = [max(-self.integral_limit, min(self.integral_limit, i + e * dt))
                              for i, e in zip(self._integral, error)]
        # The approach (over ground) follows a braking profile; the wind estimate and the integral of what
        # is left add on top, so holding a position in the wind is not capped by the braking speed.
        self._observe_wind(pose, dt)
        # Direction toward the target; speed from how far the goal still is (braking profile).
        limit = min(speed, math.sqrt(2.0 * self.deceleration * goal_distance) + 0.1, self.kp * goal_distance)
        approach = [e / dist * limit for e in error] if dist > 1e-9 else [0.0, 0.0, 0.0]
        wanted = [a + self.ki * i for a, i in zip(approach, self._integral)]
        wanted[0] -= self.wind[0]
        wanted[1] -= self.wind[1]
        wanted[2] = max(-self.max_climb_rate, min(self.max_climb_rate, wanted[2]))
        self._last_air_command = [wanted[0], wanted[1]]
        if self.kind == "ground":
            heading_error = wrap_angle(math.atan2(error[1], error[0]) - pose.yaw) if dist > 0.05 else 0.0
            yaw_rate = max(-self.max_yaw_rate, min(self.max_yaw_rate, self.yaw_gain * heading_error))
            forward = math.hypot(wanted[0], wanted[1]) * max(0.0, math.cos(heading_error)) ** 2
            return forward, 0.0, 0.0, yaw_rate
        forward, left = world_to_body(wanted[0], wanted[1], pose.yaw)
        return forward, left, wanted[2], 0.0


# The PositionController gains `qai-train pid` tunes (qai_intelligence.pid_tuning); the io_engine's `pid_*`
# parameters, whose defaults are the tuned values in pid_gains.json.
PID_GAINS = ("kp", "ki", "deceleration", "wind_filter_time", "integral_zone", "integral_limit", "max_climb_rate")
GAINS_FILE = Path(__file__).with_name("pid_gains.json")


@lru_cache(maxsize=1)
def shipped_gains() -> dict[str, float]:
    """Return the gains the io_engine ships with: those `qai-train pid` wrote to pid_gains.json.

    A file that is missing, not JSON, or without a finite number for every gain raises ValueError naming it.
    """
    try:
        gains = json.loads(GAINS_FILE.read_text())["gains"]
        values = {name: float(gains[name]) for name in PID_GAINS}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{GAINS_FILE}: not the gains qai-train pid writes ({type(error).__name__}: "
                         f"{str(error)[:200]})") from None
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise ValueError(f"{GAINS_FILE}: gains.{bad[0]} is {values[bad[0]]}, not a finite number")
    return values


@dataclass
class MotionStatus:
    target: tuple[float, float, float]
    command: Command
    done: bool
    progress: float  # 0..1
    remaining: float  # m still to travel
    waypoint: int  # index of the current target
    message: str


@dataclass(frozen=True)
class PlanStep:
    target: tuple[float, float, float]  # where to steer now
    goal_distance: float  # m to where the vehicle must stop (brake for it)
    done: bool
    remaining: float  # m still to travel in all
    waypoint: int
    message: str


class MotionPlan(Protocol):
    def step(self, pose: Pose, now: float) -> PlanStep: ...


class WaypointPlan:
    """Through waypoints in order, along the straight lines between them.

    Steering toward a point `lookahead` metres ahead on the current leg pulls the vehicle back onto the
    line. Each waypoint counts within `tolerance`; the last also once settled (slow); `hold` seconds are
    spent at each.
    """

    def __init__(self, waypoints: Sequence[Sequence[float]], tolerance: float, hold: float = 0.0,
                 settle_speed: float = 0.3, lookahead: float = 2.0):
        self.waypoints = [tuple(float(c) for c in w) for w in waypoints]
        self.tolerance = tolerance
        self.hold = hold
        self.settle_speed = settle_speed
        self.lookahead = lookahead
        self.index = 0
        self._leg_start: tuple[float, float, float] | None = None
        self._arrived_at: float | None = None
        self._legs = [distance(a, b) for a, b in zip(self.waypoints, self.waypoints[1:])]

    def remaining(self, position: Sequence[float]) -> float:
        return distance(position, self.waypoints[self.index]) + sum(self._legs[self.index:])

    def _carrot(self, position: Sequence[float]) -> tuple[float, float, float]:
        start, end = self._leg_start, self.waypoints[self.index]
        leg = [e - s for s, e in zip(start, end)]
        length = math.sqrt(sum(c * c for c in leg))
        if length < 1e-6:
            return end
        along = sum((p - s) * c for p, s, c in zip(position, start, leg)) / length
        reach = min(length, max(0.0, along) + self.lookahead)
        return tuple(s + c / length * reach for s, c in zip(start, leg))

    def step(self, pose: Pose, now: float) -> PlanStep:
        if self._leg_start is None:
            self._leg_start = pose.position
        while True:
            target = self.waypoints[self.index]
            last = self.index == len(self.waypoints) - 1
            close = distance(pose.position, target) <= self.tolerance
            settled = not last or pose.speed <= self.settle_speed
            if close and settled:
                if self._arrived_at is None:
                    self._arrived_at = now
                if now - self._arrived_at >= self.hold:
                    if last:
                        return PlanStep(target, 0.0, True, 0.0, self.index, f"arrived at waypoint {self.index + 1}")
                    self._leg_start = target
                    self.index += 1
                    self._arrived_at = None
                    continue
            elif not close:
                self._arrived_at = None
            remaining = self.remaining(pose.position)
            # Stop at the last waypoint, or at any when holding there; otherwise only slow for the turn.
            allowance = 0.0 if last or self.hold else min(sum(self._legs[self.index:]), self._turn_allowance())
            goal = distance(pose.position, target) + allowance
            return PlanStep(self._carrot(pose.position), goal, False, remaining, self.index,
                            f"to waypoint {self.index + 1}/{len(self.waypoints)}, {remaining:.1f} m left")

    def _turn_allowance(self) -> float:
        """Braking room at an intermediate waypoint: none for a U-turn, a lookahead for a straight on."""
        a, b, c = self._leg_start, self.waypoints[self.index], self.waypoints[self.index + 1]
        u = [q - p for p, q in zip(a, b)]
        v = [q - p for p, q in zip(b, c)]
        nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
        if nu < 1e-6 or nv < 1e-6:
            return 0.0
        cosine = sum(x * y for x, y in zip(u, v)) / (nu * nv)
        return max(0.0, cosine) * self.lookahead


class HoldPlan:
    """Stay at `position` for `duration` seconds (None: until canceled)."""

    def __init__(self, position: Sequence[float], duration: float | None):
        self.position = tuple(position)
        self.duration = duration
        self._started: float | None = None

    def step(self, pose: Pose, now: float) -> PlanStep:
        if self._started is None:
            self._started = now
        elapsed = now - self._started
        done = self.duration is not None and elapsed >= self.duration
        left = "" if self.duration is None else f", {max(0.0, self.duration - elapsed):.1f} s left"
        off = distance(pose.position, self.position)
        return PlanStep(self.position, off, done, off, 0, f"holding{left}")


class LandPlan:
    """Descend at `descent_speed` above the current ground point until on the ground and still."""

    def __init__(self, position: Sequence[float], descent_speed: float):
        self.xy = (position[0], position[1])
        self.descent_speed = descent_speed

    def step(self, pose: Pose, now: float) -> PlanStep:
        landed = pose.z <= 0.05 and abs(pose.vz) < 0.1
        target = (self.xy[0], self.xy[1], max(0.0, pose.z - self.descent_speed))
        return PlanStep(target, distance(pose.position, target), landed, pose.z, 0,
                        "landed" if landed else f"descending, {pose.z:.1f} m up")


class SequencePlan:
    """Plans one after another (return_home: the legs home, then the landing); done when the last is done.

    `later[i]` estimates the metres plan i still adds to what is left while an earlier one runs.
    """

    def __init__(self, plans: Sequence[MotionPlan], later: Sequence[float] = ()):
        self.plans = list(plans)
        self.later = list(later) + [0.0] * (len(self.plans) - len(later))
        self.index = 0

    def step(self, pose: Pose, now: float) -> PlanStep:
        while True:
            step = self.plans[self.index].step(pose, now)
            if not step.done or self.index == len(self.plans) - 1:
                return PlanStep(step.target, step.goal_distance, step.done,
                                step.remaining + sum(self.later[self.index + 1:]), step.waypoint, step.message)
            self.index += 1


class GroundSpeedLimit:
    """The task's speed as a limit over the ground, the way the PID keeps it, for commands from elsewhere.

    A command is a velocity relative to the air (body frame, as the vehicle flies it). The PID limits its
    approach over the ground to the task's speed and adds its wind estimate on top; clipping an external
    command to the speed relative to the air instead would leave it slower than the PID in any wind, and
    unable to make way against a wind near the speed. So the wind is estimated exactly as the PID estimates
    it (PositionController's observer: ground velocity minus the air velocity commanded, filtered, at most
    `max_wind`), and the horizontal command is clipped so that it plus that wind stays within the speed.
    Climb and descent are clipped to the speed; a ground robot (no drift estimated on the ground) is clipped
    relative to the ground.
    """

    def __init__(self, kind: str = "multirotor", wind_filter_time: float | None = None):
        self.observer = PositionController(kind=kind)
        if wind_filter_time is not None:  # the PID's own, so both estimate the same wind
            self.observer.wind_filter_time = wind_filter_time

    def reset(self) -> None:
        self.observer.reset()

    def clip(self, command: Sequence[float], pose: Pose, speed: float, dt: float) -> Command:
        forward, left, up, yaw_rate = command
        observer = self.observer
        observer._observe_wind(pose, dt)
        wind_x, wind_y = observer.wind
        air_x, air_y = body_to_world(forward, left, pose.yaw)
        ground_x, ground_y = air_x + wind_x, air_y + wind_y
        ground = math.hypot(ground_x, ground_y)
        if ground > speed:
            ground_x, ground_y = ground_x * speed / ground, ground_y * speed / ground
            air_x, air_y = ground_x - wind_x, ground_y - wind_y
            forward, left = world_to_body(air_x, air_y, pose.yaw)
        observer._last_air_command = [air_x, air_y]
        return forward, left, max(-speed, min(speed, up)), yaw_rate


class ExternalController:
    """Follows commands another node publishes on control/cmd_vel (e.g. a learned policy).

    It stops the vehicle when the latest is older than `timeout` seconds on `clock` (steady time: a policy
    that went quiet must stop the vehicle even when a simulated clock stands still). Speeds are held to the
    task's limit over the ground, with the PID's own wind estimate (GroundSpeedLimit): the same limit the
    PID flies under. Commands and odometry both arrive on the executor thread.
    """

    def __init__(self, timeout: float, clock: Callable[[], float], kind: str = "multirotor",
                 wind_filter_time: float | None = None):
        self.timeout = timeout
        self.clock = clock
        self._latest: tuple[float, Command] | None = None
        self.stale = True
        self.limit = GroundSpeedLimit(kind, wind_filter_time)

    def offer(self, command: Sequence[float]) -> None:
        forward, left, up, yaw_rate = (float(c) for c in command)
        self._latest = (self.clock(), (forward, left, up, yaw_rate))

    def reset(self) -> None:
        """Forget the last command and the wind estimate: a new task waits for a fresh one."""
        self._latest = None
        self.stale = True
        self.limit.reset()

    def command(self, pose: Pose, target: Sequence[float], goal_distance: float, speed: float,
                dt: float) -> Command:
        latest = self._latest
        if latest is None or self.clock() - latest[0] > self.timeout or not all(map(math.isfinite, latest[1])):
            self.stale = True
            return STOP
        self.stale = False
        return self.limit.clip(latest[1], pose, speed, dt)


class ResidualController:
    """The PID, plus a correction another node publishes on control/residual (a learned residual policy).

    The correction (body frame: forward, left, up; m/s) is held to `limit` a component; one older than
    `timeout` seconds on `clock`, never sent, or not finite counts as zero, so a policy that goes quiet
    leaves the PID flying (not the vehicle stopped). The sum is held to the task's speed over the ground
    with the PID's own wind estimate, as GroundSpeedLimit holds an external command, and the PID's observer
    is told the command actually flown (else it would take the correction for wind and cancel it).
    Multirotor only (a correction to a unicycle's forward speed and turn rate is another controller).
    """

    def __init__(self, pid: PositionController, timeout: float, clock: Callable[[], float], limit: float = 2.0):
        self.pid = pid
        self.timeout = timeout
        self.clock = clock
        self.limit = limit
        self._latest: tuple[float, tuple[float, float, float]] | None = None
        self.stale = True

    def offer(self, correction: Sequence[float]) -> None:
        forward, left, up = (float(c) for c in correction[:3])
        self._latest = (self.clock(), (forward, left, up))

    def reset(self) -> None:
        self._latest = None
        self.stale = True
        self.pid.reset()

    def correction(self) -> tuple[float, float, float]:
        latest = self._latest
        if latest is None or self.clock() - latest[0] > self.timeout or not all(map(math.isfinite, latest[1])):
            self.stale = True
            return 0.0, 0.0, 0.0
        self.stale = False
        return tuple(max(-self.limit, min(self.limit, c)) for c in latest[1])

    def command(self, pose: Pose, target: Sequence[float], goal_distance: float, speed: float,
                dt: float) -> Command:
        forward, left, up, yaw_rate = self.pid.command(pose, target, goal_distance, speed, dt)
        d_forward, d_left, d_up = self.correction()
        air_x, air_y = body_to_world(forward + d_forward, left + d_left, pose.yaw)
        wind_x, wind_y = self.pid.wind
        ground_x, ground_y = air_x + wind_x, air_y + wind_y
        ground = math.hypot(ground_x, ground_y)
        # Over the task's speed only through the correction: the PID's own command may exceed it to hold a
        # position against its integral, so the bound is the larger of the speed and what the PID asked.
        pid_x, pid_y = body_to_world(forward, left, pose.yaw)
        bound = max(speed, math.hypot(pid_x + wind_x, pid_y + wind_y))
        if ground > bound:
            ground_x, ground_y = ground_x * bound / ground, ground_y * bound / ground
            air_x, air_y = ground_x - wind_x, ground_y - wind_y
        self.pid._last_air_command = [air_x, air_y]
        forward, left = world_to_body(air_x, air_y, pose.yaw)
        return forward, left, max(-speed, min(speed, up + d_up)), yaw_rate


class MotionRun:
    """One motion task in progress: the handler thread waits on it, odometry drives it. Thread-safe."""

    def __init__(self, plan: MotionPlan, controller: Controller, speed: float):
        self.plan = plan
        self.controller = controller
        self.speed = speed
        self.status: MotionStatus | None = None
        self.total: float | None = None
        self._last_time: float | None = None
        self._lock = threading.Lock()
        self.finished = threading.Event()

    def on_odometry(self, pose: Pose, now: float) -> Command:
        with self._lock:
            if self.finished.is_set():
                return STOP
            dt = 0.02 if self._last_time is None else max(1e-3, min(0.5, now - self._last_time))
            self._last_time = now
            step = self.plan.step(pose, now)
            if self.total is None:
                self.total = max(step.remaining, 1e-6)
            command = STOP if step.done else self.controller.command(pose, step.target, step.goal_distance,
                                                                     self.speed, dt)
            progress = 1.0 if step.done else max(0.0, min(1.0, 1.0 - step.remaining / self.total))
            self.status = MotionStatus(step.target, command, step.done, progress, step.remaining, step.waypoint,
                                       step.message)
            done = step.done
            if done:
                self.finished.set()
            return command
