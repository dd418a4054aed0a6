"""The qai_edge hub protocol over MQTT: the specification that robot and hub both import. No rclpy import.

This module is the protocol's single source of truth: a hub or robot written in another language follows
what is written here. It states the topics, every payload, the command envelope and how it is signed, the
canonical JSON those signatures cover, and how key ids are derived. Robot side: qai_io.hub_link and the
hub_link node; hub side: qai_hub (qai-hub, the dashboard). Nothing here imports ROS or the rest of the
project.

Version: every command carries `"v": 1` (VERSION); a robot refuses any other.

Topics (`<fleet>` and `<robot>`: 1-64 of A-Z a-z 0-9 _ -; `all` is reserved):

    qai/<fleet>/<robot>/status                 retained, robot -> hub: state online / offline (the last
                                               will), mission summary, link and command counters
    qai/<fleet>/<robot>/telemetry/<stream>     robot -> hub: one stream per configured ROS topic
    qai/<fleet>/<robot>/telemetry/drops        robot -> hub: sequence numbers that will never be sent, and why
    qai/<fleet>/<robot>/cmd/<verb>             hub -> robot: a signed command to one robot
    qai/<fleet>/all/cmd/<verb>                 hub -> robot: a signed command to every robot of the fleet
    qai/<fleet>/<robot>/cmd/<verb>/reply       robot -> hub: accepted, progress, result or rejection
    qai/<fleet>/<robot>/link/ping              robot -> robot: the link's own round-trip probe

Payloads are UTF-8 JSON objects.

Status (retained):
    {"state": "online" | "offline", "robot": str, "fleet": str, "stamp": epoch s,
     "missions": {"active": [summary...], "last_finished": summary | null},
     "link": {...counters...}, "commands": {"accepted": int, "rejected": {code: int}},
     "streams": {stream: {"sent", "skipped", "errors", "too_large", "overflowed"}}, "streams_refused": {...},
     "sent": {stream: seq}}
    `sent` gives each telemetry stream's highest sequence number the broker took (acknowledged it, or for
    QoS 0 it was written to the socket): what the hub has not seen up to there is missing, even at the end of
    a stream that sends nothing more (a broker that died holding it), and the hub asks for it (resend).
    A mission summary: {"mission_id", "name", "state" (MISSION_STATES), "tasks_total", "tasks_succeeded",
    "tasks_failed", "tasks_running", "message"}.

Telemetry (telemetry_payload):
    {"seq": n, "stamp": epoch s, "type": "package/msg/Type", "data": {...}}
    `seq` counts 1, 2, 3, ... per stream across restarts of the robot's link; `stamp` is when the link took
    the message; `data` is the ROS message as JSON (qai_io.hub_link.codec states the mapping: fields by
    name, NaN and infinities as null, Time/Duration as {"sec", "nanosec"}). The hub accounts for every
    sequence number: received, or reported on the drops stream.

Drop reports (stream `drops`, type "qai/DropReport", data = drop_report()):
    {"stream": str, "reason": "queue_full" | "expired" | "refused_by_broker" | "refused_by_client" | "not_kept",
     "ranges": [[first, last], ...] (inclusive, ascending, merged), "count": int}

Signed robot messages (robot -> hub; sign_robot_message, open_robot_envelope):
    {"v": 1, "msg": "<the message's JSON text>", "signatures": [{"alg": "ML-DSA-65", "key": "<key id>",
     "sig": "<base64>"}, ...]}
    Each signature covers robot_signed_bytes(topic, msg): ROBOT_DOMAIN, the topic the message is published
    to, then the JSON text itself; the hub verifies those bytes with the keys it enrolled for the robot
    the topic names (qai_hub.registry) and only then parses them. A robot signs its status and last will,
    every reply, and telemetry of the types must_be_signed() names (mission states, events, reports, drop
    reports, seals); a hub refuses those unsigned. Other telemetry is sealed: every seal period the robot
    sends a seal (stream `seals`, type SEAL_TYPE, signed, data = seal_data()):
        {"streams": {stream: [[seq, digest], ...]}}
    listing telemetry_digest() of every other telemetry message sent since the last seal. The hub matches
    each sealed message to its seal: another digest is a forgery or an alteration; none within a grace
    period leaves it unsealed (counted).

Gaps and resends: an acknowledged telemetry message stays in the robot's history for a stated window
    (hub_link's history_window). A hub that misses numbers of a stream (a gap, or numbers the status's
    `sent` says the broker took) sends a signed `resend` command; the robot publishes again what its history
    holds and reports the rest on the drops stream with reason "not_kept".

Commands (hub -> robot), the envelope (make_command):
    {"v": 1, "id": "<request id: 1-64 of A-Z a-z 0-9 _ . : ->", "verb": "<verb>", "fleet": "<fleet>",
     "robot": "<robot or all>", "timestamp": <ms since the epoch, integer>, "nonce": "<32-64 lowercase hex>",
     "body": {...by verb, BODY_FIELDS...},
     "signatures": [{"alg": "ML-DSA-65", "key": "<key id>", "sig": "<base64>"},
                    {"alg": "Ed25519", "key": "<key id>", "sig": "<base64>"}]}
    Every signature covers signed_bytes(): DOMAIN followed by the RFC 8785 canonical JSON (canonical_json)
    of every field above except `signatures`, plus `topic`, the MQTT topic the command is published to. So
    a command cannot be moved to another robot's or verb's topic, nor its body, time, nonce or target
    changed, without breaking every signature. A key id is the first 16 hex digits of the SHA-256 of the
    key's DER SubjectPublicKeyInfo (key_id). A robot accepts a command when every signature verifies with
    a hub key it holds, one is ML-DSA-65 (FIPS 204) and, in hybrid mode, one is Ed25519; when its
    timestamp is within the robot's window, and not older by more than the window than the newest command
    the same key signed that was accepted (a high-water mark per key, so a clock stepped back admits no
    replay); and when its nonce was never seen (a store that survives restarts). The robot executes the
    canonical JSON it verified.

Bodies by verb (BODY_FIELDS):
    submit_mission   {"mission": {...a mission document, as in config/missions/*.yaml...}}
    cancel_mission   {"mission_id": "...", "task_id": "..." (optional), "reason": "..." (optional)}
    add_tasks        {"mission_id": "...", "tasks": [{...task...}, ...]}
    get_state        {"mission_id": "..." (optional: all), "include_finished": true}
    resend           {"stream": "...", "ranges": [[first, last], ...] (at most MAX_RESEND_RANGES)}
    deploy_model     {"task": "endurance" | "anomaly" | "policy", "files": {"meta.json": base64, "model.pt": base64},
                      "signature": {...the checkpoint's own signature document, qai_hub.model_signing...}}
    rollback_model   {"task": "endurance" | "anomaly" | "policy"}

Replies (robot -> hub, on the robot's own reply topic, also for fleet-wide commands; reply_payload):
    {"id": "<the request id, or null when it could not be read>", "nonce": "<the command's nonce, or null>",
     "verb": str | null, "robot": str, "status": one of REPLY_STATUSES, "stamp": epoch s, ...}, signed by the
    robot. A hub takes a reply as the answer to its command only when the id and the nonce are the ones it
    sent, to that robot (or to all). rejected carries `reason` (one of REJECTION_CODES) and `message`;
    accepted carries `mission_id`; progress, succeeded, failed and canceled carry the mission's state; done
    carries a service's answer. deploy_model and rollback_model are answered succeeded (the model is active)
    or failed (the promotion gate kept the active one), with `model`: {"task", "activated", "active_version",
    "previous_version", "metrics": {name: JSON text}}; a checkpoint whose signature does not do is rejected
    with reason model_refused. A command dropped because more bytes arrived than the robot parses a second
    gets no reply, so a flood is not echoed; one beyond the robot's signature checks a second is answered
    rate_limited (send it again).

Transport: MQTT 5 (3.1.1 accepted), QoS 1 for commands, replies, status and drop reports; clients set
TCP_NODELAY (set_tcp_nodelay), without which every QoS 1 round trip waits 40-90 ms.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import re
import secrets
import socket
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa


# -- Names and topics ----------------------------------------------------------------------------------------

ROOT = "qai"
ALL_ROBOTS = "all"
VERBS = ("submit_mission", "cancel_mission", "add_tasks", "get_state", "resend", "deploy_model", "rollback_model")
DROPS_STREAM = "drops"
SEALS_STREAM = "seals"
RESERVED_STREAMS = (DROPS_STREAM, SEALS_STREAM)

# Fleet, robot and stream names: one topic level, no MQTT wildcards or separators.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_name(value: str, what: str) -> str:
    """Return `value` when it can stand as one topic level; raise ValueError naming `what` otherwise."""
    if not isinstance(value, str) or not NAME.match(value):
        raise ValueError(f"{what}: expected 1-64 letters, digits, '_' or '-', got {value!r}")
    return value


@dataclass(frozen=True)
class RobotTopics:
    """The topics of one robot in one fleet."""

    fleet: str
    robot: str

    def __post_init__(self):
        check_name(self.fleet, "fleet")
        check_name(self.robot, "robot")
        if self.robot == ALL_ROBOTS:
            raise ValueError(f"robot: {ALL_ROBOTS!r} is reserved for fleet-wide commands")

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.fleet}/{self.robot}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def ping(self) -> str:
        return f"{self.base}/link/ping"

    def telemetry(self, stream: str) -> str:
        return f"{self.base}/telemetry/{stream}"

    def command(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}"

    def reply(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}/reply"

    def command_filters(self) -> list[str]:
        """Return what the robot subscribes to for commands: its own and the fleet-wide ones."""
        return [f"{self.base}/cmd/+", fleet_command(self.fleet, "+")]


def fleet_command(fleet: str, verb: str) -> str:
    return f"{ROOT}/{fleet}/{ALL_ROBOTS}/cmd/{verb}"


def command_topic(fleet: str, robot: str, verb: str) -> str:
    """Return the topic a command to `robot` (or ALL_ROBOTS) goes to."""
    return f"{ROOT}/{fleet}/{robot}/cmd/{verb}"


@dataclass(frozen=True)
class ParsedTopic:
    fleet: str
    robot: str  # a robot name, or ALL_ROBOTS
    kind: str  # "status", "telemetry", "cmd", "reply", "ping"
    name: str = ""  # the stream or the verb


def parse_topic(topic: str) -> ParsedTopic | None:
    """Return what a hub-link topic is, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != ROOT:
        return None
    fleet, robot, kind, rest = parts[1], parts[2], parts[3], parts[4:]
    if kind == "status" and not rest:
        return ParsedTopic(fleet, robot, "status")
    if kind == "telemetry" and len(rest) == 1:
        return ParsedTopic(fleet, robot, "telemetry", rest[0])
    if kind == "cmd" and len(rest) == 1:
        return ParsedTopic(fleet, robot, "cmd", rest[0])
    if kind == "cmd" and len(rest) == 2 and rest[1] == "reply":
        return ParsedTopic(fleet, robot, "reply", rest[0])
    if kind == "link" and rest == ["ping"]:
        return ParsedTopic(fleet, robot, "ping")
    return None


# -- Mission, task and health states -------------------------------------------------------------------------

MISSION_STATES = {0: "ACCEPTED", 1: "RUNNING", 2: "CANCELING", 10: "SUCCEEDED", 11: "FAILED", 12: "CANCELED",
                  13: "REJECTED"}
TASK_STATES = {0: "PENDING", 1: "READY", 2: "RUNNING", 3: "CANCELING", 4: "RETRY_WAIT", 10: "SUCCEEDED",
               11: "FAILED", 12: "CANCELED", 13: "SKIPPED"}
TERMINAL = 10  # states >= this are final, for missions and tasks alike
DIAGNOSTIC_LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def mission_state_name(state) -> str:
    return MISSION_STATES.get(state, str(state))


def task_state_name(state) -> str:
    return TASK_STATES.get(state, str(state))


# -- Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) ---------------------------------------------

MAX_SAFE_INTEGER = 2**53 - 1
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 encoding of a JSON value (dicts, lists, str, int, float, bool, None) as UTF-8."""
    parts: list[str] = []
    _encode(value, parts, "$")
    return "".join(parts).encode("utf-8")


def _encode(value: Any, out: list[str], where: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"{where}: integer {value} is beyond +-2^53 and has no exact JSON number")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(number_text(value, where))
    elif isinstance(value, str):
        out.append(_string(value, where))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"{where}: object key {key!r} is not a string")
        out.append("{")
        for index, key in enumerate(sorted(value, key=_utf16_order)):
            if index:
                out.append(",")
            out.append(_string(key, where))
            out.append(":")
            _encode(value[key], out, f"{where}.{key}")
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, f"{where}[{index}]")
        out.append("]")
    else:
        raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def _utf16_order(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _string(text: str, where: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{where}: lone surrogate U+{code:04X} in a string")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def number_text(value: float, where: str = "$") -> str:
    """Format a finite double as ECMAScript's Number.prototype.toString does (what RFC 8785 prescribes)."""
    if not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a JSON number")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript does; only the layout differs.
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    significant = all_digits.lstrip("0")
    point = len(whole) + (int(exponent) if exponent else 0) - (len(all_digits) - len(significant))
    digits = significant.rstrip("0") or "0"
    count = len(digits)
    if count <= point <= 21:
        return sign + digits + "0" * (point - count)
    if 0 < point <= 21:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    power = point - 1
    power_text = f"{'+' if power >= 0 else '-'}{abs(power)}"
    if count == 1:
        return f"{sign}{digits}e{power_text}"
    return f"{sign}{digits[0]}.{digits[1:]}e{power_text}"


# -- Telemetry and drop reports ------------------------------------------------------------------------------

def telemetry_payload(seq: int, stamp: float, type_name: str, data: Mapping[str, Any]) -> bytes:
    """Return a telemetry payload: {"seq", "stamp", "type", "data"}."""
    return orjson.dumps({"seq": seq, "stamp": stamp, "type": type_name, "data": data})


def telemetry_envelope(seq: int, stamp: float, type_json: bytes, data_json: bytes) -> bytes:
    """Return the payload telemetry_payload gives, from the type and data already encoded as JSON."""
    return b'{"seq":%d,"stamp":%s,"type":%s,"data":%s}' % (seq, orjson.dumps(stamp), type_json, data_json)


DROP_REASONS = ("queue_full", "expired", "refused_by_broker", "refused_by_client", "not_kept")
DROP_REPORT_TYPE = "qai/DropReport"


def compress_ranges(numbers: Iterable[int]) -> list[list[int]]:
    """[1, 2, 3, 7, 9, 10] -> [[1, 3], [7, 7], [9, 10]]."""
    ranges: list[list[int]] = []
    for number in sorted(set(numbers)):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ranges


def merge_ranges(first: list[list[int]], second: list[list[int]]) -> list[list[int]]:
    """Merge two lists of inclusive [low, high] ranges into one ascending list with no overlap or adjacency."""
    merged: list[list[int]] = []
    for low, high in sorted([*first, *second]):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return merged


def drop_report(stream: str, reason: str, ranges: list[list[int]]) -> dict[str, Any]:
    """Return a drop report's data: which sequence numbers of `stream` will never be sent, and why."""
    return {"stream": stream, "reason": reason, "ranges": ranges,
            "count": sum(high - low + 1 for low, high in ranges)}


# -- Commands: the envelope, bodies and replies --------------------------------------------------------------

DOMAIN = b"qai-hub-command/1\n"
VERSION = 1
ML_DSA_65 = "ML-DSA-65"
ED25519 = "Ed25519"
ALGORITHMS = (ML_DSA_65, ED25519)
SIGNED_FIELDS = ("v", "id", "verb", "fleet", "robot", "timestamp", "nonce", "body")
MAX_SIGNATURES = 4
_MAX_SIGNATURE_TEXT = {ML_DSA_65: 4500, ED25519: 100}  # base64 of 3309 and 64 bytes, with room

REJECTION_CODES = ("rate_limited", "oversized", "malformed", "bad_schema", "unknown_verb", "wrong_robot", "expired",
                   "unsigned", "unknown_key", "bad_signature", "replayed", "unavailable", "mission_rejected",
                   "engine_unavailable", "model_refused")
REPLY_STATUSES = ("rejected", "accepted", "progress", "succeeded", "failed", "canceled", "done", "error")
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
NONCE = re.compile(r"^[0-9a-f]{32,64}$")

# verb -> {field: (types, required)}
BODY_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "submit_mission": {"mission": ((dict,), True)},
    "cancel_mission": {"mission_id": ((str,), True), "task_id": ((str,), False), "reason": ((str,), False)},
    "add_tasks": {"mission_id": ((str,), True), "tasks": ((list,), True)},
    "get_state": {"mission_id": ((str,), False), "include_finished": ((bool,), False)},
    "resend": {"stream": ((str,), True), "ranges": ((list,), True)},
    "deploy_model": {"task": ((str,), True), "files": ((dict,), True), "signature": ((dict,), True)},
    "rollback_model": {"task": ((str,), True)},
}
MAX_RESEND_RANGES = 100


def reply_payload(request_id: str | None, verb: str | None, robot: str, status: str, stamp: float,
                  nonce: str | None = None, **fields: Any) -> bytes:
    """Return a reply: {"id", "nonce", "verb", "robot", "status", "stamp", ...fields} (before it is signed).

    `id` and `nonce` are the command's: a hub takes a reply as the answer to its command only when both match
    and the robot's signature verifies. A refusal of a command that could not be read carries null for both.
    """
    return orjson.dumps({"id": request_id, "nonce": nonce, "verb": verb, "robot": robot, "status": status,
                         "stamp": stamp, **fields})


def resend_ranges(value: Any) -> list[list[int]]:
    """Check a resend body's `ranges`: at most MAX_RESEND_RANGES [first, last] pairs of sequence numbers."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RESEND_RANGES:
        raise ValueError(f"ranges: expected 1 to {MAX_RESEND_RANGES} [first, last] pairs")
    ranges = []
    for index, pair in enumerate(value):
        if (not isinstance(pair, list) or len(pair) != 2 or not all(
                isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_SAFE_INTEGER for n in pair)
                or pair[0] > pair[1]):
            raise ValueError(f"ranges[{index}]: expected [first, last] with 1 <= first <= last <= 2^53")
        ranges.append([pair[0], pair[1]])
    return ranges


# -- What robots send: signed messages and seals ---------------------------------------------------------------

ROBOT_DOMAIN = b"qai-robot-message/1\n"
SEAL_TYPE = "qai/Seal"
REPORT_TYPE = "qai/Report"
# Telemetry of these types (any package's MissionState and Event) is signed message by message, as outcomes and
# what a hub acts on; every other telemetry message is covered by a signed seal.
SIGNED_TYPES = ("MissionState", "Event", REPORT_TYPE, DROP_REPORT_TYPE, SEAL_TYPE)


def must_be_signed(type_name: str) -> bool:
    """Tell whether telemetry of `type_name` travels signed message by message (else: under a seal)."""
    return type_name in SIGNED_TYPES or type_name.rsplit("/", 1)[-1] in SIGNED_TYPES


DIGEST_BYTES = 16


def robot_signed_bytes(topic: str, message: bytes) -> bytes:
    """Return the bytes a robot's signatures cover: ROBOT_DOMAIN, the topic, a newline, the message's JSON text."""
    return ROBOT_DOMAIN + topic.encode("utf-8") + b"\n" + message


def sign_robot_message(signer: "Signer", topic: str, message: bytes) -> bytes:
    """Return the payload of a signed robot message: {"v": 1, "msg": "<the JSON text>", "signatures": [...]}.

    The message travels as a JSON string, so a hub verifies exactly the bytes that were signed and then parses
    them: there is no second, canonical form to agree on.
    """
    return orjson.dumps({"v": VERSION, "msg": message.decode("utf-8"),
                         "signatures": signer.sign(robot_signed_bytes(topic, message))})


def is_robot_envelope(value: Any) -> bool:
    """Tell whether a parsed payload is a signed robot message (its fields are exactly v, msg, signatures)."""
    return isinstance(value, dict) and len(value) == 3 and "msg" in value and "signatures" in value and "v" in value


def open_robot_envelope(envelope: Mapping[str, Any], topic: str, keyring: "Keyring",
                        require_ed25519: bool = False) -> tuple[bytes, list[str]]:
    """Return a signed robot message's JSON text (parsed payload `envelope`) and the key ids that signed it.

    SignatureRejected when it does not verify with one of `keyring`'s keys (the robot's); ValueError when the
    envelope is not of this version.
    """
    if envelope["v"] != VERSION or not isinstance(envelope["msg"], str):
        raise ValueError(f"v: expected {VERSION}, and msg a string")
    message = envelope["msg"].encode("utf-8", "surrogatepass")
    signed_by = keyring.verify(robot_signed_bytes(topic, message), envelope["signatures"], require_ed25519)
    return message, signed_by


def telemetry_digest(payload: bytes) -> str:
    """Return what a seal lists for one telemetry payload: the first 16 bytes of its SHA-256, in hex."""
    return hashlib.sha256(payload).hexdigest()[:2 * DIGEST_BYTES]


def seal_data(digests: Mapping[str, Iterable[tuple[int, str]]]) -> dict[str, Any]:
    """Return a seal's data: {"streams": {stream: [[seq, digest], ...]}}, the messages sent since the last seal."""
    return {"streams": {stream: [[seq, digest] for seq, digest in entries] for stream, entries in digests.items()}}


class SignatureRejected(Exception):
    """A command whose signatures do not do. `code` is one of unsigned, unknown_key, bad_signature."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and why."""


def key_id(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def algorithm_of(key) -> str:
    if isinstance(key, (mldsa.MLDSA65PublicKey, mldsa.MLDSA65PrivateKey)):
        return ML_DSA_65
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return ED25519
    raise KeyFileError(f"unsupported key type {type(key).__name__} (expected ML-DSA-65 or Ed25519)")


def signed_bytes(command: Mapping[str, Any], topic: str) -> bytes:
    """Return the bytes every signature of `command` covers when it is published to `topic`."""
    fields = {name: command.get(name) for name in SIGNED_FIELDS}
    fields["topic"] = topic
    return DOMAIN + canonical_json(fields)


# -- Keys ------------------------------------------------------------------------------------------

def load_public_key(path: str | Path):
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise KeyFileError(f"{path}: not a PEM public key ({error})") from None
    algorithm_of(key)
    return key


def load_private_key(path: str | Path):
    """Load a PEM private key file, refusing one that others may read (as ssh does)."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read: {error.strerror or error}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: private key is accessible by others (mode {stat.S_IMODE(mode):04o}); "
                           f"run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({error})") from None
    algorithm_of(key)
    return key


def generate_key_pair(private_path: str | Path, public_path: str | Path, algorithm: str = ML_DSA_65,
                      overwrite: bool = False) -> str:
    """Write a new key pair (private key mode 0600, created that way) and return its key id."""
    private_path, public_path = Path(private_path).expanduser(), Path(public_path).expanduser()
    key = (mldsa.MLDSA65PrivateKey.generate() if algorithm == ML_DSA_65 else ed25519.Ed25519PrivateKey.generate())
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        descriptor = os.open(private_path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{private_path}: exists; refusing to overwrite a private key") from None
    with os.fdopen(descriptor, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(private_pem)
    public_path.write_bytes(public_pem)
    return key_id(key.public_key())


# -- The hub side: signing ---------------------------------------------------------------------

class Signer:
    """The hub's private keys: an ML-DSA-65 key and, for hybrid signatures, an Ed25519 key."""

    def __init__(self, mldsa_key, ed25519_key=None):
        if algorithm_of(mldsa_key) != ML_DSA_65:
            raise KeyFileError("the first key must be an ML-DSA-65 private key")
        if ed25519_key is not None and algorithm_of(ed25519_key) != ED25519:
            raise KeyFileError("the hybrid key must be an Ed25519 private key")
        self._keys = [(ML_DSA_65, mldsa_key, key_id(mldsa_key.public_key()))]
        if ed25519_key is not None:
            self._keys.append((ED25519, ed25519_key, key_id(ed25519_key.public_key())))

    @classmethod
    def from_files(cls, mldsa_path: str | Path, ed25519_path: str | Path | None = None) -> "Signer":
        return cls(load_private_key(mldsa_path), load_private_key(ed25519_path) if ed25519_path else None)

    @property
    def key_ids(self) -> list[str]:
        return [kid for _, _, kid in self._keys]

    def sign(self, message: bytes) -> list[dict[str, str]]:
        return [{"alg": alg, "key": kid, "sig": base64.b64encode(key.sign(message)).decode("ascii")}
                for alg, key, kid in self._keys]


def make_command(signer: Signer | None, *, fleet: str, robot: str, verb: str, body: Mapping[str, Any],
                 topic: str, timestamp_ms: int | None = None, nonce: str | None = None,
                 request_id: str | None = None) -> dict[str, Any]:
    """Return a command envelope for `topic`, signed by `signer` (None: unsigned, for tests of the refusal)."""
    command = {"v": VERSION, "id": request_id or uuid.uuid4().hex, "verb": verb, "fleet": fleet, "robot": robot,
               "timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
               "nonce": nonce or secrets.token_hex(16), "body": dict(body)}
    command["signatures"] = signer.sign(signed_bytes(command, topic)) if signer is not None else []
    return command


# -- The robot side: verifying -----------------------------------------------------------------

@dataclass(frozen=True)
class KnownKey:
    key_id: str
    algorithm: str
    public_key: Any
    source: str


class Keyring:
    """The hub public keys a robot trusts."""

    def __init__(self, keys: Iterable[KnownKey] = ()):
        self.keys = {key.key_id: key for key in keys}

    @classmethod
    def from_files(cls, paths: Iterable[str]) -> tuple["Keyring", list[str], list[str]]:
        """Load every usable key; return the keyring, errors of files that cannot be used, and missing files."""
        keys, errors, missing = [], [], []
        for path in paths:
            if not Path(path).expanduser().exists():
                missing.append(str(path))
                continue
            try:
                public_key = load_public_key(path)
            except KeyFileError as error:
                errors.append(str(error))
                continue
            keys.append(KnownKey(key_id(public_key), algorithm_of(public_key), public_key, str(path)))
        return cls(keys), errors, missing

    def count(self, algorithm: str) -> int:
        return sum(1 for key in self.keys.values() if key.algorithm == algorithm)

    def verify(self, message: bytes, signatures: Any, require_ed25519: bool = False) -> list[str]:
        """Check every signature over `message`; return the key ids that signed, or raise SignatureRejected."""
        if not signatures:
            raise SignatureRejected("unsigned", "the command carries no signature")
        if not isinstance(signatures, list) or len(signatures) > MAX_SIGNATURES:
            raise SignatureRejected("bad_signature", f"signatures: expected a list of at most {MAX_SIGNATURES}")
        signed_by: dict[str, str] = {}
        for index, entry in enumerate(signatures):
            where = f"signatures[{index}]"
            if not isinstance(entry, dict) or set(entry) != {"alg", "key", "sig"}:
                raise SignatureRejected("bad_signature", f"{where}: expected an object with alg, key and sig")
            algorithm, kid, text = entry["alg"], entry["key"], entry["sig"]
            if algorithm not in ALGORITHMS:
                raise SignatureRejected("bad_signature", f"{where}.alg: expected one of {', '.join(ALGORITHMS)}, "
                                        f"got {str(algorithm)[:40]!r}")
            if not isinstance(text, str) or len(text) > _MAX_SIGNATURE_TEXT[algorithm]:
                raise SignatureRejected("bad_signature", f"{where}.sig: expected base64 text of a {algorithm} "
                                        "signature")
            known = self.keys.get(kid) if isinstance(kid, str) else None
            if known is None or known.algorithm != algorithm:
                raise SignatureRejected("unknown_key", f"{where}: {algorithm} key {str(kid)[:40]!r} is not one of "
                                        f"the robot's hub keys")
            try:
                signature = base64.b64decode(text, validate=True)
                known.public_key.verify(signature, message)
            except (InvalidSignature, binascii.Error, ValueError):
                raise SignatureRejected("bad_signature", f"{where}: the {algorithm} signature of key {kid} does "
                                        "not verify") from None
            signed_by[kid] = algorithm
        algorithms = set(signed_by.values())
        if ML_DSA_65 not in algorithms:
            raise SignatureRejected("unsigned", "the command carries no ML-DSA-65 signature")
        if require_ed25519 and ED25519 not in algorithms:
            raise SignatureRejected("unsigned", "hybrid signatures are required: no Ed25519 signature")
        return list(signed_by)


# -- Transport -----------------------------------------------------------------------------------------------

def set_tcp_nodelay(client, userdata, sock) -> None:
    """Set TCP_NODELAY (a paho on_socket_open): Nagle plus delayed ACKs add ~40-90 ms to every QoS 1 round trip."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
