"""Messages to readings (qai_intelligence.features documents them), done once at the node's edge.

Messages only; no rclpy import.
"""

from __future__ import annotations

import math

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState, Imu, NavSatFix, NavSatStatus

from qai_edge.geo import geodetic_to_enu, quaternion_to_yaw


def odom_reading(msg: Odometry) -> dict[str, float]:
    p, q, v = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist
    return {"x": p.x, "y": p.y, "z": p.z, "yaw": quaternion_to_yaw(q.x, q.y, q.z, q.w), "vx": v.linear.x,
            "vy": v.linear.y, "vz": v.linear.z, "yaw_rate": v.angular.z,
            "stamp": msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9}


def imu_reading(msg: Imu) -> dict[str, float]:
    a, w = msg.linear_acceleration, msg.angular_velocity
    return {"accel_x": a.x, "accel_y": a.y, "accel_z": a.z, "gyro_x": w.x, "gyro_y": w.y, "gyro_z": w.z}


def battery_reading(msg: BatteryState) -> dict[str, float]:
    capacity = msg.capacity if math.isfinite(msg.capacity) and msg.capacity > 0 else msg.design_capacity
    # sensor_msgs/BatteryState: current is negative while discharging; the models take discharge as positive.
    return {"voltage": msg.voltage, "current": -msg.current, "percentage": msg.percentage, "capacity_ah": capacity}


def gps_reading(msg: NavSatFix, origin: tuple[float, float, float] | None) -> dict[str, float] | None:
    """East, north, up from `origin` (the first fix); None without a fix (no reading: the stream ages)."""
    if msg.status.status < NavSatStatus.STATUS_FIX or origin is None:
        return None
    east, north, up = geodetic_to_enu(msg.latitude, msg.longitude, msg.altitude, origin)
    return {"east": east, "north": north, "up": up}


def command_reading(msg: Twist) -> dict[str, float]:
    return {"forward": msg.linear.x, "left": msg.linear.y, "up": msg.linear.z, "yaw_rate": msg.angular.z}
