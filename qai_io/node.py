"""io_engine: moves the vehicle and reads its sensors over DDS.

The ROS shell around qai_io.core (readings, motion and scan tasks), qai_io.safety (what stops the
vehicle, and the battery reserve) and qai_io.kinds (the task kinds and the limits announced in them): it
converts messages into calls and carries out what comes back.

Subscribes: odom (nav_msgs/Odometry), imu/data (sensor_msgs/Imu), battery_state (sensor_msgs/BatteryState),
navsat/fix (sensor_msgs/NavSatFix); events (endurance_low from the intelligence engine enters the battery
reserve); with `controller: external`, control/cmd_vel (geometry_msgs/Twist); with `controller: residual`,
control/residual (geometry_msgs/Twist: a correction added to the PID's command).
Publishes: cmd_vel (geometry_msgs/Twist, body frame; one command per odometry message while a motion task
runs); events (qai_interfaces/Event: battery_reserve, repeated while it applies; odometry_stale); with
`controller: external` or `residual`, control/target (geometry_msgs/PointStamped); /diagnostics (the engine, and one
status per sensor stream); engine_capabilities (the kinds, re-announced when a limit changes).
Serves: RunTask at ~/run_task (navigate, hold, hover, land, return_home: the exclusive resource "motion";
scan, collect); ~/clear_battery_reserve (std_srvs/Trigger: an operator ends the battery reserve; refused,
with the reason, while airborne or while the battery still reads low).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from geometry_msgs.msg import PointStamped, Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState, Imu, NavSatFix, NavSatStatus
from std_srvs.srv import Trigger

from qai_edge.convert import key_values
from qai_edge.engine_node import EngineNode, spin_node
from qai_edge.health import Level
from qai_edge.polled import Polled
from qai_interfaces.msg import Event
from qai_io.core import Clocks, IoCore
from qai_io.home import HomeStore
from qai_edge.geo import quaternion_to_yaw
from qai_io.motion import Pose
from qai_io.parameters import PARAMETERS, READ_LIVE, SCHEMA_LIMITS
from qai_io.safety import Notice

SAFETY_TICK = 0.2  # s of steady time between the supervisor's checks of the battery (silence, repeats)
_SEVERITY = {Level.OK: Event.INFO, Level.WARN: Event.WARN, Level.ERROR: Event.ERROR}


def odometry_from_msg(msg: Odometry) -> tuple[dict[str, float], Pose, float]:
    """(values for the stream's checks, the pose with its velocity in the world frame, the stamp in s)."""
    p, q, v = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist.linear
    yaw = quaternion_to_yaw(q.x, q.y, q.z, q.w)
    values = {"x": p.x, "y": p.y, "z": p.z, "yaw": yaw, "speed": math.sqrt(v.x ** 2 + v.y ** 2 + v.z ** 2)}
    vx = math.cos(yaw) * v.x - math.sin(yaw) * v.y
    vy = math.sin(yaw) * v.x + math.cos(yaw) * v.y
    return values, Pose(p.x, p.y, p.z, yaw, vx, vy, v.z), msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def imu_from_msg(msg: Imu) -> dict[str, float]:
    a, w = msg.linear_acceleration, msg.angular_velocity
    return {"accel_x": a.x, "accel_y": a.y, "accel_z": a.z, "gyro_x": w.x, "gyro_y": w.y, "gyro_z": w.z}


def battery_from_msg(msg: BatteryState) -> dict[str, float]:
    values = {"voltage": msg.voltage}
    for name in ("percentage", "current"):  # NaN there means "not measured" (sensor_msgs/BatteryState)
        value = getattr(msg, name)
        if not math.isnan(value):
            values[name] = value
    return values


class IoEngine(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("io_engine", PARAMETERS, **kwargs)
        data_dir = self.param("data_dir")
        home = HomeStore(Path(data_dir).expanduser() / self.robot_id / "home.json" if data_dir else None)
        self.core = IoCore(self.param, Clocks(steady=self._steady_now, ros=self._ros_now), self._publish_command,
                           self._report, home)
        if self.core.home is not None and not self.param("home"):
            self.get_logger().info(f"home {self.core.home} as this run recorded it ({home.path})")
        self.on_parameter("external_command_timeout", lambda value: setattr(self.core.external, "timeout", value))
        for name in SCHEMA_LIMITS:
            self.on_parameter(name, lambda value: self._announce_limits())
        for name in READ_LIVE:
            self.on_parameter(name)

        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", 10)
        self.events_pub = self.create_publisher(Event, "events", 10)
        self.target_pub = self.create_publisher(PointStamped, "control/target", 10)
        # Odometry as it arrives while a task runs or the vehicle is out; otherwise, like the other sensors, read
        # in batches (qai_edge.polled): with each odometry message, the safety tick and the heartbeat.
        self.odometry = Polled(self, live=lambda: self.core.wants_every_pose() or bool(self.task_server.running))
        self.odometry.subscribe(Odometry, "odom", self._on_odom, 20)
        self.core.motion_started = self.odometry.wake
        self.sensors = Polled(self)
        self.sensors.subscribe(Imu, "imu/data", lambda msg, age: self.core.on_imu(imu_from_msg(msg), age), 50)
        self.sensors.subscribe(BatteryState, "battery_state",
                               lambda msg, age: self.core.on_battery(battery_from_msg(msg), age), 10)
        self.sensors.subscribe(NavSatFix, "navsat/fix", self._on_gps, 10)
        self.create_subscription(Event, "events", lambda msg: self.core.on_event(msg.code, msg.source, msg.message),
                                 10)
        if self.core.controller_mode == "external":
            self.create_subscription(Twist, "control/cmd_vel", lambda msg: self.core.on_external_command(
                (msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.z)), 10)
        elif self.core.controller_mode == "residual":
            self.create_subscription(Twist, "control/residual", lambda msg: self.core.on_residual(
                (msg.linear.x, msg.linear.y, msg.linear.z)), 10)
        self.create_service(Trigger, "~/clear_battery_reserve", self._on_clear_battery_reserve)
        self.create_timer(SAFETY_TICK, self._on_safety_tick, clock=self._steady_clock)
        self.serve(self.core.served_kinds())
        self.start()

    # -- Clocks: steady for stream health and safety waits (they must not stop with a simulated clock),
    # the node's clock (simulated time under use_sim_time) for task durations and timeouts.

    def _steady_now(self) -> float:
        return time.monotonic()

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- Messages in ------------------------------------------------------------------------------

    def _drain(self) -> None:
        self.odometry.drain()
        self.sensors.drain()

    def _on_safety_tick(self) -> None:
        self._drain()
        self.core.tick()

    def publish_heartbeat(self) -> None:
        self._drain()  # the streams' statuses count what has arrived, not what waits to be read
        super().publish_heartbeat()

    def _on_odom(self, msg: Odometry, age: float) -> None:
        self.sensors.drain()  # the IMU, battery and GPS readings that came since the last pose, first
        values, pose, stamp = odometry_from_msg(msg)
        status = self.core.on_odometry(values, pose, stamp, age)
        if status is not None and self.core.controller_mode != "pid":
            target = PointStamped(header=msg.header)
            target.point.x, target.point.y, target.point.z = status.target
            self.target_pub.publish(target)

    def _on_gps(self, msg: NavSatFix, age: float) -> None:
        self.core.on_gps({"latitude": msg.latitude, "longitude": msg.longitude, "altitude": msg.altitude},
                         fix=msg.status.status >= NavSatStatus.STATUS_FIX, age=age)

    def _on_clear_battery_reserve(self, request, response):
        response.success, response.message = self.core.clear_battery_reserve()
        if response.success:
            self.get_logger().warning(f"clear_battery_reserve: {response.message}")
        else:
            self.get_logger().error(f"clear_battery_reserve: {response.message}")
        return response

    # -- What the core says -----------------------------------------------------------------------

    def _publish_command(self, command) -> None:
        twist = Twist()
        twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z = (float(c) for c in command)
        self.cmd_pub.publish(twist)

    def _report(self, notice: Notice) -> None:
        # One call site per severity: rclpy refuses a logging call whose severity changes between calls.
        if notice.severity >= Level.ERROR:
            self.get_logger().error(notice.message)
        elif notice.severity == Level.WARN:
            self.get_logger().warning(notice.message)
        else:
            self.get_logger().info(notice.message)
        if notice.publish:
            event = Event(source=self.get_fully_qualified_name(), code=notice.code,
                          severity=_SEVERITY.get(notice.severity, Event.ERROR), message=notice.message,
                          values=key_values(notice.values))
            event.header.stamp = self.get_clock().now().to_msg()
            self.events_pub.publish(event)

    def _announce_limits(self) -> None:
        """Serve and announce the kinds again: a limit in their schemas changed."""
        self.task_server.kinds = {served.spec.name: served for served in self.core.served_kinds()}
        self.announce_capabilities()

    # -- Health -----------------------------------------------------------------------------------

    def extra_statuses(self):
        return self.core.stream_statuses()

    def health(self):
        return self.core.health()


def main(args=None):
    return spin_node(IoEngine, args)


if __name__ == "__main__":
    sys.exit(main())
