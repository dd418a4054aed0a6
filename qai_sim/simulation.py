"""Closed-loop runs of the vehicle model and a motion plan in-process, with no ROS. No rclpy import.

Odometry at a fixed rate, one command per odometry message, as the io_engine does. For tests, benchmarks
and (later) training a learned controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from qai_io.motion import Controller, MotionPlan, MotionRun, Pose, PositionController, distance
from qai_sim.vehicle_model import VehicleModel


# The standard course of the tracking benchmark: a 10-waypoint survey pattern over 60 x 40 m with
# altitude changes and turns of 90 and 180 degrees.
STANDARD_COURSE = ((0.0, 0.0, 5.0), (30.0, 0.0, 5.0), (60.0, 0.0, 8.0), (60.0, 20.0, 8.0), (30.0, 20.0, 6.0),
                   (0.0, 20.0, 6.0), (0.0, 40.0, 10.0), (30.0, 40.0, 10.0), (60.0, 40.0, 5.0), (0.0, 0.0, 5.0))


@dataclass
class FlightLog:
    finished: bool
    duration: float  # simulated seconds
    path: list[tuple[float, float, float]]  # true positions, one per odometry period


def fly(model: VehicleModel, plan: MotionPlan, controller: Controller | None = None, speed: float = 5.0,
        odom_rate: float = 50.0, physics_rate: float = 100.0, limit: float = 300.0) -> FlightLog:
    controller = controller or PositionController(kind=model.config.kind)
    run = MotionRun(plan, controller, speed)
    steps_per_odom = max(1, round(physics_rate / odom_rate))
    dt = 1.0 / physics_rate
    t, path = 0.0, []
    while not run.finished.is_set() and t < limit:
        position, yaw, _, _ = model.odometry()
        vx, vy, vz = model.state.velocity
        command = run.on_odometry(Pose(*position, yaw, vx, vy, vz), t)
        for _ in range(steps_per_odom):
            model.command(*command)
            model.step(dt)
        t += steps_per_odom * dt
        path.append(tuple(model.state.position))
    return FlightLog(run.finished.is_set(), t, path)


def cross_track_errors(path: Sequence[Sequence[float]], waypoints: Sequence[Sequence[float]]) -> list[float]:
    """For each point of the path, its distance from the polyline through the waypoints."""
    def to_segment(p, a, b):
        ab = [y - x for x, y in zip(a, b)]
        length2 = sum(c * c for c in ab) or 1e-12
        u = max(0.0, min(1.0, sum((pc - ac) * c for pc, ac, c in zip(p, a, ab)) / length2))
        return distance(p, [ac + u * c for ac, c in zip(a, ab)])
    return [min(to_segment(p, a, b) for a, b in zip(waypoints, waypoints[1:])) for p in path]
