"""Commands from the hub, checked before anything acts, and the replies that answer them. No rclpy import.

A command arrives on `qai/<fleet>/<robot>/cmd/<verb>` or `qai/<fleet>/all/cmd/<verb>` (format:
qai_hub.protocol). CommandGate.check runs these checks in order, cheapest first, and nothing is
parsed before its size is known; the first that fails refuses the command with a code:

    rate_limited   more than max_rate commands a second (counted; no reply, so a flood is not echoed)
    oversized      payload above max_bytes (not parsed)
    malformed      not UTF-8 JSON, duplicate keys, or nested deeper than max_depth
    bad_schema     envelope fields missing or of the wrong type, or a body that does not fit its verb
    unknown_verb   a verb this robot does not serve
    wrong_robot    fleet or robot in the envelope differ from the topic's or from this robot
    expired        timestamp further than window_s from this robot's clock (either way: clock skew)
    unsigned, unknown_key, bad_signature      see signing.Keyring.verify
    replayed       a nonce already seen (the store survives restarts)

Bodies by verb:
    submit_mission   {"mission": {...a mission document, as in config/missions/*.yaml...}}
    cancel_mission   {"mission_id": "...", "task_id": "..." (optional), "reason": "..." (optional)}
    add_tasks        {"mission_id": "...", "tasks": [{...task...}, ...]}
    get_state        {"mission_id": "..." (optional: all), "include_finished": true}

Replies go to `qai/<fleet>/<robot>/cmd/<verb>/reply` (the robot's own, also for fleet-wide commands) as
`{"id", "verb", "robot", "status", "stamp", ...}`; status is one of rejected (with `reason`, a code
above or mission_rejected / engine_unavailable, and `message`), accepted, progress, succeeded, failed,
canceled, done (a service answered) or error.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from qai_edge.text import shorten
from qai_hub.protocol import (ALL_ROBOTS, BODY_FIELDS, NONCE, REJECTION_CODES, REQUEST_ID, VERBS, VERSION, Keyring,
                              SignatureRejected, parse_topic, reply_payload, signed_bytes)


class CommandRejected(Exception):
    def __init__(self, code: str, message: str, request_id: str | None = None, verb: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.verb = verb


@dataclass(frozen=True)
class Command:
    id: str
    verb: str
    fleet: str
    target: str  # the robot, or ALL_ROBOTS
    topic: str
    timestamp_ms: int
    nonce: str
    body: dict[str, Any]
    signed_by: tuple[str, ...]


class CommandGate:
    """Checks commands for one robot and counts what it accepted and refused (by code)."""

    def __init__(self, *, fleet: str, robot: str, keyring: Keyring, nonces: NonceStore, window_s: float = 30.0,
                 max_bytes: int = 65536, max_depth: int = 32, max_rate: float = 20.0,
                 require_ed25519: bool = False, wall_clock: Callable[[], float] = time.time,
                 steady_clock: Callable[[], float] = time.monotonic):
        self.fleet, self.robot = fleet, robot
        self.keyring = keyring
        self.nonces = nonces
        self.window_s = window_s
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_rate = max_rate
        self.require_ed25519 = require_ed25519
        self._wall = wall_clock
        self._steady = steady_clock
        self._allowance = max_rate
        self._last_refill = steady_clock()
        self.accepted = 0
        self.rejected: dict[str, int] = {code: 0 for code in REJECTION_CODES}

    def count(self, code: str) -> None:
        self.rejected[code] = self.rejected.get(code, 0) + 1

    def check(self, topic: str, payload: bytes) -> Command:
        """Return the verified command, or raise CommandRejected (counted) saying why not."""
        try:
            command = self._check(topic, payload)
        except CommandRejected as rejection:
            self.count(rejection.code)
            raise
        self.accepted += 1
        return command

    def _check(self, topic: str, payload: bytes) -> Command:
        now = self._steady()
        self._allowance = min(self.max_rate, self._allowance + (now - self._last_refill) * self.max_rate)
        self._last_refill = now
        if self._allowance < 1.0:
            raise CommandRejected("rate_limited", f"more than {self.max_rate:g} commands a second")
        self._allowance -= 1.0
        parsed_topic = parse_topic(topic)
        topic_verb = parsed_topic.name if parsed_topic is not None and parsed_topic.kind == "cmd" else None
        if len(payload) > self.max_bytes:
            raise CommandRejected("oversized", f"payload of {len(payload)} bytes is over max_command_bytes "
                                  f"({self.max_bytes})", verb=topic_verb)
        data = _parse_json(payload, self.max_depth, topic_verb)
        if not isinstance(data, dict):
            raise CommandRejected("bad_schema", f"expected a JSON object, got {_kind(data)}", verb=topic_verb)
        request_id = data.get("id") if isinstance(data.get("id"), str) and REQUEST_ID.match(data["id"]) else None
        verb = data.get("verb")

        def reject(code: str, message: str) -> CommandRejected:
            return CommandRejected(code, message, request_id, topic_verb)

        expected = {"v": int, "id": str, "verb": str, "fleet": str, "robot": str, "timestamp": int, "nonce": str,
                    "body": dict, "signatures": list}
        for name, kind in expected.items():
            value = data.get(name)
            if name not in data:
                raise reject("bad_schema", f"{name}: missing")
            if isinstance(value, bool) or not isinstance(value, kind):
                raise reject("bad_schema", f"{name}: expected {kind.__name__}, got {_kind(value)}")
        unknown = sorted(set(data) - set(expected))
        if unknown:
            raise reject("bad_schema", f"{unknown[0][:40]}: unknown field (expected: "
                         f"{', '.join(expected)})")
        if data["v"] != VERSION:
            raise reject("bad_schema", f"v: this robot speaks version {VERSION}, got {data['v']}")
        if request_id is None:
            raise reject("bad_schema", f"id: expected 1-64 letters, digits or _.:-, got {shorten(data['id'], 40)}")
        if not NONCE.match(data["nonce"]):
            raise reject("bad_schema", f"nonce: expected 32-64 lowercase hex digits, got {shorten(data['nonce'], 40)}")
        if topic_verb is None:
            raise reject("bad_schema", f"{shorten(topic, 100)} is not a command topic")
        if topic_verb not in VERBS:
            raise reject("unknown_verb", f"{topic_verb[:40]}: not a verb this robot serves (verbs: "
                         f"{', '.join(VERBS)})")
        if verb != topic_verb:
            raise reject("bad_schema", f"verb: {shorten(verb, 40)} does not match the topic's {topic_verb}")
        if parsed_topic.fleet != self.fleet or data["fleet"] != self.fleet:
            raise reject("wrong_robot", f"fleet: this robot is in fleet {self.fleet}, the command is for "
                         f"{shorten(data['fleet'], 40)}")
        if parsed_topic.robot not in (self.robot, ALL_ROBOTS) or data["robot"] != parsed_topic.robot:
            raise reject("wrong_robot", f"robot: this is {self.robot}, the command is for {shorten(data['robot'], 40)}"
                         f" on {shorten(topic, 100)}")
        skew = data["timestamp"] / 1000.0 - self._wall()
        if abs(skew) > self.window_s:
            raise reject("expired", f"timestamp is {abs(skew):.1f} s in the {'past' if skew < 0 else 'future'}; "
                         f"commands are valid for {self.window_s:g} s")
        try:
            signed_by = self.keyring.verify(signed_bytes(data, topic), data["signatures"], self.require_ed25519)
        except SignatureRejected as error:
            raise reject(error.code, error.message) from None
        except ValueError as error:  # the body holds what canonical JSON cannot represent
            raise reject("bad_schema", f"body: {error}") from None
        _check_body(verb, data["body"], reject)
        # Last: a nonce is recorded only for a command that is otherwise good.
        if not self.nonces.record(data["nonce"], expires=self._wall() + 2 * self.window_s, now=self._wall()):
            raise reject("replayed", f"nonce {data['nonce']} was used before")
        return Command(id=request_id, verb=verb, fleet=self.fleet, target=data["robot"], topic=topic,
                       timestamp_ms=data["timestamp"], nonce=data["nonce"], body=data["body"],
                       signed_by=tuple(signed_by))


def _check_body(verb: str, body: Mapping[str, Any], reject) -> None:
    fields = BODY_FIELDS[verb]
    for name in body:
        if name not in fields:
            raise reject("bad_schema", f"body.{name[:40]}: unknown field of {verb} "
                         f"(fields: {', '.join(fields)})")
    for name, (kinds, required) in fields.items():
        if name not in body:
            if required:
                raise reject("bad_schema", f"body.{name}: missing")
            continue
        if isinstance(body[name], bool) and bool not in kinds or not isinstance(body[name], kinds):
            raise reject("bad_schema", f"body.{name}: expected {' or '.join(k.__name__ for k in kinds)}, "
                         f"got {_kind(body[name])}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {shorten(key, 40)}")
            seen.add(key)
    return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed (JSON numbers must be finite)")


def _parse_json(payload: bytes, max_depth: int, verb: str | None) -> Any:
    try:
        text = payload.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except UnicodeDecodeError as error:
        raise CommandRejected("malformed", f"not UTF-8 at byte {error.start}", verb=verb) from None
    except RecursionError:
        raise CommandRejected("malformed", f"nested deeper than {max_depth} levels", verb=verb) from None
    except ValueError as error:
        raise CommandRejected("malformed", f"not valid JSON: {shorten(str(error), 120)}", verb=verb) from None
    if _depth(data) > max_depth:
        raise CommandRejected("malformed", f"nested deeper than {max_depth} levels", verb=verb)
    return data


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def rejection_reply(rejection: CommandRejected, robot: str, stamp: float) -> bytes:
    return reply_payload(rejection.request_id, rejection.verb, robot, "rejected", stamp, reason=rejection.code,
                         message=rejection.message)


class NonceStore:
    """Nonces of accepted commands, on disk (SQLite, synchronous=FULL), kept until their command expires.

    A nonce is recorded before its command acts, so a replay is refused after a crash or restart too.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces(expires)")

    def record(self, nonce: str, expires: float, now: float) -> bool:
        """Record `nonce` (kept until `expires`, epoch seconds); False when it was recorded before."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM nonces WHERE expires < ?", (now,))
            try:
                self._db.execute("INSERT INTO nonces (nonce, expires) VALUES (?, ?)", (nonce, expires))
            except sqlite3.IntegrityError:
                return False
        return True

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM nonces").fetchone()[0]

    def close(self) -> None:
        self._db.close()
