"""Controllers and motion plans, closed-loop against the vehicle model; frames and the geofence."""

import math

import pytest

from qai_edge.geofence import Geofence
from qai_edge.geo import enu_to_geodetic, geodetic_to_enu, quaternion_to_yaw, yaw_to_quaternion
from qai_io.motion import (HoldPlan, LandPlan, MotionRun, Pose, PositionController, SequencePlan, WaypointPlan,
                           distance)
from qai_sim.simulation import cross_track_errors, fly
from qai_sim.vehicle_model import VehicleConfig, VehicleModel

SQUARE = [(0, 0, 5), (20, 0, 5), (20, 20, 8), (0, 20, 5), (0, 0, 5)]


def closed_loop(model, plan, kind="multirotor", speed=5.0, limit=200.0):
    log = fly(model, plan, PositionController(kind=kind), speed=speed, limit=limit)
    return log, log.duration, log.path


def cross_track(path, waypoints):
    """Largest distance of the path from the polyline through the waypoints."""
    return max(cross_track_errors(path, waypoints))


@pytest.mark.parametrize("wind, max_cross_track", [((0.0, 0.0), 1.0), ((2.0, 1.0), 1.0), ((4.0, -2.0), 2.5)])
def test_a_multirotor_follows_the_lines_and_reaches_every_waypoint(wind, max_cross_track):
    model = VehicleModel(VehicleConfig(seed=3, wind=wind, wind_gust=0.3 if any(wind) else 0.0))
    run, t, path = closed_loop(model, WaypointPlan(SQUARE, tolerance=0.5))
    assert run.finished, f"not done after {t:.0f} s"
    assert distance(model.state.position, SQUARE[-1]) <= 0.5
    assert t < 40.0
    assert cross_track(path[150:], SQUARE) < max_cross_track  # after the climb to the first waypoint


def test_a_ground_robot_reaches_its_waypoints():
    model = VehicleModel(VehicleConfig(kind="ground", seed=3))
    waypoints = [(10, 0, 0), (10, 10, 0), (0, 10, 0), (0, 0, 0)]
    run, t, path = closed_loop(model, WaypointPlan(waypoints, tolerance=0.5), kind="ground", speed=2.0)
    assert run.finished and distance(model.state.position, waypoints[-1]) <= 0.5
    assert cross_track(path, [(0, 0, 0), *waypoints]) < 0.5


def test_the_last_waypoint_counts_only_once_the_vehicle_has_settled():
    plan = WaypointPlan([(0, 0, 5)], tolerance=1.0, settle_speed=0.3)
    assert not plan.step(Pose(0.2, 0, 5, 0, vx=2.0), 0.0).done
    assert plan.step(Pose(0.2, 0, 5, 0, vx=0.1), 0.1).done


def test_steering_aims_ahead_on_the_leg_to_pull_back_onto_the_line():
    plan = WaypointPlan([(10, 0, 0), (20, 0, 0)], tolerance=0.5, lookahead=2.0)
    plan.step(Pose(0, 0, 0, 0), 0.0)  # the leg starts here
    step = plan.step(Pose(4, 3, 0, 0), 0.1)  # 3 m off to the side
    assert step.target == pytest.approx((6.0, 0.0, 0.0))
    assert step.goal_distance > 6.0  # straight on at waypoint 1: no full stop there


def test_progress_follows_the_distance_left_along_the_path():
    plan = WaypointPlan([(10, 0, 0), (10, 10, 0)], tolerance=0.5)
    run = MotionRun(plan, PositionController(), speed=5.0)
    run.on_odometry(Pose(0, 0, 0, 0), 0.0)
    assert run.status.remaining == pytest.approx(20.0) and run.status.progress == 0.0
    run.on_odometry(Pose(10, 0, 0, 0), 1.0)
    assert run.status.waypoint == 1 and run.status.progress == pytest.approx(0.5)
    assert run.status.message == "to waypoint 2/2, 10.0 m left"


def test_hold_keeps_the_position_against_wind_for_its_duration():
    model = VehicleModel(VehicleConfig(seed=2, wind=(3.0, 0.0)), position=(5, 5, 10))
    run, t, path = closed_loop(model, HoldPlan((5, 5, 10), duration=20.0))
    assert run.finished and t == pytest.approx(20.0, abs=0.1)
    assert max(distance(p, (5, 5, 10)) for p in path[-250:]) < 0.5  # the last 5 s, once the wind is estimated


def test_land_descends_until_on_the_ground():
    model = VehicleModel(VehicleConfig(seed=2), position=(3, 4, 6))
    run, t, path = closed_loop(model, LandPlan((3, 4, 6), descent_speed=1.0))
    assert run.finished and model.state.position[2] == 0.0
    assert distance(model.state.position[:2], (3, 4)) < 0.3


def test_a_sequence_flies_its_plans_in_turn_and_counts_what_the_later_ones_add():
    model = VehicleModel(VehicleConfig(seed=2), position=(6, 4, 3))
    plan = SequencePlan([WaypointPlan([(6, 4, 5), (0, 0, 5)], tolerance=0.5), LandPlan((0, 0, 5), 1.0)],
                        later=[0.0, 5.0])
    assert plan.step(Pose(6, 4, 3, 0), 0.0).remaining == pytest.approx(2 + math.hypot(6, 4) + 5)
    run, t, path = closed_loop(model, plan)
    assert run.finished and model.state.position[2] == 0.0
    assert distance(model.state.position[:2], (0, 0)) < 0.5
    assert max(p[2] for p in path) < 6.0  # up to the leg altitude (and a little overshoot), no higher


def test_geofence_polygon_and_altitudes():
    fence = Geofence.from_flat([0, 0, 100, 0, 100, 50, 0, 50], 0.0, 120.0)
    assert fence.violation(50, 25, 10) == ""
    assert fence.violation(150, 25, 10) == "outside the fence's polygon"
    assert fence.violation(50, 25, 130) == "above the fence's maximum altitude 120 m"
    assert fence.violation(50, 25, -1) == "below the fence's minimum altitude 0 m"
    assert Geofence().violation(1e6, -1e6, 1e4) == ""


def test_a_malformed_geofence_is_refused():
    with pytest.raises(ValueError, match="x, y pairs of at least 3 corners"):
        Geofence.from_flat([0, 0, 1, 1], 0, 10)


def test_enu_and_geodetic_round_trip():
    origin = (47.397742, 8.545594, 488.0)
    lat, lon, alt = enu_to_geodetic(100.0, -50.0, 12.0, origin)
    assert lat < origin[0] and lon > origin[1] and alt == 500.0
    assert geodetic_to_enu(lat, lon, alt, origin) == pytest.approx((100.0, -50.0, 12.0), abs=1e-6)


@pytest.mark.parametrize("yaw", [0.0, 1.0, -2.5, math.pi - 0.01])
def test_yaw_quaternion_round_trip(yaw):
    assert quaternion_to_yaw(*yaw_to_quaternion(yaw)) == pytest.approx(yaw)


# -- The residual controller: the PID plus a bounded correction from another node --------------------------

def residual_controller(now):
    from qai_io.motion import ResidualController

    return ResidualController(PositionController(), timeout=0.3, clock=lambda: now[0], limit=2.0)


def test_without_a_fresh_correction_the_residual_controller_is_the_pid():
    now = [0.0]
    residual, pid = residual_controller(now), PositionController()
    pose = Pose(0.0, 0.0, 5.0, 0.3, 1.0, 0.5, 0.0)
    assert residual.command(pose, (10, 0, 5), 10.0, 5.0, 0.02) == pytest.approx(
        pid.command(pose, (10, 0, 5), 10.0, 5.0, 0.02), abs=1e-12)
    residual.offer((1.0, 0.0, 0.0))
    now[0] = 0.5  # older than the timeout: zero, not a stop
    assert residual.command(pose, (10, 0, 5), 10.0, 5.0, 0.02) == pytest.approx(
        pid.command(pose, (10, 0, 5), 10.0, 5.0, 0.02), abs=1e-12)
    assert residual.stale
    residual.offer((float("nan"), 0.0, 0.0))
    assert residual.command(pose, (10, 0, 5), 10.0, 5.0, 0.02) == pytest.approx(
        pid.command(pose, (10, 0, 5), 10.0, 5.0, 0.02), abs=1e-12)


def test_a_correction_is_held_to_its_limit_and_the_sum_to_the_task_speed_over_the_ground():
    now = [0.0]
    residual, pid = residual_controller(now), PositionController()
    still = Pose(0.0, 0.0, 5.0, 0.0)
    residual.offer((0.0, 0.0, 9.0))  # far above the 2 m/s limit
    assert residual.command(still, (0, 0, 5), 0.0, 5.0, 0.02)[2] == pytest.approx(2.0)
    residual.offer((0.0, 5.0, 0.0))
    base = pid.command(still, (20, 0, 5), 20.0, 3.0, 0.02)
    forward, left, _, _ = residual.command(still, (20, 0, 5), 20.0, 3.0, 0.02)
    assert left == pytest.approx(2.0 * 3.0 / math.hypot(base[0], 2.0))  # scaled with the PID's own command
    assert math.hypot(forward, left) == pytest.approx(3.0)


def test_a_steady_correction_is_not_taken_for_wind_and_cancelled():
    """The PID's wind observer is told the command flown; otherwise it learns the correction as drift."""
    now = [0.0]
    residual = residual_controller(now)
    model = VehicleModel(VehicleConfig(seed=3, wind=(0.0, 0.0), wind_gust=0.0), position=(0.0, 0.0, 5.0))
    plan = HoldPlan((0.0, 0.0, 5.0), None)
    run = MotionRun(plan, residual, 5.0)
    for step in range(500):  # 10 s, a steady 1 m/s sideways correction
        now[0] = step * 0.02
        residual.offer((0.0, 1.0, 0.0))
        position, yaw, body, _ = model.odometry()
        vx, vy = math.cos(yaw) * body[0] - math.sin(yaw) * body[1], math.sin(yaw) * body[0] + math.cos(yaw) * body[1]
        model.command(*run.on_odometry(Pose(*position, yaw, vx, vy, body[2]), now[0]))
        model.step(0.02)
    assert math.hypot(*residual.pid.wind) < 0.3, residual.pid.wind


@pytest.mark.parametrize("content, why", [(b"", "JSONDecodeError"), (b'{"gains": {"kp": 1}}', "KeyError: 'ki'"),
                                          (b"\xff\xfe garbage", "UnicodeDecodeError"), (b"[1, 2]", "TypeError"),
                                          (b'{"gains": {"kp": NaN, "ki": 1, "deceleration": 1, "wind_filter_time": 1, '
                                           b'"integral_zone": 1, "integral_limit": 1, "max_climb_rate": 1}}',
                                           "gains.kp is nan")])
def test_a_damaged_gains_file_is_refused_naming_the_file_and_what_is_wrong(tmp_path, monkeypatch, content, why):
    from qai_io import motion

    damaged = tmp_path / "pid_gains.json"
    damaged.write_bytes(content)
    monkeypatch.setattr(motion, "GAINS_FILE", damaged)
    motion.shipped_gains.cache_clear()
    try:
        with pytest.raises(ValueError, match=str(damaged)) as raised:
            motion.shipped_gains()
        assert why in str(raised.value)
    finally:
        motion.shipped_gains.cache_clear()
