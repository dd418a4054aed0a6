"""Every message the hub takes from the broker, checked against its schema and bounds first. No rclpy import.

The hub believes nothing it has not checked: `read(topic, payload)` parses one MQTT message into a typed
value (Status, Reply or Telemetry) whose fields have the types, ranges and sizes stated below, or raises
Refused naming the field and why. Nothing else in the hub reads a payload: the fleet model, the dashboard
and the CLI's views take these values only, so a malformed message is dropped whole and counted, and never
reaches (or breaks) the state of another message or robot.

What is checked, by payload (formats: qai_hub.protocol):
- every payload: at most `max_payload` bytes, UTF-8 JSON, an object, nested at most `max_depth` levels;
- identifiers (robot, stream, mission and task ids, kinds, engines, verbs, codes) are strings within their
  length and alphabet, or the message is refused; free text (messages, reasons, names) is cut to
  `max_text` characters, so what the hub keeps stays bounded whatever a robot sends;
- numbers are finite (a ROS NaN arrives as null and stays None), integers within their message field's
  range (uint8 states among the defined ones, uint32 counts, sequence numbers 1..2^53);
- lists are bounded: tasks per mission state, dependencies per task, statuses per diagnostics summary,
  kinds per engine, ranges per drop report (kept as merged intervals, never expanded);
- telemetry data is read for the message types the hub shows (MissionState, Odometry, BatteryState,
  EndurancePrediction, the diagnostics summary, EngineCapabilities, Event, drop reports, reports); other
  types are only counted by sequence number, their data not kept.
Unknown fields are ignored (a newer robot may send more); a field of the wrong type refuses the message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

from qai_hub.protocol import (DROPS_STREAM, MISSION_STATES, NAME, NONCE, REJECTION_CODES, REPLY_STATUSES,
                              SEALS_STREAM, TASK_STATES, VERBS, ParsedTopic)

MAX_SEQ = 2**53
UINT32 = 2**32 - 1
_ID = re.compile(r"^[\x21-\x7e]{1,256}$")  # printable ASCII, no space: mission and task ids, kinds, engines
_TYPE = re.compile(r"^[A-Za-z0-9_]{1,64}/(?:msg/)?[A-Za-z0-9_]{1,64}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Refused(ValueError):
    """A message that does not fit its schema: `where` is the field's path, `why` what is wrong with it."""

    def __init__(self, where: str, why: str):
        super().__init__(f"{where}: {why}")
        self.where, self.why = where, why


@dataclass(frozen=True)
class InboundLimits:
    """What the hub accepts of one message."""

    max_payload: int = 2 << 20  # bytes
    max_depth: int = 32
    max_text: int = 1000  # characters of free text kept
    max_tasks: int = 10_000  # tasks in one mission state (the mission engine's own limit)
    max_dependencies: int = 100  # edges of one task kept for the graph (the rest are counted, not kept)
    max_result_pairs: int = 100
    max_result_value: int = 65_536  # characters of one result value (a planned route)
    max_nodes: int = 500  # /diagnostics statuses in one summary
    max_kinds: int = 200  # kinds one engine announces
    max_schema: int = 262_144  # characters of one kind's parameter schema (the geofence is read from it)
    max_values: int = 50  # key/values of one event
    max_ranges: int = 10_000  # ranges in one drop report
    max_missions: int = 100  # missions in a get_state answer or a status summary
    max_streams: int = 64  # streams in a status


DEFAULT_LIMITS = InboundLimits()


# -- Checks -------------------------------------------------------------------------------------------

def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Refused(where, f"expected an object, got {_kind(value)}")
    return value


def _opt_obj(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if type(value) is dict:  # the common case; the field's name is made only for an error
        return value
    return {} if value is None else _obj(value, f"{where}.{key}")


def _list(value: Any, where: str, limit: int) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Refused(where, f"expected a list, got {_kind(value)}")
    if len(value) > limit:
        raise Refused(where, f"{len(value)} items, more than {limit}")
    return value


def _int(value: Any, where: str, low: int = 0, high: int = UINT32, default: int | None = 0) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(where, f"expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise Refused(where, f"{_short(value)} is outside {low}..{high}")
    return value


def _num(value: Any, where: str) -> float | None:
    """Check a finite number, or None for null (ROS NaN and infinities travel as null)."""
    if type(value) is float and value - value == 0.0:  # the common case, fast: finite (inf - inf is NaN)
        return value
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused(where, f"expected a number or null, got {_kind(value)}")
    value = float(value) if abs(value) < 1e308 else math.inf
    if not math.isfinite(value):
        raise Refused(where, "not a finite number")
    return value


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Refused(where, f"expected true or false, got {_kind(value)}")
    return value


def _text(value: Any, where: str, limit: int) -> str:
    """Free text: any string, kept to `limit` characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(where, f"expected a string, got {_kind(value)}")
    return value if len(value) <= limit else value[:limit] + "..."


def _ident(value: Any, where: str, pattern: re.Pattern = _ID, empty: bool = True) -> str:
    """Check an identifier: a string matching `pattern` (or empty where `empty`)."""
    if value is None or (value == "" and empty):
        return ""
    if not isinstance(value, str) or not pattern.match(value):
        raise Refused(where, f"expected an identifier ({pattern.pattern}), got {_short(value)}")
    return value


def _choice(value: Any, where: str, choices) -> Any:
    if isinstance(value, bool) or value not in choices:
        raise Refused(where, f"expected one of {', '.join(map(str, choices))}, got {_short(value)}")
    return value


def _time(value: Any, where: str) -> dict[str, int]:
    """Check a builtin_interfaces Time (or Duration): {"sec", "nanosec"}."""
    if value is None:
        return {"sec": 0, "nanosec": 0}
    data = _obj(value, where)
    sec, nanosec = data.get("sec"), data.get("nanosec")
    if type(sec) is int and type(nanosec) is int and -2**31 <= sec < 2**31 and 0 <= nanosec < 1_000_000_000:
        return {"sec": sec, "nanosec": nanosec}  # the common case, without making the fields' names
    return {"sec": _int(sec, f"{where}.sec", -2**31, 2**31 - 1),
            "nanosec": _int(nanosec, f"{where}.nanosec", 0, 999_999_999)}


def _header(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    header = _opt_obj(data, "header", where)
    return {"stamp": _time(header.get("stamp"), f"{where}.header.stamp")}


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


# -- Envelopes -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    """A robot's retained status (protocol: Status)."""

    state: str  # online, offline
    stamp: float | None
    reason: str
    data: dict[str, Any]  # the status, every field checked: missions, link, commands, streams, streams_refused


@dataclass(frozen=True)
class Reply:
    """A robot's answer to a command (protocol: Replies)."""

    request_id: str | None
    verb: str | None
    status: str
    data: dict[str, Any]  # the reply, every field the hub reads checked


@dataclass(frozen=True)
class Telemetry:
    """One telemetry message (protocol: Telemetry): `data` is the checked data of a type the hub reads, else None."""

    seq: int
    stamp: float
    type: str
    data: dict[str, Any] | None


Inbound = Status | Reply | Telemetry


def read(where: ParsedTopic, payload: bytes, limits: InboundLimits = DEFAULT_LIMITS) -> Inbound:
    """Parse and check one message from a robot's status, reply or telemetry topic; Refused says why not."""
    return read_message(where, parse_json(payload, limits), limits)


def read_message(where: ParsedTopic, message: dict[str, Any], limits: InboundLimits = DEFAULT_LIMITS) -> Inbound:
    """Check one parsed message (parse_json's) from a robot's status, reply or telemetry topic."""
    if where.kind == "status":
        status = read_status(message, limits)
        if status.data["robot"] not in ("", where.robot):
            raise Refused("robot", f"{_short(status.data['robot'])} sent its status on the topic of {where.robot}")
        return status
    if where.kind == "reply":
        return read_reply(message, where, limits)
    if where.kind == "telemetry":
        return read_telemetry(message, where.name, limits)
    raise Refused("topic", f"the hub reads no {where.kind} messages")


def parse_json(payload: bytes, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    if len(payload) > limits.max_payload:
        raise Refused("payload", f"{len(payload)} bytes, more than {limits.max_payload}")
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise Refused("payload", f"not UTF-8 JSON ({str(error)[:80]})") from None
    _obj(message, "payload")
    # Nesting deeper than max_depth needs more than max_depth brackets: most messages are ruled out by
    # counting them (C speed), and only the rest are walked.
    brackets = payload.count(b"{") + payload.count(b"[")
    if brackets > limits.max_depth and _too_deep(message, limits.max_depth):
        raise Refused("payload", f"nested deeper than {limits.max_depth} levels")
    return message


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values() if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item if isinstance(child, (dict, list)))
    return False


def read_status(message: dict[str, Any], limits: InboundLimits = DEFAULT_LIMITS) -> Status:
    t = limits.max_text
    state = _choice(message.get("state"), "state", ("online", "offline"))
    link = _opt_obj(message, "link", "link")
    dropped = _opt_obj(link, "dropped", "link.dropped")
    commands = _opt_obj(message, "commands", "commands")
    rejected = _opt_obj(commands, "rejected", "commands.rejected")
    missions = _opt_obj(message, "missions", "missions")
    streams = _opt_obj(message, "streams", "streams")
    refused = _opt_obj(message, "streams_refused", "streams_refused")
    sent = _opt_obj(message, "sent", "sent")
    for name, value in (("link.dropped", dropped), ("commands.rejected", rejected), ("streams", streams),
                        ("streams_refused", refused), ("sent", sent)):
        if len(value) > limits.max_streams:
            raise Refused(name, f"{len(value)} entries, more than {limits.max_streams}")
    last = missions.get("last_finished")
    data = {
        "state": state, "robot": _ident(message.get("robot"), "robot", NAME),
        "fleet": _ident(message.get("fleet"), "fleet", NAME), "stamp": _num(message.get("stamp"), "stamp"),
        "reason": _text(message.get("reason"), "reason", t),
        "missions": {"active": [_summary(m, f"missions.active[{i}]", t) for i, m in enumerate(
                         _list(missions.get("active"), "missions.active", limits.max_missions))],
                     "last_finished": None if last is None else _summary(last, "missions.last_finished", t)},
        "link": {"state": _text(link.get("state"), "link.state", 32),
                 "protocol": _text(link.get("protocol"), "link.protocol", 16),
                 "connected": _bool(link.get("connected"), "link.connected"),
                 "last_error": _text(link.get("last_error"), "link.last_error", t),
                 **{key: _num(link.get(key), f"link.{key}") for key in (
                     "queue_depth", "queue_bytes", "inflight", "published", "acknowledged", "overflowed", "connects",
                     "rtt_ms")},
                 "dropped": {_ident(k, "link.dropped", NAME): _num(v, f"link.dropped.{k}")
                             for k, v in dropped.items()}},
        "commands": {"accepted": _num(commands.get("accepted"), "commands.accepted"),
                     "rejected": {_ident(k, "commands.rejected", NAME): _num(v, f"commands.rejected.{k}")
                                  for k, v in rejected.items()}},
        "streams": {_ident(k, "streams", NAME): {_ident(c, f"streams.{k}", NAME): _num(n, f"streams.{k}.{c}")
                                                 for c, n in _obj(v, f"streams.{k}").items()}
                    for k, v in streams.items()},
        "streams_refused": {_ident(k, "streams_refused", NAME): _text(v, f"streams_refused.{k}", t)
                            for k, v in refused.items()},
        "sent": {_ident(k, "sent", NAME, empty=False): _int(v, f"sent.{k}", 1, MAX_SEQ, None) for k, v in sent.items()},
    }
    if any(len(counts) > 16 for counts in data["streams"].values()):
        raise Refused("streams", "more than 16 counters in a stream")
    return Status(state, data["stamp"], data["reason"], data)


def _summary(value: Any, where: str, t: int) -> dict[str, Any]:
    data = _obj(value, where)
    return {"mission_id": _ident(data.get("mission_id"), f"{where}.mission_id"),
            "name": _text(data.get("name"), f"{where}.name", t),
            "state": _choice(data.get("state"), f"{where}.state", tuple(MISSION_STATES)),
            **{key: _int(data.get(key), f"{where}.{key}") for key in (
                "tasks_total", "tasks_succeeded", "tasks_failed", "tasks_running")},
            "message": _text(data.get("message"), f"{where}.message", t)}


def read_reply(message: dict[str, Any], where: ParsedTopic, limits: InboundLimits = DEFAULT_LIMITS) -> Reply:
    t = limits.max_text
    request_id = message.get("id")
    if request_id is not None:
        _ident(request_id, "id", _REQUEST_ID, empty=False)
    verb = message.get("verb")
    if verb is not None:
        _choice(verb, "verb", VERBS)
    if verb is not None and verb != where.name:
        raise Refused("verb", f"{_short(verb)} answers on the reply topic of {where.name}")
    robot = _ident(message.get("robot"), "robot", NAME, empty=False)
    if robot != where.robot:
        raise Refused("robot", f"{_short(robot)} replied on the topic of {where.robot}")
    status = _choice(message.get("status"), "status", REPLY_STATUSES)
    nonce = message.get("nonce")
    if nonce is not None:
        _ident(nonce, "nonce", NONCE, empty=False)
    data: dict[str, Any] = {"id": request_id, "nonce": nonce, "verb": verb, "robot": robot, "status": status,
                            "stamp": _num(message.get("stamp"), "stamp"),
                            "mission_id": _ident(message.get("mission_id"), "mission_id"),
                            "state": _text(message.get("state"), "state", 16),
                            "message": _text(message.get("message"), "message", t)}
    if "reason" in message:
        data["reason"] = _choice(message["reason"], "reason", REJECTION_CODES)
    if "feedback" in message:
        feedback = _obj(message["feedback"], "feedback")
        data["feedback"] = {key: _int(feedback.get(key), f"feedback.{key}") for key in (
            "tasks_total", "tasks_succeeded", "tasks_failed", "tasks_running")}
        data["feedback"]["updated_tasks"] = [
            _task(task, f"feedback.updated_tasks[{i}]", limits)
            for i, task in enumerate(_list(feedback.get("updated_tasks"), "feedback.updated_tasks", limits.max_tasks))]
    if "result" in message:
        result = _obj(message["result"], "result")
        data["result"] = {"mission_id": _ident(result.get("mission_id"), "result.mission_id"),
                          "state": _int(result.get("state"), "result.state", 0, 255),
                          "message": _text(result.get("message"), "result.message", t),
                          "from": _text(result.get("from"), "result.from", 32),
                          "tasks": [_task(task, f"result.tasks[{i}]", limits) for i, task in enumerate(
                              _list(result.get("tasks"), "result.tasks", limits.max_tasks))]}
    if "missions" in message:
        data["missions"] = [mission_state(m, f"missions[{i}]", limits) for i, m in enumerate(
            _list(message["missions"], "missions", limits.max_missions))]
    if "model" in message:
        data["model"] = _model_answer(message["model"], "model", limits)
    return Reply(request_id, verb, status, data)


_VERSION = re.compile(r"^(v[0-9]{4})?$")
_MODEL_TASKS = ("endurance", "anomaly", "policy")


def _model_answer(value: Any, where: str, limits: InboundLimits) -> dict[str, Any]:
    """Check a deploy_model or rollback_model answer: the task, the versions, the gate's figures (JSON text)."""
    data = _obj(value, where)
    metrics = _opt_obj(data, "metrics", where)
    if len(metrics) > limits.max_values:
        raise Refused(f"{where}.metrics", f"{len(metrics)} items, more than {limits.max_values}")
    return {"task": _choice(data.get("task"), f"{where}.task", _MODEL_TASKS),
            "activated": _bool(data.get("activated"), f"{where}.activated"),
            "active_version": _ident(data.get("active_version"), f"{where}.active_version", _VERSION),
            "previous_version": _ident(data.get("previous_version"), f"{where}.previous_version", _VERSION),
            "metrics": {_ident(key, f"{where}.metrics key"): _text(text, f"{where}.metrics.{key}", 2 * limits.max_text)
                        for key, text in metrics.items()}}


def read_telemetry(message: dict[str, Any], stream: str, limits: InboundLimits = DEFAULT_LIMITS) -> Telemetry:
    _ident(stream, "topic", NAME, empty=False)
    seq = _int(message.get("seq"), "seq", 1, MAX_SEQ, default=None)
    stamp = _num(message.get("stamp"), "stamp")
    if stamp is None:
        raise Refused("stamp", "missing")
    kind = message.get("type")
    if not isinstance(kind, str) or not (_TYPE.match(kind) or kind in SPECIAL_TYPES):
        raise Refused("type", f"expected a message type such as nav_msgs/msg/Odometry, got {_short(kind)}")
    data = _obj(message.get("data"), "data")
    if stream == DROPS_STREAM and kind != "qai/DropReport":
        raise Refused("type", f"the drops stream carries qai/DropReport, got {_short(kind)}")
    if stream == SEALS_STREAM and kind != "qai/Seal":
        raise Refused("type", f"the seals stream carries qai/Seal, got {_short(kind)}")
    reader = SPECIAL_READERS.get(kind) or (READERS.get(kind.rsplit("/", 1)[-1]) if kind not in SPECIAL_TYPES else None)
    return Telemetry(seq, stamp, kind, reader(data, "data", limits) if reader is not None else None)


# -- Telemetry data, by type ---------------------------------------------------------------------------

def mission_state(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    data = _obj(value, where)
    t = limits.max_text
    return {"header": _header(data, where), "mission_id": _ident(data.get("mission_id"), f"{where}.mission_id"),
            "name": _text(data.get("name"), f"{where}.name", t),
            "state": _choice(data.get("state"), f"{where}.state", tuple(MISSION_STATES)),
            "message": _text(data.get("message"), f"{where}.message", t),
            **{key: _int(data.get(key), f"{where}.{key}") for key in (
                "tasks_total", "tasks_succeeded", "tasks_failed", "tasks_running")},
            "tasks": [_task(task, f"{where}.tasks[{i}]", limits) for i, task in enumerate(
                _list(data.get("tasks"), f"{where}.tasks", limits.max_tasks))]}


def _task(value: Any, where: str, limits: InboundLimits) -> dict[str, Any]:
    data = _obj(value, where)
    depends = data.get("depends_on")
    if depends is not None and not isinstance(depends, list):
        raise Refused(f"{where}.depends_on", f"expected a list, got {_kind(depends)}")
    progress = _num(data.get("progress"), f"{where}.progress")
    return {"task_id": _ident(data.get("task_id"), f"{where}.task_id"),
            "kind": _ident(data.get("kind"), f"{where}.kind"),
            "depends_on": [_ident(d, f"{where}.depends_on[{i}]") for i, d in enumerate(
                (depends or [])[:limits.max_dependencies])],
            "depends_on_total": len(depends or []),
            "state": _choice(data.get("state", 0), f"{where}.state", tuple(TASK_STATES)),
            "attempt": _int(data.get("attempt"), f"{where}.attempt"),
            "preemptions": _int(data.get("preemptions"), f"{where}.preemptions"),
            "engine": _ident(data.get("engine"), f"{where}.engine"),
            "progress": progress if progress is None or 0.0 <= progress <= 1.0 else None,
            "message": _text(data.get("message"), f"{where}.message", limits.max_text),
            "started": _time(data.get("started"), f"{where}.started"),
            "finished": _time(data.get("finished"), f"{where}.finished"),
            "result": _key_values(data.get("result"), f"{where}.result", limits.max_result_pairs,
                                  limits.max_result_value)}


def _key_values(value: Any, where: str, limit: int, value_limit: int) -> list[dict[str, str]]:
    pairs = []
    for i, pair in enumerate(_list(value, where, limit)):
        pair = _obj(pair, f"{where}[{i}]")
        pairs.append({"key": _ident(pair.get("key"), f"{where}[{i}].key"),
                      "value": _text(pair.get("value"), f"{where}[{i}].value", value_limit)})
    return pairs


def _vector(data: Mapping[str, Any], key: str, where: str, axes: str = "xyz") -> dict[str, float | None]:
    vector = _opt_obj(data, key, where)
    checked = {}
    for axis in axes:  # the names of the fields are made only for an error (the hot path: odometry)
        value = vector.get(axis)
        checked[axis] = value if type(value) is float and value - value == 0.0 else _num(value, f"{where}.{key}.{axis}")
    return checked


def odometry(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    data = _obj(value, where)
    pose = _opt_obj(_opt_obj(data, "pose", where), "pose", f"{where}.pose")
    twist = _opt_obj(_opt_obj(data, "twist", where), "twist", f"{where}.twist")
    return {"header": _header(data, where),
            "pose": {"pose": {"position": _vector(pose, "position", f"{where}.pose.pose"),
                              "orientation": _vector(pose, "orientation", f"{where}.pose.pose", "xyzw")}},
            "twist": {"twist": {"linear": _vector(twist, "linear", f"{where}.twist.twist")}}}


def battery_state(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    data = _obj(value, where)
    return {"header": _header(data, where),
            **{key: _num(data.get(key), f"{where}.{key}") for key in (
                "percentage", "voltage", "current", "charge", "capacity")}}


def endurance_prediction(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    data = _obj(value, where)
    return {"header": _header(data, where),
            **{key: _num(data.get(key), f"{where}.{key}") for key in ("remaining", "baseline", "return_needed")},
            "low": _bool(data.get("low"), f"{where}.low"),
            "model_version": _text(data.get("model_version"), f"{where}.model_version", 64),
            "model_cell": _text(data.get("model_cell"), f"{where}.model_cell", 32)}


def diagnostics(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Check a /diagnostics stream: hub_link's summary ({worst, nodes}) or a DiagnosticArray ({status: [...]})."""
    data = _obj(value, where)
    nodes: dict[str, dict[str, Any]] = {}
    if "nodes" in data:
        listed = _obj(data["nodes"], f"{where}.nodes")
        if len(listed) > limits.max_nodes:
            raise Refused(f"{where}.nodes", f"{len(listed)} entries, more than {limits.max_nodes}")
        entries = [(name, _obj(node, f"{where}.nodes.{_short(name)}")) for name, node in listed.items()]
    else:
        entries = [(_obj(s, f"{where}.status[{i}]").get("name"), s) for i, s in enumerate(
            _list(data.get("status"), f"{where}.status", limits.max_nodes))]
    for name, node in entries:
        name = _text(name, f"{where}.nodes", 256)
        nodes[name] = {"level": _diagnostic_level(node.get("level"), f"{where}.nodes.{name}.level"),
                       "message": _text(node.get("message"), f"{where}.nodes.{name}.message", limits.max_text),
                       "hardware_id": _text(node.get("hardware_id"), f"{where}.nodes.{name}.hardware_id", 64)}
    worst = max((node["level"] for node in nodes.values()), default=0)
    return {"header": _header(data, where), "worst": worst, "nodes": nodes}


def _diagnostic_level(value: Any, where: str) -> int:
    if isinstance(value, list) and len(value) == 1:  # a byte, as the codec sends an octet
        value = value[0]
    return _int(value, where, 0, 3)


def engine_capabilities(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    data = _obj(value, where)
    kinds = []
    for i, kind in enumerate(_list(data.get("kinds"), f"{where}.kinds", limits.max_kinds)):
        kind = _obj(kind, f"{where}.kinds[{i}]")
        schema = kind.get("parameters_schema")
        if schema is not None and (not isinstance(schema, str) or len(schema) > limits.max_schema):
            raise Refused(f"{where}.kinds[{i}].parameters_schema", f"expected a string of at most "
                          f"{limits.max_schema} characters")
        kinds.append({"name": _ident(kind.get("name"), f"{where}.kinds[{i}].name"), "parameters_schema": schema or ""})
    return {"header": _header(data, where), "engine": _ident(data.get("engine"), f"{where}.engine", empty=False),
            "task_action": _ident(data.get("task_action"), f"{where}.task_action"), "kinds": kinds}


def event(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    data = _obj(value, where)
    return {"header": _header(data, where), "source": _text(data.get("source"), f"{where}.source", 256),
            "code": _ident(data.get("code"), f"{where}.code"),
            "severity": _int(data.get("severity"), f"{where}.severity", 0, 2),
            "message": _text(data.get("message"), f"{where}.message", limits.max_text),
            "values": _key_values(data.get("values"), f"{where}.values", limits.max_values, limits.max_text)}


def drop_report(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Check a drop report: `ranges` as ascending, merged [low, high] intervals (never expanded into numbers)."""
    data = _obj(value, where)
    stream = _ident(data.get("stream"), f"{where}.stream", NAME, empty=False)
    if stream == DROPS_STREAM:
        raise Refused(f"{where}.stream", "the drops stream reports other streams")
    ranges = []
    for i, pair in enumerate(_list(data.get("ranges"), f"{where}.ranges", limits.max_ranges)):
        if not isinstance(pair, list) or len(pair) != 2:
            raise Refused(f"{where}.ranges[{i}]", "expected [first, last]")
        low = _int(pair[0], f"{where}.ranges[{i}][0]", 1, MAX_SEQ, default=None)
        high = _int(pair[1], f"{where}.ranges[{i}][1]", low, MAX_SEQ, default=None)
        ranges.append([low, high])
    ranges.sort()
    merged: list[list[int]] = []
    for low, high in ranges:
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return {"stream": stream, "reason": _ident(data.get("reason"), f"{where}.reason", NAME), "ranges": merged}


_DIGEST = re.compile(r"^[0-9a-f]{32}$")


def seal(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Check a seal's data: per stream, [seq, digest] of each message sent since the one before."""
    data = _obj(value, where)
    streams = _obj(data.get("streams"), f"{where}.streams")
    if len(streams) > limits.max_streams:
        raise Refused(f"{where}.streams", f"{len(streams)} streams, more than {limits.max_streams}")
    checked = {}
    for stream, entries in streams.items():
        _ident(stream, f"{where}.streams", NAME, empty=False)
        pairs = []
        for i, entry in enumerate(_list(entries, f"{where}.streams.{stream}", limits.max_ranges)):
            if not isinstance(entry, list) or len(entry) != 2:
                raise Refused(f"{where}.streams.{stream}[{i}]", "expected [seq, digest]")
            pairs.append((_int(entry[0], f"{where}.streams.{stream}[{i}][0]", 1, MAX_SEQ, default=None),
                          _ident(entry[1], f"{where}.streams.{stream}[{i}][1]", _DIGEST, empty=False)))
        checked[stream] = pairs
    return {"streams": checked}


def report(value: Any, where: str, limits: InboundLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    data = _obj(value, where)
    return {"name": _ident(data.get("name"), f"{where}.name", NAME, empty=False),
            "mission_id": _ident(data.get("mission_id"), f"{where}.mission_id"),
            "task_id": _ident(data.get("task_id"), f"{where}.task_id"), "content": data.get("content")}


Reader = Callable[[Any, str, InboundLimits], dict[str, Any]]
# ROS message types, by their name in any package; the project's own payload types, exactly.
READERS: dict[str, Reader] = {
    "MissionState": mission_state, "Odometry": odometry, "BatteryState": battery_state,
    "EndurancePrediction": endurance_prediction, "DiagnosticArray": diagnostics,
    "EngineCapabilities": engine_capabilities, "Event": event,
}
SPECIAL_READERS: dict[str, Reader] = {"qai/DropReport": drop_report, "qai/Report": report, "qai/Seal": seal}
SPECIAL_TYPES = tuple(SPECIAL_READERS)
