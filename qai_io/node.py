"""io_engine: moves the vehicle and reads its sensors over DDS.

Watches odom, imu/data, battery_state and navsat/fix (rate, staleness, stuck values, invalid readings,
one /diagnostics status per stream); drives cmd_vel, computing one command per odometry message; serves the
task kinds navigate, hold (and hover), land, return_home (holding the exclusive resource "motion") and
scan (and collect). Safety: stale odometry during a motion task stops the vehicle and fails the task; a
waypoint outside the geofence is refused; a battery at its reserve raises ERROR and a battery_reserve
event on `events`. The logic is qai_io.motion and qai_io.sensors; this file maps messages to calls.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time

from geometry_msgs.msg import PointStamped, Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState, Imu, NavSatFix, NavSatStatus

from qai_edge.convert import key_values
from qai_edge.engine_node import EngineNode, spin_node
from qai_edge.health import Level
from qai_edge.tasks import ServedKind, TaskCanceled, TaskFailed, TaskKindSpec
from qai_interfaces.msg import Event
from qai_io.geo import Geofence, quaternion_to_yaw
from qai_io.motion import STOP, HoldPlan, LandPlan, MotionRun, Pose, PositionController, WaypointPlan, distance
from qai_io.parameters import PARAMETERS
from qai_io.sensors import ScanSummary, StreamMonitor, StreamSpec

MOTION = frozenset({"motion"})
POINT = {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"}}
SPEED = {"type": "number", "exclusiveMinimum": 0}
STREAM_NAMES = ("odom", "imu", "battery", "gps")

NAVIGATE = TaskKindSpec(
    "navigate", "Fly or drive through waypoints ([x, y, z] in the odom frame, m) in order.",
    {"type": "object", "required": ["waypoints"], "additionalProperties": False, "properties": {
        "waypoints": {"type": "array", "minItems": 1, "items": POINT},
        "order": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "speed": SPEED, "tolerance": SPEED, "hold": {"type": "number", "minimum": 0}}},
    result_keys=("position", "waypoints_reached", "distance", "duration"), resources=MOTION, default_timeout=600.0)
HOLD = TaskKindSpec(
    "hold", "Hold a position (default: where the vehicle is) for `duration` seconds, or until canceled.",
    {"type": "object", "additionalProperties": False, "properties": {
        "duration": {"type": "number", "minimum": 0}, "position": POINT}},
    result_keys=("position",), resources=MOTION)
LAND = TaskKindSpec(
    "land", "Descend where the vehicle is until it is on the ground (a ground robot stops).",
    {"type": "object", "additionalProperties": False, "properties": {"descent_speed": SPEED}},
    result_keys=("position",), resources=MOTION, default_timeout=300.0)
RETURN_HOME = TaskKindSpec(
    "return_home", "Climb to a safe altitude, go home, and land.",
    {"type": "object", "additionalProperties": False, "properties": {
        "altitude": {"type": "number", "minimum": 0}, "speed": SPEED, "land": {"type": "boolean"}}},
    result_keys=("position",), resources=MOTION, default_timeout=900.0)
SCAN = TaskKindSpec(
    "scan", "Sample sensors for `duration` seconds; return statistics and where they were taken.",
    {"type": "object", "required": ["duration"], "additionalProperties": False, "properties": {
        "duration": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        "sensors": {"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"enum": list(STREAM_NAMES)}}}},
    result_keys=("summary", "samples", "position", "gps", "duration"), default_timeout=3700.0)


def _odom_values(msg: Odometry) -> tuple[dict[str, float], float]:
    p, q, v = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist.linear
    yaw = quaternion_to_yaw(q.x, q.y, q.z, q.w)
    return {"x": p.x, "y": p.y, "z": p.z, "yaw": yaw, "speed": math.sqrt(v.x ** 2 + v.y ** 2 + v.z ** 2)}, yaw


def _imu_values(msg: Imu) -> dict[str, float]:
    a, w = msg.linear_acceleration, msg.angular_velocity
    return {"accel_x": a.x, "accel_y": a.y, "accel_z": a.z, "gyro_x": w.x, "gyro_y": w.y, "gyro_z": w.z}


def _battery_values(msg: BatteryState) -> dict[str, float]:
    values = {"voltage": msg.voltage}
    for name in ("percentage", "current"):  # NaN there means "not measured" (sensor_msgs/BatteryState)
        value = getattr(msg, name)
        if not math.isnan(value):
            values[name] = value
    return values


class ExternalController:
    """Follows commands another node publishes on control/cmd_vel (e.g. a learned policy); stops the
    vehicle when they are older than `timeout`. Speeds are clipped to the task's limit."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._latest: tuple[float, tuple] | None = None
        self.stale = False

    def offer(self, command: tuple, now: float) -> None:
        self._latest = (now, command)

    def reset(self) -> None:
        pass

    def command(self, pose: Pose, target, goal_distance: float, speed: float, dt: float):
        if self._latest is None or time.monotonic() - self._latest[0] > self.timeout:
            self.stale = True
            return STOP
        self.stale = False
        forward, left, up, yaw_rate = self._latest[1]
        horizontal = math.hypot(forward, left)
        if horizontal > speed:
            forward, left = forward * speed / horizontal, left * speed / horizontal
        return forward, left, max(-speed, min(speed, up)), yaw_rate


class IoEngine(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("io_engine", PARAMETERS, **kwargs)
        p = self.param
        self.kind = p("vehicle_kind")
        if self.kind not in ("multirotor", "ground"):
            raise ValueError(f"vehicle_kind: expected multirotor or ground, got {self.kind!r}")
        self.controller_mode = p("controller")
        if self.controller_mode not in ("pid", "external"):
            raise ValueError(f"controller: expected pid or external, got {self.controller_mode!r}")
        self.geofence = Geofence.from_flat(p("geofence_polygon"), p("geofence_min_altitude"),
                                           p("geofence_max_altitude"))
        self.home = tuple(p("home")) if p("home") else None
        if self.home is not None and len(self.home) != 3:
            raise ValueError(f"home: expected x, y, z, got {list(self.home)}")
        stuck_after = p("stuck_after")
        self.monitors = {name: StreamMonitor(StreamSpec(name, p(f"{name}_min_rate"),
                                                        stale_after=max(3.0 / max(p(f"{name}_min_rate"), 0.1), 0.5),
                                                        stuck_after=stuck_after), started_at=self._now())
                         for name in STREAM_NAMES}
        self.pose: Pose | None = None
        self.gps: tuple[float, float, float] | None = None
        self.battery: dict[str, float] = {}
        self.battery_at_reserve = False
        self._motion: MotionRun | None = None
        self._motion_lock = threading.Lock()
        self._scans: list[ScanSummary] = []
        self._scan_lock = threading.Lock()
        self.external = ExternalController(p("external_command_timeout"))
        self.on_parameter("external_command_timeout", lambda value: setattr(self.external, "timeout", value))
        for name in ("default_speed", "max_speed", "arrival_tolerance", "landing_speed", "return_altitude",
                     "odom_timeout", "battery_reserve", "battery_min_voltage"):
            self.on_parameter(name)  # read live where used

        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", 10)
        self.events_pub = self.create_publisher(Event, "events", 10)
        self.target_pub = self.create_publisher(PointStamped, "control/target", 10)
        self.create_subscription(Odometry, "odom", self._on_odom, 10)
        self.create_subscription(Imu, "imu/data", self._on_imu, 10)
        self.create_subscription(BatteryState, "battery_state", self._on_battery, 10)
        self.create_subscription(NavSatFix, "navsat/fix", self._on_gps, 10)
        if self.controller_mode == "external":
            self.create_subscription(Twist, "control/cmd_vel", self._on_external_command, 10)
        self.serve([ServedKind(NAVIGATE, self.navigate), ServedKind(HOLD, self.hold),
                    ServedKind(dataclasses.replace(HOLD, name="hover"), self.hold),
                    ServedKind(LAND, self.land), ServedKind(RETURN_HOME, self.return_home),
                    ServedKind(SCAN, self.scan), ServedKind(dataclasses.replace(SCAN, name="collect"), self.scan)])
        self.start()

    # -- Sensors ----------------------------------------------------------------------------------

    def _now(self) -> float:
        """Wall clock: stream health and safety waits, which must not stop when a simulated clock does."""
        return time.monotonic()

    def _ros_now(self) -> float:
        """The node's clock (simulated under use_sim_time): task durations, timeouts, controller time."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _offer(self, stream: str, values: dict[str, float]) -> bool:
        accepted = self.monitors[stream].offer(values, self._now())
        if accepted and self._scans:
            with self._scan_lock:
                for summary in self._scans:
                    summary.add(stream, values)
        return accepted

    def _on_odom(self, msg: Odometry) -> None:
        values, yaw = _odom_values(msg)
        if not self._offer("odom", values):
            return
        body = msg.twist.twist.linear
        vx = math.cos(yaw) * body.x - math.sin(yaw) * body.y
        vy = math.sin(yaw) * body.x + math.cos(yaw) * body.y
        self.pose = Pose(values["x"], values["y"], values["z"], yaw, vx, vy, body.z)
        if self.home is None:
            self.home = self.pose.position
        run = self._motion
        if run is not None:
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            command = run.on_odometry(self.pose, stamp if stamp > 0 else self._ros_now())
            self._publish_command(command)
            if self.controller_mode == "external" and run.status is not None:
                target = PointStamped()
                target.header = msg.header
                target.point.x, target.point.y, target.point.z = run.status.target
                self.target_pub.publish(target)

    def _publish_command(self, command) -> None:
        twist = Twist()
        twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z = (float(c) for c in command)
        self.cmd_pub.publish(twist)

    def _on_imu(self, msg: Imu) -> None:
        self._offer("imu", _imu_values(msg))

    def _on_gps(self, msg: NavSatFix) -> None:
        monitor = self.monitors["gps"]
        monitor.no_fix = msg.status.status < NavSatStatus.STATUS_FIX
        if monitor.no_fix:
            monitor.received += 1
            return
        if self._offer("gps", {"latitude": msg.latitude, "longitude": msg.longitude, "altitude": msg.altitude}):
            self.gps = (msg.latitude, msg.longitude, msg.altitude)

    def _on_battery(self, msg: BatteryState) -> None:
        values = _battery_values(msg)
        if not self._offer("battery", values):
            return
        self.battery = values
        reserve, min_voltage = self.param("battery_reserve"), self.param("battery_min_voltage")
        low = values.get("percentage", 1.0) < reserve or (min_voltage > 0 and values["voltage"] < min_voltage)
        if low and not self.battery_at_reserve:
            message = (f"battery at {values.get('percentage', math.nan):.0%} ({values['voltage']:.2f} V), "
                       f"below its reserve ({reserve:.0%}, {min_voltage:g} V)")
            self.get_logger().error(message)
            self.publish_event("battery_reserve", Event.ERROR, message, values)
        self.battery_at_reserve = low

    def _on_external_command(self, msg: Twist) -> None:
        self.external.offer((msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.z), self._now())

    def publish_event(self, code: str, severity: int, message: str, values: dict) -> None:
        event = Event(source=self.get_fully_qualified_name(), code=code, severity=severity, message=message,
                      values=key_values(values))
        event.header.stamp = self.get_clock().now().to_msg()
        self.events_pub.publish(event)

    # -- Motion tasks -----------------------------------------------------------------------------

    def _controller(self):
        if self.controller_mode == "external":
            return self.external
        return PositionController(kind=self.kind)

    def _require_pose(self) -> Pose:
        if self.pose is None or not self.monitors["odom"].fresh(self._now()):
            raise TaskFailed("no fresh odometry: the vehicle's position is unknown", retryable=True)
        return self.pose

    def _speed(self, parameters) -> float:
        speed = parameters.get("speed", self.param("default_speed"))
        if speed > self.param("max_speed"):
            raise TaskFailed(f"parameters.speed: {speed:g} m/s exceeds this vehicle's max_speed "
                             f"{self.param('max_speed'):g} m/s", retryable=False)
        return speed

    def _check_fence(self, point, where: str) -> None:
        why = self.geofence.violation(*point)
        if why:
            raise TaskFailed(f"{where}: ({', '.join(f'{c:g}' for c in point)}) is {why}", retryable=False)

    def _run_motion(self, context, plan, speed: float, timeout: float | None, what: str) -> Pose:
        """Drive `plan` until done, canceled, stale odometry, or timeout; returns the final pose."""
        run = MotionRun(plan, self._controller(), speed)
        with self._motion_lock:
            if self._motion is not None:
                raise TaskFailed("another motion task is running on this vehicle", retryable=True)
            self._motion = run
        started, started_ros = self._now(), self._ros_now()
        try:
            while not run.finished.wait(0.05):
                now = self._now()
                if context.canceled:
                    self._stop_vehicle()
                    raise TaskCanceled()
                odom = self.monitors["odom"]
                if odom.last_valid_at is None or now - odom.last_valid_at > self.param("odom_timeout"):
                    self._stop_vehicle()
                    age = now - (odom.last_valid_at or started)
                    message = f"{what}: odometry stale for {age:.1f} s; stopped the vehicle"
                    self.publish_event("odometry_stale", Event.ERROR, message, {"age": round(age, 2)})
                    raise TaskFailed(message, retryable=True)
                if timeout is not None and self._ros_now() - started_ros > timeout:
                    self._stop_vehicle()
                    raise TaskFailed(f"{what}: not done after {timeout:g} s", retryable=True)
                if isinstance(run.controller, ExternalController) and run.controller.stale:
                    context.feedback(status="waiting for control/cmd_vel (external controller)")
                status = run.status
                if status is not None:
                    context.feedback(progress=status.progress, status=status.message,
                                     distance_remaining=round(status.remaining, 2), waypoint=status.waypoint)
            return self.pose
        finally:
            with self._motion_lock:
                self._motion = None
            self._publish_command(STOP)

    def _stop_vehicle(self, settle_speed: float = 0.2, timeout: float = 5.0) -> None:
        """Command a stop and wait until the vehicle has (nearly) stopped, so a canceled motion task ends
        with the vehicle still."""
        with self._motion_lock:
            run, self._motion = self._motion, None
        if run is not None:
            run.finished.set()
        deadline = self._now() + timeout
        while self._now() < deadline:
            self._publish_command(STOP)
            pose = self.pose
            if pose is not None and pose.speed <= settle_speed:
                return
            time.sleep(0.05)

    def navigate(self, request, context):
        parameters = request.parameters
        pose = self._require_pose()
        if self.battery_at_reserve:
            raise TaskFailed(f"battery at its reserve ({self.battery.get('percentage', math.nan):.0%}, "
                             f"{self.battery.get('voltage', math.nan):.2f} V): only return_home, land and hold run",
                             retryable=False)
        points = [list(map(float, w)) for w in parameters["waypoints"]]
        order = parameters.get("order")
        if order is not None:
            bad = [i for i in order if i >= len(points)]
            if bad:
                raise TaskFailed(f"parameters.order: index {bad[0]} is out of range for {len(points)} waypoints",
                                 retryable=False)
            points = [points[i] for i in order]
        waypoints = []
        for index, point in enumerate(points):
            z = point[2] if len(point) == 3 else pose.z
            waypoint = (point[0], point[1], pose.z if self.kind == "ground" else z)
            self._check_fence(waypoint, f"parameters.waypoints[{index}]")
            waypoints.append(waypoint)
        tolerance = parameters.get("tolerance", self.param("arrival_tolerance"))
        speed = self._speed(parameters)
        start = pose.position
        began = self._ros_now()
        plan = WaypointPlan(waypoints, tolerance, hold=parameters.get("hold", 0.0))
        final = self._run_motion(context, plan, speed, request.timeout, "navigate")
        path = sum(distance(a, b) for a, b in zip([start, *waypoints], waypoints))
        return {"position": [round(c, 3) for c in final.position], "waypoints_reached": len(waypoints),
                "distance": round(path, 2), "duration": round(self._ros_now() - began, 2)}

    def hold(self, request, context):
        pose = self._require_pose()
        position = pose.position
        if "position" in request.parameters:  # the fence bounds where a task sends the vehicle
            asked = request.parameters["position"]
            position = (asked[0], asked[1], asked[2] if len(asked) == 3 else pose.z)
            self._check_fence(position, "parameters.position")
        plan = HoldPlan(position, request.parameters.get("duration"))
        final = self._run_motion(context, plan, self.param("default_speed"), None, request.kind)
        return {"position": [round(c, 3) for c in final.position]}

    def land(self, request, context):
        pose = self._require_pose()
        if self.kind == "ground":
            self._stop_vehicle()
            return {"position": [round(c, 3) for c in self.pose.position]}
        plan = LandPlan(pose.position, request.parameters.get("descent_speed", self.param("landing_speed")))
        final = self._run_motion(context, plan, self.param("default_speed"), request.timeout, "land")
        return {"position": [round(c, 3) for c in final.position]}

    def return_home(self, request, context):
        pose = self._require_pose()
        home = self.home
        parameters = request.parameters
        speed = self._speed(parameters)
        if self.kind == "ground":
            legs = [(home[0], home[1], pose.z)]
        else:
            altitude = max(parameters.get("altitude", self.param("return_altitude")), pose.z)
            legs = [(pose.x, pose.y, altitude), (home[0], home[1], altitude)]
        for index, leg in enumerate(legs):
            self._check_fence(leg, f"return_home leg {index + 1}")
        self._run_motion(context, WaypointPlan(legs, self.param("arrival_tolerance")), speed, request.timeout,
                         "return_home")
        if self.kind == "multirotor" and parameters.get("land", True):
            self._run_motion(context, LandPlan(self.pose.position, self.param("landing_speed")), speed,
                             request.timeout, "return_home (landing)")
        return {"position": [round(c, 3) for c in self.pose.position]}

    # -- Scan -------------------------------------------------------------------------------------

    def scan(self, request, context):
        duration = float(request.parameters["duration"])
        sensors = request.parameters.get("sensors", list(STREAM_NAMES))
        position = list(self.pose.position) if self.pose else None
        gps = list(self.gps) if self.gps and self.monitors["gps"].fresh(self._now()) else None
        summary = ScanSummary()
        with self._scan_lock:
            self._scans.append(summary)
        started = context.now()
        try:
            while (left := started + duration - context.now()) > 0:
                context.feedback(progress=1.0 - left / duration, status=f"scanning, {left:.1f} s left")
                context.sleep(min(left, 0.2))
        finally:
            with self._scan_lock:
                self._scans.remove(summary)
        stats = {name: value for name, value in summary.result().items() if name.split(".")[0] in sensors}
        missing = [s for s in sensors if not any(name.startswith(f"{s}.") for name in stats)]
        if len(missing) == len(sensors):
            raise TaskFailed(f"scan: no valid reading from {', '.join(sensors)} in {duration:g} s", retryable=True)
        samples = {s: max((v["n"] for k, v in stats.items() if k.startswith(f"{s}.")), default=0) for s in sensors}
        return {"summary": {k: {m: round(x, 6) for m, x in v.items()} for k, v in stats.items()},
                "samples": samples, "position": [round(c, 3) for c in position] if position else None,
                "gps": [round(c, 8) for c in gps] if gps else None, "duration": duration}

    # -- Health -----------------------------------------------------------------------------------

    def extra_statuses(self):
        now = self._now()
        return [(name, *monitor.status(now)) for name, monitor in self.monitors.items()
                if monitor.spec.min_rate > 0 or monitor.received]

    def health(self):
        now = self._now()
        statuses = {name: monitor.status(now) for name, monitor in self.monitors.items() if monitor.spec.min_rate > 0}
        level = max((status[0] for status in statuses.values()), default=Level.OK)
        problems = [f"{name}: {status[1]}" for name, status in statuses.items() if status[0] > Level.OK]
        values = {"motion": "active" if self._motion else "idle",
                  "position": ",".join(f"{c:.2f}" for c in self.pose.position) if self.pose else "",
                  "battery": f"{self.battery.get('percentage', math.nan):.3f}" if self.battery else ""}
        if self.battery_at_reserve:
            level = Level.ERROR
            problems.insert(0, "battery at its reserve")
        return level, "; ".join(problems) or "running", values


def main(args=None):
    return spin_node(IoEngine, args)


if __name__ == "__main__":
    sys.exit(main())
