"""The io_engine's core in-process, closed-loop with the vehicle model on a fake clock (test/io_world.py).

Motion tasks, the battery fail-safe, the limits announced in the kinds, return-home planning, scans.
"""

import math

import pytest

from io_world import World
from qai_edge.convert import kind_from_msg, kind_to_msg
from qai_edge.geofence import Geofence
from qai_edge.profile import ProfileError, parse_profile
from qai_edge.tasks import TaskCanceled, TaskFailed
from qai_io.kinds import KindLimits, task_kinds
from qai_io.motion import STOP, ExternalController, Pose
from qai_io.planning import plan_return_home, prepare_waypoints
from qai_sim.vehicle_model import VehicleConfig

FENCE = [-10.0, -10.0, 10.0, -10.0, 10.0, 10.0, -10.0, 10.0]


def take_off(world, height=4.0):
    world.run("navigate", {"waypoints": [[0, 0, height]]})
    assert world.position[2] == pytest.approx(height, abs=0.5)


def test_navigate_flies_through_the_waypoints_and_reports_the_path():
    world = World()
    result = world.run("navigate", {"waypoints": [[0, 0, 4], [8, 0, 4], [8, 6, 5]], "speed": 4.0})
    assert math.dist(result["position"], (8, 6, 5)) <= 0.5 and result["waypoints_reached"] == 3
    assert result["distance"] == pytest.approx(4 + 8 + math.hypot(6, 1), abs=0.2)
    assert world.commands[-1] == STOP


def test_the_pid_flies_with_the_pid_parameters_read_at_each_task():
    """The pid_* parameters (defaults: the gains qai-train pid tuned) are the PID's, a change applies next task."""
    world = World({"pid_max_climb_rate": 0.5})
    started = world.time
    world.run("navigate", {"waypoints": [[0, 0, 4]], "speed": 3.0})
    slow = world.time - started
    assert slow >= 4 / 0.5
    world.parameters["pid_max_climb_rate"] = 3.0
    started = world.time
    world.run("navigate", {"waypoints": [[0, 0, 8]], "speed": 3.0})
    assert world.time - started < slow / 2


def test_order_flies_the_waypoints_in_the_order_given_and_names_a_bad_index():
    world = World()
    result = world.run("navigate", {"waypoints": [[5, 0, 3], [0, 0, 3]], "order": [1, 0]})
    assert math.dist(result["position"], (5, 0, 3)) <= 0.5
    with pytest.raises(TaskFailed, match=r"parameters.order\[1\]: index 2 is out of range for 2 waypoints \(0 to 1\)"):
        world.run("navigate", {"waypoints": [[5, 0, 3], [0, 0, 3]], "order": [0, 2]})


def test_the_odometry_stale_message_gives_the_age_at_detection_though_odometry_returns_while_stopping():
    """The message said "stale for -1.1 s": its age was taken after the stop, during which odometry came back."""
    world = World()
    began = world.time

    def drop_then_return():
        world.odom_dropout = began + 1.0 <= world.time < began + 1.6
        return False

    with pytest.raises(TaskFailed) as failed:
        world.run("navigate", {"waypoints": [[0, 0, 4], [40, 0, 4]]}, cancel_when=drop_then_return)
    assert failed.value.retryable
    age = float(failed.value.message.split("stale for ")[1].split(" s")[0])
    assert 0.5 < age <= 0.6, failed.value.message
    (notice,) = [n for n in world.notices if n.code == "odometry_stale"]
    assert notice.publish and notice.values["age"] == pytest.approx(age, abs=0.05)
    assert world.commands[-1] == STOP


def test_cancel_stops_the_vehicle_before_the_task_ends():
    world = World()
    with pytest.raises(TaskCanceled):
        world.run("navigate", {"waypoints": [[0, 0, 3], [60, 0, 3]], "speed": 5.0},
                  cancel_when=lambda: world.model.state.position[0] > 8.0)
    assert world.core.pose.speed <= 0.2


def test_a_timeout_counts_on_the_ros_clock():
    world = World()
    with pytest.raises(TaskFailed, match="navigate: not done after 2 s"):
        world.run("navigate", {"waypoints": [[0, 0, 3], [60, 0, 3]]}, timeout=2.0)


# -- The battery fail-safe ----------------------------------------------------------------------


def test_a_sag_driving_the_reading_out_of_range_in_flight_stops_navigate_and_calls_for_a_return_home():
    world = World()
    take_off(world)
    world.model.battery_sag_v = 20.0  # 16.8 V - 20 V: a negative voltage, rejected as out of range
    with pytest.raises(TaskFailed) as failed:
        world.run("navigate", {"waypoints": [[40, 0, 4]]})
    assert not failed.value.retryable
    assert failed.value.message.startswith("navigate: battery at its reserve (no valid battery reading for 3.")
    assert "the last: voltage = -3." in failed.value.message and "is outside [0, 1000]" in failed.value.message
    (event,) = world.events()
    assert event.message.startswith("battery at its reserve: no valid battery reading")
    assert world.position[0] < 20.0 and world.core.pose.speed < 0.3  # stopped on the way out


def test_the_default_parameters_put_the_simulated_vehicle_in_the_reserve_when_its_battery_sags():
    world = World()  # the defaults: battery_min_voltage 13.8 V for its 4S LiPo
    take_off(world)
    world.model.battery_sag_v = 3.0
    world.advance(1.0)
    assert world.core.safety.in_reserve and "below battery_min_voltage 13.8 V" in world.core.safety.reason
    assert len(world.events()) == 1


def test_in_the_reserve_return_home_lands_without_repeated_events_and_the_latch_outlasts_the_fault():
    world = World(battery_event_period=1.0, battery_recover_time=2.0)
    take_off(world)
    world.run("navigate", {"waypoints": [[6, 4, 4]]})
    world.model.battery_sag_v = 3.0
    world.advance(3.5)
    assert [e.values["repeat"] for e in world.events()] == [0, 1, 2, 3]  # at once, then every second
    with pytest.raises(TaskFailed, match="battery at its reserve"):
        world.run("navigate", {"waypoints": [[0, 0, 4]]})
    world.model.battery_sag_v = 0.0  # the voltage recovers in flight: the latch holds
    world.advance(3.0)
    assert world.core.safety.in_reserve
    sent = len(world.events())
    result = world.run("return_home", {"altitude": 5.0})
    assert math.dist(result["position"][:2], (0, 0)) < 0.6 and result["position"][2] < 0.1
    assert len(world.events()) == sent  # none while it ran
    assert world.core.safety.in_reserve  # landed, but healthy only just now
    world.advance(2.5)
    assert not world.core.safety.in_reserve
    level, message, values = world.core.health()
    assert "battery" not in message and values["battery_reserve"] == "off"


def test_the_reserve_stays_after_landing_while_the_fault_is_there():
    world = World(battery_recover_time=1.0)
    take_off(world)
    world.model.battery_sag_v = 3.0
    world.advance(1.0)
    world.run("land")
    world.advance(5.0)
    assert world.core.safety.in_reserve
    assert world.core.clear_battery_reserve() == (
        False, f"refused: the battery still reads low ({world.core.safety.low_reason(world.core.safety.battery)})")


# -- Limits in the kinds, checked when a mission is submitted ---------------------------------------


def announced(world):
    """Return the kinds as the mission engine sees them: through the TaskKind message."""
    return {served.spec.name: kind_from_msg(kind_to_msg(served.spec)) for served in world.core.served_kinds()}


def test_the_announced_schemas_refuse_what_the_vehicle_would_refuse_naming_the_field_and_limit():
    world = World(geofence_polygon=FENCE, max_waypoints=5, max_speed=6.0, max_scan_duration=60.0,
                  max_hold_duration=30.0)
    kinds = announced(world)
    navigate = kinds["navigate"]
    assert sorted(navigate.parameter_errors({"waypoints": [[0, 0, 5], [15, 0, 5], [0, 0, 500]], "speed": 7})) == [
        "parameters.speed: 7 is more than the limit of 6.0",
        "parameters.waypoints[1]: (15, 0, 5) is outside the fence's polygon",
        "parameters.waypoints[2]: (0, 0, 500) is above the fence's maximum altitude 120 m"]
    assert len(navigate.parameter_errors({"waypoints": [[0, 0, 5]] * 6})) == 1
    assert navigate.parameter_errors({"waypoints": [[0, 0, 5]], "order": [5]}) == [
        "parameters.order[0]: 5 is more than the limit of 4"]
    assert navigate.parameter_errors({"waypoints": [[0, 0, 5]], "hold": 31}) == [
        "parameters.hold: 31 is more than the limit of 30.0"]
    assert sorted(kinds["hold"].parameter_errors({"duration": 31, "position": [20, 0]})) == [
        "parameters.duration: 31 is more than the limit of 30.0",
        "parameters.position: (20, 0) is outside the fence's polygon"]
    assert kinds["scan"].parameter_errors({"duration": 61}) == [
        "parameters.duration: 61 is more than the limit of 60.0"]
    assert sorted(kinds["return_home"].parameter_errors({"altitude": 121, "speed": 7})) == [
        "parameters.altitude: 121 is more than the limit of 120.0",
        "parameters.speed: 7 is more than the limit of 6.0"]
    assert kinds["collect"].parameters_schema == kinds["scan"].parameters_schema


def test_a_ground_robot_announces_only_the_fence_polygon():
    kinds = task_kinds(KindLimits("ground", fence=Geofence.from_flat(FENCE, 0.0, 120.0)))
    assert kinds["navigate"].parameter_errors({"waypoints": [[5, 5, 500], [50, 0, 0]]}) == [
        "parameters.waypoints[1]: (50, 0, 0) is outside the fence's polygon"]


def test_a_changed_limit_is_in_the_next_announcement():
    world = World()
    world.parameters["max_speed"] = 4.0
    assert announced(world)["navigate"].parameters_schema["properties"]["speed"]["maximum"] == 4.0
    with pytest.raises(TaskFailed, match="parameters.speed: 5 is more than the limit of 4.0"):
        world.run("navigate", {"waypoints": [[0, 0, 3]], "speed": 5})


def test_a_default_speed_above_max_speed_is_refused_naming_both():
    world = World(default_speed=9.0, max_speed=8.0)
    with pytest.raises(TaskFailed, match=r"default_speed \(no speed given\): 9 m/s exceeds max_speed 8 m/s"):
        world.run("navigate", {"waypoints": [[0, 0, 3]]})


def test_a_two_dimensional_waypoint_flies_at_the_current_height_and_is_checked_there():
    pose = Pose(0.0, 0.0, 150.0, 0.0)
    fence = Geofence.from_flat(FENCE, 0.0, 120.0)
    with pytest.raises(TaskFailed, match=r"parameters.waypoints\[0\]: \(1, 1, 150\) is above the fence's maximum"):
        prepare_waypoints({"waypoints": [[1, 1]]}, pose, "multirotor", fence)
    assert prepare_waypoints({"waypoints": [[1, 1], [2, 2, 9]]}, Pose(0, 0, 0, 0), "ground", fence) == [
        (1.0, 1.0, 0.0), (2.0, 2.0, 0.0)]  # a ground robot stays on the ground


# -- Return home ---------------------------------------------------------------------------------


def test_return_home_plans_climb_go_home_and_land_and_nothing_when_already_down_at_home():
    fence = Geofence.from_flat(FENCE, 0.0, 120.0)
    route = plan_return_home(Pose(5, 5, 3, 0), (0, 0, 0), "multirotor", 10.0, True, fence, 0.5, 0.3)
    assert route.legs == [(5, 5, 10.0), (0.0, 0.0, 10.0)] and route.land
    route = plan_return_home(Pose(5, 5, 30, 0), (0, 0, 0), "multirotor", 10.0, True, fence, 0.5, 0.3)
    assert route.legs[0] == (5, 5, 30)  # never down before going home
    assert plan_return_home(Pose(0.1, 0, 0.02, 0), (0, 0, 0), "multirotor", 10.0, True, fence, 0.5, 0.3).legs == []
    assert plan_return_home(Pose(0.1, 0, 4, 0), (0, 0, 0), "multirotor", 10.0, True, fence, 0.5, 0.3).legs == []
    assert plan_return_home(Pose(5, 5, 0, 1), (0, 0, 0), "ground", 10.0, True, fence, 0.5, 0.3).legs == [
        (0.0, 0.0, 0)]
    with pytest.raises(TaskFailed, match="return_home: the climb to 150 m is above the fence's maximum altitude"):
        plan_return_home(Pose(5, 5, 3, 0), (0, 0, 0), "multirotor", 150.0, True, fence, 0.5, 0.3)


def test_a_vehicle_that_drifted_out_of_the_fence_can_still_come_home():
    world = World(geofence_polygon=FENCE, home=[0.0, 0.0, 0.0], position=(14.0, 0.0, 5.0))
    result = world.run("return_home", {"altitude": 5.0})
    assert math.dist(result["position"][:2], (0, 0)) < 0.6 and result["position"][2] < 0.1


def test_return_home_when_already_home_on_the_ground_does_not_take_off():
    world = World()
    assert world.run("return_home") == {"position": [pytest.approx(c, abs=0.05) for c in (0, 0, 0)]}
    assert max(world.model.state.position[2] for _ in [0]) == 0.0 and world.commands == []


# -- The external controller, scans -------------------------------------------------------------


def test_the_external_controller_stops_when_commands_are_older_than_its_timeout_on_its_clock():
    now = [0.0]
    external = ExternalController(0.3, lambda: now[0])
    pose = Pose(0, 0, 5, 0)
    assert external.command(pose, (1, 0, 5), 1.0, 2.0, 0.02) == STOP and external.stale
    external.offer((3.0, 4.0, 5.0, 0.1))
    assert external.command(pose, (1, 0, 5), 1.0, 2.0, 0.02) == pytest.approx((1.2, 1.6, 2.0, 0.1))  # clipped
    now[0] = 0.31
    assert external.command(pose, (1, 0, 5), 1.0, 2.0, 0.02) == STOP and external.stale
    external.offer((float("nan"), 0.0, 0.0, 0.0))
    assert external.command(pose, (1, 0, 5), 1.0, 2.0, 0.02) == STOP


@pytest.mark.parametrize("kind", ["multirotor", "ground"])
def test_the_external_controller_holds_the_task_speed_over_the_ground_with_the_pid_wind_estimate(kind):
    """Into a 4 m/s headwind at a 5 m/s task, an eager command flies 5 m/s over the ground, as the PID would.

    (Clipped to 5 m/s relative to the air, it made 1 m/s.) A ground robot estimates no drift: its commands are
    clipped as they are.
    """
    external = ExternalController(1.0, lambda: 0.0, kind)
    external.offer((12.0, 0.0, 0.0, 0.0))
    wind, velocity = (-4.0, 0.0), (0.0, 0.0)
    for _ in range(500):  # 10 s at 50 Hz: the vehicle flies what it is told, plus the wind
        forward, left, _, _ = external.command(Pose(0, 0, 5 if kind == "multirotor" else 0, 0.0, *velocity), (99, 0, 5),
                                               99.0, 5.0, 0.02)
        assert math.hypot(forward, left) <= 5.0 + 10.0 + 1e-9  # never past the speed and the PID's largest wind
        velocity = (forward + wind[0], left + wind[1]) if kind == "multirotor" else (forward, left)
    assert math.hypot(*velocity) == pytest.approx(5.0, abs=0.05)


def test_scan_keeps_the_asked_sensors_and_fails_when_none_spoke():
    world = World()
    result = world.run("scan", {"duration": 2.0, "sensors": ["battery", "odom"]})
    assert result["samples"] == {"battery": 4, "odom": 100}
    assert set(result["summary"]) >= {"battery.voltage", "odom.z"} and result["gps"] is None
    with pytest.raises(TaskFailed, match=r"scan: no valid reading from gps in 1 s") as failed:
        world.run("scan", {"duration": 1.0, "sensors": ["gps"]})
    assert failed.value.retryable


# -- Parameters ----------------------------------------------------------------------------------


def test_the_profile_check_refuses_a_vehicle_kind_or_controller_the_engine_cannot_run():
    with pytest.raises(ProfileError, match=r"nodes.io_engine.parameters.vehicle_kind: must be one of: multirotor, "
                                           r"ground; got 'boat'"):
        parse_profile({"nodes": {"io_engine": {"parameters": {"vehicle_kind": "boat"}}}})
    with pytest.raises(ProfileError, match=r"nodes.io_engine.parameters.controller: must be one of: pid, external"):
        parse_profile({"nodes": {"io_engine": {"parameters": {"controller": "neural"}}}})


def test_the_core_refuses_a_vehicle_kind_it_cannot_drive_naming_the_choices():
    with pytest.raises(ValueError, match="vehicle_kind: must be one of: multirotor, ground; got 'boat'"):
        World(vehicle_kind="boat", config=VehicleConfig())
    with pytest.raises(ValueError, match="controller: residual corrects a multirotor's PID; use pid or external"):
        World(vehicle_kind="ground", controller="residual", config=VehicleConfig(kind="ground"))


def test_under_the_residual_controller_the_pid_flies_alone_until_a_correction_comes_and_again_once_stale():
    """A residual policy that never speaks (or goes quiet) leaves the PID flying: the task completes."""
    world = World({"controller": "residual"})
    result = world.run("navigate", {"waypoints": [[0, 0, 4], [6, 0, 4]], "speed": 3.0})
    assert math.dist(result["position"], (6, 0, 4)) <= 0.5 and world.core.residual.stale
    world.core.on_residual((0.0, 0.0, 2.0))  # one correction (climb), then silence
    world.run("navigate", {"waypoints": [[6, 0, 5]], "speed": 3.0})
    assert world.position[2] == pytest.approx(5.0, abs=0.5) and world.core.residual.stale


# -- Readiness and home ------------------------------------------------------------------------------------

def test_motion_kinds_are_ready_only_with_fresh_odometry_and_a_known_battery():
    world = World()
    kinds = {served.spec.name: served for served in world.core.served_kinds()}
    world.advance(1.0)
    assert {name: served.not_ready() for name, served in kinds.items()} == dict.fromkeys(kinds, "")
    world.odom_dropout = True
    world.advance(1.0)
    assert kinds["navigate"].not_ready().startswith("odometry stale") and kinds["scan"].not_ready()
    world.odom_dropout = False
    world.advance(0.2)
    assert kinds["navigate"].not_ready() == ""
    world.battery_dropout = True
    world.advance(10.0)
    assert kinds["navigate"].not_ready() == "battery state stale" and kinds["scan"].not_ready() == ""


def test_before_any_reading_nothing_is_ready_and_return_home_also_needs_a_home(tmp_path):
    from qai_io.core import Clocks, IoCore
    from io_world import default_parameters

    core = IoCore(default_parameters().__getitem__, Clocks(steady=lambda: 5.0, ros=lambda: 5.0), print, print)
    assert core.motion_not_ready() == "no odometry yet" and core.return_home_not_ready() == "no odometry yet"
    core.pose, core.monitors["odom"].last_valid_at = Pose(0, 0, 5, 0), 5.0
    core.monitors["battery"].last_valid_at = 5.0
    assert core.motion_not_ready() == "" and core.return_home_not_ready() == "home unknown"


def test_home_is_kept_for_a_restart_within_the_run_and_taken_afresh_in_a_new_one(tmp_path):
    """Keep home across a restart within a run.

    The finding behind it: an io_engine restarted in the air took the spot it hovered at for home.
    """
    from qai_io.home import HomeStore

    path = tmp_path / "robot" / "home.json"
    first = HomeStore(path, run="run-1")
    assert first.load() is None
    first.save((1.0, 2.0, 0.1))
    assert HomeStore(path, run="run-1").load() == (1.0, 2.0, 0.1)  # restarted within the run
    assert HomeStore(path, run="run-2").load() is None  # a new run: home from its first odometry
    path.write_text('{"run": "run-1", "home": [1, "x", 0]}')
    broken = HomeStore(path, run="run-1")
    assert broken.load() is None and "home.json" in broken.error
    path.write_text('{"run": "run-1", "home": [1, NaN, 0]}')
    assert HomeStore(path, run="run-1").load() is None
    assert HomeStore(None).load() is None  # no data_dir: nothing kept


def test_an_io_engine_restarted_in_the_air_flies_home_to_the_home_its_run_recorded(tmp_path):
    from qai_io.home import HomeStore

    store = HomeStore(tmp_path / "home.json", run="run-1")
    store.save((0.0, 0.0, 0.0))
    world = World(position=(6.0, 3.0, 5.0), home_store=store)  # hovering, as a restarted engine first sees it
    assert world.core.home == (0.0, 0.0, 0.0)
    result = world.run("return_home", {})
    assert math.dist(result["position"][:2], (0.0, 0.0)) <= 0.6 and result["position"][2] < 0.5


def test_a_return_home_that_fails_in_the_air_holds_there_and_calls_for_a_return_home_until_one_runs():
    """Never leave the vehicle in the air with no plan (the finding: a failed return home left it there)."""
    world = World()
    take_off(world, 6.0)
    world.run("navigate", {"waypoints": [[8, 0, 6]]})
    world.odom_dropout = True  # the return home cannot start: no fresh odometry

    with pytest.raises(TaskFailed, match="no fresh odometry"):
        world.advance(1.0)
        world.run("return_home", {})
    world.odom_dropout = False
    (first,) = [n for n in world.notices if n.code == "return_home_failed"]
    assert first.publish and "return_home failed: no fresh odometry" in first.message

    def calls():
        return len([n for n in world.notices if n.code == "return_home_failed"])

    before = calls()
    world.advance(10.2)  # no return home runs: the call goes on every battery_event_period (5 s)
    assert 2 <= calls() - before <= 3  # every 5 s, whatever the phase
    assert world.position[2] > 4.0 and math.hypot(world.core.pose.vx, world.core.pose.vy) < 0.3  # held, in the air
    world.run("return_home", {})
    after = calls()
    world.advance(12.0)  # down at home: nothing more to call for
    assert calls() == after and world.position[2] < 0.5
