"""The task kinds the io_engine serves, with this vehicle's limits inside their parameter schemas. No rclpy import.

The limits are announced, not only enforced: the mission engine validates every task of a mission against
the schemas its engines announced (qai_edge.tasks.TaskKindSpec.parameter_errors) when the mission is
submitted, so a speed above `max_speed`, a waypoint outside the geofence (the `x-geofence` keyword, see
qai_edge.geofence), too many waypoints or an over-long hold or scan is refused before anything flies,
naming the task, the field and the limit. The io_engine checks the same schemas again when a task starts
(qai_edge.task_server), and re-announces them when a limit changes at run time.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from qai_edge.geofence import Geofence
from qai_edge.params import by_name
from qai_edge.tasks import TaskKindSpec
from qai_io.parameters import PARAMETERS
from qai_io.sensors import STREAM_NAMES

MOTION = frozenset({"motion"})
MOTION_KINDS = ("navigate", "hold", "hover", "land", "return_home")
# Kinds that still run while the battery is at its reserve: they bring the vehicle down or keep it still.
RESERVE_KINDS = frozenset({"hold", "hover", "land", "return_home"})
_SPECS = by_name(PARAMETERS)
MAX_TOLERANCE = _SPECS["arrival_tolerance"].max  # m: a task's tolerance is bounded as the parameter is
MAX_DESCENT_SPEED = _SPECS["landing_speed"].max  # m/s: a land task's descent_speed too


@dataclass(frozen=True)
class KindLimits:
    """What bounds the parameters of the kinds; from the io_engine's parameters."""

    vehicle_kind: str = "multirotor"
    max_speed: float = 8.0
    max_waypoints: int = 1000
    max_hold_duration: float = 3600.0
    max_scan_duration: float = 3600.0
    fence: Geofence = Geofence()

    @classmethod
    def from_parameters(cls, param: Callable[[str], Any], fence: Geofence) -> "KindLimits":
        return cls(param("vehicle_kind"), param("max_speed"), param("max_waypoints"), param("max_hold_duration"),
                   param("max_scan_duration"), fence)


def _point(fence: Geofence) -> dict[str, Any]:
    return {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"},
            "x-geofence": fence.to_schema()}


def _positive(maximum: float) -> dict[str, Any]:
    return {"type": "number", "exclusiveMinimum": 0, "maximum": maximum}


def task_kinds(limits: KindLimits) -> dict[str, TaskKindSpec]:
    """Every kind served, by name (hover is hold, collect is scan), with `limits` in the schemas."""
    fence = limits.fence
    if limits.vehicle_kind == "ground":
        # A ground robot drives at the height of the ground: the z of a waypoint is not used, so only the
        # polygon applies when a mission is checked (where it is, the altitude band is checked as it runs).
        fence = Geofence(fence.polygon)
    point = _point(fence)
    speed = _positive(limits.max_speed)
    hold_time = {"type": "number", "minimum": 0, "maximum": limits.max_hold_duration}
    altitude = {"type": "number", "minimum": 0}
    if math.isfinite(limits.fence.max_altitude):
        altitude["maximum"] = limits.fence.max_altitude
    navigate = TaskKindSpec(
        "navigate", "Fly or drive through waypoints ([x, y, z] in the odom frame, m) in order.",
        {"type": "object", "required": ["waypoints"], "additionalProperties": False, "properties": {
            "waypoints": {"type": "array", "minItems": 1, "maxItems": limits.max_waypoints, "items": point},
            "order": {"type": "array", "maxItems": limits.max_waypoints,
                      "items": {"type": "integer", "minimum": 0, "maximum": limits.max_waypoints - 1}},
            "speed": speed, "tolerance": _positive(MAX_TOLERANCE), "hold": hold_time}},
        result_keys=("position", "waypoints_reached", "distance", "duration"), resources=MOTION,
        default_timeout=600.0)
    hold = TaskKindSpec(
        "hold", "Hold a position (default: where the vehicle is) for `duration` seconds, or until canceled.",
        {"type": "object", "additionalProperties": False, "properties": {"duration": hold_time, "position": point}},
        result_keys=("position",), resources=MOTION)
    land = TaskKindSpec(
        "land", "Descend where the vehicle is until it is on the ground (a ground robot stops).",
        {"type": "object", "additionalProperties": False,
         "properties": {"descent_speed": _positive(min(MAX_DESCENT_SPEED, limits.max_speed))}},
        result_keys=("position",), resources=MOTION, default_timeout=300.0)
    return_home = TaskKindSpec(
        "return_home", "Climb to a safe altitude, go home, and land.",
        {"type": "object", "additionalProperties": False, "properties": {
            "altitude": altitude, "speed": speed, "land": {"type": "boolean"}}},
        result_keys=("position",), resources=MOTION, default_timeout=900.0)
    scan = TaskKindSpec(
        "scan", "Sample sensors for `duration` seconds; return statistics and where they were taken.",
        {"type": "object", "required": ["duration"], "additionalProperties": False, "properties": {
            "duration": _positive(limits.max_scan_duration),
            "sensors": {"type": "array", "minItems": 1, "maxItems": len(STREAM_NAMES), "uniqueItems": True,
                        "items": {"enum": list(STREAM_NAMES)}}}},
        result_keys=("summary", "samples", "position", "gps", "duration"),
        default_timeout=limits.max_scan_duration + 100.0)
    return {"navigate": navigate, "hold": hold, "hover": dataclasses.replace(hold, name="hover"), "land": land,
            "return_home": return_home, "scan": scan, "collect": dataclasses.replace(scan, name="collect")}
