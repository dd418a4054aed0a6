"""io_engine and sim_vehicle in their own processes over real DDS.

Motion and scan tasks through the RunTask action, cancel, safety, fault injection, bad input.
"""

import math
import time

import pytest

from harness import status_values, unique_namespace, wait_for
from io_stack import IoStack, set_parameters
from qai_edge.health import Level
from qai_edge.profile import load_profile

TIMEOUT = 60.0
SQUARE = [[0, 0, 4], [8, 0, 4], [8, 8, 5], [0, 8, 4]]
FENCE = [-10.0, -10.0, 10.0, -10.0, 10.0, 10.0, -10.0, 10.0]


@pytest.fixture
def stack(processes, ros_probe):
    return IoStack(processes, ros_probe)


def test_a_multi_waypoint_navigate_flies_through_every_waypoint(stack):
    """Fly through every waypoint, judged on every odometry sample the probe received.

    It once judged the latest sample each 50 ms spin only: on a loaded CI machine the few samples near the
    takeoff waypoint (passed at arrival_tolerance 0.5 m, then left) fell between two looks.
    """
    sent = stack.send("navigate", {"waypoints": SQUARE, "speed": 4.0})
    outcome = stack.wait(sent, TIMEOUT * 2)
    assert outcome.succeeded, (outcome.message, stack.logs())
    positions = [(m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z) for m in stack.odometry]
    closest = [min(math.dist(p, waypoint) for p in positions) for waypoint in SQUARE]
    assert max(closest) <= 0.8, closest  # the io_engine's 0.5 m tolerance, odometry noise and one 20 ms sample
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


BAD_INPUT = [  # kind, parameters, raw JSON parameters, what the error says
    ("navigate", {"waypoints": [[0, 0, 5]], "speed": -1}, None,
     "parameters.speed: -1 is less than or equal to the minimum of 0"),
    ("navigate", {}, {"waypoints": "[[0, NaN, 5]]"}, "parameters.waypoints: not valid JSON"),
    ("navigate", {"waypoints": [[0, 0, 500]]}, None,
     "parameters.waypoints[0]: (0, 0, 500) is above the fence's maximum altitude 120 m"),
    ("navigate", {"waypoints": [[5, 5, 3], [15, 0, 3]]}, None,
     "parameters.waypoints[1]: (15, 0, 3) is outside the fence's polygon"),
    ("navigate", {"waypoints": [[0, 0, 5]], "speed": 20}, None,
     "parameters.speed: 20 is more than the limit of 8.0"),
    ("navigate", {"waypoints": []}, None, "parameters.waypoints: [] should be non-empty"),
    ("navigate", {"waypoints": [[1, 1, 3]] * 21}, None, "parameters.waypoints: "),  # max_waypoints 20
    ("navigate", {"waypoints": [[1, 1, 3]], "order": [0, 20]}, None,
     "parameters.order[1]: 20 is more than the limit of 19"),
    ("navigate", {"waypoints": [[1, 1, 3]], "order": [0, 1]}, None,
     "parameters.order[1]: index 1 is out of range for 1 waypoints (0 to 0)"),
    ("hold", {"duration": 7200}, None, "parameters.duration: 7200 is more than the limit of 3600.0"),
    ("scan", {"duration": 1e6}, None, "parameters.duration: 1000000.0 is more than the limit of 3600.0"),
    ("scan", {"duration": 1, "sensors": ["lidar"]}, None, "parameters.sensors[0]: 'lidar' is not one of"),
    ("teleport", {}, None, "kind 'teleport' is not served by"),
]


def test_bad_input_is_refused_with_the_field_and_no_retry_before_anything_moves(processes, ros_probe):
    stack = IoStack(processes, ros_probe, io_parameters={"geofence_polygon": FENCE, "max_waypoints": 20})
    for kind, parameters, raw, expected in BAD_INPUT:
        outcome = stack.run(kind, parameters, raw_parameters=raw)
        assert outcome.aborted and not outcome.retryable, (kind, parameters, outcome.message)
        assert expected in outcome.message, (kind, parameters, outcome.message)
    stack.probe.spin_until(lambda: stack.odometry, TIMEOUT, "odometry")  # discovery may still be matching
    assert stack.position()[2] < 0.05  # refused before moving
    assert stack.run("hold", {"duration": 0.2}).succeeded  # and the engine goes on serving


def test_the_announced_kinds_carry_the_fence_and_max_speed_and_a_change_is_announced_at_once(
        processes, ros_probe):
    """What the mission engine validates a mission against before anything flies."""
    from qai_edge.convert import kind_from_msg
    from qai_edge.qos import CAPABILITIES_QOS
    from qai_interfaces.msg import EngineCapabilities

    namespace = unique_namespace()
    processes.start_node("io_engine", namespace=namespace, parameters={
        "geofence_polygon": FENCE, "max_speed": 6.0, "announce_period": 600.0})  # no periodic repeat in the test
    navigate_kinds = []
    ros_probe.node.create_subscription(
        EngineCapabilities, f"{namespace}/engine_capabilities",
        lambda msg: navigate_kinds.extend(kind_from_msg(k) for k in msg.kinds if k.name == "navigate"),
        CAPABILITIES_QOS)
    ros_probe.spin_until(lambda: navigate_kinds, TIMEOUT, "the io_engine's announcement")
    navigate = navigate_kinds[-1]
    properties = navigate.parameters_schema["properties"]
    assert properties["speed"]["maximum"] == 6.0
    assert properties["waypoints"]["items"]["x-geofence"] == {
        "polygon": [[-10.0, -10.0], [10.0, -10.0], [10.0, 10.0], [-10.0, 10.0]], "min_altitude": 0.0,
        "max_altitude": 120.0}
    assert navigate.parameter_errors({"waypoints": [[0, 0, 3], [12, 0, 3]]}) == [
        "parameters.waypoints[1]: (12, 0, 3) is outside the fence's polygon"]
    set_parameters(ros_probe, f"{namespace}/io_engine", max_speed=4.0)
    ros_probe.spin_until(lambda: navigate_kinds[-1].parameters_schema["properties"]["speed"]["maximum"] == 4.0,
                         10.0, "the new max_speed in an announcement")


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


SENSOR_FAULTS = [  # the fault set on sim_vehicle, the stream, the level and text its status then shows, the clear
    ({"fault_dropout": "imu"}, "imu", Level.ERROR, "stale", {"fault_dropout": ""}),
    ({"fault_stuck": "odom"}, "odom", Level.WARN, "stuck", {"fault_stuck": ""}),
    ({"fault_gps_loss": True}, "gps", Level.ERROR, "no GPS fix", {"fault_gps_loss": False}),
]


def test_every_sensor_fault_is_detected_and_reported_and_clears_when_it_ends(stack):
    for fault, stream, level, text, clear in SENSOR_FAULTS:
        assert stack.stream_status(stream)[0] == Level.OK
        stack.set_parameters("sim_vehicle", **fault)
        stack.probe.spin_until(lambda: stack.stream_status(stream)[0] == level, TIMEOUT,
                               lambda: f"{stream} to report {level.name}: {stack.stream_status(stream)}")
        assert text in stack.stream_status(stream)[1]
        assert stack.io_status().level[0] >= level  # the engine's own status says so too
        assert stream in stack.io_status().message
        stack.set_parameters("sim_vehicle", **clear)
        stack.probe.spin_until(lambda: stack.stream_status(stream)[0] == Level.OK, TIMEOUT,
                               lambda: f"{stream} to recover: {stack.stream_status(stream)}")


def battery_reserve(stack) -> str:
    """Return 'on' or 'off', as the io_engine's heartbeat says."""
    return status_values(stack.io_status()).get("battery_reserve", "")


def test_a_sag_driving_the_battery_reading_out_of_range_in_flight_keeps_calling_for_a_return_home(
        processes, ros_probe):
    """Keep calling for a return home while a sag drives the battery reading out of range in flight.

    The readings are rejected as out of range (once only "battery: stale"): the reserve is entered, its
    event repeats until a return_home runs, the latch outlasts the recovery in the air and clears once
    landed with healthy readings.
    """
    from qai_interfaces.msg import Event

    stack = IoStack(processes, ros_probe, io_parameters={
        "battery_timeout": 1.0, "battery_event_period": 1.0, "battery_recover_time": 1.0, "landing_speed": 1.5})
    assert stack.run("navigate", {"waypoints": [[0, 0, 3]]}).succeeded
    stack.set_parameters("sim_vehicle", fault_battery_sag=20.0)  # 16.8 V - 20 V: out of range
    stack.probe.spin_until(lambda: len(stack.events_of("battery_reserve")) >= 2, TIMEOUT,
                           lambda: f"the battery_reserve event twice\n{stack.logs()}")
    event = stack.events_of("battery_reserve")[0]
    assert event.source == stack.io_name and event.severity == Event.ERROR
    assert "no valid battery reading" in event.message and "is outside [0, 1000]" in event.message
    refused = stack.run("navigate", {"waypoints": [[5, 0, 3]]})
    assert refused.aborted and not refused.retryable and "battery at its reserve" in refused.message

    stack.set_parameters("sim_vehicle", fault_battery_sag=0.0)  # healthy again, but still in the air
    stack.probe.spin_for(1.5)
    assert battery_reserve(stack) == "on" and stack.io_status().level[0] == Level.ERROR
    response = stack.clear_battery_reserve()
    assert not response.success and "airborne" in response.message

    sent = stack.send("return_home", {"altitude": 3.0})
    stack.probe.spin_until(lambda: sent[2], TIMEOUT, "return_home to run")
    running_since = time.monotonic() + 0.5  # an event already on its way may still arrive
    outcome = stack.wait(sent)
    assert outcome.succeeded and outcome.result["position"][2] < 0.1, outcome.message
    assert stack.events_of("battery_reserve", since=running_since) == []
    stack.probe.spin_until(lambda: battery_reserve(stack) == "off", TIMEOUT,
                           lambda: f"the reserve to clear: {stack.io_status().message}")
    assert "battery at its reserve" not in stack.io_status().message


def test_the_default_profile_enters_the_reserve_on_the_simulators_sag_and_holds_it_while_the_fault_lasts(
        processes, ros_probe):
    io_parameters = dict(load_profile().node("io_engine").parameters)
    for common in ("heartbeat_period", "robot_id"):
        del io_parameters[common]
    stack = IoStack(processes, ros_probe, io_parameters=io_parameters)
    assert stack.run("navigate", {"waypoints": [[0, 0, 3]]}).succeeded
    stack.set_parameters("sim_vehicle", fault_battery_sag=3.0)
    stack.probe.spin_until(lambda: stack.events_of("battery_reserve"), TIMEOUT,
                           lambda: f"a battery_reserve event\n{stack.logs()}")
    assert "below battery_min_voltage 13.8 V" in stack.events_of("battery_reserve")[0].message
    stack.probe.spin_until(lambda: "battery at its reserve" in stack.io_status().message, TIMEOUT, "ERROR")
    assert stack.run("land", timeout=TIMEOUT).succeeded  # land runs in the reserve
    stack.probe.spin_for(io_parameters["battery_recover_time"] + 1.0)
    assert battery_reserve(stack) == "on"  # landed, but the fault is still there
    response = stack.clear_battery_reserve()
    assert not response.success and "still reads low" in response.message
    stack.set_parameters("sim_vehicle", fault_battery_sag=0.0)
    stack.probe.spin_for(1.0)  # a healthy reading; the operator need not wait for battery_recover_time
    response = stack.clear_battery_reserve()
    assert response.success, response.message
    stack.probe.spin_until(lambda: battery_reserve(stack) == "off", 5.0, "the heartbeat to say so")


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
    """Check that the external controller follows another node's commands and stops without them.

    With controller: external, the io_engine publishes control/target and drives by control/cmd_vel, the way
    the intelligence engine's learned policy will.
    """
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


def test_the_residual_controller_adds_another_nodes_correction_to_the_pid_and_flies_on_without_it(
        processes, ros_probe):
    """With controller: residual, a correction on control/residual moves the vehicle; silence leaves the PID flying.

    A steady 1 m/s sideways correction during a hold pushes the vehicle off the point until the PID's integral
    takes it back; when the corrections stop, the hold still ends where it should (the PID alone), not stopped.
    """
    from geometry_msgs.msg import PointStamped, Twist

    stack = IoStack(processes, ros_probe, io_parameters={"controller": "residual"})
    targets = []
    ros_probe.node.create_subscription(PointStamped, f"{stack.namespace}/control/target", targets.append, 10)
    residual = ros_probe.node.create_publisher(Twist, f"{stack.namespace}/control/residual", 10)
    outcome = stack.run("navigate", {"waypoints": [[0, 0, 3]], "speed": 3.0})  # no corrections: the PID alone
    assert outcome.succeeded and math.dist(outcome.result["position"], (0, 0, 3)) <= 0.5, outcome.message
    assert targets, "the io_engine publishes its target for the policy"
    sent = stack.send("hold", {"duration": 8.0})
    sideways = Twist()
    sideways.linear.y = 1.0
    pushed = 0.0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        residual.publish(sideways)
        ros_probe.spin_for(0.02)
        pushed = max(pushed, abs(stack.position()[1]))
    assert pushed > 0.15, f"the correction moved the vehicle {pushed:.2f} m"
    outcome = stack.wait(sent)  # silent from here: the PID holds the point
    assert outcome.succeeded and math.dist(outcome.result["position"], (0, 0, 3)) <= 0.5, outcome


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


def test_a_battery_is_swapped_on_the_ground_only(processes, ros_probe):
    """Swap the simulated pack only on the ground (bench/chaos.py flies 30 minutes on it, the reserve would stop it)."""
    from sensor_msgs.msg import BatteryState
    from std_srvs.srv import Trigger

    from io_stack import call_service

    stack = IoStack(processes, ros_probe, sim_parameters={"battery_initial": 0.5})
    batteries = []
    ros_probe.node.create_subscription(BatteryState, f"{stack.namespace}/battery_state", batteries.append, 10)
    swap = f"{stack.namespace}/sim_vehicle/swap_battery"
    assert stack.run("navigate", {"waypoints": [[0, 0, 5]], "speed": 3.0}).succeeded
    refused = call_service(ros_probe, Trigger, swap, Trigger.Request())
    assert not refused.success and "airborne" in refused.message
    landed = stack.run("land", {})
    assert landed.succeeded, landed.message
    answer = call_service(ros_probe, Trigger, swap, Trigger.Request())
    assert answer.success, answer.message
    ros_probe.spin_until(lambda: batteries and batteries[-1].percentage > 0.95, TIMEOUT, "a full pack")
