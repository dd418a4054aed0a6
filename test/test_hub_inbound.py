"""Whatever arrives on the broker, the hub stays whole: generated input against every place that reads it.

Hypothesis makes payloads for every topic the hub reads (status, replies, every telemetry type it shows,
drop reports, seals), well-formed and broken in every field, signed by an enrolled robot or not, and feeds
them to the fleet model, the dashboard's feed and the CLI's views. Whatever the input: nothing raises; what
does not fit is refused (counted, a security event) and changes nothing; what is kept stays within its
bounds; the dashboard's snapshot still serialises; a terminal gets no control character or rich markup from
a robot. The findings of the issue are tests of their own (they failed before the hub checked its input).
"""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from qai_hub.cli import _reply_text, render_fleet, render_missions, shown
from qai_hub.dashboard_feed import DashboardFeed, FeedLimits
from qai_hub.fleet import Fleet
from qai_hub.inbound import InboundLimits
from robot_identity import shared_robots

FLEET = "f"
ROBOTS = shared_robots()
ROBOTS.key("r1"), ROBOTS.key("r2")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# -- Strategies -----------------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=50),
                    st.sampled_from(["\x1b[31mred", "[bold red]x[/]", "\u202eevil", "a" * 5000, "", "0", "-1"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=30)


def maybe(value_strategy):
    """Make a field's value: most often a good one, else anything JSON can hold."""
    return st.one_of(value_strategy, value_strategy, json_values)


stamps = st.fixed_dictionaries({"sec": maybe(st.integers(0, 2**31 - 1)), "nanosec": maybe(st.integers(0, 10**9 - 1))})
headers = st.fixed_dictionaries({"stamp": maybe(stamps)})
ids = st.one_of(st.from_regex(r"\A[a-z0-9_-]{1,20}\Z"), json_values)
texts = st.one_of(st.text(max_size=200), st.sampled_from(["\x1b]0;pwned\x07", "[link=file:///etc]x[/link]"]))
tasks = st.fixed_dictionaries({
    "task_id": ids, "kind": ids, "state": maybe(st.sampled_from([0, 1, 2, 3, 4, 10, 11, 12, 13])),
    "depends_on": maybe(st.lists(ids, max_size=5)), "message": maybe(texts), "progress": json_values,
    "attempt": maybe(st.integers(0, 5)), "engine": ids, "started": maybe(stamps), "finished": maybe(stamps),
    "result": maybe(st.lists(st.fixed_dictionaries({"key": ids, "value": maybe(texts)}), max_size=3))})
mission_states = st.fixed_dictionaries({
    "header": maybe(headers), "mission_id": ids, "name": maybe(texts),
    "state": maybe(st.sampled_from([0, 1, 2, 10, 11, 12, 13])), "message": maybe(texts),
    "tasks_total": maybe(st.integers(0, 50)), "tasks_succeeded": maybe(st.integers(0, 50)),
    "tasks": maybe(st.lists(tasks, max_size=6))})
vectors = st.fixed_dictionaries({axis: maybe(st.floats(-1e6, 1e6)) for axis in "xyz"})
odometry = st.fixed_dictionaries({"header": maybe(headers), "pose": maybe(st.fixed_dictionaries({"pose": maybe(
    st.fixed_dictionaries({"position": maybe(vectors), "orientation": maybe(vectors)}))})),
    "twist": maybe(st.fixed_dictionaries({"twist": maybe(st.fixed_dictionaries({"linear": maybe(vectors)}))}))})
batteries = st.fixed_dictionaries({"header": maybe(headers), "percentage": maybe(st.floats(0, 1)),
                                   "voltage": maybe(st.floats(0, 30))})
diagnostics = st.fixed_dictionaries({"worst": json_values, "nodes": maybe(st.dictionaries(
    st.text(max_size=30), st.fixed_dictionaries({"level": maybe(st.integers(0, 3)), "message": maybe(texts)}),
    max_size=5))})
events = st.fixed_dictionaries({"header": maybe(headers), "code": ids, "severity": maybe(st.integers(0, 2)),
                                "message": maybe(texts), "source": maybe(texts)})
capabilities = st.fixed_dictionaries({"header": maybe(headers), "engine": ids, "kinds": maybe(st.lists(
    st.fixed_dictionaries({"name": ids, "parameters_schema": maybe(st.just(
        '{"x-geofence": {"polygon": [[0, 0], [1, 0], [1, 1]]}}'))}), max_size=3))})
drop_reports = st.fixed_dictionaries({"stream": maybe(st.sampled_from(["odom", "battery_state"])),
                                      "reason": maybe(st.sampled_from(["queue_full", "expired"])),
                                      "ranges": maybe(st.lists(st.lists(st.integers(-5, 2**60), min_size=2,
                                                                        max_size=2), max_size=4))})
TELEMETRY = {
    "mission_states": ("qai_interfaces/msg/MissionState", mission_states),
    "odom": ("nav_msgs/msg/Odometry", odometry),
    "battery_state": ("sensor_msgs/msg/BatteryState", batteries),
    "diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", diagnostics),
    "events": ("qai_interfaces/msg/Event", events),
    "capabilities": ("qai_interfaces/msg/EngineCapabilities", capabilities),
    "drops": ("qai/DropReport", drop_reports),
}


@st.composite
def robot_messages(draw) -> tuple[str, bytes]:
    """One message on a robot's topic: a status, a reply or telemetry, well-formed or not, signed or not."""
    robot = draw(st.sampled_from(["r1", "r2", "stranger"]))
    kind = draw(st.sampled_from(["status", "reply", "telemetry", "telemetry", "telemetry", "raw"]))
    if kind == "status":
        topic = f"qai/{FLEET}/{robot}/status"
        message = draw(st.fixed_dictionaries({
            "state": maybe(st.sampled_from(["online", "offline"])), "robot": maybe(st.just(robot)),
            "stamp": json_values, "link": maybe(st.fixed_dictionaries({"rtt_ms": json_values, "dropped": json_values})),
            "missions": json_values, "streams": json_values,
            "sent": st.one_of(json_values, st.dictionaries(st.sampled_from(sorted(TELEMETRY)), st.one_of(
                st.integers(-5, 2**60), json_values), max_size=4))}))
    elif kind == "reply":
        verb = draw(st.sampled_from(["submit_mission", "get_state", "cancel_mission"]))
        topic = f"qai/{FLEET}/{robot}/cmd/{verb}/reply"
        message = draw(st.fixed_dictionaries({
            "id": ids, "verb": maybe(st.just(verb)), "robot": maybe(st.just(robot)),
            "status": maybe(st.sampled_from(["accepted", "progress", "succeeded", "rejected", "done"])),
            "message": maybe(texts),
            "result": maybe(st.fixed_dictionaries({"tasks": maybe(st.lists(tasks, max_size=3))})),
            "missions": maybe(st.lists(mission_states, max_size=2))}))
    elif kind == "telemetry":
        stream = draw(st.sampled_from(sorted(TELEMETRY)))
        type_name, data = TELEMETRY[stream]
        topic = f"qai/{FLEET}/{robot}/telemetry/{stream}"
        message = draw(st.fixed_dictionaries({"seq": maybe(st.integers(1, 1000)), "stamp": maybe(st.floats(0, 2e9)),
                                              "type": maybe(st.just(type_name)), "data": maybe(data)}))
    else:
        topic = f"qai/{FLEET}/{robot}/" + draw(st.sampled_from(["status", "telemetry/odom", "cmd/x/reply"]))
        return topic, draw(st.binary(max_size=300))
    payload = orjson.dumps(message)
    if draw(st.booleans()) and robot != "stranger":
        payload = ROBOTS.sign(robot, topic, payload)  # signed by the robot the topic names
    return topic, payload


# -- Properties -----------------------------------------------------------------------------------------

def check_bounds(fleet: Fleet) -> None:
    assert len(fleet.robots) <= 2  # only enrolled robots take a slot
    for robot in fleet.robots.values():
        assert len(robot.missions) <= fleet.keep_missions and len(robot.streams) <= fleet.max_streams
        for mission in robot.missions.values():
            assert isinstance(mission["state"], int) and isinstance(mission["tasks"], list)
            assert all(isinstance(t["task_id"], str) and isinstance(t["state"], int) for t in mission["tasks"])
        assert robot.status == {} or robot.status["state"] in ("online", "offline")


def check_terminal(text: str) -> None:
    assert not CONTROL.search(text.replace("\n", "")), repr(text)


@SETTINGS
@given(st.lists(robot_messages(), max_size=25))
def test_the_fleet_model_takes_any_messages_and_keeps_only_what_fits(messages):
    fleet = Fleet(FLEET, ROBOTS.registry, keep_missions=3, max_streams=4)
    for topic, payload in messages:
        change = fleet.on_message(topic, payload, now=1000.0)
        if change is not None and change.kind == "refused":
            assert change.message.why  # says why
    check_bounds(fleet)


@SETTINGS
@given(st.lists(robot_messages(), max_size=25))
def test_the_dashboard_feed_takes_any_messages_and_its_snapshot_always_serialises(messages):
    feed = DashboardFeed(FLEET, ROBOTS.registry, FeedLimits(max_text=40))
    for topic, payload in messages:
        for op in feed.on_message(topic, payload, now=1000.0):
            orjson.dumps(op)
    snapshot = orjson.dumps(feed.snapshot())
    assert len(snapshot) < 4 << 20
    check_bounds(feed.fleet)


@SETTINGS
@given(st.lists(robot_messages(), max_size=25))
def test_the_cli_views_render_any_fleet_without_control_characters(messages):
    fleet = Fleet(FLEET, ROBOTS.registry)
    replies = []
    for topic, payload in messages:
        change = fleet.on_message(topic, payload, now=1000.0)
        if change is not None and change.kind == "reply":
            replies.append(change.data)
    console = Console(width=200, record=True, color_system=None, force_terminal=False)
    console.print(render_fleet(fleet))
    for robot in fleet.robots.values():
        console.print(render_missions(robot.name, list(robot.missions.values())))
    check_terminal(console.export_text())
    for reply in replies:
        check_terminal(_reply_text(reply))


# -- The findings, one by one ------------------------------------------------------------------------------

def signed(topic: str, message: dict) -> tuple[str, bytes]:
    return topic, ROBOTS.as_robot(topic, orjson.dumps(message))


def mission_message(state) -> tuple[str, bytes]:
    return signed(f"qai/{FLEET}/r1/telemetry/mission_states", {
        "seq": 1, "stamp": 1.0, "type": "qai_interfaces/msg/MissionState",
        "data": {"header": {"stamp": {"sec": 1, "nanosec": 0}}, "mission_id": "m", "state": state, "tasks": []}})


@pytest.mark.parametrize("state", [[], "x", None, 1.5, 99, {"a": 1}])
def test_a_mission_state_of_the_wrong_type_is_refused_and_every_view_still_renders(state):
    """The finding: `"state": []` made /api/snapshot answer 500 for good; `"state": "x"` killed qai-hub watch."""
    feed = DashboardFeed(FLEET, ROBOTS.registry)
    ops = feed.on_message(*mission_message(state), now=1.0)
    assert ops and ops[0][0] == "event" and ops[0][1]["kind"] == "security" and "data.state" in ops[0][1]["text"]
    orjson.dumps(feed.snapshot())
    Console(width=200, record=True).print(render_fleet(feed.fleet))
    assert feed.on_message(*mission_message(10), now=2.0)  # the next good message is taken


def test_robot_text_reaches_a_terminal_without_escape_sequences_or_markup():
    """The finding: robot-sent names and reasons reached the terminal raw (escape sequences, rich markup)."""
    hostile = "\x1b[2J\x1b]0;owned\x07[bold red]FAKE[/bold red]\u202egnp.exe\r"
    text = shown(hostile, 200)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\r" not in text
    assert "\\[bold red]" in text  # markup escaped: rich prints it as it is
    reply = {"status": "rejected", "robot": "r1", "mission_id": hostile, "message": hostile, "reason": "expired"}
    check_terminal(_reply_text(reply))
    console = Console(width=200, record=True, color_system=None)
    fleet = Fleet(FLEET, ROBOTS.registry)
    fleet.on_message(*signed(f"qai/{FLEET}/r1/telemetry/mission_states", {
        "seq": 1, "stamp": 1.0, "type": "qai_interfaces/msg/MissionState",
        "data": {"header": {"stamp": {"sec": 1, "nanosec": 0}}, "mission_id": "m", "name": hostile, "state": 1,
                 "tasks": [{"task_id": "t", "state": 2, "message": hostile}]}}))
    console.print(render_fleet(fleet))
    exported = console.export_text()
    check_terminal(exported)
    assert "[bold red]FAKE" in exported  # shown as text, not as style


def test_a_thousand_retained_statuses_of_unknown_robots_take_no_slot():
    """The finding: 1,000 retained fake statuses filled --max-robots, so real robots were refused."""
    fleet = Fleet(FLEET, ROBOTS.registry, max_robots=3)
    for index in range(1000):
        change = fleet.on_message(f"qai/{FLEET}/fake{index}/status", orjson.dumps({"state": "online"}))
        assert change.kind == "refused" and change.robot is None
    assert fleet.robots == {} and fleet.refused_robots == 1000 and len(fleet.security) == 200  # the log is bounded
    assert fleet.on_message(*signed(f"qai/{FLEET}/r1/status", {"state": "online", "robot": "r1"})).kind == "status"


def test_an_unsigned_or_misattributed_status_or_reply_is_refused():
    fleet = Fleet(FLEET, ROBOTS.registry)
    status = orjson.dumps({"state": "online", "robot": "r1"})
    assert "signature" in fleet.on_message(f"qai/{FLEET}/r1/status", status).message.why
    r2_says = ROBOTS.sign("r2", f"qai/{FLEET}/r1/status", status)  # r2's key on r1's topic
    assert "signature" in fleet.on_message(f"qai/{FLEET}/r1/status", r2_says).message.why
    moved = ROBOTS.sign("r1", f"qai/{FLEET}/r1/status", status)  # r1's signed status replayed on r2's topic
    assert "signature" in fleet.on_message(f"qai/{FLEET}/r2/status", moved).message.why
    assert fleet.robots == {}


def test_a_reply_is_an_answer_only_when_it_carries_the_commands_id_and_nonce_and_the_robots_signature():
    """The finding: any reply with the request's id made send-mission report success."""
    fleet = Fleet(FLEET, ROBOTS.registry)
    command = {"id": "q1", "robot": "r1", "verb": "submit_mission", "nonce": "a" * 32}
    fleet.expect(command)
    topic = f"qai/{FLEET}/r1/cmd/submit_mission/reply"
    reply = {"id": "q1", "verb": "submit_mission", "robot": "r1", "status": "succeeded", "nonce": "a" * 32}
    assert fleet.on_message(topic, orjson.dumps(reply)).kind == "refused"  # unsigned
    assert not fleet.on_message(*signed(topic, {**reply, "nonce": "b" * 32})).bound  # another command's
    assert fleet.on_message(topic, ROBOTS.sign("r2", topic, orjson.dumps(reply))).kind == "refused"  # r2's key
    assert fleet.on_message(*signed(topic, reply)).bound


def test_a_forged_telemetry_message_is_caught_by_the_robots_seal():
    from qai_hub.protocol import seal_data, telemetry_digest

    fleet = Fleet(FLEET, ROBOTS.registry)
    topic = f"qai/{FLEET}/r1/telemetry/odom"
    real = orjson.dumps({"seq": 1, "stamp": 1.0, "type": "nav_msgs/msg/Odometry", "data": {}})
    forged = orjson.dumps({"seq": 2, "stamp": 1.0, "type": "nav_msgs/msg/Odometry", "data": {
        "pose": {"pose": {"position": {"x": 999.0, "y": 0.0, "z": 0.0}}}}})
    fleet.on_message(*signed(f"qai/{FLEET}/r1/status", {"state": "online", "robot": "r1"}), now=1.0)
    fleet.on_message(topic, real, now=1.0)
    fleet.on_message(topic, forged, now=1.0)  # shown at once, checked when the seal comes
    what_the_robot_sent = orjson.dumps({"seq": 2, "stamp": 1.0, "type": "nav_msgs/msg/Odometry", "data": {}})
    seal = {"seq": 1, "stamp": 2.0, "type": "qai/Seal", "data": seal_data(
        {"odom": [(1, telemetry_digest(real)), (2, telemetry_digest(what_the_robot_sent))]})}
    fleet.on_message(*signed(f"qai/{FLEET}/r1/telemetry/seals", seal), now=2.0)
    robot = fleet.robots["r1"]
    assert robot.seals.verified == 1 and robot.seals.forged == 1
    assert any("forged" in event.why for event in fleet.security)
    fleet.on_message(topic, orjson.dumps({"seq": 3, "stamp": 3.0, "type": "nav_msgs/msg/Odometry", "data": {}}),
                     now=3.0)
    fleet.on_message(*signed(f"qai/{FLEET}/r1/status", {"state": "online", "robot": "r1"}), now=100.0)
    assert robot.seals.unsealed == 1  # no seal covered seq 3 within the grace


def test_memory_stays_bounded_whatever_an_enrolled_robot_sends():
    fleet = Fleet(FLEET, ROBOTS.registry, limits=InboundLimits())
    for seq in range(1, 2001):  # a hostile robot: a new stream name, a new mission, gaps everywhere
        fleet.on_message(f"qai/{FLEET}/r1/telemetry/s{seq}", orjson.dumps(
            {"seq": 2 * seq, "stamp": 1.0, "type": "a/msg/B", "data": {}}), now=1.0)
        fleet.on_message(*signed(f"qai/{FLEET}/r1/telemetry/mission_states", {
            "seq": seq, "stamp": 1.0, "type": "qai_interfaces/msg/MissionState",
            "data": {"header": {"stamp": {"sec": seq, "nanosec": 0}}, "mission_id": f"m{seq}", "state": 1,
                     "tasks": [{"task_id": f"t{i}", "state": 0} for i in range(20)]}}), now=1.0)
    robot = fleet.robots["r1"]
    assert len(robot.streams) == fleet.max_streams and len(robot.missions) <= fleet.keep_missions
    assert sum(len(m["tasks"]) for m in robot.missions.values()) <= fleet.max_tasks
