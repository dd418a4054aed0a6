"""Hostile messages through a real broker into a running `qai-hub serve`: the hub stays up, bounded and right.

The broker is open here and passes packets of up to 16 MiB (the worst case: anyone may publish anywhere, as
through a compromised or carelessly configured broker, and the hub's own limits are what stop a payload). One
good robot reports as hub_link does, and an attacker publishes each case below: malformed payloads, payloads
of the wrong types or sizes on every topic, forged and misattributed signed messages, and what a compromised
(enrolled) robot may sign itself. After each case: `/healthz` answers, `/api/snapshot` answers 200 with
JSON, the good robot's next position is shown, and the server's memory stays bounded.
"""

from __future__ import annotations

import time

import orjson
import paho.mqtt.client as mqtt
import psutil
import pytest

from dashboard_stack import Client, write_login_file
from fake_robots import FakeRobot, stamp_of
from harness import wait_for
from hub_stack import HubKeys, start_broker
from qai_hub.client import BrokerOptions
from qai_hub.dashboard_process import start_dashboard
from robot_identity import TestRobots

pytestmark = pytest.mark.xdist_group("test_hub_hostile")
FLEET = "hostile"
MAX_RSS = 400 << 20  # bytes: the server idles at about 60 MB; a case that expands what it is sent goes far past


class Attacker:
    """Publishes what it likes, raw or signed with a compromised robot's key ("rogue", enrolled on the hub)."""

    def __init__(self, port: int, robots: TestRobots):
        self.robots, self.port = robots, port
        self.client = self._connect()

    def _connect(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.disconnects = 0
        client.on_disconnect = lambda *_: setattr(self, "disconnects", self.disconnects + 1)
        client.connect("127.0.0.1", self.port, clean_start=True)
        client.loop_start()
        wait_for(client.is_connected, 10, "the attacker's connection")
        return client

    def raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's answer.

        Where the broker drops the connection instead (a packet over its size limit: its right, and the attack
        is done), start a clean one rather than have paho send that packet again.
        """
        disconnects = self.disconnects
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: self.disconnects > disconnects or info.is_published(), 30, f"the broker's answer on {topic}",
                 interval=0.001)
        if self.disconnects > disconnects:
            self.close()
            self.client = self._connect()

    def batch(self, messages) -> None:
        """Publish (topic, payload) pairs at QoS 1 without waiting on each, then wait for the broker to take all."""
        sent = [self.client.publish(topic, payload, qos=1) for topic, payload in messages]
        wait_for(lambda: all(info.is_published() for info in sent[-100:]), 60, "the broker taking the batch")

    def signed(self, robot: str, topic: str, message, retain: bool = False, as_topic: str | None = None) -> None:
        """Publish `message` signed with `robot`'s key (for `as_topic`, default the topic itself)."""
        data = message if isinstance(message, bytes) else orjson.dumps(message)
        self.raw(topic, self.robots.sign(robot, as_topic or topic, data), retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def telemetry(seq: int, type_name: str, data, stamp: float = 1.0) -> dict:
    return {"seq": seq, "stamp": stamp, "type": type_name, "data": data}


def mission(seq: int, **fields) -> dict:
    data = {"header": {"stamp": stamp_of(time.time())}, "mission_id": f"m{seq}", "state": 1, "tasks": [], **fields}
    return telemetry(seq, "qai_interfaces/msg/MissionState", data)


def task(task_id="t", **fields) -> dict:
    return {"task_id": task_id, "kind": "wait", "state": 2, **fields}


def odometry(seq: int, x) -> dict:
    return telemetry(seq, "nav_msgs/msg/Odometry", {"header": {"stamp": stamp_of(time.time())},
                                                    "pose": {"pose": {"position": {"x": x, "y": 0.0, "z": 1.0}}}})


T = f"qai/{FLEET}"
HOSTILE = "\x1b[2J\x1b]0;owned\x07[bold red]FAKE[/]<img src=x onerror=alert(1)>\u202e"
SEQ = iter(range(1, 10**9))


def cases():
    """Each case: a name and what the attacker does (a function of the Attacker)."""

    def rogue(stream: str, type_name: str, data) -> callable:
        """Sign telemetry as the compromised robot: checked all the same."""
        return lambda a: a.signed("rogue", f"{T}/rogue/telemetry/{stream}", telemetry(next(SEQ), type_name, data))

    def rogue_mission(**fields) -> callable:
        return lambda a: a.signed("rogue", f"{T}/rogue/telemetry/mission_states", mission(next(SEQ), **fields))

    def raw(topic: str, message) -> callable:
        return lambda a: a.raw(f"{T}/{topic}", message if isinstance(message, bytes) else orjson.dumps(message))

    def rogue_signed(topic: str, message, as_topic: str | None = None) -> callable:
        return lambda a: a.signed("rogue", f"{T}/{topic}", message, as_topic=as_topic and f"{T}/{as_topic}")

    capabilities = "qai_interfaces/msg/EngineCapabilities"
    schema = orjson.dumps({"x-geofence": {"polygon": [[i, i] for i in range(20000)]}}).decode()
    huge_route = "[" + "[1,2,3]," * 1_400_000 + "[1,2,3]]"
    reply = {"id": "q1", "verb": "submit_mission", "robot": "good", "status": "succeeded"}
    return [
        # The findings of the issue.
        ("mission state of [] (500 for good)", rogue_mission(state=[])),
        ("mission state of 'x' (watch died)", rogue_mission(state="x")),
        ("drop report of 10^11 numbers (3 GB)", rogue("drops", "qai/DropReport", {
            "stream": "odom", "reason": "expired", "ranges": [[1, 100_000_000_000]]})),
        ("drop report from 0", rogue("drops", "qai/DropReport", {
            "stream": "odom", "reason": "expired", "ranges": [[0, 100_000_000_000]]})),
        ("forged reply, unsigned", raw("good/cmd/submit_mission/reply", reply)),
        ("reply signed by another robot", rogue_signed("good/cmd/submit_mission/reply", reply)),
        ("1000 retained statuses of unknown robots", lambda a: [a.raw(f"{T}/fake{i}/status", orjson.dumps(
            {"state": "online", "robot": f"fake{i}"}), retain=True) for i in range(1000)]),
        ("terminal escapes and markup in a name", rogue_mission(name=HOSTILE, message=HOSTILE)),
        # Not JSON, or not an object.
        ("not UTF-8", raw("good/telemetry/odom", b"\xff\xfe\xfd")),
        ("empty payload", raw("good/status", b"")),
        ("a JSON array", raw("good/telemetry/odom", b"[1, 2, 3]")),
        ("nested 10,000 deep", raw("good/telemetry/odom", b"[" * 10000 + b"]" * 10000)),
        ("3 MB payload", raw("good/telemetry/odom", b'{"x":"' + b"y" * (3 << 20) + b'"}')),
        ("duplicate keys, NaN literal", raw("good/telemetry/odom", b'{"seq":1,"seq":NaN}')),
        # Telemetry of the wrong shape (sealed streams: shown only if they fit).
        ("seq 0", raw("good/telemetry/odom", odometry(0, 5.0))),
        ("seq 2^60", raw("good/telemetry/odom", odometry(2**60, 5.0))),
        ("seq as a string", raw("good/telemetry/odom", {**odometry(1, 5.0), "seq": "1"})),
        ("position as strings", raw("good/telemetry/odom", odometry(2**40, "far"))),
        ("position 1e308", raw("rogue/telemetry/odom", odometry(2**41, 1e308))),
        ("type that is not a type", raw("good/telemetry/odom", {**odometry(2**42, 1.0), "type": "../../etc/passwd"})),
        ("battery of the wrong types", raw("rogue/telemetry/battery_state", telemetry(
            1, "sensor_msgs/msg/BatteryState", {"percentage": "full", "voltage": [1]}))),
        ("diagnostics with 100,000 nodes", raw("rogue/telemetry/diagnostics", telemetry(
            1, "diagnostic_msgs/msg/DiagnosticArray", {"nodes": {str(i): {"level": 0} for i in range(100000)}}))),
        ("diagnostics level 999", raw("rogue/telemetry/diagnostics", telemetry(
            2, "diagnostic_msgs/msg/DiagnosticArray", {"nodes": {"/n": {"level": 999}}}))),
        ("an engine with 10,000 kinds", raw("rogue/telemetry/capabilities", telemetry(
            1, capabilities, {"engine": "/e", "kinds": [{"name": f"k{i}"} for i in range(10000)]}))),
        ("a kind schema of 1 MB", raw("rogue/telemetry/capabilities", telemetry(
            2, capabilities, {"engine": "/e", "kinds": [{"name": "k", "parameters_schema": " " * (1 << 20)}]}))),
        ("a geofence of 20,000 points", raw("rogue/telemetry/capabilities", telemetry(
            3, capabilities, {"engine": "/e2", "kinds": [{"name": "k", "parameters_schema": schema}]}))),
        # What a compromised robot may sign itself: still checked, still bounded.
        ("an event of 1 MB with escapes", rogue("events", "qai_interfaces/msg/Event", {
            "code": "x", "severity": 2, "message": HOSTILE * 30000})),
        ("an event with 10,000 values", rogue("events", "qai_interfaces/msg/Event", {
            "code": "x", "values": [{"key": "k", "value": "v"}] * 10000})),
        ("a mission of 20,000 tasks", rogue_mission(tasks=[task(f"t{i}") for i in range(20000)])),
        ("a mission of 9,000 tasks of 50 edges", rogue_mission(tasks=[
            task(f"t{i}", depends_on=[f"t{j}" for j in range(50)]) for i in range(9000)])),
        ("a task id with spaces and escapes", rogue_mission(tasks=[task("a b\x1b[2J")])),
        ("a mission id of 10 KB", rogue_mission(mission_id="m" * 10000)),
        ("a task result value of 10 MB", rogue_mission(tasks=[task(
            result=[{"key": "waypoints", "value": huge_route}])])),
        ("2,000 missions in a row", lambda a: [rogue_mission(mission_id=f"many{i}")(a) for i in range(2000)]),
        ("10,000 stream names", lambda a: a.batch((f"{T}/rogue/telemetry/s{i}", orjson.dumps(
            telemetry(1, "a/msg/B", {}))) for i in range(10000))),
        ("a seal of 10,000 digests", rogue("seals", "qai/Seal", {
            "streams": {"odom": [[i, "0" * 32] for i in range(1, 10001)]}})),
        ("a seal that contradicts the good robot", rogue_signed("good/telemetry/seals", telemetry(
            1, "qai/Seal", {"streams": {"odom": [[1, "f" * 32]]}}))),
        ("telemetry on the drops stream of another type", rogue("drops", "nav_msgs/msg/Odometry", {})),
        # Signed envelopes that do not hold.
        ("a signed status replayed on another robot's topic", rogue_signed(
            "good/status", {"state": "offline", "robot": "good"}, as_topic="rogue/status")),
        ("a signed envelope with a wrong version", raw("rogue/status", {"v": 99, "msg": "{}", "signatures": []})),
        ("an envelope whose message is not JSON", rogue_signed("rogue/status", b"not json")),
        ("an envelope with 1,000 signatures", raw("rogue/status", {
            "v": 1, "msg": "{}", "signatures": [{"alg": "ML-DSA-65", "key": "0" * 16, "sig": "AA=="}] * 1000})),
        ("a status of the wrong types", rogue_signed("rogue/status", {
            "state": "online", "robot": "rogue", "link": {"rtt_ms": "fast", "dropped": [1]}, "streams": "x"})),
        ("a status of 1 MB", rogue_signed("rogue/status", {"state": "online", "robot": "rogue",
                                                           "reason": "r" * (1 << 20)})),
        ("a reply with 10,000 updated tasks", rogue_signed("rogue/cmd/submit_mission/reply", {
            "id": "q2", "verb": "submit_mission", "robot": "rogue", "status": "progress",
            "feedback": {"updated_tasks": [task(f"t{i}") for i in range(10000)]}})),
        ("a get_state answer with 1,000 missions", rogue_signed("rogue/cmd/get_state/reply", {
            "id": "q3", "verb": "get_state", "robot": "rogue", "status": "done",
            "missions": [mission(i)["data"] for i in range(1000)]})),
        ("a flood of 20,000 odometry messages", lambda a: [a.client.publish(
            f"{T}/rogue/telemetry/odom", orjson.dumps(odometry(100_000 + i, float(i))), qos=0)
            for i in range(20000)]),
    ]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    # A broker that passes what its 1 MiB limit would stop, so the hub's own limits are what is tried.
    broker = start_broker(directory / "broker", extra_config="message_size_limit 16777216\n")
    keys, robots = HubKeys(directory), TestRobots(directory / "robots")
    robots.key("good"), robots.key("rogue")
    dashboard = start_dashboard(write_login_file(directory), broker=BrokerOptions(port=broker.port), fleet=FLEET,
                                robots=robots.registry_dir, key=keys.private, log_path=directory / "dashboard.log")
    good = FakeRobot(broker.port, FLEET, "good", robots=robots, seal_every=1)
    attacker = Attacker(broker.port, robots)
    client = Client(dashboard.url)
    try:
        good.status()
        client.login()
        yield {"dashboard": dashboard, "good": good, "attacker": attacker, "client": client,
               "process": psutil.Process(dashboard.process.pid)}
    finally:
        attacker.close()
        good.close()
        dashboard.stop()
        broker.stop()


def shown_x(client: Client) -> float | None:
    status, snapshot, _ = client.request("GET", "/api/snapshot")
    assert status == 200, snapshot
    pose = snapshot["poses"].get("good")
    return pose["x"] if pose else None


@pytest.mark.parametrize("name, attack", cases(), ids=[name for name, _ in cases()])
def test_a_hostile_message_leaves_the_hub_up_bounded_and_showing_the_good_robot(hub, name, attack):
    attack(hub["attacker"])
    x = float(next(SEQ))
    hub["good"].odom(x, 0.0, 1.0)  # the good robot's next update, after the attack in the broker's order
    wait_for(lambda: shown_x(hub["client"]) == x, 30, lambda: f"the good robot at x={x} after {name}\n"
             f"{hub['dashboard'].log()[-2000:]}")
    status, health, _ = hub["client"].request("GET", "/healthz")
    assert status == 200, health
    assert hub["process"].memory_info().rss < MAX_RSS
    assert hub["dashboard"].process.poll() is None


def test_the_hub_counts_what_it_refused_logs_it_bounded_and_admits_no_stranger(hub):
    _, before, _ = hub["client"].request("GET", "/api/stats")
    attacks = dict(cases())
    for name in ("1000 retained statuses of unknown robots", "not UTF-8", "a status of the wrong types",
                 "a signed status replayed on another robot's topic"):
        attacks[name](hub["attacker"])
    x = float(next(SEQ))
    hub["good"].odom(x, 0.0, 1.0)
    wait_for(lambda: shown_x(hub["client"]) == x, 30, "the good robot's next position")
    status, stats, _ = hub["client"].request("GET", "/api/stats")
    assert status == 200
    assert stats["malformed"] >= before["malformed"] + 3, stats
    assert stats["refused_robots"] >= before["refused_robots"] + 1000, stats
    assert stats["robots"] <= 2
    status, snapshot, _ = hub["client"].request("GET", "/api/snapshot")
    # No stranger among them; "rogue" is there once an earlier case's message of its was accepted (it was
    # missing once in make test: which case admits it depends on what the broker delivered, not on this test).
    assert "good" in snapshot["robots"] and set(snapshot["robots"]) <= {"good", "rogue"}, snapshot["robots"]
    security = [event for event in snapshot["events"] if event["kind"] == "security"]
    assert security and all(len(event["text"]) < 5000 for event in security)
    assert snapshot["robots"]["good"]["state"] == "online"  # the replayed "offline" did not take
