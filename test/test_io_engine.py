"""io_engine and sim_vehicle in their own processes over real DDS: motion and scan tasks through the
RunTask action, cancel, safety, fault injection, bad input."""

import math
import time

import pytest

from harness import wait_for
from io_stack import IoStack
from qai_edge.health import Level

TIMEOUT = 60.0
SQUARE = [[0, 0, 4], [8, 0, 4], [8, 8, 5], [0, 8, 4]]


@pytest.fixture
def stack(processes, ros_probe):
    return IoStack(processes, ros_probe)


def test_a_multi_waypoint_navigate_flies_through_every_waypoint(stack):
    visited = set()

    def watch():
        position = stack.position()
        for index, waypoint in enumerate(SQUARE):
            if math.dist(position, waypoint) <= 0.6:
                visited.add(index)

    sent = stack.send("navigate", {"waypoints": SQUARE, "speed": 4.0})
    outcome = None
    while outcome is None:
        stack.probe.spin_for(0.05)
        if stack.odometry:
            watch()
        if sent[1].done():
            outcome = stack.wait(sent)
    assert outcome.succeeded, (outcome.message, stack.logs())
    assert visited == {0, 1, 2, 3}
    assert math.dist(outcome.result["position"], SQUARE[-1]) <= 0.5
    assert outcome.result["waypoints_reached"] == 4
    progress = [f.progress for f in outcome.feedback if not math.isnan(f.progress)]
    assert progress == sorted(progress) or max(progress) > 0.9  # progress moves forward
    assert any("to waypoint 3/4" in f.status for f in outcome.feedback)


def test_canceling_navigate_midway_stops_the_vehicle_before_the_cancel_completes(stack):
    sent = stack.send("navigate", {"waypoints": [[0, 0, 3], [60, 0, 3]], "speed": 5.0})
    stack.probe.spin_until(lambda: stack.odometry and stack.position()[0] > 5.0 and stack.speed() > 3.0,
                           TIMEOUT, "the vehicle to be under way")
    stack.cancel(sent)
    outcome = stack.wait(sent)
    assert outcome.canceled
    assert stack.speed() < 0.35  # still when the cancel completed (odometry noise aside)
    x_at_cancel = stack.position()[0]
    stack.probe.spin_for(1.0)
    assert abs(stack.position()[0] - x_at_cancel) < 0.3 and stack.position()[0] < 50


def test_scan_returns_statistics_and_where_it_was_taken(stack):
    outcome = stack.run("scan", {"duration": 1.0, "sensors": ["imu", "battery", "gps"]})
    assert outcome.succeeded, outcome.message
    summary = outcome.result["summary"]
    assert summary["imu.accel_z"]["mean"] == pytest.approx(9.81, abs=0.2)
    assert summary["imu.accel_z"]["n"] >= 50
    assert 0.9 < summary["battery.percentage"]["mean"] <= 1.0
    assert summary["gps.latitude"]["mean"] == pytest.approx(47.397742, abs=1e-4)
    assert not any(name.startswith("odom.") for name in summary)  # only the sensors asked for
    assert outcome.result["position"] is not None and len(outcome.result["gps"]) == 3


def test_hold_land_and_return_home(stack):
    assert stack.run("navigate", {"waypoints": [[6, 3, 5]]}).succeeded
    hold = stack.run("hold", {"duration": 1.0})
    assert hold.succeeded and math.dist(hold.result["position"], (6, 3, 5)) < 0.6
    home = stack.run("return_home", {"altitude": 6.0})
    assert home.succeeded, home.message
    assert math.dist(home.result["position"][:2], (0, 0)) < 0.6 and home.result["position"][2] < 0.1


@pytest.mark.parametrize("kind, parameters, raw, expected", [
    ("navigate", {"waypoints": [[0, 0, 5]], "speed": -1}, None,
     "parameters.speed: -1 is less than or equal to the minimum of 0"),
    ("navigate", {}, {"waypoints": "[[0, NaN, 5]]"}, "parameters.waypoints: not valid JSON"),
    ("navigate", {"waypoints": [[0, 0, 500]]}, None,
     "parameters.waypoints[0]: (0, 0, 500) is above the fence's maximum altitude 120 m"),
    ("navigate", {"waypoints": [[0, 0, 5]], "speed": 20}, None,
     "parameters.speed: 20 m/s exceeds this vehicle's max_speed 8 m/s"),
    ("navigate", {"waypoints": []}, None, "parameters.waypoints: [] should be non-empty"),
    ("scan", {"duration": 1, "sensors": ["lidar"]}, None, "parameters.sensors[0]: 'lidar' is not one of"),
    ("teleport", {}, None, "kind 'teleport' is not served by"),
])
def test_bad_input_is_refused_with_the_field_and_no_retry(stack, kind, parameters, raw, expected):
    outcome = stack.run(kind, parameters, raw_parameters=raw)
    assert outcome.aborted and not outcome.retryable
    assert expected in outcome.message, outcome.message


def test_a_waypoint_outside_the_geofence_polygon_is_refused(processes, ros_probe):
    stack = IoStack(processes, ros_probe, io_parameters={"geofence_polygon": [-10.0, -10.0, 10.0, -10.0,
                                                                              10.0, 10.0, -10.0, 10.0]})
    outcome = stack.run("navigate", {"waypoints": [[5, 5, 3], [15, 0, 3]]})
    assert outcome.aborted and not outcome.retryable
    assert outcome.message == "parameters.waypoints[1]: (15, 0, 3) is outside the fence's polygon"
    assert stack.position()[2] < 0.05  # refused before moving


def test_stale_odometry_during_motion_stops_the_vehicle_and_fails_the_task(stack):
    sent = stack.send("navigate", {"waypoints": [[0, 0, 3], [50, 0, 3]]})
    stack.probe.spin_until(lambda: stack.odometry and stack.position()[0] > 2.0, TIMEOUT, "the vehicle to move")
    stack.set_parameters("sim_vehicle", fault_dropout="odom")
    outcome = stack.wait(sent)
    assert outcome.aborted and outcome.retryable
    assert "odometry stale" in outcome.message and "stopped the vehicle" in outcome.message
    last_command = stack.commands[-1][1]
    assert (last_command.linear.x, last_command.linear.y, last_command.linear.z) == (0.0, 0.0, 0.0)
    assert any(e.code == "odometry_stale" for e in stack.events)


@pytest.mark.parametrize("fault, stream, level, text", [
    ({"fault_dropout": "imu"}, "imu", Level.ERROR, "stale"),
    ({"fault_stuck": "odom"}, "odom", Level.WARN, "stuck"),
    ({"fault_gps_loss": True}, "gps", Level.ERROR, "no GPS fix"),
])
def test_every_sensor_fault_is_detected_and_reported(stack, fault, stream, level, text):
    assert stack.stream_status(stream)[0] == Level.OK
    stack.set_parameters("sim_vehicle", **fault)
    stack.probe.spin_until(lambda: stack.stream_status(stream)[0] == level, TIMEOUT,
                           lambda: f"{stream} to report {level.name}: {stack.stream_status(stream)}")
    assert text in stack.stream_status(stream)[1]
    assert stack.io_status().level[0] >= level  # the engine's own status says so too
    assert stream in stack.io_status().message


def test_battery_sag_raises_an_error_and_a_battery_reserve_event(processes, ros_probe):
    stack = IoStack(processes, ros_probe, io_parameters={"battery_min_voltage": 15.0})
    stack.set_parameters("sim_vehicle", fault_battery_sag=2.5)
    stack.probe.spin_until(lambda: any(e.code == "battery_reserve" for e in stack.events), TIMEOUT,
                           lambda: f"a battery_reserve event\n{stack.logs()}")
    event = next(e for e in stack.events if e.code == "battery_reserve")
    assert event.source == stack.io_name and event.severity == 2 and "below its reserve" in event.message
    stack.probe.spin_until(lambda: stack.io_status().level[0] == Level.ERROR, TIMEOUT, "ERROR on /diagnostics")
    assert "battery at its reserve" in stack.io_status().message
    assert len([e for e in stack.events if e.code == "battery_reserve"]) == 1  # once per crossing


def test_invalid_readings_are_rejected_and_counted_not_used(processes, ros_probe):
    """A driver publishing NaN: the reading is counted as rejected and the engine keeps the last good pose."""
    from nav_msgs.msg import Odometry

    stack = IoStack(processes, ros_probe)
    publisher = ros_probe.node.create_publisher(Odometry, f"{stack.namespace}/odom", 10)
    bad = Odometry()
    bad.pose.pose.position.x = math.nan
    bad.pose.pose.orientation.w = 1.0
    # Volatile QoS: a reading sent before discovery has matched both ends is never delivered, so the
    # driver keeps publishing until the engine has counted 20, as a real driver keeps publishing.
    stack.probe.spin_until(lambda: publisher.get_subscription_count() >= 1, TIMEOUT, "the engine to match")

    def publish_and_count() -> bool:
        publisher.publish(bad)
        return int(stack.stream_status("odom")[2]["rejected"]) >= 20

    stack.probe.spin_until(publish_and_count, TIMEOUT, "the NaN readings to be counted")
    assert stack.stream_status("odom")[2]["last_rejected"] == "x is nan"
    outcome = stack.run("hold", {"duration": 0.3})
    assert outcome.succeeded, outcome.message
    assert all(math.isfinite(c) for c in outcome.result["position"])


def test_the_external_controller_follows_another_nodes_commands_and_stops_without_them(processes, ros_probe):
    """controller: external: the io_engine publishes control/target and drives by control/cmd_vel, the
    way the intelligence engine's learned policy will."""
    from geometry_msgs.msg import PointStamped, Twist

    stack = IoStack(processes, ros_probe, io_parameters={"controller": "external"})
    targets = []
    ros_probe.node.create_subscription(PointStamped, f"{stack.namespace}/control/target", targets.append, 10)
    policy = ros_probe.node.create_publisher(Twist, f"{stack.namespace}/control/cmd_vel", 10)

    def steer():  # a stand-in policy: proportional steering toward the target
        if targets and stack.odometry:
            t, (x, y, z) = targets[-1].point, stack.position()
            command = Twist()
            command.linear.x, command.linear.y, command.linear.z = (
                max(-3.0, min(3.0, 1.0 * (t.x - x))), max(-3.0, min(3.0, 1.0 * (t.y - y))),
                max(-2.0, min(2.0, 1.0 * (t.z - z))))
            policy.publish(command)

    sent = stack.send("navigate", {"waypoints": [[4, 2, 3]], "speed": 3.0})
    deadline = time.monotonic() + TIMEOUT
    while not sent[1].done() and time.monotonic() < deadline:
        steer()
        ros_probe.spin_for(0.02)
    outcome = stack.wait(sent)
    assert outcome.succeeded and math.dist(outcome.result["position"], (4, 2, 3)) <= 0.5
    # Without policy commands the vehicle is stopped, not left flying its last command.
    sent = stack.send("navigate", {"waypoints": [[30, 2, 3]]})
    for _ in range(10):
        steer()
        ros_probe.spin_for(0.05)
    ros_probe.spin_for(2.0)
    assert stack.speed() < 0.3
    stack.cancel(sent)
    assert stack.wait(sent).canceled


def test_faster_than_real_time_with_the_simulator_owning_the_clock(processes, ros_probe):
    """real_time_factor 5 with /clock: the io_engine on use_sim_time times tasks in simulated seconds."""
    stack = IoStack(processes, ros_probe, sim_parameters={"real_time_factor": 5.0, "publish_clock": True},
                    io_parameters={"use_sim_time": True})
    began = time.monotonic()
    hold = stack.run("hold", {"duration": 10.0})
    wall = time.monotonic() - began
    assert hold.succeeded and wall < 5.0, f"10 simulated seconds took {wall:.1f} s"
    began = time.monotonic()
    flight = stack.run("navigate", {"waypoints": [[0, 0, 4], [20, 0, 4]], "speed": 4.0})
    wall = time.monotonic() - began
    assert flight.succeeded and flight.result["duration"] / wall > 3.0, (flight.result["duration"], wall)


def test_a_second_motion_task_is_refused_while_one_runs(stack):
    first = stack.send("hold", {"duration": 3.0})
    wait_for(lambda: stack.probe.spin_for(0.1) or any(f.status.startswith("holding") for f in first[2]),
             TIMEOUT, "the first task to run")
    second = stack.run("navigate", {"waypoints": [[1, 1, 2]]})
    assert second.aborted and second.retryable and "another motion task is running" in second.message
    assert stack.wait(first).succeeded
