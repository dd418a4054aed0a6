"""Where motion tasks send the vehicle: waypoints in flying order, hold positions, the way home. No rclpy import.

What a mission gave is turned into points in the odom frame (a missing or, for a ground robot, unused z
becomes the vehicle's height now), and each point is checked against the geofence when the task starts:
the mission engine checks the points it already knows at admission (qai_io.kinds announces the fence),
these checks cover what it could not know (results of earlier tasks, the height a 2-D point flies at,
the legs home). Errors name the field, the limit and the value, shortened (qai_edge.text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from qai_edge.geofence import Geofence
from qai_edge.tasks import TaskFailed
from qai_edge.text import shorten
from qai_io.motion import Pose, distance

Point = tuple[float, float, float]


def _format(point: Sequence[float]) -> str:
    return f"({', '.join(f'{c:g}' for c in point)})"


def check_in_fence(fence: Geofence, point: Sequence[float], where: str) -> None:
    """Raise TaskFailed (not retryable) naming `where` when `point` lies outside the fence."""
    why = fence.violation(*point)
    if why:
        raise TaskFailed(f"{where}: {_format(point)} is {why}", retryable=False)


def _resolve(point: Sequence[float], pose: Pose, vehicle_kind: str) -> Point:
    z = point[2] if len(point) == 3 and vehicle_kind != "ground" else pose.z
    return float(point[0]), float(point[1]), float(z)


def prepare_waypoints(parameters: Mapping[str, Any], pose: Pose, vehicle_kind: str, fence: Geofence) -> list[Point]:
    """Return the navigate task's waypoints in flying order, each checked against the fence.

    `order`, when given, lists indices into `waypoints`; a point is named by its index in `waypoints`.
    """
    given = parameters["waypoints"]
    order = parameters.get("order")
    if order is None:
        order = range(len(given))
    else:
        bad = next((i for i, index in enumerate(order) if not 0 <= index < len(given)), None)
        if bad is not None:
            raise TaskFailed(f"parameters.order[{bad}]: index {shorten(order[bad])} is out of range for "
                             f"{len(given)} waypoints (0 to {len(given) - 1})", retryable=False)
    waypoints = []
    for index in order:
        point = _resolve(given[index], pose, vehicle_kind)
        check_in_fence(fence, point, f"parameters.waypoints[{index}]")
        waypoints.append(point)
    return waypoints


def hold_position(parameters: Mapping[str, Any], pose: Pose, vehicle_kind: str, fence: Geofence) -> Point:
    """Return where a hold task keeps the vehicle: `position` (checked against the fence) or where it is."""
    if "position" not in parameters:
        return pose.position
    position = _resolve(parameters["position"], pose, vehicle_kind)
    check_in_fence(fence, position, "parameters.position")
    return position


@dataclass(frozen=True)
class ReturnPlan:
    legs: list[Point]  # flown in order; empty: already home
    land: bool  # descend at home after the legs
    altitude: float  # m the legs fly at (multirotor)


def plan_return_home(pose: Pose, home: Sequence[float], vehicle_kind: str, altitude: float, land: bool,
                     fence: Geofence, tolerance: float, landed_altitude: float) -> ReturnPlan:
    """Plan the way home: climb to `altitude` (never down), fly home at that altitude, and land.

    A ground robot drives straight home. A vehicle already home (and, flying, already down) has nothing to do.

    The fence bounds where the vehicle is sent: home, and the altitude of the climb. Where the vehicle is
    now is not checked: a vehicle that drifted out of the fence must still be able to come back.
    """
    home_xy = (float(home[0]), float(home[1]))
    at_home = math.dist(home_xy, pose.position[:2]) <= tolerance
    if vehicle_kind == "ground":
        if at_home:
            return ReturnPlan([], False, pose.z)
        leg = (*home_xy, pose.z)
        check_in_fence(fence, leg, "return_home: home")
        return ReturnPlan([leg], False, pose.z)
    if at_home and pose.z <= landed_altitude:
        return ReturnPlan([], False, pose.z)
    altitude = max(float(altitude), pose.z)
    why = Geofence((), fence.min_altitude, fence.max_altitude).violation(pose.x, pose.y, altitude)
    if why:
        raise TaskFailed(f"return_home: the climb to {altitude:g} m is {why}", retryable=False)
    check_in_fence(fence, (*home_xy, altitude), "return_home: home")
    legs = [(pose.x, pose.y, altitude), (*home_xy, altitude)]
    if at_home:  # straight down, or straight up first when below the altitude and told not to land
        legs = [(*home_xy, altitude)] if not land else []
    return ReturnPlan(legs, land, altitude)


def path_length(start: Sequence[float], waypoints: Sequence[Sequence[float]]) -> float:
    return sum(distance(a, b) for a, b in zip([start, *waypoints], waypoints))
