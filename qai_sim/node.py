"""sim_vehicle: a simulated multirotor or ground robot speaking the topics ros_gz_bridge gives from Gazebo.

Subscribes cmd_vel (geometry_msgs/Twist, body frame); publishes odom (nav_msgs/Odometry), imu/data
(sensor_msgs/Imu), battery_state (sensor_msgs/BatteryState), navsat/fix (sensor_msgs/NavSatFix) and, with
publish_clock, /clock. Swapping in Gazebo is a launch change (launch/gazebo.launch.py). The physics is
qai_sim.vehicle_model; faults are injected by parameters, also while running. `~/swap_battery`
(std_srvs/Trigger) puts a full pack in while on the ground, as an operator would between flights.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import BatteryState, Imu, NavSatFix, NavSatStatus
from std_srvs.srv import Trigger

from qai_edge.convert import time_from_seconds
from qai_edge.engine_node import EngineNode, spin_node
from qai_edge.health import Level
from qai_edge.geo import enu_to_geodetic, yaw_to_quaternion
from qai_sim.parameters import PARAMETERS
from qai_sim.vehicle_model import VehicleConfig, VehicleModel

STREAMS = ("odom", "imu", "battery", "gps")
TICK_HZ = 100.0  # wall-clock ticks; each advances the physics by real_time_factor times the wall time


def stream_set(text: str) -> set[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = names - set(STREAMS)
    if unknown:
        raise ValueError(f"unknown stream(s) {', '.join(sorted(unknown))} (streams: {', '.join(STREAMS)})")
    return names


class SimVehicle(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("sim_vehicle", PARAMETERS, **kwargs)
        p = self.param
        noise = p("noise")
        config = VehicleConfig(
            kind=p("vehicle_kind"), cmd_timeout=p("cmd_timeout"), payload=p("payload"),
            battery_capacity_wh=p("battery_capacity_wh"), wind=tuple(p("wind")), wind_gust=p("wind_gust"),
            seed=p("seed"),
            **({} if noise else {"position_noise": 0.0, "velocity_noise": 0.0, "accel_noise": 0.0,
                                 "gyro_noise": 0.0, "gps_noise": 0.0}))
        self.model = VehicleModel(config, position=tuple(p("start_position")), yaw=p("start_yaw"))
        self.model.state.energy_wh = config.battery_capacity_wh * p("battery_initial")
        self.dt = 1.0 / p("physics_rate")
        self.rtf = p("real_time_factor")
        self.origin = p("origin")
        self.frame_id, self.child_frame_id = p("frame_id"), p("child_frame_id")
        self.periods = {"odom": 1.0 / p("odom_rate"), "imu": 1.0 / p("imu_rate"),
                        "battery": 1.0 / p("battery_rate"), "gps": 1.0 / p("gps_rate")}
        self.sim_epoch = time.time()  # simulated time starts at the wall clock, so deadlines stay meaningful
        self.next_publish = dict.fromkeys(STREAMS, 0.0)
        self.last_messages: dict[str, object] = {}
        self.dropout: set[str] = set()
        self.stuck: set[str] = set()
        self.gps_loss = False
        self._apply_faults()
        self._last_tick = time.monotonic()
        self._sim_seconds_this_window = 0.0
        self._window_start = time.monotonic()
        self.achieved_rtf = 0.0

        self.publishers_by_stream = {
            "odom": self.create_publisher(Odometry, "odom", 10),
            "imu": self.create_publisher(Imu, "imu/data", 10),
            "battery": self.create_publisher(BatteryState, "battery_state", 10),
            "gps": self.create_publisher(NavSatFix, "navsat/fix", 10),
        }
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if p("publish_clock") else None
        self.create_subscription(Twist, "cmd_vel", self._on_cmd_vel, 10)
        for name in ("payload", "fault_dropout", "fault_stuck", "fault_battery_sag", "fault_gps_loss",
                     "fault_vibration"):
            self.on_parameter(name, lambda value: self._apply_faults())
        self.create_service(Trigger, "~/swap_battery", self._swap_battery)
        self.create_timer(1.0 / TICK_HZ, self._tick, clock=self._steady_clock)
        self.start()

    def _swap_battery(self, _request, response):
        """Put a full pack in, as the operator does between flights: only on the ground (a soak flies all day)."""
        s = self.model.state
        if self.model.config.kind == "multirotor" and s.position[2] > 0.05:
            response.success, response.message = False, f"airborne ({s.position[2]:.1f} m): land first"
            return response
        s.energy_wh = self.model.config.battery_capacity_wh
        response.success, response.message = True, f"full pack: {s.energy_wh:g} Wh"
        self.get_logger().info(f"battery swapped: {response.message}")
        return response

    # -- Inputs ---------------------------------------------------------------------------------

    def _on_cmd_vel(self, msg: Twist) -> None:
        self.model.command(msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.z)

    def _apply_faults(self) -> None:
        try:
            self.dropout = stream_set(self.param("fault_dropout"))
            self.stuck = stream_set(self.param("fault_stuck"))
        except ValueError as error:
            self.get_logger().error(f"fault parameters: {error}")
        self.model.battery_sag_v = self.param("fault_battery_sag")
        self.gps_loss = self.param("fault_gps_loss")
        self.model.vibration = self.param("fault_vibration")
        self.model.config = dataclasses.replace(self.model.config, payload=self.param("payload"))
        active = [f"dropout {','.join(sorted(self.dropout))}" if self.dropout else "",
                  f"stuck {','.join(sorted(self.stuck))}" if self.stuck else "",
                  f"battery sag {self.model.battery_sag_v:g} V" if self.model.battery_sag_v else "",
                  "GPS loss" if self.gps_loss else "",
                  f"vibration {self.model.vibration:g} m/s^2" if self.model.vibration else ""]
        if any(active):
            self.get_logger().warning(f"fault injection: {'; '.join(a for a in active if a)}")

    # -- Physics and sensors --------------------------------------------------------------------

    @property
    def sim_time(self) -> float:
        return self.sim_epoch + self.model.state.time

    def _tick(self) -> None:
        now = time.monotonic()
        budget = min(now - self._last_tick, 0.1) * self.rtf  # simulated seconds owed, capped if we fell behind
        self._last_tick = now
        steps = int(budget / self.dt + 0.5)
        for _ in range(steps):
            self.model.step(self.dt)
            for stream in STREAMS:
                if self.model.state.time >= self.next_publish[stream]:
                    self.next_publish[stream] = self.model.state.time + self.periods[stream]
                    self._publish(stream)
        if self.clock_pub is not None and steps:
            self.clock_pub.publish(Clock(clock=time_from_seconds(self.sim_time)))
        self._sim_seconds_this_window += steps * self.dt
        if now - self._window_start >= 2.0:
            self.achieved_rtf = self._sim_seconds_this_window / (now - self._window_start)
            self._sim_seconds_this_window, self._window_start = 0.0, now

    def _publish(self, stream: str) -> None:
        if stream in self.dropout:
            return
        if stream in self.stuck and stream in self.last_messages:
            message = self.last_messages[stream]  # the same reading again, fresh stamp
        else:
            message = getattr(self, f"_{stream}_message")()
            self.last_messages[stream] = message
        message.header.stamp = time_from_seconds(self.sim_time)
        self.publishers_by_stream[stream].publish(message)

    def _odom_message(self) -> Odometry:
        position, yaw, body, yaw_rate = self.model.odometry()
        msg = Odometry()
        msg.header.frame_id, msg.child_frame_id = self.frame_id, self.child_frame_id
        msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = position
        q = msg.pose.pose.orientation
        q.x, q.y, q.z, q.w = yaw_to_quaternion(yaw)
        variance = max(self.model.config.position_noise, 1e-3) ** 2
        msg.pose.covariance = [variance if i in (0, 7, 14) else (0.01 if i in (21, 28, 35) else 0.0)
                               for i in range(36)]
        msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = body
        msg.twist.twist.angular.z = yaw_rate
        return msg

    def _imu_message(self) -> Imu:
        force, gyro, yaw = self.model.imu()
        msg = Imu()
        msg.header.frame_id = self.child_frame_id
        q = msg.orientation
        q.x, q.y, q.z, q.w = yaw_to_quaternion(yaw)
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = gyro
        msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = force
        msg.orientation_covariance[0] = msg.orientation_covariance[4] = msg.orientation_covariance[8] = 1e-4
        msg.angular_velocity_covariance[0] = msg.angular_velocity_covariance[4] = \
            msg.angular_velocity_covariance[8] = max(self.model.config.gyro_noise, 1e-4) ** 2
        msg.linear_acceleration_covariance[0] = msg.linear_acceleration_covariance[4] = \
            msg.linear_acceleration_covariance[8] = max(self.model.config.accel_noise, 1e-4) ** 2
        return msg

    def _battery_message(self) -> BatteryState:
        voltage, current, fraction = self.model.battery_reading()
        capacity_ah = self.model.config.battery_capacity_wh / self.model.config.voltage_full
        return BatteryState(voltage=float(voltage), current=-float(current), charge=capacity_ah * fraction,
                            capacity=capacity_ah, design_capacity=capacity_ah, percentage=float(fraction),
                            temperature=math.nan,
                            power_supply_status=BatteryState.POWER_SUPPLY_STATUS_DISCHARGING,
                            power_supply_health=BatteryState.POWER_SUPPLY_HEALTH_GOOD,
                            power_supply_technology=BatteryState.POWER_SUPPLY_TECHNOLOGY_LIPO, present=True)

    def _gps_message(self) -> NavSatFix:
        msg = NavSatFix()
        msg.header.frame_id = self.child_frame_id
        msg.status.service = NavSatStatus.SERVICE_GPS
        if self.gps_loss:
            msg.status.status = NavSatStatus.STATUS_NO_FIX
            msg.latitude = msg.longitude = msg.altitude = math.nan
            msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
            return msg
        msg.status.status = NavSatStatus.STATUS_FIX
        msg.latitude, msg.longitude, msg.altitude = enu_to_geodetic(*self.model.gps_position(), self.origin)
        variance = max(self.model.config.gps_noise, 0.01) ** 2
        msg.position_covariance = [variance, 0.0, 0.0, 0.0, variance, 0.0, 0.0, 0.0, 4 * variance]
        msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
        return msg

    def health(self):
        voltage, _, fraction = self.model.battery_reading()
        s = self.model.state
        values = {"sim_time": f"{self.sim_time:.2f}", "real_time_factor": f"{self.achieved_rtf:.2f}",
                  "position": ",".join(f"{p:.2f}" for p in s.position), "battery": f"{fraction:.3f}",
                  "voltage": f"{voltage:.2f}", "faults": ",".join(
                      [f"dropout:{d}" for d in sorted(self.dropout)] + [f"stuck:{d}" for d in sorted(self.stuck)]
                      + (["battery_sag"] if self.model.battery_sag_v else []) + (["gps_loss"] if self.gps_loss else [])
                      + (["vibration"] if self.model.vibration else []))}
        return Level.OK, f"simulating {self.model.config.kind}", values


def main(args=None):
    return spin_node(SimVehicle, args)


if __name__ == "__main__":
    sys.exit(main())
