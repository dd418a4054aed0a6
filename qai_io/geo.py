"""Frames and areas: local ENU metres <-> WGS84, yaw <-> quaternion, the geofence. No rclpy import."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

EARTH_RADIUS = 6_378_137.0  # m, WGS84 equatorial


def enu_to_geodetic(east: float, north: float, up: float, origin: Sequence[float]) -> tuple[float, float, float]:
    """Local ENU metres around `origin` (lat deg, lon deg, alt m) to (lat, lon, alt). Flat-earth
    approximation: good to centimetres within a few kilometres, which is a robot's working area."""
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


@dataclass(frozen=True)
class Geofence:
    """A polygon (local ENU x, y; empty: no horizontal limit) between two altitudes."""

    polygon: tuple[tuple[float, float], ...] = ()
    min_altitude: float = -math.inf
    max_altitude: float = math.inf

    @classmethod
    def from_flat(cls, flat: Sequence[float], min_altitude: float, max_altitude: float) -> "Geofence":
        if len(flat) % 2 or (flat and len(flat) < 6):
            raise ValueError(f"geofence_polygon: expected x, y pairs of at least 3 corners, got {len(flat)} numbers")
        points = tuple((float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2))
        if min_altitude > max_altitude:
            raise ValueError("geofence_min_altitude must not exceed geofence_max_altitude")
        return cls(points, min_altitude, max_altitude)

    def violation(self, x: float, y: float, z: float) -> str:
        """Why (x, y, z) is outside the fence, or '' when inside."""
        if z < self.min_altitude:
            return f"below the fence's minimum altitude {self.min_altitude:g} m"
        if z > self.max_altitude:
            return f"above the fence's maximum altitude {self.max_altitude:g} m"
        if self.polygon and not point_in_polygon(x, y, self.polygon):
            return "outside the fence's polygon"
        return ""


def point_in_polygon(x: float, y: float, polygon: Sequence[tuple[float, float]]) -> bool:
    inside = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside
