"""The io_engine's core: sensor readings in; velocity commands, events and task results out. No rclpy import.

qai_io.node converts each message into one call here (`on_odometry`, `on_imu`, `on_battery`, `on_gps`,
`on_external_command`, and `tick` a few times a second) and serves the task handlers below; the core
answers through two callables, `publish_command` (a body-frame velocity command for cmd_vel) and `report`
(a qai_io.safety.Notice to log, and to publish on `events` when it says so). It decides nothing about
safety itself: it asks the supervisor (qai_io.safety) and carries out its answers.

Two clocks (`Clocks`): steady time for stream health, external commands and every safety wait, which must
go on when a simulated clock stops; ROS time (simulated under use_sim_time) for task durations, timeouts
and the controller's time step. Tests drive the core on fake clocks, closed-loop with the vehicle model.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from qai_edge.geofence import Geofence
from qai_edge.health import Level
from qai_edge.params import by_name
from qai_edge.tasks import ServedKind, TaskCanceled, TaskContext, TaskFailed, TaskRequest
from qai_io.home import HomeStore
from qai_io.kinds import KindLimits, task_kinds
from qai_io.motion import (PID_GAINS, STOP, Command, ExternalController, HoldPlan, LandPlan, MotionRun,
                           MotionStatus, Pose, PositionController, ResidualController, SequencePlan, WaypointPlan)
from qai_io.parameters import PARAMETERS
from qai_io.planning import hold_position, path_length, plan_return_home, prepare_waypoints
from qai_io.safety import Notice, SafetySupervisor
from qai_io.sensors import STREAM_NAMES, Scans, StreamMonitor, StreamSpec, scan_result

CHECK_PERIOD = 0.05  # s between two safety checks of a running motion task
SPECS = by_name(PARAMETERS)


@dataclass(frozen=True)
class Clocks:
    steady: Callable[[], float] = time.monotonic
    ros: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wait: Callable[[threading.Event, float], bool] = threading.Event.wait  # (event, seconds) -> is set


def _rounded(point: Sequence[float]) -> list[float]:
    return [round(c, 3) for c in point]


class IoCore:
    """One vehicle: its sensor streams, its pose, the motion task driving it, and the task handlers.

    `param(name)` reads the io_engine's parameters (live: a change at run time applies at the next use).
    """

    def __init__(self, param: Callable[[str], Any], clocks: Clocks, publish_command: Callable[[Command], None],
                 report: Callable[[Notice], None], home_store: HomeStore | None = None):
        self.param, self.clocks = param, clocks
        self.home_store = home_store or HomeStore(None)
        self.publish_command, self.report = publish_command, report
        self.vehicle_kind, self.controller_mode = param("vehicle_kind"), param("controller")
        for name in ("vehicle_kind", "controller"):  # `qai-edge profile` refuses these; `ros2 run -p` does not
            try:
                SPECS[name].check(param(name))
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        if self.controller_mode == "residual" and self.vehicle_kind != "multirotor":
            raise ValueError("controller: residual corrects a multirotor's PID; use pid or external for a "
                             f"{self.vehicle_kind} vehicle")
        self.fence = Geofence.from_flat(param("geofence_polygon"), param("geofence_min_altitude"),
                                        param("geofence_max_altitude"))
        home = param("home")
        if home and len(home) != 3:
            raise ValueError(f"home: expected x, y, z, got {list(home)}")
        now = clocks.steady()
        self.monitors = {name: StreamMonitor(StreamSpec(
            name, param(f"{name}_min_rate"), stale_after=max(3.0 / max(param(f"{name}_min_rate"), 0.1), 0.5),
            stuck_after=param("stuck_after")), started_at=now) for name in STREAM_NAMES}
        self.safety = SafetySupervisor(param, self.vehicle_kind, now, battery_expected=param("battery_min_rate") > 0)
        # Home: the parameter; else the one this run recorded (an io_engine restarted in the air); else, below,
        # where the first odometry puts the vehicle.
        self.safety.home = tuple(home) if home else self.home_store.load()
        self.external = ExternalController(param("external_command_timeout"), clocks.steady, self.vehicle_kind,
                                           param("pid_wind_filter_time"))
        self.residual = ResidualController(PositionController(), param("external_command_timeout"), clocks.steady,
                                           param("residual_limit"))
        self.scans = Scans()
        # The node's hook, called as a motion starts (in the task's thread): from now on it wants every pose.
        self.motion_started: Callable[[], None] = lambda: None
        self.pose: Pose | None = None
        self.gps: tuple[float, float, float] | None = None
        self._motion: MotionRun | None = None

    @property
    def home(self) -> tuple[float, float, float] | None:
        return self.safety.home

    # -- Readings --------------------------------------------------------------------------------

    def wants_every_pose(self) -> bool:
        """Whether each odometry message counts as it arrives: a motion is steered, or the vehicle is out.

        Otherwise (standing idle at home) odometry only feeds the stream checks and the safety supervisor,
        which a batch read with the safety tick serves as well.
        """
        return self._motion is not None or self.safety.airborne()

    def _offer(self, stream: str, values: Mapping[str, float], age: float = 0.0) -> bool:
        """Check a reading that arrived `age` s ago (a node that reads its sensors in batches says how long)."""
        accepted = self.monitors[stream].offer(values, self.clocks.steady() - age)
        if accepted:
            self.scans.add(stream, values)
        return accepted

    def on_odometry(self, values: Mapping[str, float], pose: Pose, stamp: float, age: float = 0.0
                    ) -> MotionStatus | None:
        """Take an odometry reading: `values` for the stream's checks, `pose` for control, `stamp` in s (0: none).

        Publishes the running task's command at once; returns its status (None when no task runs).
        """
        if not self._offer("odom", values, age):
            return None
        self.pose = pose
        self.safety.on_pose(pose)
        if self.safety.home is None:
            self.safety.home = pose.position
            self.home_store.save(pose.position)
        run = self._motion
        if run is None:
            return None
        self.publish_command(run.on_odometry(pose, stamp if stamp > 0 else self.clocks.ros()))
        return run.status

    def on_imu(self, values: Mapping[str, float], age: float = 0.0) -> None:
        self._offer("imu", values, age)

    def on_gps(self, values: Mapping[str, float], fix: bool, age: float = 0.0) -> None:
        monitor = self.monitors["gps"]
        monitor.no_fix = not fix
        if not fix:
            monitor.received += 1
        elif self._offer("gps", values, age):
            self.gps = (values["latitude"], values["longitude"], values["altitude"])

    def on_battery(self, values: Mapping[str, float], age: float = 0.0) -> None:
        now = self.clocks.steady() - age
        monitor = self.monitors["battery"]
        accepted = monitor.offer(values, now)
        if accepted:
            self.scans.add("battery", values)
        self._report(self.safety.on_battery(values if accepted else None, monitor.last_reject_reason, now))

    def on_event(self, code: str, source: str, message: str) -> None:
        """Another engine's event: `endurance_low` enters the battery reserve as a low reading would."""
        if code == "endurance_low":
            self._report(self.safety.on_endurance_low(f"{source}: {message}", self.clocks.steady()))

    def on_external_command(self, command: Sequence[float]) -> None:
        self.external.offer(command)

    def on_residual(self, correction: Sequence[float]) -> None:
        self.residual.offer(correction)

    def tick(self) -> None:
        self._report(self.safety.tick(self.clocks.steady()))

    def clear_battery_reserve(self) -> tuple[bool, str]:
        done, message, notices = self.safety.clear_reserve(self.clocks.steady())
        self._report(notices)
        return done, message

    def _report(self, notices: Sequence[Notice]) -> None:
        for notice in notices:
            self.report(notice)

    # -- Task kinds ------------------------------------------------------------------------------

    def served_kinds(self) -> list[ServedKind]:
        """Return the kinds with the current limits in their schemas (build them again when a limit changes)."""
        handlers = {"navigate": self.navigate, "hold": self.hold, "hover": self.hold,
                    "land": partial(self._fail_safe, "land", self.land),
                    "return_home": partial(self._fail_safe, "return_home", self.return_home),
                    "scan": self.scan, "collect": self.scan}
        kinds = task_kinds(KindLimits.from_parameters(self.param, self.fence))
        readiness = {"return_home": self.return_home_not_ready, "scan": self.sensing_not_ready,
                     "collect": self.sensing_not_ready}
        return [ServedKind(spec, handlers[name], readiness.get(name, self.motion_not_ready))
                for name, spec in kinds.items()]

    # -- Readiness: a kind is announced ready only when it can be served --------------------------

    def sensing_not_ready(self) -> str:
        """Why a scan cannot run now ('' when it can): it needs to know where the vehicle is."""
        now = self.clocks.steady()
        odom = self.monitors["odom"]
        if self.pose is None or odom.last_valid_at is None:
            return "no odometry yet"
        if not odom.fresh(now):
            return f"odometry stale ({now - odom.last_valid_at:.1f} s old)"
        return ""

    def motion_not_ready(self) -> str:
        """Why the vehicle cannot be moved now ('' when it can): fresh odometry and a known battery."""
        why = self.sensing_not_ready()
        if why:
            return why
        battery = self.monitors["battery"]
        if battery.spec.min_rate > 0 and not battery.fresh(self.clocks.steady()):
            return "battery state unknown" if battery.last_valid_at is None else "battery state stale"
        return ""

    def return_home_not_ready(self) -> str:
        return self.motion_not_ready() or ("" if self.home is not None else "home unknown")

    # -- Motion ----------------------------------------------------------------------------------

    def _require_pose(self) -> Pose:
        if self.pose is None or not self.monitors["odom"].fresh(self.clocks.steady()):
            raise TaskFailed("no fresh odometry: the vehicle's position is unknown", retryable=True)
        return self.pose

    def _speed(self, parameters: Mapping[str, Any]) -> float:
        limit = self.param("max_speed")
        if "speed" in parameters:
            speed, name = parameters["speed"], "parameters.speed"
        else:
            speed, name = self.param("default_speed"), "default_speed (no speed given)"
        if speed > limit:
            raise TaskFailed(f"{name}: {speed:g} m/s exceeds max_speed {limit:g} m/s", retryable=False)
        return speed

    def _run_motion(self, context: TaskContext, kind: str, plan, speed: float, timeout: float | None) -> Pose:
        """Drive `plan` until done, or until the supervisor says stop; return the final pose."""
        clocks = self.clocks
        watch = self.safety.begin_motion(kind, kind, timeout, clocks.steady(), clocks.ros())
        gains = {name: self.param(f"pid_{name}") for name in PID_GAINS}
        if self.controller_mode == "external":
            controller = self.external
            controller.reset()  # a command given for an earlier task is not one for this
        elif self.controller_mode == "residual":
            controller = self.residual
            controller.pid = PositionController(kind=self.vehicle_kind, **gains)
            controller.reset()
        else:
            controller = PositionController(kind=self.vehicle_kind, **gains)
        run = self._motion = MotionRun(plan, controller, speed)
        self.motion_started()
        try:
            while not clocks.wait(run.finished, CHECK_PERIOD):
                stop = self.safety.check_motion(watch, clocks.steady(), clocks.ros(), context.canceled,
                                                self.monitors["odom"].last_valid_at)
                if stop is not None:
                    if stop.notice is not None:
                        self.report(stop.notice)
                    self._stop_vehicle()
                    if stop.canceled:
                        raise TaskCanceled()
                    raise TaskFailed(stop.message, retryable=stop.retryable)
                if controller is self.external and controller.stale:
                    context.feedback(status="waiting for control/cmd_vel (external controller)")
                status = run.status
                if status is not None:
                    context.feedback(progress=status.progress, status=status.message,
                                     distance_remaining=round(status.remaining, 2), waypoint=status.waypoint)
            return self.pose
        finally:
            if self._motion is run:
                self._motion = None
            self.safety.end_motion(watch)
            self.publish_command(STOP)

    def _stop_vehicle(self, settle_speed: float = 0.2, timeout: float = 5.0) -> None:
        """Command a stop until the vehicle has (nearly) stopped, so a stopped task ends with it still."""
        run, self._motion = self._motion, None
        if run is not None:
            run.finished.set()
        deadline = self.clocks.steady() + timeout
        while self.clocks.steady() < deadline:
            self.publish_command(STOP)
            pose = self.pose
            if pose is not None and pose.speed <= settle_speed:
                return
            self.clocks.sleep(0.05)

    def navigate(self, request: TaskRequest, context: TaskContext) -> dict:
        self.safety.admit("navigate", self.clocks.steady())
        pose = self._require_pose()
        parameters = request.parameters
        waypoints = prepare_waypoints(parameters, pose, self.vehicle_kind, self.fence)
        speed = self._speed(parameters)
        plan = WaypointPlan(waypoints, parameters.get("tolerance", self.param("arrival_tolerance")),
                            hold=parameters.get("hold", 0.0))
        began = self.clocks.ros()
        final = self._run_motion(context, "navigate", plan, speed, request.timeout)
        return {"position": _rounded(final.position), "waypoints_reached": len(waypoints),
                "distance": round(path_length(pose.position, waypoints), 2),
                "duration": round(self.clocks.ros() - began, 2)}

    def hold(self, request: TaskRequest, context: TaskContext) -> dict:
        position = hold_position(request.parameters, self._require_pose(), self.vehicle_kind, self.fence)
        plan = HoldPlan(position, request.parameters.get("duration"))
        final = self._run_motion(context, request.kind, plan, self.param("default_speed"), None)
        return {"position": _rounded(final.position)}

    def land(self, request: TaskRequest, context: TaskContext) -> dict:
        pose = self._require_pose()
        if self.vehicle_kind == "ground":
            self._stop_vehicle()
            return {"position": _rounded(self.pose.position)}
        plan = LandPlan(pose.position, request.parameters.get("descent_speed", self.param("landing_speed")))
        final = self._run_motion(context, "land", plan, self.param("default_speed"), request.timeout)
        return {"position": _rounded(final.position)}

    def _fail_safe(self, kind: str, handler, request: TaskRequest, context: TaskContext) -> dict:
        """Run a return_home or land; when it fails in the air, hold there and call for a return home."""
        try:
            return handler(request, context)
        except TaskFailed as failure:
            notices = self.safety.on_return_failed(kind, failure.message, self.clocks.steady())
            if notices:
                self._stop_vehicle()  # hold position: stopped, not drifting
                self._report(notices)
            raise

    def return_home(self, request: TaskRequest, context: TaskContext) -> dict:
        pose = self._require_pose()
        parameters = request.parameters
        speed = self._speed(parameters)
        home = self.home
        altitude = parameters.get("altitude", self.param("return_altitude"))
        route = plan_return_home(pose, home, self.vehicle_kind, altitude, parameters.get("land", True), self.fence,
                                 self.param("arrival_tolerance"), self.param("landed_altitude"))
        plans, later = [], []
        if route.legs:
            plans.append(WaypointPlan(route.legs, self.param("arrival_tolerance")))
            later.append(0.0)
        if route.land:
            plans.append(LandPlan((home[0], home[1], route.altitude), self.param("landing_speed")))
            later.append(route.altitude)
        if not plans:
            return {"position": _rounded(pose.position)}  # home already, and down
        final = self._run_motion(context, "return_home", SequencePlan(plans, later), speed, request.timeout)
        return {"position": _rounded(final.position)}

    # -- Scan ------------------------------------------------------------------------------------

    def scan(self, request: TaskRequest, context: TaskContext) -> dict:
        duration = float(request.parameters["duration"])
        sensors = request.parameters.get("sensors", list(STREAM_NAMES))
        position = self.pose.position if self.pose else None
        gps = self.gps if self.gps and self.monitors["gps"].fresh(self.clocks.steady()) else None
        summary = self.scans.open()
        started = context.now()
        try:
            while (left := started + duration - context.now()) > 0:
                context.feedback(progress=1.0 - left / duration, status=f"scanning, {left:.1f} s left")
                context.sleep(min(left, 0.2))
        finally:
            self.scans.close(summary)
        return scan_result(summary, sensors, duration, position, gps)

    # -- Health ----------------------------------------------------------------------------------

    def stream_statuses(self) -> list[tuple[str, Level, str, dict[str, str]]]:
        now = self.clocks.steady()
        return [(name, *monitor.status(now)) for name, monitor in self.monitors.items()
                if monitor.spec.min_rate > 0 or monitor.received]

    def health(self) -> tuple[Level, str, dict[str, str]]:
        now = self.clocks.steady()
        statuses = {name: monitor.status(now) for name, monitor in self.monitors.items() if monitor.spec.min_rate > 0}
        level = max((status[0] for status in statuses.values()), default=Level.OK)
        problems = [f"{name}: {status[1]}" for name, status in statuses.items() if status[0] > Level.OK]
        safety_level, safety_message, safety_values = self.safety.status()
        if safety_level > Level.OK:
            level = max(level, safety_level)
            problems.insert(0, safety_message)
        battery = self.safety.battery
        values = {"motion": self.safety.motion.kind if self.safety.motion else "idle",
                  "position": ",".join(f"{c:.2f}" for c in self.pose.position) if self.pose else "",
                  "battery": f"{battery['percentage']:.3f}" if "percentage" in battery else "",
                  "voltage": f"{battery['voltage']:.2f}" if "voltage" in battery else "", **safety_values}
        return level, "; ".join(problems) or "running", values
