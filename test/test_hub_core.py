"""The hub link's plain parts, in-process.

Canonical JSON, the message codec, the on-disk queue, streams, signing, the command gate and the hub's
fleet view.
"""

import json
import math
import re
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from qai_hub.fleet import Fleet, SequenceTracker
from qai_hub.protocol import (ED25519, ML_DSA_65, KeyFileError, Keyring, RobotTopics, SignatureRejected, Signer,
                              canonical_json, command_topic, compress_ranges, generate_key_pair, load_private_key,
                              make_command, merge_ranges, number_text, parse_topic, signed_bytes, telemetry_envelope,
                              telemetry_payload)
from qai_io.hub_link import codec
from qai_io.hub_link.commands import CommandGate, CommandRejected, NonceStore, RefusalLog
from qai_io.hub_link.link import Backoff
from qai_io.hub_link.queue import DiskQueue, Item
from qai_io.hub_link.streams import DiagnosticsSummary, parse_stream, parse_streams
from qai_io.hub_parameters import DEFAULT_STREAMS
from robot_identity import shared_robots

ROOT = Path(__file__).resolve().parents[1]
ROBOTS = shared_robots()


# -- Canonical JSON (RFC 8785) ---------------------------------------------------------------------

@pytest.mark.parametrize("value, text", [
    (0.0, "0"), (-0.0, "0"), (1.0, "1"), (4.5, "4.5"), (0.002, "0.002"), (1e-6, "0.000001"), (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"), (123.456, "123.456"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
    (1e30, "1e+30"), (333333333.33333329, "333333333.3333333"), (5e-324, "5e-324"), (-1.25e+22, "-1.25e+22"),
    (9007199254740992.0, "9007199254740992"), (0.1, "0.1"), (1.7976931348623157e308, "1.7976931348623157e+308"),
])
def test_numbers_are_written_as_ecmascript_writes_them(value, text):
    assert number_text(value) == text


def test_canonical_json_sorts_keys_by_utf16_and_escapes_as_json_stringify():
    # RFC 8785 3.2.3's example: sorted by UTF-16 code units, the emoji (0xD83D 0xDE00) precedes U+FB33.
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001F600", "\u0080", "\u00f6"]
    text = canonical_json({key: index for index, key in enumerate(keys)}).decode("utf-8")
    assert text == '{"\\r":1,"1":3,"\u0080":5,"\u00f6":6,"\u20ac":0,"\U0001F600":4,"\ufb33":2}'
    value = {"b": [True, None, "a\"\\\n\u0001\u007f"], "a": {"z": 1, "y": 2.5}}
    assert canonical_json(value) == b'{"a":{"y":2.5,"z":1},"b":[true,null,"a\\"\\\\\\n\\u0001\x7f"]}'


@pytest.mark.parametrize("value", [math.nan, math.inf, 2**53, {"a": [-(2**60)]}, "\ud800", {1: "x"}, {"a": {1, 2}}])
def test_canonical_json_refuses_what_has_no_exact_form(value):
    with pytest.raises(ValueError):
        canonical_json(value)


# -- The codec -----------------------------------------------------------------------------------

def sample_messages():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import BatteryState

    from qai_interfaces.msg import Event, MissionState, TaskState

    odom = Odometry(child_frame_id="base_link")
    odom.header.frame_id = "odom"
    odom.header.stamp.sec, odom.header.stamp.nanosec = 1_700_000_000, 123
    odom.pose.pose.position.x, odom.pose.pose.position.z = 12.5, -3.25
    odom.pose.pose.orientation.w = 1.0
    odom.pose.covariance[0] = 0.01
    odom.twist.twist.angular.z = 0.5
    battery = BatteryState(voltage=15.2, percentage=0.8, temperature=math.nan, present=True,
                           power_supply_status=2, cell_voltage=[3.8, 3.75], location="pack")
    state = MissionState(mission_id="m1", name="survey", state=1, tasks_total=2, tasks_running=1,
                         tasks=[TaskState(task_id="fly", kind="navigate", state=2, attempt=1, progress=0.25,
                                          result=[KeyValue(key="distance", value="12.5")]),
                                TaskState(task_id="scan", kind="scan", progress=math.nan)])
    diagnostics = DiagnosticArray(status=[DiagnosticStatus(level=b"\x01", name="/io_engine", message="odom stale",
                                                           hardware_id="robot", values=[KeyValue(key="k", value="v")])])
    event = Event(source="/io_engine", code="battery_reserve", severity=Event.ERROR, message="low",
                  values=[KeyValue(key="charge", value="0.19")])
    return [odom, battery, state, diagnostics, event]


def equal_with_nan(a, b) -> bool:
    """Messages equal, NaN matching NaN (floats are compared as their JSON forms)."""
    return orjson.dumps(codec.to_dict(a)) == orjson.dumps(codec.to_dict(b)) and type(a) is type(b)


def test_every_default_stream_type_round_trips_through_json():
    for message in sample_messages():
        text = orjson.dumps(codec.to_dict(message))
        back = codec.from_dict(type(message), json.loads(text))
        assert equal_with_nan(back, message), type(message).__name__
        if b"null" not in text:  # no NaN in it: the messages compare equal as they are
            assert back == message


def test_nan_is_null_in_json_and_nan_again_after_decoding():
    from sensor_msgs.msg import BatteryState

    data = codec.to_dict(BatteryState(temperature=math.nan, voltage=math.inf))
    assert data["temperature"] is None and data["voltage"] is None
    assert math.isnan(codec.from_dict(BatteryState, data).temperature)


def test_octets_are_integers_in_json():
    from diagnostic_msgs.msg import DiagnosticStatus

    assert codec.to_dict(DiagnosticStatus(level=b"\x02"))["level"] == 2
    assert codec.from_dict(DiagnosticStatus, {"level": 2}).level == b"\x02"


@pytest.mark.parametrize("data, error", [
    ({"pose": {"covariance": [0.0] * 35}}, "pose.covariance: expected 36 items, got 35"),
    ({"header": {"stamp": {"sec": 2**40}}}, "header.stamp.sec: 1099511627776 is out of range"),
    ({"twist": {"twist": {"linear": {"x": "fast"}}}}, "twist.twist.linear.x: expected a number or null, got str"),
    ({"child_frame_id": 3}, "child_frame_id: expected a string, got int"),
    ({"speed": 1}, "speed: unknown field of nav_msgs/msg/Odometry"),
    ([1, 2], "nav_msgs/msg/Odometry: expected an object, got list"),
])
def test_decoding_names_the_field_at_fault(data, error):
    from nav_msgs.msg import Odometry

    with pytest.raises(codec.CodecError, match=error.replace("[", r"\[")):
        codec.from_dict(Odometry, data)


@pytest.mark.parametrize("name, why", [
    ("tf2_msgs/msg/TFMessage", "cannot import tf2_msgs.msg"),
    ("std_srvs/srv/Trigger", "only messages map to telemetry"),
    ("nav_msgs/msg/Nope", "has no type Nope"),
    ("odometry", "is not a ROS message type name"),
])
def test_types_the_codec_cannot_map_are_refused_with_the_reason(name, why):
    with pytest.raises(codec.CodecError, match=why):
        codec.message_class(name)


# -- The on-disk queue ----------------------------------------------------------------------------

def item(stream, seq, priority=5, size=10, expires=None, topic="t"):
    return Item(stream, seq, priority, 1, expires if expires is not None else time.time() + 3600, topic,
                b"x" * size)


def test_queue_keeps_rows_and_sequence_numbers_across_reopen(tmp_path):
    queue = DiskQueue(tmp_path / "q.db", 100, 10_000)
    queue.commit([item("odom", 1), item("odom", 2), item("battery", 1)])
    queue.close()
    again = DiskQueue(tmp_path / "q.db", 100, 10_000)
    assert again.depth == 3 and again.bytes == 30
    assert again.last_seqs() == {"odom": 2, "battery": 1}
    assert [(r.stream, r.seq) for r in again.all_rows()] == [("odom", 1), ("odom", 2), ("battery", 1)]


def test_at_the_bound_the_lowest_priority_oldest_rows_go_first_and_are_returned(tmp_path):
    queue = DiskQueue(tmp_path / "q.db", max_messages=4, max_bytes=10_000, protected_streams=("drops",))
    assert queue.commit([item("events", 1, priority=9), item("odom", 1, priority=3), item("odom", 2, priority=3),
                         item("battery", 1, priority=6), item("drops", 1, priority=10)]) == []
    evicted = queue.commit([item("odom", 3, priority=3), item("events", 2, priority=9)])
    assert evicted == [("odom", 1), ("odom", 2)]
    assert {(r.stream, r.seq) for r in queue.all_rows()} == {("events", 1), ("events", 2), ("battery", 1),
                                                             ("odom", 3), ("drops", 1)}
    # The byte bound works the same way; rows in flight and protected rows are never evicted, and protected
    # rows do not count against the bound.
    in_flight = next(r.id for r in queue.all_rows() if (r.stream, r.seq) == ("odom", 3))
    queue.max_bytes = 35
    evicted = queue.commit([item("odom", 4, priority=3, size=20)], busy={in_flight})
    assert evicted == [("odom", 4), ("battery", 1)]
    assert queue.depth == 4 and queue.bytes == 40 == sum(r.size for r in queue.all_rows())


def test_expired_rows_are_removed_and_returned_except_protected_and_busy_ones(tmp_path):
    queue = DiskQueue(tmp_path / "q.db", 100, 10_000, protected_streams=("drops",))
    past = time.time() - 1
    queue.commit([item("odom", 1, expires=past), item("odom", 2, expires=past), item("odom", 3),
                  item("drops", 1, expires=past)])
    busy = {r.id for r in queue.all_rows() if r.seq == 2 and r.stream == "odom"}
    assert queue.expire(time.time(), busy=busy) == [("odom", 1)]
    assert queue.depth == 3


def test_row_ids_are_never_reused_after_the_newest_row_is_deleted(tmp_path):
    queue = DiskQueue(tmp_path / "q.db", 100, 10_000)
    queue.commit([item("a", 1)])
    (first,) = queue.all_rows()
    queue.commit((), [first])
    queue.commit([item("a", 2)])
    (second,) = queue.all_rows()
    assert second.id > first.id  # a reader's "taken up to id N" cursor must not skip the new row


def test_a_damaged_queue_file_is_moved_aside_and_a_fresh_one_used(tmp_path):
    path = tmp_path / "q.db"
    path.write_bytes(b"this is not a database" * 100)
    queue = DiskQueue(path, 100, 10_000)
    assert "moved aside" in queue.recovered_from
    assert queue.depth == 0
    assert list(tmp_path.glob("q.db.damaged-*"))


def test_backlog_is_taken_oldest_first_within_each_priority(tmp_path):
    queue = DiskQueue(tmp_path / "q.db", 100, 10_000)
    queue.commit([item("odom", 1, 3), item("events", 1, 9), item("odom", 2, 3), item("events", 2, 9)])
    assert queue.priorities() == [9, 3]
    until = queue.max_id()
    assert [r.seq for r in queue.take_backlog(9, 0, until, 10)] == [1, 2]
    first = queue.take_backlog(3, 0, until, 1)
    assert [r.seq for r in first] == [1]
    assert [r.seq for r in queue.take_backlog(3, first[0].id, until, 10)] == [2]


# -- Streams ----------------------------------------------------------------------------------------

def test_default_streams_parse_and_cover_the_documented_topics():
    specs, rejected = parse_streams(DEFAULT_STREAMS)
    assert rejected == {}
    assert {s.name: s.topic for s in specs} == {
        "odom": "odom", "battery_state": "battery_state", "mission_states": "mission_states",
        "diagnostics": "/diagnostics", "events": "events", "endurance": "predictions/endurance",
        "capabilities": "engine_capabilities"}
    assert next(s for s in specs if s.name == "diagnostics").summary


@pytest.mark.parametrize("entry, why", [
    ("odom topic=odom", "expected 'name: key=value"),
    ("odom: topic=odom", "type is missing"),
    ("odom: type=a/msg/B rate=fast", "rate: expected a number"),
    ("odom: type=a/msg/B qos=2", "qos: must be between 0 and 1"),
    ("odom: type=a/msg/B priority=1.5", "qos, priority and depth are integers"),
    ("odom: type=a/msg/B depth=0", "depth: must be between 1 and 100000"),
    ("odom: type=a/msg/B ros_qos=fast", "ros_qos: expected one of sensor, reliable, latched"),
    ("odom: type=a/msg/B colour=red", "'colour=red' is not key=value with a key among"),
    ("drops: type=a/msg/B", "reserved for drop reports"),
    ("od/om: type=a/msg/B", "expected 1-64 letters"),
    ("odom: type=a/msg/B summary=true rate=1", "summary=true needs type=diagnostic_msgs/msg/DiagnosticArray"),
])
def test_bad_stream_entries_are_refused_naming_the_key(entry, why):
    with pytest.raises(ValueError, match=why.replace("(", r"\(")):
        parse_stream(entry)


def test_bad_and_duplicate_entries_are_reported_and_the_rest_kept():
    specs, rejected = parse_streams(["a: type=x/msg/Y", "b: nonsense", "a: type=x/msg/Z"])
    assert [s.name for s in specs] == ["a"]
    assert set(rejected) == {"b", "a"}


def test_sequence_ranges_compress_and_merge():
    assert compress_ranges([7, 1, 2, 3, 9, 10, 3]) == [[1, 3], [7, 7], [9, 10]]
    assert merge_ranges([[1, 3], [9, 10]], [[4, 5], [11, 11], [20, 21]]) == [[1, 5], [9, 11], [20, 21]]


def test_telemetry_envelope_matches_the_plain_payload():
    data = {"x": 1.5, "name": "é"}
    assert telemetry_envelope(7, 1700000000.25, orjson.dumps("a/msg/B"), orjson.dumps(data)) == \
        telemetry_payload(7, 1700000000.25, "a/msg/B", data)


def test_diagnostics_summary_keeps_the_latest_per_name_within_its_bound():
    summary = DiagnosticsSummary(max_names=2)
    summary.update([("/a", 0, "ok", "r"), ("/b", 2, "bad", "r")])
    summary.update([("/a", 1, "warn", "r"), ("/c", 0, "ok", "r")])
    result = summary.summary()
    assert set(result["nodes"]) == {"/a", "/c"} and result["worst"] == 1


# -- Topics and backoff -----------------------------------------------------------------------------

def test_topics_parse_back_to_what_they_name():
    topics = RobotTopics("fleet1", "drone1")
    assert parse_topic(topics.telemetry("odom")).name == "odom"
    assert parse_topic(topics.reply("get_state")).kind == "reply"
    assert parse_topic(command_topic("fleet1", "all", "get_state")).robot == "all"
    assert parse_topic("other/thing") is None
    with pytest.raises(ValueError):
        RobotTopics("fleet1", "all")
    with pytest.raises(ValueError):
        RobotTopics("fleet/1", "drone1")


def test_backoff_grows_exponentially_with_jitter_up_to_its_cap():
    backoff = Backoff(0.5, 8.0)
    for attempt in range(12):
        ceiling = min(8.0, 0.5 * 2**attempt)
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered: robots that lost the broker together do not return together


# -- Signing ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hub_keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    generate_key_pair(directory / "hub.key", directory / "hub.pub")
    generate_key_pair(directory / "old.key", directory / "old.pub")
    generate_key_pair(directory / "hub.ed.key", directory / "hub.ed.pub", ED25519)
    generate_key_pair(directory / "other.key", directory / "other.pub")
    return directory


def test_keygen_writes_the_private_key_mode_0600_and_refuses_to_overwrite(hub_keys):
    assert stat.S_IMODE(os.stat(hub_keys / "hub.key").st_mode) == 0o600
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_key_pair(hub_keys / "hub.key", hub_keys / "hub.pub")


def test_a_private_key_others_can_read_is_refused(hub_keys, tmp_path):
    exposed = tmp_path / "exposed.key"
    exposed.write_bytes((hub_keys / "hub.key").read_bytes())
    exposed.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(exposed)


def test_signatures_verify_with_any_listed_key_and_fail_on_any_change(hub_keys):
    keyring, errors, missing = Keyring.from_files([hub_keys / "hub.pub", hub_keys / "old.pub",
                                                   hub_keys / "absent.pub"])
    assert errors == [] and missing == [str(hub_keys / "absent.pub")]
    topic = command_topic("f", "r1", "get_state")
    for key in ("hub.key", "old.key"):  # rotation: both the new and the old key are accepted
        command = make_command(Signer.from_files(hub_keys / key), fleet="f", robot="r1", verb="get_state",
                               body={"mission_id": "m"}, topic=topic)
        keyring.verify(signed_bytes(command, topic), command["signatures"])
    tampered = {**command, "body": {"mission_id": "n"}}
    with pytest.raises(SignatureRejected) as rejected:
        keyring.verify(signed_bytes(tampered, topic), command["signatures"])
    assert rejected.value.code == "bad_signature"
    with pytest.raises(SignatureRejected) as moved:  # the same command replayed on another robot's topic
        keyring.verify(signed_bytes(command, command_topic("f", "r2", "get_state")), command["signatures"])
    assert moved.value.code == "bad_signature"
    stranger = make_command(Signer.from_files(hub_keys / "other.key"), fleet="f", robot="r1", verb="get_state",
                            body={}, topic=topic)
    with pytest.raises(SignatureRejected, match="not one of the robot's hub keys"):
        keyring.verify(signed_bytes(stranger, topic), stranger["signatures"])


def test_hybrid_mode_needs_both_signatures_and_both_must_verify(hub_keys):
    keyring, _, _ = Keyring.from_files([hub_keys / "hub.pub", hub_keys / "hub.ed.pub"])
    topic = command_topic("f", "r1", "get_state")
    plain = make_command(Signer.from_files(hub_keys / "hub.key"), fleet="f", robot="r1", verb="get_state", body={},
                         topic=topic)
    with pytest.raises(SignatureRejected, match="no Ed25519 signature"):
        keyring.verify(signed_bytes(plain, topic), plain["signatures"], require_ed25519=True)
    hybrid = make_command(Signer.from_files(hub_keys / "hub.key", hub_keys / "hub.ed.key"), fleet="f", robot="r1",
                          verb="get_state", body={}, topic=topic)
    assert {s["alg"] for s in hybrid["signatures"]} == {ML_DSA_65, ED25519}
    assert len(keyring.verify(signed_bytes(hybrid, topic), hybrid["signatures"], require_ed25519=True)) == 2
    broken = [dict(s) for s in hybrid["signatures"]]
    broken[1]["sig"] = plain["signatures"][0]["sig"][:86]  # a bad Ed25519 signature beside a good ML-DSA one
    with pytest.raises(SignatureRejected):
        keyring.verify(signed_bytes(hybrid, topic), broken)


def test_nonce_store_refuses_a_nonce_twice_even_after_reopening(tmp_path):
    store = NonceStore(tmp_path / "n.db")
    now = int(time.time() * 1000)
    assert store.record("a" * 32, "k1", now, 30_000)
    assert not store.record("a" * 32, "k1", now, 30_000)
    store.close()
    again = NonceStore(tmp_path / "n.db")
    assert again.seen("a" * 32, "k1", now, 30_000)[0] == "replayed"
    assert again.record("b" * 32, "k1", now + 120_000, 30_000)  # the key's high-water mark moved on
    assert len(again) == 1  # nonces older than high-water mark - tolerance are gone: their commands are refused
    assert again.seen("a" * 32, "k1", now, 30_000)[0] == "expired"


def test_a_replay_is_refused_after_the_robots_clock_is_stepped_back_past_the_window(hub_keys, tmp_path):
    """The finding: nonces were pruned by the robot's own clock, so a clock stepped back accepted a replay."""
    keyring, _, _ = Keyring.from_files([hub_keys / "hub.pub"])
    clock = [time.time()]
    gate = CommandGate(fleet="f", robot="r1", keyring=keyring, nonces=NonceStore(tmp_path / "n.db"),
                       wall_clock=lambda: clock[0])
    old_topic, old = signed(hub_keys, timestamp_ms=int(clock[0] * 1000))
    gate.check(old_topic, old)
    clock[0] += 3600  # an hour on: newer commands are accepted, old nonces pruned
    for _ in range(3):
        gate.check(*signed(hub_keys, timestamp_ms=int(clock[0] * 1000)))
    clock[0] -= 3600  # the robot's clock is stepped back to when the old command was signed
    refused = rejection(gate, old_topic, old)
    assert refused.code == "expired" and "older than a command this key signed" in refused.message


def test_a_damaged_nonce_store_is_set_aside_and_rebuilt_refusing_what_was_signed_before(hub_keys, tmp_path):
    """The finding: a nonce store that could not be opened made hub_link crash-loop."""
    path = tmp_path / "n.db"
    path.write_bytes(b"\x00garbage" * 1000)
    store = NonceStore(path)
    assert store.usable and "moved aside" in store.recovered_from
    assert list(tmp_path.glob("n.db.damaged-*"))
    keyring, _, _ = Keyring.from_files([hub_keys / "hub.pub"])
    gate = CommandGate(fleet="f", robot="r1", keyring=keyring, nonces=store)
    before = signed(hub_keys, timestamp_ms=store.floor_ms - 1000)  # may have been accepted before the damage
    assert rejection(gate, *before).code == "expired"
    assert gate.check(*signed(hub_keys, timestamp_ms=store.floor_ms + 10)).verb == "get_state"
    assert NonceStore(path).floor_ms == store.floor_ms  # the floor stays after a restart


def test_a_nonce_store_that_cannot_be_opened_refuses_commands_with_a_reply_and_is_tried_again(hub_keys, tmp_path):
    directory = tmp_path / "locked"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        store = NonceStore(directory / "sub" / "n.db", retry=0.0)
        if os.geteuid() == 0:  # root writes anyway: make the path a file where a directory must be
            store.close()
            (tmp_path / "file").write_text("x")
            store = NonceStore(tmp_path / "file" / "n.db", retry=0.0)
        assert not store.usable and store.error
        keyring, _, _ = Keyring.from_files([hub_keys / "hub.pub"])
        gate = CommandGate(fleet="f", robot="r1", keyring=keyring, nonces=store)
        refused = rejection(gate, *signed(hub_keys))
        assert refused.code == "unavailable" and refused.answer and refused.request_id
    finally:
        directory.chmod(0o700)


# -- The command gate -------------------------------------------------------------------------------

@pytest.fixture
def gate(hub_keys, tmp_path):
    keyring, _, _ = Keyring.from_files([hub_keys / "hub.pub"])
    return CommandGate(fleet="f", robot="r1", keyring=keyring, nonces=NonceStore(tmp_path / "n.db"),
                       window_s=30.0, max_bytes=16384, max_depth=8, max_verify_rate=1000.0)


def signed(hub_keys, verb="get_state", body=None, robot="r1", topic_robot=None, **overrides):
    topic = command_topic("f", topic_robot or robot, verb)
    command = make_command(Signer.from_files(hub_keys / "hub.key"), fleet="f", robot=robot, verb=verb,
                           body=body if body is not None else {}, topic=topic, **overrides)
    return topic, orjson.dumps(command)


def rejection(gate, topic, payload) -> CommandRejected:
    with pytest.raises(CommandRejected) as refused:
        gate.check(topic, payload)
    return refused.value


def test_a_good_command_passes_once_and_its_replay_is_refused(gate, hub_keys):
    topic, payload = signed(hub_keys, body={"mission_id": "m1"})
    command = gate.check(topic, payload)
    assert command.verb == "get_state" and command.body == {"mission_id": "m1"} and command.target == "r1"
    refused = rejection(gate, topic, payload)
    assert refused.code == "replayed" and refused.request_id == command.id
    assert gate.accepted == 1 and gate.rejected["replayed"] == 1


def test_fleet_wide_commands_reach_the_robot(gate, hub_keys):
    topic, payload = signed(hub_keys, robot="all")
    assert gate.check(topic, payload).target == "all"


@pytest.mark.parametrize("make, code, message", [
    (lambda k: ("qai/f/r1/cmd/get_state", b"x" * 20000), "oversized", "20000 bytes is over max_command_bytes"),
    (lambda k: ("qai/f/r1/cmd/get_state", b"{not json"), "malformed", "not valid JSON"),
    (lambda k: ("qai/f/r1/cmd/get_state", b"\xff\xfe"), "malformed", "not UTF-8"),
    (lambda k: ("qai/f/r1/cmd/get_state", b'{"a":1,"a":2}'), "malformed", "duplicate key"),
    (lambda k: ("qai/f/r1/cmd/get_state", b"[" * 20 + b"]" * 20), "malformed", "nested deeper than 8"),
    (lambda k: ("qai/f/r1/cmd/get_state", b"[1]"), "bad_schema", "expected a JSON object"),
    (lambda k: ("qai/f/r1/cmd/get_state", b'{"v":1}'), "bad_schema", "id: missing"),
    (lambda k: signed(k, verb="fly"), "unknown_verb", "fly: not a verb this robot serves"),
    (lambda k: signed(k, body={"mission_id": 5}), "bad_schema", "body.mission_id: expected str, got int"),
    (lambda k: signed(k, body={"colour": "red"}), "bad_schema", "body.colour: unknown field of get_state"),
    (lambda k: signed(k, robot="r2"), "wrong_robot", "this is r1, the command is for 'r2'"),
    (lambda k: signed(k, robot="r2", topic_robot="r1"), "wrong_robot", "this is r1, the command is for 'r2'"),
    (lambda k: signed(k, timestamp_ms=int((time.time() - 31) * 1000)), "expired", "s in the past"),
    (lambda k: signed(k, timestamp_ms=int((time.time() + 60) * 1000)), "expired", "s in the future"),
    (lambda k: (signed(k)[0], re.sub(rb'"timestamp":\d+', b'"timestamp":' + b"9" * 400, signed(k)[1])), "bad_schema",
     "timestamp: expected milliseconds"),
    (lambda k: signed(k, verb="resend", body={"stream": "odom", "ranges": [[5, 1]]}), "bad_schema",
     "body.ranges[0]: expected [first, last]"),
    (lambda k: signed(k, verb="resend", body={"stream": "odom", "ranges": [[1, 2]] * 101}), "bad_schema",
     "body.ranges: expected 1 to 100"),
])
def test_bad_commands_are_refused_with_a_code_and_a_reason(gate, hub_keys, make, code, message):
    topic, payload = make(hub_keys)
    refused = rejection(gate, topic, payload)
    assert refused.code == code and message in refused.message
    assert gate.rejected[code] == 1 and gate.accepted == 0


def test_unsigned_and_tampered_commands_are_refused(gate, hub_keys):
    topic, payload = signed(hub_keys, body={"mission_id": "m1"})
    unsigned = {**json.loads(payload), "signatures": []}
    assert rejection(gate, topic, orjson.dumps(unsigned)).code == "unsigned"
    tampered = {**json.loads(payload), "body": {"mission_id": "m2"}}
    assert rejection(gate, topic, orjson.dumps(tampered)).code == "bad_signature"
    assert gate.check(topic, payload).body == {"mission_id": "m1"}  # refusals did not burn the nonce


def test_bytes_beyond_the_parse_budget_are_dropped_unread_and_unanswered(hub_keys, tmp_path):
    keyring, _, _ = Keyring.from_files([hub_keys / "hub.pub"])
    slow = CommandGate(fleet="f", robot="r1", keyring=keyring, nonces=NonceStore(tmp_path / "n.db"),
                       max_bytes=1024, max_parse_bytes=65536, steady_clock=lambda: 100.0)
    refusals = [rejection(slow, "qai/f/r1/cmd/get_state", b"x" * 1000) for _ in range(140)]
    assert {r.code for r in refusals[:65]} == {"malformed"}  # 64 KiB of budget: 65 messages of 1000 bytes
    assert refusals[-1].code == "rate_limited" and not refusals[-1].answer


def test_a_flood_of_junk_leaves_signed_commands_their_signature_checks(hub_keys, tmp_path):
    """The finding: junk on all/cmd used up the command rate limit before any signature was checked."""
    keyring, _, _ = Keyring.from_files([hub_keys / "hub.pub"])
    gate = CommandGate(fleet="f", robot="r1", keyring=keyring, nonces=NonceStore(tmp_path / "n.db"),
                       max_verify_rate=2.0, steady_clock=lambda: 100.0)
    junk = [b"{not json", b'{"v":1}', orjson.dumps({**json.loads(signed(hub_keys)[1]), "signatures": []}),
            signed(hub_keys, robot="r2")[1], signed(hub_keys, timestamp_ms=1)[1]]
    for _ in range(200):
        for payload in junk:
            with pytest.raises(CommandRejected):
                gate.check("qai/f/all/cmd/get_state", payload)
    assert gate.check(*signed(hub_keys, robot="all")).verb == "get_state"  # the budget of signature checks is whole
    assert gate.check(*signed(hub_keys)).verb == "get_state"
    refused = rejection(gate, *signed(hub_keys))  # now two checks a second are spent
    assert refused.code == "rate_limited" and refused.answer  # answered: the hub sends it again


def test_refusals_are_logged_once_a_period_per_code_with_the_count_of_those_not_logged():
    now = [0.0]
    log = RefusalLog(period=5.0, clock=lambda: now[0])
    junk, schema = CommandRejected("malformed", "not valid JSON"), CommandRejected("bad_schema", "id: missing")
    assert log.line(junk) == "command refused (malformed): not valid JSON"
    assert log.line(schema) == "command refused (bad_schema): id: missing"  # each code has its own period
    for _ in range(999):
        now[0] += 0.001
        assert log.line(junk) is None
    now[0] = 5.0
    assert log.line(junk) == "command refused (malformed): not valid JSON (999 more refused as malformed in the 5 s " \
        "before, not logged)"
    now[0] = 11.0
    assert log.line(junk) == "command refused (malformed): not valid JSON"  # none held back since


def test_numbers_are_executed_in_the_one_form_their_signature_covers(gate, hub_keys):
    """The finding: `5` and `5.0` sign alike, so what executed could differ from what the hub meant."""
    topic, payload = signed(hub_keys, verb="resend", body={"stream": "odom", "ranges": [[1, 5]]})
    float_form = payload.replace(b"[[1,5]]", b"[[1.0,5.0]]")
    assert float_form != payload
    command = gate.check(topic, float_form)
    assert command.body["ranges"] == [[1, 5]] and all(type(n) is int for n in command.body["ranges"][0])


# -- The hub's view -----------------------------------------------------------------------------------

def test_sequence_tracker_counts_duplicates_and_accounts_reported_drops():
    tracker = SequenceTracker(since=1)
    for seq in (1, 2, 2, 5, 6):
        tracker.receive(seq)
    assert tracker.duplicates == 1
    assert tracker.missing() == [3, 4]
    tracker.report_dropped([[3, 3]], "queue_full")
    assert tracker.missing() == [4]


def test_a_status_tells_the_hub_of_the_end_of_a_stream_it_never_received():
    """Count the lost tail of a stream as missing.

    The finding: 44 mission states the broker had taken before it was killed never arrived, and nothing
    said they were missing (the stream sent nothing more after them).
    """
    fleet = Fleet("f", ROBOTS.registry)
    for seq in (1, 2, 3):
        fleet.on_message(*robot_says("qai/f/r1/telemetry/mission_states", {
            "seq": seq, "stamp": 0, "type": "qai_interfaces/msg/MissionState",
            "data": {"header": {"stamp": {"sec": seq, "nanosec": 0}}, "mission_id": "m1", "state": 1}}))
    status = {"state": "online", "robot": "r1", "fleet": "f", "stamp": 1.0, "sent": {"mission_states": 9, "odom": 7}}
    fleet.on_message(*robot_says("qai/f/r1/status", status))
    streams = fleet.robots["r1"].streams
    assert streams["mission_states"].missing_ranges() == [[4, 9]]
    # Nothing of odom received yet: a hub that has just subscribed never had what went before.
    assert streams["odom"].missing_count() == 0 and streams["odom"].missing_ranges() == []
    fleet.on_message(*robot_says("qai/f/r1/telemetry/odom", {
        "seq": 9, "stamp": 0, "type": "nav_msgs/msg/Odometry", "data": {}}))
    fleet.on_message(*robot_says("qai/f/r1/status", {**status, "sent": {"mission_states": 5, "odom": 12}}))
    assert streams["mission_states"].missing_ranges() == [[4, 9]]  # an older status takes nothing back
    assert streams["odom"].missing_ranges() == [[10, 12]]


@pytest.mark.parametrize("sent, field", [({"odom": 0}, "sent.odom"), ({"odom": 2**53 + 1}, "sent.odom"),
                                         ({"odom": 1.5}, "sent.odom"), ({"": 1}, "sent"), ("x", "sent"),
                                         ({f"s{i}": 1 for i in range(100)}, "sent")])
def test_a_status_with_a_bad_sent_field_is_refused_and_says_which(sent, field):
    fleet = Fleet("f", ROBOTS.registry)
    change = fleet.on_message(*robot_says("qai/f/r1/status", {"state": "online", "robot": "r1", "sent": sent}))
    assert change.kind == "refused" and field in str(change.message), change.message


def robot_says(topic: str, message: dict) -> tuple[str, bytes]:
    return topic, ROBOTS.as_robot(topic, orjson.dumps(message))


def test_fleet_keeps_the_newest_mission_state_when_the_backlog_arrives_late():
    fleet = Fleet("f", ROBOTS.registry)

    def state(seq, sec, mission_state):
        data = {"header": {"stamp": {"sec": sec, "nanosec": 0}}, "mission_id": "m1", "state": mission_state}
        return robot_says("qai/f/r1/telemetry/mission_states",
                          {"seq": seq, "stamp": 0, "type": "qai_interfaces/msg/MissionState", "data": data})

    fleet.on_message(*state(2, 20, 10))  # live: finished
    fleet.on_message(*state(1, 10, 1))  # backlog: running, older
    assert fleet.robots["r1"].missions["m1"]["state"] == 10
    fleet.on_message(*robot_says("qai/f/r1/telemetry/drops", {
        "seq": 1, "stamp": 0, "type": "qai/DropReport",
        "data": {"stream": "odom", "reason": "expired", "ranges": [[1, 4]], "count": 4}}))
    tracker = fleet.robots["r1"].streams["odom"]
    assert tracker.dropped.ranges == [(1, 4)] and tracker.drop_reasons == {"expired": 4}


def test_the_hub_session_does_not_see_a_task_run_again_when_an_older_state_arrives_after_a_newer(hub_keys):
    """Keep a task's history in the order of the robot's stamps, not of arrival.

    The finding (bench/chaos.py, the broker killed mid-mission): after the outage the robot's resend brought
    fly_2's RUNNING state after its SUCCEEDED one, and the session reported fly_2 as run again after it
    succeeded (`reran`), which the robot never did.
    """
    from qai_hub.client import BrokerOptions
    from qai_hub.session import HubSession

    session = HubSession(BrokerOptions(port=1), "f", Signer.from_files(hub_keys / "hub.key"), ROBOTS.registry,
                         fill_gaps=False)

    def state(seq, sec, task_state):
        data = {"header": {"stamp": {"sec": sec, "nanosec": 0}}, "mission_id": "m1", "state": 1,
                "tasks": [{"task_id": "fly_2", "state": task_state}]}
        return robot_says("qai/f/r1/telemetry/mission_states",
                          {"seq": seq, "stamp": 0, "type": "qai_interfaces/msg/MissionState", "data": data})

    session.on_message(*state(1, 10, 2))  # running
    session.on_message(*state(3, 30, 10))  # succeeded, live
    session.on_message(*state(2, 20, 2))  # the backlog after the outage: running, older
    assert session.reran("r1", "m1") == []
    assert session.task_history[("r1", "m1", "fly_2")] == [2, 10]
    session.on_message(*state(4, 40, 2))  # newer: it really runs again
    assert session.reran("r1", "m1") == ["fly_2"]


def test_a_drop_report_of_a_hundred_billion_numbers_costs_one_range():
    """The finding: `"ranges": [[0, 100000000000]]` drove qai-hub serve past 3 GB, expanding every number."""
    fleet = Fleet("f", ROBOTS.registry)
    fleet.on_message(*robot_says("qai/f/r1/telemetry/drops", {
        "seq": 1, "stamp": 0, "type": "qai/DropReport",
        "data": {"stream": "odom", "reason": "expired", "ranges": [[1, 100_000_000_000]], "count": 1}}))
    tracker = fleet.robots["r1"].streams["odom"]
    assert tracker.dropped.ranges == [(1, 100_000_000_000)] and tracker.missing_count() == 0
    refused = fleet.on_message(*robot_says("qai/f/r1/telemetry/drops", {
        "seq": 2, "stamp": 0, "type": "qai/DropReport",
        "data": {"stream": "odom", "reason": "expired", "ranges": [[0, 5]], "count": 6}}))
    assert refused.kind == "refused" and "ranges[0][0]" in refused.message.why  # sequence numbers start at 1


def test_fleet_merges_the_tasks_each_mission_state_carries():
    """The mission engine sends, after a mission's first state, only the tasks that changed."""
    fleet = Fleet("f", ROBOTS.registry)

    def state(seq, tasks):
        data = {"header": {"stamp": {"sec": seq, "nanosec": 0}}, "mission_id": "m1", "state": 1, "tasks": tasks}
        return robot_says("qai/f/r1/telemetry/mission_states",
                          {"seq": seq, "stamp": 0, "type": "qai_interfaces/msg/MissionState", "data": data})

    fleet.on_message(*state(1, [{"task_id": "a", "state": 2}, {"task_id": "b", "state": 0}]))
    fleet.on_message(*state(2, [{"task_id": "a", "state": 10}]))
    tasks = {t["task_id"]: t["state"] for t in fleet.robots["r1"].missions["m1"]["tasks"]}
    assert tasks == {"a": 10, "b": 0}


def test_state_names_on_the_hub_match_the_interfaces():
    from qai_interfaces.msg import MissionState, TaskState

    from qai_hub.protocol import MISSION_STATES, TASK_STATES

    for cls, names in ((MissionState, MISSION_STATES), (TaskState, TASK_STATES)):
        constants = {name: getattr(cls, name) for name in dir(cls) if name.isupper() and isinstance(
            getattr(cls, name), int)}
        assert {value: name for name, value in constants.items()} == names


def test_the_hub_side_imports_no_ros():
    """Import every hub module (and the robot's link core) in a fresh process: nothing of ROS comes along.

    The import-linter contracts (test_layering) check the same statically; this catches what a module
    pulls in at run time through a third-party package.
    """
    modules = sorted(f"qai_hub.{path.stem}" for path in (ROOT / "qai_hub").glob("*.py") if path.stem != "__init__")
    code = (f"import sys, qai_io.hub_link.link, {', '.join(modules)}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'rosidl_parser', 'qai_interfaces', 'nav_msgs', 'rpyutils')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_queue_file_is_sqlite_in_wal_mode(tmp_path):
    DiskQueue(tmp_path / "q.db", 10, 1000).close()
    assert sqlite3.connect(tmp_path / "q.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- qai-hub, in-process ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["keygen", "send-mission", "cancel", "status", "watch"])
def test_qai_hub_help_says_what_each_command_does(command, capsys):
    from qai_hub.cli import main

    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 3


def test_qai_hub_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites_one(tmp_path, capsys):
    from qai_hub.cli import main

    assert main(["keygen", "--dir", str(tmp_path), "--ed25519"]) == 0
    for name in ("hub.mldsa65.key", "hub.ed25519.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    assert (tmp_path / "hub.mldsa65.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert main(["keygen", "--dir", str(tmp_path)]) == 2
    assert "refusing to overwrite a private key" in capsys.readouterr().err


def test_qai_hub_refuses_a_bad_mission_file_before_sending_anything(tmp_path, capsys):
    from qai_hub.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - {id: a, kind: wait, timeout: soon}\n")
    assert main(["--port", "1", "send-mission", str(bad), "--robot", "r1", "--key", str(tmp_path / "none")]) == 2
    assert "tasks[0] (a).timeout" in capsys.readouterr().err


def test_the_latched_history_a_restart_replays_is_not_sent_again(tmp_path):
    """The finding: after each hub_link restart the hub got older mission states again, under new numbers."""
    from qai_io.hub_link.streams import ReplayFilter

    def state(mission, sec, nanosec=0, **extra):
        return {"header": {"stamp": {"sec": sec, "nanosec": nanosec}}, "mission_id": mission, **extra}

    path = tmp_path / "hub_latched.json"
    first = ReplayFilter(path)
    assert first.is_news("mission_states", state("m1", 10)) and first.is_news("mission_states", state("m2", 11))
    assert first.is_news("mission_states", state("m1", 12))
    assert not first.is_news("mission_states", state("m1", 12))  # the same state again
    assert first.is_news("capabilities", {"header": {"stamp": {"sec": 5}}, "engine": "/io"})
    first.flush()
    restarted = ReplayFilter(path)  # what the latched topics hand the new subscriber: the last states again
    assert not restarted.is_news("mission_states", state("m1", 12)) and not restarted.is_news(
        "mission_states", state("m2", 11)) and not restarted.is_news("mission_states", state("m1", 10))
    assert restarted.replayed == 3
    assert restarted.is_news("mission_states", state("m1", 12, 1))  # what happened since is news
    assert restarted.is_news("mission_states", {"mission_id": "m3"})  # no stamp: cannot tell, so sent
    path.write_text("not json")
    assert ReplayFilter(path).is_news("mission_states", state("m1", 12))  # unreadable: at worst sent once more
    bounded = ReplayFilter(None, max_keys=3)
    for index in range(10):
        bounded.is_news("mission_states", state(f"m{index}", index))
    assert len(bounded._sent) == 3


def test_the_replay_filter_takes_news_from_the_telemetry_thread_while_the_executor_flushes_it(tmp_path):
    """Sampled streams run on the telemetry thread, the executor's streams beside it: one filter, both threads."""
    import threading

    from qai_io.hub_link.streams import ReplayFilter

    replays = ReplayFilter(tmp_path / "hub_latched.json", max_keys=50)
    errors, done = [], threading.Event()

    def news(offset):
        try:
            for index in range(20_000):
                state = {"header": {"stamp": {"sec": index}}, "mission_id": f"m{offset + index}"}
                replays.is_news("mission_states", state)
        except Exception as error:  # noqa: BLE001 - the test reports it
            errors.append(error)

    def flushes():
        while not done.is_set():
            try:
                replays._dirty = True
                replays.flush()
            except Exception as error:  # noqa: BLE001
                errors.append(error)
                return

    writers = [threading.Thread(target=news, args=(offset,)) for offset in (0, 10**6)]
    flusher = threading.Thread(target=flushes)
    for thread in (*writers, flusher):
        thread.start()
    for thread in writers:
        thread.join(60)
    done.set()
    flusher.join(60)
    assert errors == [] and len(replays._sent) == 50
    assert len(json.loads((tmp_path / "hub_latched.json").read_text())) == 50


def test_a_survey_flies_scans_and_returns_home_with_retries_and_decodes_as_the_mission_engine_reads_it():
    """Retry a survey's legs, scans and return home: one stale-odometry blip failed `make demo ARGS=--faults`."""
    from qai_hub import survey
    from qai_mission.codec import mission_from_dict

    spec = mission_from_dict(survey.survey_mission([[10, 0], [0, 10, 5]], [0, 0, 0]))
    retried = {t.id for t in spec.tasks if t.retry is not None and t.retry.max_retries >= 2}
    assert retried == {"takeoff", "fly_1", "scan_1", "fly_2", "scan_2", "home"}


@pytest.mark.parametrize("content", [b"garbage\xff\xfe", b"[1]", b'{"s/k": {"a": [1, 2]}}', b'{"s/k": "x"}',
                                     b'{"s/k": [1e400, 0]}', b'{"s/k": [null, 0]}', b""])
def test_a_damaged_latched_file_is_forgotten_not_a_crash_at_start(tmp_path, content):
    """Start with any bytes in hub_latched.json: a dict of non-pairs or an infinite stamp raised at start."""
    from qai_io.hub_link.streams import ReplayFilter

    path = tmp_path / "hub_latched.json"
    path.write_bytes(content)
    replay = ReplayFilter(path)
    state = {"mission_id": "k", "header": {"stamp": {"sec": 1, "nanosec": 0}}}
    assert replay.is_news("s", state) and not replay.is_news("s", state)
