"""Missions that fly: mission_engine, io_engine and sim_vehicle in their own processes, driven by MissionClient.

Navigate and scan tasks go through the mission engine to the I/O engine; a low battery starts the return-home
mission, which preempts the flight.
"""

import math
from pathlib import Path

import pytest

from harness import wait_for
from io_stack import IoStack
from qai_mission.client import MissionClient, MissionOutcome
from qai_mission.model import TaskStatus

TIMEOUT = 120.0
ROOT = Path(__file__).resolve().parents[1]


class FlightStack(IoStack):
    def __init__(self, processes, probe, tmp_path, with_bridge=False, **kwargs):
        super().__init__(processes, probe, **kwargs)
        if with_bridge:
            processes.start_node("quantum_bridge", namespace=self.namespace, parameters={"heartbeat_period": 0.2})
        self.mission_engine = processes.start_node("mission_engine", namespace=self.namespace, parameters={
            "data_dir": str(tmp_path / "data"), "heartbeat_period": 0.2, "engine_timeout": 1.5})
        needed = {"navigate", *(("plan_route",) if with_bridge else ())}
        probe.spin_until(lambda: needed <= set(self.values("mission_engine").get("kinds_routed", "").split(",")),
                         30.0, lambda: f"the mission engine to route {needed}\n{self.logs()}")
        self.missions = MissionClient(namespace=self.namespace)

    def values(self, node):
        from harness import status_values

        status = self.probe.latest_status(f"{self.namespace}/{node}")
        return status_values(status) if status else {}


@pytest.fixture
def flight(processes, ros_probe, tmp_path):
    stack = FlightStack(processes, ros_probe, tmp_path, with_bridge=True)
    try:
        yield stack
    finally:
        stack.missions.close()


def test_a_navigate_and_scan_mission_flies_the_waypoints_and_returns_the_scans(flight):
    result = flight.missions.run({"name": "survey", "tasks": [
        {"id": "leg1", "kind": "navigate", "parameters": {"waypoints": [[0, 0, 4], [10, 0, 4]], "speed": 4}},
        {"id": "scan1", "kind": "scan", "depends_on": ["leg1"], "parameters": {"duration": 1.0}},
        {"id": "leg2", "kind": "navigate", "depends_on": ["scan1"], "parameters": {"waypoints": [[10, 8, 6]]}},
        {"id": "scan2", "kind": "scan", "depends_on": ["leg2"],
         "parameters": {"duration": 1.0, "sensors": ["gps", "battery"]}},
    ]}, timeout=TIMEOUT)
    assert result.outcome is MissionOutcome.SUCCEEDED, (result, flight.logs())
    scan1, scan2 = result.task("scan1").result, result.task("scan2").result
    assert math.dist(scan1["position"], (10, 0, 4)) < 0.6 and math.dist(scan2["position"], (10, 8, 6)) < 0.6
    assert scan1["samples"]["imu"] > 50 and scan2["summary"]["battery.percentage"]["mean"] < 1.0
    assert scan2["gps"][0] > 47.397742  # north of the origin, as 8 m north should be


def test_a_planned_route_is_flown_in_the_order_the_quantum_bridge_returns(flight):
    points = [[0, 0, 4], [12, 10, 4], [2, 12, 5], [14, 0, 4]]
    result = flight.missions.run({"tasks": [
        {"id": "plan", "kind": "plan_route", "parameters": {"waypoints": points, "solver": "quantum", "seed": 5}},
        {"id": "fly", "kind": "navigate", "depends_on": ["plan"],
         "parameters": {"waypoints": {"$result": "plan.waypoints"}, "speed": 5}},
    ]}, timeout=TIMEOUT)
    assert result.outcome is MissionOutcome.SUCCEEDED, (result, flight.logs())
    plan = result.task("plan").result
    assert plan["solver"] == "qaoa" and plan["verified"] and plan["order"] == [0, 2, 1, 3]
    fly = result.task("fly").result
    assert fly["waypoints_reached"] == 4 and math.dist(fly["position"], points[3]) <= 0.5
    assert fly["distance"] == pytest.approx(plan["cost"] + 4.0, abs=0.5)  # the climb to the first waypoint


def test_the_demo_mission_file_runs(flight):
    result = flight.missions.run(ROOT / "config" / "missions" / "demo.yaml", timeout=TIMEOUT)
    assert result.outcome is MissionOutcome.SUCCEEDED, (result, flight.logs())
    assert math.dist(result.task("home").result["position"][:2], (0, 0)) < 0.6


def test_a_battery_at_its_reserve_brings_the_vehicle_home_and_ends_the_flight(processes, ros_probe, tmp_path):
    flight = FlightStack(processes, ros_probe, tmp_path, io_parameters={"battery_min_voltage": 15.5})
    try:
        mission_id = flight.missions.submit({"tasks": [
            {"id": "long_leg", "kind": "navigate", "priority": 1,
             "parameters": {"waypoints": [[0, 0, 5], [60, 0, 5], [60, 60, 5]], "speed": 3}}]})
        wait_for(lambda: flight.probe.spin_for(0.1) or (flight.odometry and flight.position()[0] > 6.0),
                 TIMEOUT, "the vehicle to be on its way")
        flight.set_parameters("sim_vehicle", fault_battery_sag=2.0)
        # The mission engine starts return_home (priority 1000) on the event; it preempts the flight.
        flight.probe.spin_until(lambda: any(m.mission_id.startswith("battery_reserve-")
                                            for m in flight.missions.status()), TIMEOUT,
                                lambda: f"the return-home mission\n{flight.logs()}")
        home_id = next(m.mission_id for m in flight.missions.status() if m.mission_id.startswith("battery_reserve-"))
        flight.missions.follow(home_id)
        home = flight.missions.wait(home_id, TIMEOUT)
        assert home.outcome is MissionOutcome.SUCCEEDED, (home, flight.logs())
        position = flight.current_position()  # waiting spun the mission client, not the probe
        assert math.dist(position[:2], (0, 0)) < 0.6 and position[2] < 0.1, position
        # The preempted flight was requeued, then refused: the battery is at its reserve.
        result = flight.missions.wait(mission_id, TIMEOUT)
        assert result.outcome is MissionOutcome.FAILED
        leg = result.task("long_leg")
        assert leg.state == TaskStatus.FAILED and "battery at its reserve" in leg.message
        assert flight.current_position()[2] < 0.1  # it did not take off again
    finally:
        flight.missions.close()


@pytest.mark.parametrize("leg, refusal", [
    ({"waypoints": [[80, 0, 4]]}, r"waypoints.*(fence|geofence)"),
    ({"waypoints": [[10, 0, 500]]}, r"waypoints.*(fence|geofence|altitude)"),
    ({"waypoints": [[10, 0, 4]], "speed": 30}, r"speed.*8"),
], ids=["outside the polygon", "above the ceiling", "too fast"])
def test_a_mission_that_would_break_a_limit_later_is_refused_before_anything_flies(processes, ros_probe, tmp_path,
                                                                                   leg, refusal):
    """Check the fence and speed the io_engine announces are checked at admission, not when the bad leg runs."""
    from qai_mission.client import MissionRejected

    stack = FlightStack(processes, ros_probe, tmp_path, io_parameters={
        "geofence_polygon": [-50.0, -50.0, 50.0, -50.0, 50.0, 50.0, -50.0, 50.0]})
    try:
        start = stack.position()
        with pytest.raises(MissionRejected, match=refusal):
            stack.missions.run({"name": "too far", "tasks": [
                {"id": "takeoff", "kind": "navigate", "parameters": {"waypoints": [[0, 0, 4]]}},
                {"id": "scan", "kind": "scan", "depends_on": ["takeoff"], "parameters": {"duration": 1.0}},
                {"id": "bad_leg", "kind": "navigate", "depends_on": ["scan"], "parameters": leg},
            ]}, timeout=TIMEOUT)
        ros_probe.spin_for(1.0)
        assert math.dist(stack.position(), start) < 0.2  # the takeoff never ran
    finally:
        stack.missions.close()
