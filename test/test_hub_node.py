"""hub_link as a robot runs it.

Real mosquitto, real hub_link and mission_engine processes over real DDS, and the hub side (a subscriber,
and `qai-hub` run as an operator runs it).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import textwrap
import time

import orjson
import pytest

from harness import ProcessGroup, RosProbe, installed, status_level, status_values, unique_namespace, wait_for
from hub_stack import HubKeys, HubSubscriber, now_ms, start_broker
from qai_edge.broker import free_port, port_open
from qai_hub.protocol import command_topic
from qai_io.hub_link import codec
from qai_io.hub_parameters import PARAMETERS as HUB_PARAMETERS
from robot_identity import TestRobots

# One worker runs this module: its tests share an expensive module fixture.
pytestmark = pytest.mark.xdist_group("test_hub_node")

FLEET, ROBOT = "tf", "testbot"
TIMEOUT = 30.0


class RobotStack:
    """A broker, a mission engine and a hub_link under one namespace, a hub subscriber and a ROS probe."""

    def __init__(self, directory, group: ProcessGroup, probe: RosProbe, keys: HubKeys):
        self.directory, self.group, self.probe, self.keys = directory, group, probe, keys
        self.broker = start_broker(directory / "broker")
        self.namespace = unique_namespace()
        self.mission_engine = group.start_node("mission_engine", namespace=self.namespace, parameters={
            "data_dir": str(directory / "data"), "robot_id": ROBOT, "heartbeat_period": 0.2, "engine_timeout": 1.5})
        self.robots = TestRobots(directory / "robots")
        self.hub_link = self.start_hub_link(ROBOT)
        self.robot2 = None
        self.hub = HubSubscriber(self.broker.port, FLEET, robots=self.robots)
        wait_for(lambda: self.hub.fleet.robots.get(ROBOT) and self.hub.fleet.robots[ROBOT].online, TIMEOUT,
                 lambda: f"{ROBOT} online at the hub\n{self.logs()}")

    def start_hub_link(self, robot: str, namespace: str | None = None, **parameters):
        parameters = {
            "data_dir": str(self.directory / "data"), "robot_id": robot, "fleet": FLEET,
            "broker_port": self.broker.port, "heartbeat_period": 0.2, "status_period": 0.5,
            "hub_public_keys": [self.keys.public, str(self.keys.directory / "hub.ed25519.pub")],
            "robot_key": str(self.robots.key(robot)), **parameters}
        return self.group.start_node("hub_link", namespace=namespace or self.namespace, name=f"hub_link_{robot}",
                                     parameters=parameters)

    def second_robot(self) -> None:
        """Start robot2 once for the module (no mission engine of its own; two streams, one unmappable)."""
        if self.robot2 is None:
            self.robot2 = self.start_hub_link("robot2", namespace=self.namespace + "_2", mission_engine_timeout=2.0,
                                              streams=["tf: topic=tf type=tf2_msgs/msg/TFMessage",
                                                       "text: topic=text type=std_msgs/msg/String"],
                                              max_telemetry_bytes=256)
        wait_for(lambda: self.hub.fleet.robots.get("robot2") and self.hub.fleet.robots["robot2"].online, TIMEOUT,
                 lambda: f"robot2 online\n{self.logs()}")

    def diagnostics(self, robot: str = ROBOT, namespace: str | None = None) -> dict:
        status = self.probe.latest_status(f"{namespace or self.namespace}/hub_link_{robot}")
        return status_values(status) if status else {}

    def send(self, verb: str, body: dict, **options) -> dict:
        topic, command = self.keys.command(FLEET, options.pop("robot", ROBOT), verb, body, **options)
        self.hub.publish(topic, orjson.dumps(command))
        return command

    def logs(self) -> str:
        return "\n".join(f"--- {child.name} ({child.describe()})\n{child.log()[-2500:]}"
                         for child in self.group.children)

    def close(self) -> None:
        self.hub.close()
        self.group.stop_all()
        self.broker.stop()


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hub")
    group = ProcessGroup(directory)
    probe = RosProbe("hub_test_probe")
    probe.watch_diagnostics()
    stack = None
    try:
        stack = RobotStack(directory, group, probe, HubKeys(directory))
        yield stack
    finally:
        if stack is not None:
            stack.close()
        else:
            group.stop_all()
        probe.close()


def qai_hub(robot: RobotStack, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed("qai-hub")), "--port", str(robot.broker.port), "--fleet", FLEET,
                           "--robots", str(robot.robots.registry_dir), *args],
                          capture_output=True, text=True, timeout=timeout)


def spin_until(robot: RobotStack, predicate, what, timeout: float = TIMEOUT):
    return robot.probe.spin_until(predicate, timeout, lambda: f"{what() if callable(what) else what}\n{robot.logs()}")


# -- Telemetry ------------------------------------------------------------------------------------

def test_every_default_stream_type_round_trips_from_ros_to_the_hub(robot):
    from diagnostic_msgs.msg import KeyValue
    from nav_msgs.msg import Odometry
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import BatteryState

    from qai_interfaces.msg import Event

    node = robot.probe.node
    publishers = {"odom": node.create_publisher(Odometry, f"{robot.namespace}/odom", 10),
                  "battery_state": node.create_publisher(BatteryState, f"{robot.namespace}/battery_state", 10),
                  "events": node.create_publisher(Event, f"{robot.namespace}/events", 10)}
    odom = Odometry(child_frame_id="base_link")
    odom.header.frame_id = "odom"
    odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.orientation.w = 3.5, -1.25, 1.0
    odom.pose.covariance[0] = 0.02
    battery = BatteryState(voltage=15.1, percentage=0.72, temperature=math.nan, cell_voltage=[3.78, 3.77])
    event = Event(source="/io_engine", code="geofence", severity=Event.WARN, message="near the fence",
                  values=[KeyValue(key="distance", value="2.5")])
    sent = {"odom": odom, "battery_state": battery, "events": event}
    deadline = time.monotonic() + TIMEOUT
    while not all(robot.hub.on(f"/telemetry/{stream}") for stream in sent):
        assert time.monotonic() < deadline, f"telemetry at the hub: {[t for t, _ in robot.hub.messages][-20:]}"
        for stream, message in sent.items():
            publishers[stream].publish(message)
        robot.probe.spin_for(0.2)
    for stream, message in sent.items():
        received = robot.hub.on(f"/telemetry/{stream}")[0]
        assert received["type"] == codec.type_name(type(message))
        back = codec.from_dict(type(message), received["data"])
        # What went over DDS (float32 fields rounded), as the hub got it and as it decodes back.
        wire = deserialize_message(serialize_message(message), type(message))
        assert orjson.dumps(codec.to_dict(back)) == orjson.dumps(codec.to_dict(wire)), stream
    # The /diagnostics summary names every node of this robot; mission states come with the next test's mission.
    wait_for(lambda: any(f"{robot.namespace}/mission_engine" in m["data"]["nodes"]
                         for m in robot.hub.on("/telemetry/diagnostics")), TIMEOUT, "the diagnostics summary")
    values = robot.diagnostics()
    assert int(values["published"]) > 0 and values["state"] == "connected"
    assert float(values["rtt_ms"]) > 0


# -- Commands -------------------------------------------------------------------------------------

def test_a_signed_mission_from_qai_hub_is_run_to_success_by_the_mission_engine(robot, tmp_path):
    mission = tmp_path / "mission.yaml"
    mission.write_text(textwrap.dedent("""\
        name: hub test
        tasks:
          - id: first
            kind: wait
            parameters: {seconds: 0.4}
          - id: second
            kind: wait
            depends_on: [first]
            deadline_in: 120
            parameters: {seconds: 0.2}
        """))
    result = qai_hub(robot, "send-mission", str(mission), "--robot", ROBOT, "--key", robot.keys.private,
                     "--timeout", "60")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{robot.logs()}"
    assert "accepted" in result.stdout and "SUCCEEDED" in result.stdout
    assert "first            SUCCEEDED" in result.stdout and "second           SUCCEEDED" in result.stdout
    mission_id = next(line.split()[-1] for line in result.stdout.splitlines() if ": accepted " in line)
    wait_for(lambda: robot.hub.fleet.robots[ROBOT].missions.get(mission_id, {}).get("state") == 10, TIMEOUT,
             "the mission's SUCCEEDED state in the hub's mission_states telemetry")
    spin_until(robot, lambda: robot.diagnostics().get("commands_accepted", "0") != "0", "commands_accepted")


def test_forged_and_stale_commands_are_refused_with_replies_and_counters(robot):
    fresh = robot.send("get_state", {})
    robot.hub.wait_reply(fresh["id"], "done")
    forged = {
        "unsigned": {**robot.keys.command(FLEET, ROBOT, "get_state", {})[1], "signatures": []},
        "bad_signature": {**robot.keys.command(FLEET, ROBOT, "get_state", {"mission_id": "a"})[1],
                          "body": {"mission_id": "b"}},
        "unknown_key": robot.keys.command(FLEET, ROBOT, "get_state", {}, signer=robot.keys.intruder)[1],
        "wrong_robot": robot.keys.command(FLEET, "robot9", "get_state", {}, topic_robot=ROBOT)[1],
        "expired": robot.keys.command(FLEET, ROBOT, "get_state", {}, timestamp_ms=now_ms() - 120_000)[1],
        "replayed": fresh,
    }
    for reason, command in forged.items():
        robot.hub.publish(command_topic(FLEET, ROBOT, "get_state"), orjson.dumps(command))
        reply = robot.hub.wait_reply(command["id"], lambda r, reason=reason: r.get("reason") == reason)
        assert reply["status"] == "rejected" and reply["robot"] == ROBOT and reply["message"]
    spin_until(robot, lambda: all(robot.diagnostics().get(f"commands_rejected_{reason}") for reason in forged),
               lambda: f"every refusal counted on /diagnostics: {robot.diagnostics()}")
    assert len(robot.hub.replies(fresh["id"])) == 2  # answered once, then refused once as a replay


def test_oversized_malformed_and_unknown_commands_are_refused_and_nothing_else_is_lost(robot):
    topic = command_topic(FLEET, ROBOT, "get_state")
    before = len(robot.hub.on("/telemetry/diagnostics"))
    limit = next(spec.default for spec in HUB_PARAMETERS if spec.name == "max_command_bytes")
    cases = [(topic, b"{" + b" " * limit + b"}", "oversized"), (topic, b'{"v": 1, "id": "x1"', "malformed"),
             (topic, b"\xc3\x28", "malformed"), (topic, b'{"v":1}', "bad_schema")]
    for case_topic, payload, reason in cases:
        robot.hub.publish(case_topic, payload)
        wait_for(lambda reason=reason: sum(1 for p in robot.hub.on("/cmd/get_state/reply")
                                           if p.get("reason") == reason) >= 1, TIMEOUT, f"a {reason} refusal")
    unknown = robot.send("fly_to_the_moon", {})
    assert robot.hub.wait_reply(unknown["id"], "rejected")["reason"] == "unknown_verb"
    bad_body = robot.send("cancel_mission", {"mission": "m1"})
    assert "body.mission: unknown field" in robot.hub.wait_reply(bad_body["id"], "rejected")["message"]
    # The node kept running and kept everything else going.
    answered = robot.send("get_state", {})
    assert robot.hub.wait_reply(answered["id"], "done")["found"] is not None
    wait_for(lambda: len(robot.hub.on("/telemetry/diagnostics")) > before + 1, TIMEOUT, "telemetry going on")
    assert robot.hub_link.popen.poll() is None


def test_a_mission_the_engine_rejects_comes_back_with_its_errors_verbatim(robot):
    command = robot.send("submit_mission", {"mission": {"name": "bad", "tasks": [
        {"id": "go", "kind": "teleport"}, {"id": "self", "kind": "wait", "depends_on": ["self"],
                                           "parameters": {"seconds": 1}}]}})
    reply = robot.hub.wait_reply(command["id"], "rejected")
    assert reply["reason"] == "mission_rejected"
    assert "task 'go': kind: 'teleport' is not served by any running engine" in reply["message"]
    assert "task 'self': depends_on: a task cannot depend on itself" in reply["message"]
    malformed = robot.send("submit_mission", {"mission": {"tasks": [{"id": "a", "kind": "wait", "timeout": "soon"}]}})
    reply = robot.hub.wait_reply(malformed["id"], "rejected")
    assert reply["reason"] == "bad_schema" and "tasks[0] (a).timeout" in reply["message"]


def test_add_tasks_cancel_and_fleet_wide_state_reach_the_mission_engine(robot):
    submitted = robot.send("submit_mission", {"mission": {"id": "long-one", "tasks": [
        {"id": "hold", "kind": "wait", "parameters": {"seconds": 60}}]}})
    robot.hub.wait_reply(submitted["id"], "accepted")
    added = robot.send("add_tasks", {"mission_id": "long-one", "tasks": [
        {"id": "after", "kind": "wait", "depends_on": ["hold"], "parameters": {"seconds": 1}}]})
    assert robot.hub.wait_reply(added["id"], lambda r: r["status"] in ("done", "rejected"))["status"] == "done"
    # A command to the whole fleet is answered by this robot on its own reply topic.
    topic = command_topic(FLEET, "all", "get_state")
    everyone = robot.keys.command(FLEET, "all", "get_state", {"mission_id": "long-one"})[1]
    robot.hub.publish(topic, orjson.dumps(everyone))
    state = robot.hub.wait_reply(everyone["id"], "done")
    assert state["robot"] == ROBOT and [t["task_id"] for t in state["missions"][0]["tasks"]] == ["hold", "after"]
    result = qai_hub(robot, "cancel", "long-one", "--robot", ROBOT, "--reason", "test", "--key", robot.keys.private)
    assert result.returncode == 0, result.stdout + result.stderr
    final = robot.hub.wait_reply(submitted["id"], lambda r: r["status"] in ("canceled", "failed", "succeeded"))
    assert final["status"] == "canceled" and final["mission_id"] == "long-one"


def test_qai_hub_status_and_watch_show_the_robot(robot):
    mission = robot.send("submit_mission", {"mission": {"id": "shown-by-status", "tasks": [
        {"id": "w", "kind": "wait", "parameters": {"seconds": 0.1}}]}})
    robot.hub.wait_reply(mission["id"], "succeeded")
    status = qai_hub(robot, "status", "--robot", ROBOT, "--key", robot.keys.private)
    assert status.returncode == 0, status.stdout + status.stderr
    assert ROBOT in status.stdout and "online" in status.stdout and "shown-by-status" in status.stdout
    watch = qai_hub(robot, "watch", "--duration", "3", "--interval", "1")
    assert watch.returncode == 0, watch.stderr
    assert watch.stdout.count("fleet tf: 1 robot(s)") >= 2 and "online" in watch.stdout


def test_hub_keys_can_be_rotated_while_the_node_runs(robot):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    intruder_command = robot.send("get_state", {}, signer=robot.keys.intruder)
    assert robot.hub.wait_reply(intruder_command["id"], "rejected")["reason"] == "unknown_key"
    client = robot.probe.node.create_client(SetParameters, f"{robot.namespace}/hub_link_{ROBOT}/set_parameters")
    # A request sent before the client has matched the service can be lost: wait until it has.
    robot.probe.spin_until(client.service_is_ready, TIMEOUT, "hub_link's set_parameters service")
    value = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                           string_array_value=[robot.keys.public, str(robot.keys.directory / "intruder.pub")])
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name="hub_public_keys", value=value)]))
    robot.probe.spin_until(future.done, TIMEOUT, "the parameter service")
    assert future.result().results[0].successful
    again = robot.send("get_state", {}, signer=robot.keys.intruder)
    robot.hub.wait_reply(again["id"], "done")
    bad = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=["/nonexistent.pub"])
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name="hub_public_keys", value=bad)]))
    robot.probe.spin_until(future.done, TIMEOUT, "the parameter service")
    assert not future.result().results[0].successful and "no such file" in future.result().results[0].reason
    # The module's robot is shared: leave it with the keys it had.
    original = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                              string_array_value=[robot.keys.public, str(robot.keys.directory / "hub.ed25519.pub")])
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name="hub_public_keys", value=original)]))
    robot.probe.spin_until(future.done, TIMEOUT, "the parameter service")
    assert future.result().results[0].successful


def test_a_stream_the_codec_cannot_map_is_refused_and_reported_while_the_others_flow(robot):
    from std_msgs.msg import String

    robot.second_robot()
    refused = robot.hub.fleet.robots["robot2"].status["streams_refused"]
    assert "cannot import tf2_msgs.msg" in refused["tf"]
    name = f"{robot.namespace}_2/hub_link_robot2"
    spin_until(robot, lambda: robot.probe.latest_status(name) is not None
               and "stream tf refused" in robot.probe.latest_status(name).message, "the refusal on /diagnostics")
    assert status_level(robot.probe.latest_status(name)) == 1  # WARN
    publisher = robot.probe.node.create_publisher(String, f"{robot.namespace}_2/text", 10)
    deadline = time.monotonic() + TIMEOUT
    while not robot.hub.on("robot2/telemetry/text"):
        assert time.monotonic() < deadline, "the small message at the hub"
        publisher.publish(String(data="x" * 1000))  # too large for max_telemetry_bytes: counted, not sent
        publisher.publish(String(data="small"))
        robot.probe.spin_for(0.2)
    assert all(m["data"]["data"] == "small" for m in robot.hub.on("robot2/telemetry/text"))
    wait_for(lambda: robot.hub.fleet.robots["robot2"].status["streams"]["text"]["too_large"] > 0, TIMEOUT,
             "the oversized message counted")


def test_a_fleet_wide_mission_waits_for_every_online_robot_and_reports_each(robot, tmp_path):
    robot.second_robot()  # online without a mission engine of its own
    mission = tmp_path / "everyone.yaml"
    mission.write_text("tasks:\n  - {id: w, kind: wait, parameters: {seconds: 0.2}}\n")
    result = qai_hub(robot, "send-mission", str(mission), "--all", "--key", robot.keys.private, "--timeout", "60")
    assert f"to robot2, {ROBOT}" in result.stdout, result.stdout + result.stderr
    assert f"{ROBOT}: mission " in result.stdout and "SUCCEEDED" in result.stdout
    assert "robot2: REJECTED (engine_unavailable)" in result.stdout
    assert result.returncode == 3  # the worst outcome: a robot refused it


# -- Outages and crashes (each with its own broker and link) ----------------------------------------

def publish_numbers(probe: RosProbe, publisher, numbers, rate: float) -> None:
    from std_msgs.msg import UInt32

    for number in numbers:
        publisher.publish(UInt32(data=number))
        time.sleep(1.0 / rate)


def warm_up(probe: RosProbe, publisher, arrived) -> None:
    """Publish 0 until `arrived()`.

    A DDS writer may match its reader before the reader matches it, and the first samples are then lost
    before the link ever sees them; a test of the link starts after that.
    """
    from std_msgs.msg import UInt32

    deadline = time.monotonic() + TIMEOUT
    while not arrived():
        assert time.monotonic() < deadline, "the first number never reached hub_link"
        publisher.publish(UInt32(data=0))
        probe.spin_for(0.2)


def numbers_publisher(robot: RobotStack, topic: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import UInt32

    return robot.probe.node.create_publisher(UInt32, f"{robot.namespace}/{topic}",
                                             QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))


def test_a_stream_with_a_rate_sends_the_newest_message_at_each_turn_and_counts_the_older_ones_skipped(robot):
    from std_msgs.msg import UInt32

    link = robot.start_hub_link("r5", namespace=robot.namespace + "_5", streams=[
        "numbers: topic=numbers type=std_msgs/msg/UInt32 rate=2 qos=1 ros_qos=reliable depth=1000"])
    publisher = robot.probe.node.create_publisher(UInt32, f"{robot.namespace}_5/numbers", 1000)

    def numbers():
        return [m["data"]["data"] for m in robot.hub.on("r5/telemetry/numbers")]

    try:
        wait_for(lambda: robot.hub.fleet.robots.get("r5") and robot.hub.fleet.robots["r5"].online, TIMEOUT,
                 lambda: f"r5 online\n{link.log()}")
        warm_up(robot.probe, publisher, numbers)
        publish_numbers(robot.probe, publisher, range(1, 201), 100.0)  # 2 s at 100 Hz into a 2 Hz stream
        wait_for(lambda: 200 in numbers(), TIMEOUT, lambda: f"the last number at the hub: {numbers()}")
        sent = [n for n in numbers() if n > 0]
        assert sent == sorted(sent) and 2 <= len(sent) <= 8, sent  # the newest at each turn, about 2 a second
        counts = lambda: robot.hub.fleet.robots["r5"].status["streams"]["numbers"]  # noqa: E731
        wait_for(lambda: counts()["sent"] + counts()["skipped"] >= 200, TIMEOUT, lambda: f"counts {counts()}")
    finally:
        link.stop()


@pytest.mark.slow
def test_a_broker_stopped_for_10_s_mid_stream_loses_no_sequence_number(robot, tmp_path):
    port = free_port()
    broker = start_broker(tmp_path / "broker", port)
    hub = HubSubscriber(port, FLEET, robots=robot.robots)
    link = robot.group.start_node("hub_link", namespace=robot.namespace, name="hub_link_r3", parameters={
        "data_dir": str(tmp_path / "data"), "robot_id": "r3", "fleet": FLEET, "broker_port": port,
        "reconnect_max": 2.0, "robot_key": str(robot.robots.key("r3")),
        "streams": ["numbers: topic=numbers type=std_msgs/msg/UInt32 qos=1 ros_qos=reliable"]})
    publisher = numbers_publisher(robot, "numbers")
    try:
        wait_for(lambda: hub.fleet.robots.get("r3") and hub.fleet.robots["r3"].online, TIMEOUT,
                 lambda: f"r3 online\n{link.log()}")
        warm_up(robot.probe, publisher, lambda: hub.on("r3/telemetry/numbers"))
        publish_numbers(robot.probe, publisher, range(1, 250), 50.0)  # 5 s at 50 Hz
        broker.stop()  # SIGTERM: mosquitto saves the hub's session and what it had queued for it
        publish_numbers(robot.probe, publisher, range(250, 750), 50.0)  # 10 s with no broker
        broker = start_broker(tmp_path / "broker", port)
        publish_numbers(robot.probe, publisher, range(750, 1000), 50.0)
        wait_for(lambda: set(range(1000)) <= {m["data"]["data"] for m in hub.on("r3/telemetry/numbers")}, 60,
                 lambda: f"every number at the hub ({len(hub.fleet.robots['r3'].streams['numbers'].received)}); "
                 f"missing seqs {hub.fleet.robots['r3'].streams['numbers'].missing(1000)}; "
                 f"values {sorted(set(range(1000)) - {m['data']['data'] for m in hub.on('r3/telemetry/numbers')})}; "
                 f"status {hub.fleet.robots['r3'].status}")
        tracker = hub.fleet.robots["r3"].streams["numbers"]
        tracker.since = 1
        # Every sequence number arrived (duplicates, which QoS 1 allows after a reconnect, are counted apart).
        assert tracker.missing() == [] and tracker.dropped_count() == 0 and tracker.highest >= 1000
        assert hub.fleet.robots["r3"].status["link"]["connects"] >= 2
    finally:
        hub.close()
        link.stop()
        broker.stop()


@pytest.mark.slow
def test_a_restarted_hub_link_does_not_send_the_latched_mission_states_again(robot):
    """Send a latched mission state once, across hub_link restarts.

    The finding: after each hub_link restart the hub received older mission_states snapshots again (the
    latched topic's history) under new sequence numbers, and a hub that trusts the order showed finished tasks
    as running again.
    """

    def states():
        return {(m["data"]["mission_id"], m["data"]["header"]["stamp"]["sec"], m["data"]["header"]["stamp"]["nanosec"])
                for m in robot.hub.on(f"{ROBOT}/telemetry/mission_states")}

    wait_task = {"id": "w", "kind": "wait", "parameters": {"seconds": 0.1}}
    command = robot.send("submit_mission", {"mission": {"tasks": [wait_task]}})
    wait_for(lambda: any(r.get("status") == "succeeded" for r in robot.hub.replies(command["id"])), TIMEOUT,
             lambda: f"the mission's result\n{robot.logs()}")
    robot.probe.spin_for(1.5)  # the replay filter's file is written every second
    before, seen = len(robot.hub.on(f"{ROBOT}/telemetry/mission_states")), states()
    os.kill(robot.hub_link.pid, signal.SIGKILL)
    robot.hub_link.wait(10)
    connects = robot.hub.fleet.robots[ROBOT].status.get("link", {}).get("connects")
    robot.hub_link = robot.start_hub_link(ROBOT)
    wait_for(lambda: robot.hub.fleet.robots[ROBOT].online and robot.hub.fleet.robots[ROBOT].status.get(
        "link", {}).get("connects") != connects, TIMEOUT, lambda: f"the restarted link online\n{robot.logs()}")
    spin_until(robot, lambda: int(robot.diagnostics().get("published", "0")) > 5, "the link publishing again")
    robot.probe.spin_for(2.0)
    again = [m for m in robot.hub.on(f"{ROBOT}/telemetry/mission_states")[before:]
             if (m["data"]["mission_id"], m["data"]["header"]["stamp"]["sec"],
                 m["data"]["header"]["stamp"]["nanosec"]) in seen]
    assert again == [], f"{len(again)} mission states sent again after the restart"


def test_sigkill_with_a_full_queue_then_a_restart_loses_nothing(robot, tmp_path):
    port = free_port()
    parameters = {"data_dir": str(tmp_path / "data"), "robot_id": "r4", "fleet": FLEET, "broker_port": port,
                  "queue_max_messages": 300, "heartbeat_period": 0.2, "robot_key": str(robot.robots.key("r4")),
                  "seal_period": 60.0,  # no seal in the queue while it is counted
                  # depth: a loaded machine may stall the link longer than the default 100 messages (0.5 s here)
                  # last, and ROS's history, not the link's queue, would then drop what this test counts.
                  "streams": ["numbers: topic=numbers4 type=std_msgs/msg/UInt32 qos=1 priority=2 ros_qos=reliable "
                              "depth=1000"]}
    link = robot.group.start_node("hub_link", namespace=robot.namespace, name="hub_link_r4", parameters=parameters)
    publisher = numbers_publisher(robot, "numbers4")
    warm_up(robot.probe, publisher, lambda: int(robot.diagnostics("r4").get("queue_depth", "0")) > 0)
    time.sleep(0.5)
    robot.probe.spin_for(0.5)
    warm = int(robot.diagnostics("r4")["queue_depth"])  # copies of 0 the link queued (seqs 1..warm)
    publish_numbers(robot.probe, publisher, range(1, 500), 200.0)
    total = warm + 499
    spin_until(robot, lambda: robot.diagnostics("r4").get("queue_depth") == "301"
               and robot.diagnostics("r4").get("dropped_queue_full") == str(total - 300),
               lambda: f"a full queue: {robot.diagnostics('r4')}")  # 300 numbers and the report of the rest
    os.kill(link.pid, signal.SIGKILL)
    assert link.wait(10) == -signal.SIGKILL
    broker = start_broker(tmp_path / "broker", port)
    hub = HubSubscriber(port, FLEET, robots=robot.robots)
    restarted = robot.group.start_node("hub_link", namespace=robot.namespace, name="hub_link_r4",
                                       parameters=parameters)
    try:
        wait_for(lambda: hub.fleet.robots.get("r4") and "numbers" in hub.fleet.robots["r4"].streams
                 and len(hub.fleet.robots["r4"].streams["numbers"].received) >= 300, 60,
                 lambda: f"the queue after the restart\n{restarted.log()}")
        dropped = total - 300
        wait_for(lambda: hub.fleet.robots["r4"].streams["numbers"].dropped_count() == dropped, TIMEOUT,
                 "the drop report")
        tracker = hub.fleet.robots["r4"].streams["numbers"]
        tracker.since = 1
        assert tracker.missing(total) == []
        assert tracker.dropped.ranges == [(1, dropped)] and tracker.drop_reasons == {"queue_full": dropped}
        assert sorted({m["data"]["data"] for m in hub.on("r4/telemetry/numbers")}) == list(range(200, 500))
        # The sequence goes on from where it was: no number is used twice across the restart.
        warm_up(robot.probe, publisher, lambda: any(m["data"]["data"] == 0 and m["seq"] > total
                                                    for m in hub.on("r4/telemetry/numbers")))
        assert min(m["seq"] for m in hub.on("r4/telemetry/numbers") if m["seq"] > total) == total + 1
    finally:
        hub.close()
        restarted.stop()
        broker.stop()


@pytest.mark.slow
def test_qai_edge_up_starts_the_local_broker_locked_restarts_it_when_it_dies_and_stops_it(
        robot, tmp_path, processes):
    port, hub_port = free_port(), free_port()
    namespace = unique_namespace()
    profile = tmp_path / "profile.yaml"
    profile.write_text(textwrap.dedent(f"""\
        namespace: {namespace}
        robot_id: uprobot
        defaults: {{heartbeat_period: 0.2}}
        supervisor: {{sigterm_timeout: 3, sigkill_timeout: 3, initial_backoff: 0.5}}
        broker: {{port: {port}, hub_port: {hub_port}, data_dir: {tmp_path / 'broker'}}}
        nodes:
          mission_engine: {{parameters: {{data_dir: {tmp_path / 'data'}}}}}
          hub_link: {{parameters: {{broker_port: {port}, fleet: {FLEET}, data_dir: {tmp_path / 'data'},
                                   hub_public_keys: ["{robot.keys.public}"], reconnect_max: 1.0,
                                   robot_key: "{robot.robots.key('uprobot')}"}}}}
        """))
    up = processes.start_cli("up", "up", "--profile", str(profile))
    wait_for(lambda: "MQTT broker started" in up.log(), TIMEOUT, lambda: up.log())
    broker_pid = int(up.log().split("MQTT broker started")[1].split("pid ")[1].split(",")[0])
    # Locked: an anonymous client, or the robot's own account on the hub's listener, is refused.
    with pytest.raises(AssertionError):
        HubSubscriber(port, FLEET, robots=robot.robots, connect_timeout=3)
    hub_password = tmp_path / "broker" / "accounts" / "hub.password"
    hub = HubSubscriber(hub_port, FLEET, robots=robot.robots, username="hub", password_file=str(hub_password))
    try:
        wait_for(lambda: hub.fleet.robots.get("uprobot") and hub.fleet.robots["uprobot"].online, TIMEOUT,
                 lambda: f"uprobot online\n{up.log()}")
        os.kill(broker_pid, signal.SIGKILL)  # as a crash would: supervised like any node, it comes back
        wait_for(lambda: "MQTT broker started again" in up.log(), TIMEOUT, lambda: up.log())
        broker_pid = int(up.log().split("MQTT broker started again (pid ")[1].split(")")[0])
        topic, command = robot.keys.command(FLEET, "uprobot", "submit_mission", {"mission": {"tasks": [
            {"id": "w", "kind": "wait", "parameters": {"seconds": 0.2}}]}})
        deadline = time.monotonic() + TIMEOUT
        while not hub.replies(command["id"]):  # until the robot is back on the restarted broker
            assert time.monotonic() < deadline, f"an answer after the broker's restart\n{up.log()}"
            topic, command = robot.keys.command(FLEET, "uprobot", "submit_mission", {"mission": {"tasks": [
                {"id": "w", "kind": "wait", "parameters": {"seconds": 0.2}}]}})
            hub.publish(topic, orjson.dumps(command))
            time.sleep(1.0)  # a new command each second: one sent while the robot was away has no one to answer
        try:
            hub.wait_reply(command["id"], "succeeded")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{up.log()}") from None
    finally:
        hub.close()
    up.popen.send_signal(signal.SIGINT)
    assert up.wait(30) == 0, up.log()
    assert "MQTT broker stopped" in up.log()
    wait_for(lambda: not port_open("127.0.0.1", port), 10, "the broker's port to close")
    with pytest.raises(ProcessLookupError):
        os.kill(broker_pid, 0)
