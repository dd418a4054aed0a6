"""The survey the hub sends (the end-to-end demo's mission), and what the hub makes of its outcome.

No rclpy import; no ROS on the hub.

A survey mission, for one robot and its share of the survey points:

    plan        plan_route over home and the points (from home, back to it): QAOA on the quantum bridge
                where it fits its deadline, checked against the classical answer; the result says which
                solver answered and why
    takeoff     navigate up to the survey altitude above home
    endurance   check_endurance, watching the route for the whole flight (fails when the predicted flight
                time falls below what the return home needs; the mission engine's event rule brings the
                vehicle home)
    anomalies   watch_anomalies beside the flight (optional: an anomaly is reported, the survey goes on)
    fly_i       navigate to the i-th point of the planned route, then
    scan_i      scan there
    report      the survey summary to the hub (hub_link's `report` kind: the robot's reports stream)
    home        return_home, and land

Results travel as ROS TaskState results, JSON per key; `task_results` decodes them.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping, Sequence

Point = Sequence[float]
# A flight leg, scan or return home that fails for a reason a retry can help (a sensor stream late on a
# loaded machine: "odometry stale for 0.69 s; stopped the vehicle", seen in `make demo ARGS=--faults`) runs
# again from where the vehicle is, instead of failing the survey with the vehicle in the air.
RETRY = {"max_retries": 2, "initial_backoff": 1.0}


def survey_mission(points: Sequence[Point], home: Point, *, name: str = "survey", altitude: float = 6.0,
                   speed: float = 4.0, scan_seconds: float = 2.0, solver: str = "quantum",
                   plan_deadline: float = 20.0, seed: int = 1) -> dict[str, Any]:
    """Return the mission document of a survey of `points` ([x, y] or [x, y, z]) from `home` ([x, y, z])."""
    if not points:
        raise ValueError("points: a survey needs at least one point")
    stops = [[float(p[0]), float(p[1]), float(p[2]) if len(p) > 2 else altitude] for p in points]
    start = [float(home[0]), float(home[1]), altitude]
    last = {"$result": "plan.waypoints.-1"}
    tasks: list[dict[str, Any]] = [
        {"id": "plan", "kind": "plan_route", "priority": 5, "parameters": {
            "waypoints": [start, *stops], "start_index": 0, "return_to_start": True, "solver": solver,
            "deadline": plan_deadline, "seed": seed}},
        {"id": "takeoff", "kind": "navigate", "retry": RETRY, "parameters": {"waypoints": [start], "speed": speed}},
        {"id": "endurance", "kind": "check_endurance", "depends_on": ["plan", "takeoff"], "parameters": {
            "waypoints": {"$result": "plan.waypoints"}, "speed": speed, "watch": True, "until": last}},
        {"id": "anomalies", "kind": "watch_anomalies", "depends_on": ["plan", "takeoff"], "optional": True,
         "parameters": {"until": last, "duration": 3600}},
    ]
    previous = "takeoff"
    for index in range(1, len(stops) + 1):
        tasks.append({"id": f"fly_{index}", "kind": "navigate", "depends_on": [previous, "plan"], "retry": RETRY,
                      "parameters": {"waypoints": [{"$result": f"plan.waypoints.{index}"}], "speed": speed}})
        tasks.append({"id": f"scan_{index}", "kind": "scan", "depends_on": [f"fly_{index}"], "retry": RETRY,
                      "parameters": {"duration": scan_seconds}})
        previous = f"scan_{index}"
    scans = range(1, len(stops) + 1)
    tasks.append({"id": "report", "kind": "report", "depends_on": [previous], "parameters": {"name": name, "content": {
        "route": {"$result": "plan.order"}, "solver": {"$result": "plan.solver"},
        "positions": [{"$result": f"scan_{i}.position"} for i in scans],
        "samples": [{"$result": f"scan_{i}.samples"} for i in scans],
        "summaries": [{"$result": f"scan_{i}.summary"} for i in scans]}}})
    tasks.append({"id": "home", "kind": "return_home", "depends_on": ["report"], "retry": RETRY,
                  "parameters": {"speed": speed}})
    return {"name": name, "tasks": tasks}


def assignment_mission(points: Sequence[Point], homes: Sequence[Point]) -> dict[str, Any]:
    """Return a mission asking one robot's quantum bridge to share the points among the robots.

    The cost of a point for a robot is its distance from the robot's home; each robot takes at most an
    even share (rounded up).
    """
    costs = [[round(math.dist(point[:2], home[:2]), 3) for home in homes] for point in points]
    share = math.ceil(len(points) / len(homes))
    return {"name": "share the survey", "tasks": [{"id": "assign", "kind": "assign_tasks", "parameters": {
        "costs": costs, "capacities": [share] * len(homes), "solver": "auto"}}]}


def split_points(points: Sequence[Point], assignment: Sequence[int], robots: int) -> list[list[Point]]:
    """Return the points of each robot, from an assignment (the robot index of each point)."""
    shares: list[list[Point]] = [[] for _ in range(robots)]
    for point, robot in zip(points, assignment):
        shares[int(robot)].append(point)
    return shares


def task_results(tasks: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Task id -> decoded result, from TaskState dicts (their result is [{key, value: JSON text}])."""
    results = {}
    for task in tasks:
        decoded = {}
        for pair in task.get("result", []) or []:
            try:
                decoded[pair["key"]] = json.loads(pair["value"])
            except (KeyError, TypeError, ValueError):
                decoded[pair.get("key", "?")] = pair.get("value")
        results[task.get("task_id", "?")] = decoded
    return results


def _seconds(stamp: Mapping[str, Any] | None) -> float | None:
    if not stamp or not (stamp.get("sec") or stamp.get("nanosec")):
        return None
    return stamp["sec"] + stamp.get("nanosec", 0) * 1e-9


def task_rows(tasks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per task: id, kind, state name, attempts, seconds it took, its message."""
    from qai_hub.protocol import task_state_name

    rows = []
    for task in tasks:
        started, finished = _seconds(task.get("started")), _seconds(task.get("finished"))
        rows.append({"task": task.get("task_id"), "kind": task.get("kind"), "state": task_state_name(task.get("state")),
                     "attempt": task.get("attempt", 0),
                     "seconds": round(finished - started, 2) if started and finished else None,
                     "message": task.get("message", "")})
    return rows


def outcome_figures(tasks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum up what the survey did from its final tasks: distance flown, points scanned, the planner."""
    tasks = list(tasks)
    results = task_results(tasks)
    kinds = {task.get("task_id"): task.get("kind") for task in tasks}
    states = {task.get("task_id"): task.get("state") for task in tasks}
    plan = results.get("plan", {})
    scanned = [task_id for task_id, kind in kinds.items() if kind == "scan" and states[task_id] == 10]
    return {
        "distance_m": round(sum(r.get("distance", 0.0) for t, r in results.items() if kinds.get(t) == "navigate"), 1),
        "points_scanned": len(scanned),
        "points": sum(1 for kind in kinds.values() if kind == "scan"),
        "solver": plan.get("solver"), "fallback": plan.get("fallback"),
        "fallback_reason": plan.get("fallback_reason") or plan.get("message", ""),
        "verified": plan.get("verified"), "plan_cost": plan.get("cost"), "reference_cost": plan.get("reference_cost"),
        "qubits": (plan.get("metadata") or {}).get("qubits"),
        "plan_seconds": plan.get("total_time"),
    }


def energy_wh(first: Mapping[str, Any] | None, last: Mapping[str, Any] | None) -> float | None:
    """Energy drawn between two BatteryState readings (charge in Ah times the mean voltage)."""
    if not first or not last:
        return None
    try:
        charge = float(first["charge"]) - float(last["charge"])
        voltage = (float(first["voltage"]) + float(last["voltage"])) / 2
    except (KeyError, TypeError, ValueError):
        return None
    return round(charge * voltage, 2) if math.isfinite(charge * voltage) else None
