"""Engines killed in the middle of a flight: the mission goes on, and the vehicle is never left in the air.

mission_engine, io_engine and sim_vehicle in their own processes; the test kills an engine with SIGKILL
and starts it again as `qai-edge up`'s supervisor would.
"""

import math
import signal

import pytest

from harness import status_values
from io_stack import IoStack
from qai_mission.client import MissionClient, MissionOutcome

TIMEOUT = 120.0
IO_PARAMETERS = {"heartbeat_period": 0.2}


@pytest.fixture
def flight(processes, ros_probe, tmp_path):
    stack = IoStack(processes, ros_probe, io_parameters=IO_PARAMETERS)
    processes.start_node("mission_engine", namespace=stack.namespace, parameters={
        "data_dir": str(tmp_path / "data"), "heartbeat_period": 0.2, "engine_timeout": 1.0})
    missions = MissionClient(namespace=stack.namespace)
    try:
        missions.wait_until_ready(["navigate", "return_home"], timeout=30)
        yield stack, missions
    finally:
        missions.close()


def mission_values(stack) -> dict:
    status = stack.probe.latest_status(f"{stack.namespace}/mission_engine")
    return status_values(status) if status else {}


def task_state(missions, mission_id, task_id):
    snapshot = missions.feedback(mission_id)
    if snapshot is None:
        return None
    return next((task.state.name for task in snapshot.tasks if task.id == task_id), None)


@pytest.mark.slow
def test_an_io_engine_killed_during_the_return_home_comes_back_and_the_vehicle_lands_at_home(flight, processes):
    """Bring the vehicle home although its I/O engine was killed on the way.

    The finding: io_engine, killed during the return home, was back 1 s later and announced its kinds; the
    mission engine sent return_home again within 70 ms, the new io_engine had no odometry yet and failed it,
    and the mission failed with the drone in the air. (A restarted io_engine also took the spot it hovered
    at for home.)
    """
    stack, missions = flight
    mission_id = missions.submit({"name": "out and back", "tasks": [
        {"id": "out", "kind": "navigate", "parameters": {"waypoints": [[0, 0, 5], [16, 0, 5]], "speed": 5}},
        {"id": "home", "kind": "return_home", "depends_on": ["out"], "parameters": {"speed": 3}},
    ]})

    def on_the_way_home():
        position = stack.odometry[-1].pose.pose.position if stack.odometry else None
        return (task_state(missions, mission_id, "home") == "RUNNING" and position is not None
                and 6.0 < position.x < 14.0 and position.z > 3.0)

    stack.probe.spin_until(on_the_way_home, TIMEOUT, lambda: f"the return home under way\n{stack.logs()}")
    x = stack.odometry[-1].pose.pose.position.x
    stack.io.popen.send_signal(signal.SIGKILL)  # on the way home, in the air
    stack.io.wait(10)
    # The new io_engine comes up before its first odometry (as on a loaded machine): odometry stops until the
    # mission engine has had every chance to send it the return home.
    stack.set_parameters("sim_vehicle", fault_dropout="odom")
    stack.probe.spin_for(1.0)  # the supervisor's first backoff
    stack.io = processes.start_node("io_engine", namespace=stack.namespace, parameters=IO_PARAMETERS)
    stack.probe.spin_until(lambda: stack.io_status("odom") is not None and stack.io_status("odom").message in (
        "waiting for the first reading", "no valid reading yet") and stack.io_status().values, TIMEOUT,
        lambda: f"the new io_engine up, without odometry\n{stack.logs()}")
    # The mission engine has seen it back and holds return_home as not ready (an ablation without readiness
    # sent it here, and it failed).
    stack.probe.spin_until(lambda: "return_home" in mission_values(stack).get("kinds_not_ready", ""), TIMEOUT,
                           lambda: f"return_home held as not ready ({mission_values(stack)})\n{stack.logs()}")
    stack.set_parameters("sim_vehicle", fault_dropout="")
    result = missions.wait(mission_id, timeout=TIMEOUT)
    assert result.outcome is MissionOutcome.SUCCEEDED, (result, stack.logs())
    final = stack.current_position()
    assert math.hypot(*final[:2]) < 1.0 and final[2] < 0.5, (final, x)
    assert result.task("home").attempt >= 2, result


@pytest.mark.slow
def test_a_return_home_that_cannot_be_sent_is_said_and_the_return_home_mission_brings_the_vehicle_down(
        flight, processes):
    """Start the profile's return-home mission when a return home fails for good, and say so on `events`."""
    stack, missions = flight
    mission_id = missions.submit({"name": "out and back", "tasks": [
        {"id": "out", "kind": "navigate", "parameters": {"waypoints": [[0, 0, 5], [12, 0, 5]], "speed": 5}},
        {"id": "home", "kind": "return_home", "depends_on": ["out"], "timeout": 4.0,
         "retry": {"max_retries": 0}},
    ]})
    stack.probe.spin_until(lambda: task_state(missions, mission_id, "home") == "RUNNING", TIMEOUT,
                           lambda: f"the return home under way\n{stack.logs()}")
    stack.io.popen.send_signal(signal.SIGKILL)  # and it stays down past the task's timeout
    stack.io.wait(10)
    result = missions.wait(mission_id, timeout=TIMEOUT)
    assert result.outcome is MissionOutcome.FAILED and "did not return" in result.task("home").message, result
    stack.probe.spin_until(lambda: stack.events_of("return_home_failed"), 30.0,
                           lambda: f"the mission engine saying so on events\n{stack.logs()}")
    (event,) = stack.events_of("return_home_failed")
    assert event.source.endswith("/mission_engine") and "may be in the air with no plan" in event.message
    (started,) = [m for m in missions.status(include_finished=False) if m.mission_id.startswith("return_home_failed")]
    stack.io = processes.start_node("io_engine", namespace=stack.namespace, parameters=IO_PARAMETERS)
    missions.follow(started.mission_id)
    rescue = missions.wait(started.mission_id, timeout=TIMEOUT)
    assert rescue.outcome is MissionOutcome.SUCCEEDED, (rescue, stack.logs())
    final = stack.current_position()
    assert math.hypot(*final[:2]) < 1.0 and final[2] < 0.5, final
