"""The geofence: a polygon in the local frame between two altitudes. No rclpy import.

Shared by the I/O engine, which checks where a task sends the vehicle when the task runs, and by mission
validation, which checks the waypoints already known when a mission is submitted: an engine announces its
fence inside a kind's parameter schema (the `x-geofence` keyword, see qai_edge.tasks), so a mission that
would be refused later is refused before anything flies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


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

    def to_schema(self) -> dict[str, Any]:
        """Return the `x-geofence` keyword's value announcing this fence."""
        keyword: dict[str, Any] = {"polygon": [list(point) for point in self.polygon]}
        if math.isfinite(self.min_altitude):
            keyword["min_altitude"] = self.min_altitude
        if math.isfinite(self.max_altitude):
            keyword["max_altitude"] = self.max_altitude
        return keyword

    @classmethod
    def from_schema(cls, keyword: Mapping[str, Any]) -> "Geofence":
        return cls(tuple((float(x), float(y)) for x, y in keyword.get("polygon", ())),
                   float(keyword.get("min_altitude", -math.inf)), float(keyword.get("max_altitude", math.inf)))

    def violation(self, x: float, y: float, z: float | None = None) -> str:
        """Say why (x, y, z) is outside the fence, or return '' when inside; z None: horizontal check only."""
        if z is not None and z < self.min_altitude:
            return f"below the fence's minimum altitude {self.min_altitude:g} m"
        if z is not None and z > self.max_altitude:
            return f"above the fence's maximum altitude {self.max_altitude:g} m"
        if self.polygon and not point_in_polygon(x, y, self.polygon):
            return "outside the fence's polygon"
        return ""


def point_in_polygon(x: float, y: float, polygon: Sequence[tuple[float, float]]) -> bool:
    """Return whether (x, y) lies inside the polygon (even-odd rule)."""
    inside = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside
