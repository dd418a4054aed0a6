"""Commands from the hub, checked before anything acts, and the replies that answer them. No rclpy import.

A command arrives on `qai/<fleet>/<robot>/cmd/<verb>` or `qai/<fleet>/all/cmd/<verb>` (format:
qai_hub.protocol). CommandGate.check runs these checks in order, cheapest first: nothing is parsed before
its size is known, and no signature is checked before everything else about the command is; the first that
fails refuses the command with a code:

    rate_limited   more bytes a second than max_parse_bytes to parse (dropped unread, not answered: a flood is
                   not echoed), or more signatures a second than max_verify_rate to check (answered: the hub
                   sends the command again)
    oversized      payload above max_bytes (not parsed)
    malformed      not UTF-8 JSON, duplicate keys, or nested deeper than max_depth
    bad_schema     envelope fields missing, of the wrong type or out of range, or a body that does not fit its
                   verb
    unknown_verb   a verb this robot does not serve
    wrong_robot    fleet or robot in the envelope differ from the topic's or from this robot
    expired        timestamp further than window_s from this robot's clock (either way: clock skew), or older
                   than the newest command this key signed that was accepted by more than window_s (a replay
                   after the robot's clock was stepped back), or older than the rebuild of a damaged store
    replayed       a nonce already seen (the store survives restarts)
    unsigned, unknown_key, bad_signature      see qai_hub.protocol.Keyring.verify
    unavailable    the nonce store cannot be used (a disk that cannot be written): no command is accepted until
                   it can, while telemetry flows

Junk (oversized, malformed, unsigned, wrong robot, expired, replayed) is refused before any signature is
checked, so a flood of it costs the parse budget only and never the budget of signature checks that signed
commands need. What is executed is what was verified: the body is taken from the canonical JSON the
signatures cover (so `5` and `5.0`, which sign alike, execute alike).

Replies go to `qai/<fleet>/<robot>/cmd/<verb>/reply` (the robot's own, also for fleet-wide commands), signed
by the robot: see qai_hub.protocol. Every refusal that names a command is answered (within max_reply_rate
refusals a second): with the command's id and nonce when they could be read.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from qai_edge.text import shorten
from qai_hub import model_signing
from qai_hub.protocol import (ALL_ROBOTS, BODY_FIELDS, DOMAIN, MAX_SAFE_INTEGER, ML_DSA_65, NAME, NONCE,
                              REJECTION_CODES, REQUEST_ID, VERBS, VERSION, Keyring, SignatureRejected, parse_topic,
                              reply_payload, resend_ranges, signed_bytes)


class CommandRejected(Exception):
    def __init__(self, code: str, message: str, request_id: str | None = None, verb: str | None = None,
                 nonce: str | None = None, answer: bool = True):
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.verb = verb
        self.nonce = nonce
        self.answer = answer  # False: dropped unanswered (a flood is not echoed)
        self.checked = False  # True once it passed every check that comes before its signature


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


class TokenBucket:
    """At most `rate` units a second, in bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._last = burst, clock()

    def take(self, amount: float = 1.0) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True


class RefusalLog:
    """Which refusals get a log line: the first of each code, then at most one a `period`, counting the rest.

    A flood of junk must not become a flood of log lines: each line costs the robot far more than the refusal
    (a /rosout message, a console and a file write: 80 % of the link's CPU under 2,000 junk commands a second)
    and fills its disk. Every refusal is still counted in CommandGate.rejected, which /diagnostics reports.
    """

    def __init__(self, period: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.period, self._clock = period, clock
        self._logged: dict[str, float] = {}  # code -> when its last line was written (codes: a closed set)
        self._held: dict[str, int] = {}  # code -> refusals since, not logged

    def line(self, rejection: CommandRejected) -> str | None:
        """Return the line to log for `rejection`, or None to count it only."""
        now, code = self._clock(), rejection.code
        last = self._logged.get(code)
        if last is not None and now - last < self.period:
            self._held[code] = self._held.get(code, 0) + 1
            return None
        self._logged[code] = now
        held = self._held.pop(code, 0)
        more = f" ({held} more refused as {code} in the {now - last:.0f} s before, not logged)" if held else ""
        return f"command refused ({code}): {rejection.message}{more}"


class CommandGate:
    """Checks commands for one robot and counts what it accepted and refused (by code)."""

    def __init__(self, *, fleet: str, robot: str, keyring: Keyring, nonces: "NonceStore", window_s: float = 30.0,
                 max_bytes: int = 65536, max_depth: int = 32, max_parse_bytes: float = 4 << 20,
                 max_verify_rate: float = 50.0, max_reply_rate: float = 10.0, require_ed25519: bool = False,
                 wall_clock: Callable[[], float] = time.time, steady_clock: Callable[[], float] = time.monotonic):
        self.fleet, self.robot = fleet, robot
        self.keyring = keyring
        self.nonces = nonces
        self.window_s = window_s
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.require_ed25519 = require_ed25519
        self._wall = wall_clock
        self._parse_budget = TokenBucket(max_parse_bytes, max(max_parse_bytes, 2 * max_bytes), steady_clock)
        self._verify_budget = TokenBucket(max_verify_rate, max(1.0, max_verify_rate), steady_clock)
        # Refusals are answered within a budget, junk (refused before its signature was looked at) within its
        # own, so a flood of junk cannot take the answers of the commands that were signature-checked.
        self._reply_budget = TokenBucket(max_reply_rate, max(1.0, max_reply_rate), steady_clock)
        self._junk_reply_budget = TokenBucket(max_reply_rate, max(1.0, max_reply_rate), steady_clock)
        self.accepted = 0
        self.rejected: dict[str, int] = {code: 0 for code in REJECTION_CODES}
        self.log = RefusalLog()

    def count(self, code: str) -> None:
        self.rejected[code] = self.rejected.get(code, 0) + 1

    def check(self, topic: str, payload: bytes) -> Command:
        """Return the verified command, or raise CommandRejected (counted) saying why not.

        A rejection with `answer` False is not to be replied to; the others are answered, at most
        max_reply_rate a second (the rest are counted only).
        """
        try:
            command = self._check(topic, payload)
        except CommandRejected as rejection:
            self.count(rejection.code)
            budget = self._reply_budget if rejection.checked else self._junk_reply_budget
            if rejection.answer and not budget.take():
                rejection.answer = False
            raise
        self.accepted += 1
        return command

    def _check(self, topic: str, payload: bytes) -> Command:
        parsed_topic = parse_topic(topic)
        topic_verb = parsed_topic.name if parsed_topic is not None and parsed_topic.kind == "cmd" else None
        if not self._parse_budget.take(len(payload)):
            raise CommandRejected("rate_limited", f"more than {self._parse_budget.rate:.0f} command bytes a second",
                                  verb=topic_verb, answer=False)
        if len(payload) > self.max_bytes:
            raise CommandRejected("oversized", f"payload of {len(payload)} bytes is over max_command_bytes "
                                  f"({self.max_bytes})", verb=topic_verb)
        data = _parse_json(payload, self.max_depth, topic_verb)
        if not isinstance(data, dict):
            raise CommandRejected("bad_schema", f"expected a JSON object, got {_kind(data)}", verb=topic_verb)
        request_id = data.get("id") if isinstance(data.get("id"), str) and REQUEST_ID.match(data["id"]) else None
        nonce = data.get("nonce") if isinstance(data.get("nonce"), str) and NONCE.match(data["nonce"]) else None
        verb = data.get("verb")

        def reject(code: str, message: str, answer: bool = True) -> CommandRejected:
            return CommandRejected(code, message, request_id, topic_verb, nonce, answer)

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
            raise reject("bad_schema", f"{unknown[0][:40]}: unknown field (expected: {', '.join(expected)})")
        if data["v"] != VERSION:
            raise reject("bad_schema", f"v: this robot speaks version {VERSION}, got {shorten(data['v'], 40)}")
        if request_id is None:
            raise reject("bad_schema", f"id: expected 1-64 letters, digits or _.:-, got {shorten(data['id'], 40)}")
        if nonce is None:
            raise reject("bad_schema", f"nonce: expected 32-64 lowercase hex digits, got {shorten(data['nonce'], 40)}")
        if not 0 <= data["timestamp"] <= MAX_SAFE_INTEGER:
            raise reject("bad_schema", f"timestamp: expected milliseconds since the epoch (0..2^53), got "
                         f"{shorten(data['timestamp'], 40)}")
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
        if not self.nonces.usable:
            raise reject("unavailable", f"the nonce store cannot be used ({self.nonces.error}): commands are refused "
                         "until it can")
        signer_keys = [entry.get("key") for entry in data["signatures"] if isinstance(entry, dict)
                       and entry.get("alg") == ML_DSA_65 and isinstance(entry.get("key"), str)][:1]
        stale = self.nonces.seen(nonce, signer_keys[0] if signer_keys else "", data["timestamp"],
                                 int(self.window_s * 1000))
        if stale:
            raise reject(*stale)
        if not self._verify_budget.take():
            raise checked(reject("rate_limited", f"more than {self._verify_budget.rate:g} signatures a second to "
                                 "check; send it again"))
        try:
            canonical = signed_bytes(data, topic)
            signed_by = self.keyring.verify(canonical, data["signatures"], self.require_ed25519)
        except SignatureRejected as error:
            raise checked(reject(error.code, error.message)) from None
        except ValueError as error:  # the body holds what canonical JSON cannot represent
            raise checked(reject("bad_schema", f"body: {error}")) from None
        # Execute what was verified: the canonical form (one form per number) the signatures cover.
        body = json.loads(canonical[len(DOMAIN):])["body"]
        _check_body(verb, body, reject)
        # Last: a nonce is recorded only for a command that is otherwise good.
        key = next(k for k in signed_by if self.keyring.keys[k].algorithm == ML_DSA_65)
        if not self.nonces.record(nonce, key, data["timestamp"], int(self.window_s * 1000)):
            raise reject("replayed", f"nonce {nonce} was used before")
        return Command(id=request_id, verb=verb, fleet=self.fleet, target=data["robot"], topic=topic,
                       timestamp_ms=data["timestamp"], nonce=nonce, body=body, signed_by=tuple(signed_by))


def checked(rejection: CommandRejected) -> CommandRejected:
    rejection.checked = True
    return rejection


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
    if verb == "resend":
        try:
            resend_ranges(body["ranges"])
        except ValueError as error:
            raise reject("bad_schema", f"body.{error}") from None
        if not NAME.match(body["stream"]):
            raise reject("bad_schema", f"body.stream: expected a stream name, got {shorten(body['stream'], 40)}")
    if verb in ("deploy_model", "rollback_model") and body["task"] not in model_signing.TASKS:
        raise reject("bad_schema", f"body.task: expected one of {', '.join(model_signing.TASKS)}, got "
                     f"{shorten(body['task'], 40)}")
    if verb == "deploy_model":
        try:
            model_signing.decode_files(body["files"])
        except model_signing.ModelRejected as error:
            raise reject("bad_schema", f"body.{error}") from None


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
    return reply_payload(rejection.request_id, rejection.verb, robot, "rejected", stamp, nonce=rejection.nonce,
                         reason=rejection.code, message=rejection.message)


class NonceStore:
    """Nonces of accepted commands and each hub key's high-water mark, on disk (SQLite, synchronous=FULL).

    A nonce is recorded before its command acts, so a replay is refused after a crash or restart too. Each key's
    high-water mark is the newest timestamp of a command it signed that was accepted: a command older than it
    by more than the window is refused (`seen`), so nonces that old can go, and no replay is accepted after the
    robot's clock was stepped back, however far. Nothing here reads the robot's clock.

    A store that is damaged is moved aside and started afresh with a floor: commands signed before the rebuild
    are refused, since their nonces were lost with it. A store that cannot be opened at all (no space, no
    permission) leaves `usable` False and `error` saying why; it is tried again every few seconds.
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time, retry: float = 5.0):
        self.path = Path(path).expanduser()
        self._clock = clock
        self.retry = retry
        self.error = ""
        self.recovered_from = ""  # set when a damaged store was moved aside
        self.floor_ms = 0  # commands signed before this are refused (a rebuilt store)
        self._db: sqlite3.Connection | None = None
        self._tried = -float("inf")
        self._open()

    @property
    def usable(self) -> bool:
        if self._db is None and time.monotonic() - self._tried >= self.retry:
            self._open()
        return self._db is not None

    def _open(self) -> None:
        self._tried = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self.error = ""
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and "not a database" not in str(error):
                self.error = f"{self.path}: {error}"
                return
            self._set_aside(error)
        except OSError as error:
            self.error = f"{self.path}: {error.strerror or error}"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.executescript("""
                CREATE TABLE IF NOT EXISTS accepted (nonce TEXT PRIMARY KEY, key TEXT NOT NULL, ts INTEGER NOT NULL);
                CREATE INDEX IF NOT EXISTS accepted_by_key ON accepted(key, ts);
                CREATE TABLE IF NOT EXISTS high_water (key TEXT PRIMARY KEY, ts INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """)
            floor = db.execute("SELECT value FROM meta WHERE key = 'floor_ms'").fetchone()
            self.floor_ms = int(floor[0]) if floor else 0
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, error: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(f"{aside}{suffix}")
            self._db = self._connect()
            self.floor_ms = int(self._clock() * 1000)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('floor_ms', ?)", (str(self.floor_ms),))
        except (OSError, sqlite3.Error) as again:
            self._db = None
            self.error = f"{self.path}: damaged ({error}) and could not be rebuilt: {again}"
            return
        self.recovered_from = f"{error}; moved aside to {aside}"
        self.error = ""

    def seen(self, nonce: str, key: str, ts: int, tolerance_ms: int) -> tuple[str, str] | None:
        """Return (code, message) when a command with this nonce, key and timestamp must be refused unverified."""
        db = self._db
        if ts < self.floor_ms:
            return ("expired", "signed before the robot's nonce store was rebuilt (it was damaged): send it again")
        high = db.execute("SELECT ts FROM high_water WHERE key = ?", (key,)).fetchone()
        if high is not None and ts < high[0] - tolerance_ms:
            return ("expired", f"{(high[0] - ts) / 1000:.1f} s older than a command this key signed that was accepted "
                               f"(more than {tolerance_ms / 1000:g} s): a replay, or the hub's clock went back")
        if db.execute("SELECT 1 FROM accepted WHERE nonce = ?", (nonce,)).fetchone():
            return ("replayed", f"nonce {nonce} was used before")
        return None

    def record(self, nonce: str, key: str, ts: int, tolerance_ms: int) -> bool:
        """Record an accepted command's nonce and raise its key's high-water mark; False when the nonce was known."""
        db = self._db
        with db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT INTO accepted (nonce, key, ts) VALUES (?, ?, ?)", (nonce, key, ts))
            except sqlite3.IntegrityError:
                return False
            db.execute("INSERT INTO high_water (key, ts) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                       "ts = max(ts, excluded.ts)", (key, ts))
            high = db.execute("SELECT ts FROM high_water WHERE key = ?", (key,)).fetchone()[0]
            db.execute("DELETE FROM accepted WHERE key = ? AND ts < ?", (key, high - tolerance_ms))
        return True

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM accepted").fetchone()[0] if self._db is not None else 0

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
