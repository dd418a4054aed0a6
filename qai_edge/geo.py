"""Frames: local ENU metres <-> WGS84, yaw <-> quaternion, angles wrapped. No rclpy import.

Shared by the I/O engine, the simulator and the intelligence engine; the geofence is qai_edge.geofence.
"""

from __future__ import annotations

import math
from typing import Sequence

EARTH_RADIUS = 6_378_137.0  # m, WGS84 equatorial


def enu_to_geodetic(east: float, north: float, up: float, origin: Sequence[float]) -> tuple[float, float, float]:
    """Convert local ENU metres around `origin` (lat deg, lon deg, alt m) to (lat, lon, alt).

    Flat-earth approximation: good to centimetres within a few kilometres, which is a robot's working area.
    """
    lat0, lon0, alt0 = origin
    lat = lat0 + math.degrees(north / EARTH_RADIUS)
    lon = lon0 + math.degrees(east / (EARTH_RADIUS * math.cos(math.radians(lat0))))
    return lat, lon, alt0 + up


def geodetic_to_enu(lat: float, lon: float, alt: float, origin: Sequence[float]) -> tuple[float, float, float]:
    lat0, lon0, alt0 = origin
    north = math.radians(lat - lat0) * EARTH_RADIUS
    east = math.radians(lon - lon0) * EARTH_RADIUS * math.cos(math.radians(lat0))
    return east, north, alt - alt0


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) for a rotation about z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def wrap_angle(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
