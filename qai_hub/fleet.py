"""The hub's view of a fleet, built from what arrives over MQTT. No rclpy import; no ROS on the hub.

Fleet.on_message takes every message of `qai/<fleet>/#`, checks it (qai_hub.inbound: schema and bounds;
a message that does not fit is dropped whole, counted and logged as a security event, and changes nothing)
and keeps, per robot: the retained status (online or offline, link figures, mission summary), the latest
state of each mission (the mission engine sends the tasks that changed since its previous message: they are
merged by task, each kept from the newest message that carried it, so the backlog after an outage never
undoes newer states), position, speed and heading, battery, the predicted endurance, the /diagnostics
summary, the engines' announcements (engine_capabilities: their kinds, start stamps and so their restarts),
the latest events and reports, and a SequenceTracker per telemetry stream: which sequence numbers arrived
(duplicates, which QoS 1 allows after a reconnect, are counted and dropped), which the robot reported as
dropped (and why), and which are still missing. It answers what each message changed (a Change), for views
that follow the fleet live (qai-hub watch, the dashboard).

Everything it keeps is bounded whatever arrives: robots (`max_robots`; with `admit`, only the robots it
admits take a slot: an unknown robot's messages are refused without one), streams per robot, missions and
tasks per robot, replies, events, and sequence numbers (kept as ranges, at most `max_ranges` per stream).
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from qai_hub import inbound
from qai_hub.inbound import InboundLimits, Refused, Reply, Status, Telemetry
from qai_hub.protocol import (ALL_ROBOTS, DROPS_STREAM, RESERVED_STREAMS, SEAL_TYPE, SignatureRejected,
                              is_robot_envelope, must_be_signed, open_robot_envelope, parse_topic, telemetry_digest)
from qai_hub.registry import RobotRegistry


class RangeSet:
    """A set of integers kept as sorted disjoint ranges, at most `max_ranges` of them.

    A stream's sequence numbers cost one range, not one entry per number, and a report of a billion dropped
    numbers costs one range too. Past `max_ranges` (a sender that leaves a gap between every number) the
    lowest ranges are forgotten: `forgotten_below` rises and `forgotten` counts the numbers given up.
    Supports `in`, `len`, `add` and `add_range`.
    """

    def __init__(self, max_ranges: int = 10_000):
        self.max_ranges = max_ranges
        self._starts: list[int] = []
        self._ends: list[int] = []  # inclusive
        self._count = 0
        self.forgotten_below = 0  # every number below this was given up
        self.forgotten = 0

    def __contains__(self, value: int) -> bool:
        index = bisect.bisect_right(self._starts, value) - 1
        return index >= 0 and value <= self._ends[index]

    def __len__(self) -> int:
        return self._count

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends))

    @property
    def highest(self) -> int | None:
        return self._ends[-1] if self._ends else None

    def add(self, value: int) -> bool:
        """Add `value`; False when it was there already."""
        ends = self._ends
        if ends and ends[-1] + 1 == value:  # the common case: the next number of a stream
            ends[-1] = value
            self._count += 1
            return True
        return self.add_range(value, value) == 1

    def add_range(self, low: int, high: int) -> int:
        """Add every number of [low, high]; return how many were not there before."""
        if high < low:
            return 0
        first = bisect.bisect_left(self._ends, low - 1)  # the first range that touches or follows low
        last = bisect.bisect_right(self._starts, high + 1) - 1  # the last range that touches or precedes high
        absorbed = sum(self._ends[i] - self._starts[i] + 1 for i in range(first, last + 1))
        if first <= last:
            low, high = min(low, self._starts[first]), max(high, self._ends[last])
        self._starts[first:last + 1] = [low]
        self._ends[first:last + 1] = [high]
        added = (high - low + 1) - absorbed
        self._count += added
        while len(self._starts) > self.max_ranges:
            start, end = self._starts.pop(0), self._ends.pop(0)
            self._count -= end - start + 1
            self.forgotten += end - start + 1
            self.forgotten_below = end + 1
        return added

    def count_between(self, low: int, high: int) -> int:
        """How many members lie in [low, high]."""
        if high < low:
            return 0
        first = bisect.bisect_left(self._ends, low)
        total = 0
        for i in range(first, len(self._starts)):
            if self._starts[i] > high:
                break
            total += min(self._ends[i], high) - max(self._starts[i], low) + 1
        return total

    def gaps(self, low: int, high: int, limit: int) -> list[list[int]]:
        """Return the ranges of [low, high] that are not members, the first `limit` of them."""
        gaps: list[list[int]] = []
        cursor = low
        for i in range(bisect.bisect_left(self._ends, low), len(self._starts)):
            if cursor > high or len(gaps) >= limit:
                break
            start, end = self._starts[i], self._ends[i]
            if start > cursor:
                gaps.append([cursor, min(start - 1, high)])
            cursor = max(cursor, end + 1)
        if cursor <= high and len(gaps) < limit:
            gaps.append([cursor, high])
        return gaps


class SequenceTracker:
    """Sequence numbers of one stream as the hub saw them: received, reported dropped (with why), missing."""

    def __init__(self, since: int | None = None, max_ranges: int = 10_000):
        self.since = since  # the first number this hub could have seen (None: the first one it saw)
        self.received = RangeSet(max_ranges)
        self.dropped = RangeSet(max_ranges)  # numbers the robot reported it will never send
        self.drop_reasons: dict[str, int] = {}  # reason -> numbers reported for it
        self.duplicates = 0
        self.announced = 0  # the highest number the robot's signed status says the broker took from it

    def announce(self, seq: int) -> None:
        """Record the robot's word (its status's `sent`) that the broker took `seq`.

        From the first number this hub received, what is not here by then is missing, even at the end of a
        stream that sends nothing more. Before that it says nothing: a hub that has just subscribed never had
        what came before.
        """
        self.announced = max(self.announced, seq)

    def receive(self, seq: int) -> bool:
        """Record `seq`; False when it had arrived before (a duplicate, to be ignored)."""
        if not self.received.add(seq):
            self.duplicates += 1
            return False
        if self.since is None or seq < self.since:
            self.since = seq
        return True

    def report_dropped(self, ranges: list[list[int]], reason: str) -> None:
        """Record a drop report's ranges (merged intervals, never expanded into numbers)."""
        for low, high in ranges:
            added = self.dropped.add_range(int(low), int(high))
            if added:
                self.drop_reasons[reason] = self.drop_reasons.get(reason, 0) + added
                if len(self.drop_reasons) > 32:  # reasons are checked identifiers; a bound all the same
                    self.drop_reasons.pop(next(iter(self.drop_reasons)))

    @property
    def first(self) -> int:
        """Return the first number accounted for: `since`, raised past what was forgotten."""
        first = self.since if self.since is not None else 1
        return max(first, self.received.forgotten_below, self.dropped.forgotten_below)

    @property
    def highest(self) -> int:
        announced = self.announced if self.since is not None else 0
        return max(self.received.highest or 0, self.dropped.highest or 0, announced)

    def dropped_count(self) -> int:
        """Numbers reported dropped and never received."""
        return len(self.dropped) - self._both(self.first, self.highest)

    def missing_ranges(self, up_to: int | None = None, limit: int = 100) -> list[list[int]]:
        """Return the ranges from `first` to `up_to` (default: the highest seen) neither received nor dropped."""
        last = self.highest if up_to is None else up_to
        gaps = self.received.gaps(self.first, last, 10 * limit + 10)
        missing: list[list[int]] = []
        for low, high in gaps:
            for part in self.dropped.gaps(low, high, limit):
                missing.append(part)
                if len(missing) >= limit:
                    return missing
        return missing

    def missing(self, up_to: int | None = None, limit: int = 10_000) -> list[int]:
        """Return the first `limit` numbers neither received nor dropped, one by one (tests and summaries)."""
        numbers: list[int] = []
        for low, high in self.missing_ranges(up_to, limit):
            numbers.extend(range(low, min(high, low + limit - len(numbers) - 1) + 1))
            if len(numbers) >= limit:
                break
        return numbers

    def missing_count(self, up_to: int | None = None) -> int:
        """How many numbers from `first` to `up_to` are neither received nor dropped, counted by ranges."""
        first, last = self.first, self.highest if up_to is None else up_to
        if self.since is None or last < first:
            return 0
        received = self.received.count_between(first, last)
        dropped = self.dropped.count_between(first, last)
        return max(0, (last - first + 1) - received - dropped + self._both(first, last))

    def _both(self, first: int, last: int) -> int:
        """Numbers both received and reported dropped in [first, last] (a late arrival after a report)."""
        if not len(self.dropped) or not len(self.received):
            return 0
        return sum(self.received.count_between(max(low, first), min(high, last))
                   for low, high in self.dropped.ranges[:1000] if high >= first and low <= last)


@dataclass
class RobotView:
    name: str
    status: dict[str, Any] = field(default_factory=dict)  # inbound.Status.data, checked
    status_at: float | None = None
    last_seen: float | None = None
    missions: dict[str, dict[str, Any]] = field(default_factory=dict)  # mission id -> merged MissionState data
    position: tuple[float | None, float | None, float | None] | None = None
    yaw: float | None = None  # rad, from the odometry's orientation
    speed: float | None = None  # m/s, the odometry's linear twist
    battery: dict[str, Any] | None = None
    endurance: dict[str, Any] | None = None  # the latest EndurancePrediction
    health: dict[str, Any] | None = None
    models: dict[str, str] = field(default_factory=dict)  # model task -> the active version its answers last gave
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)  # engine -> its latest EngineCapabilities
    events: deque = field(default_factory=lambda: deque(maxlen=100))  # the latest Event data
    reports: deque = field(default_factory=lambda: deque(maxlen=20))  # the latest reports
    streams: dict[str, SequenceTracker] = field(default_factory=dict)
    replies: deque = field(default_factory=lambda: deque(maxlen=50))
    refused: int = 0  # its messages that did not fit their schema, or did not verify
    seals: "SealCheck" = field(default_factory=lambda: SealCheck())
    stamps: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    task_stamps: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # mission -> task ("": itself)

    @property
    def online(self) -> bool:
        return self.status.get("state") == "online"

    def current_mission(self) -> dict[str, Any] | None:
        """Return the newest active mission, else the newest finished one."""
        if not self.missions:
            return None
        active = [m for m in self.missions.values() if m["state"] < 10]
        return (active or list(self.missions.values()))[-1]


@dataclass
class Change:
    """What one message changed: Fleet.on_message's answer for a message it took, or refused.

    kind is "status", "reply", "telemetry" or "refused"; name the stream (or the reply's verb); message the
    checked message (inbound.Status, Reply or Telemetry; for "refused", the Refused); applied False for
    telemetry older (by its header stamp) than the state kept, which the backlog after an outage brings;
    previous the value it replaced (the status, a mission's state, an engine's announcement), or None.
    robot is None for a refused message of a robot that has no slot. For a reply, `bound` says whether it
    answers a command this hub sent (Fleet.expect): the same request id and nonce, from a robot it went to.
    """

    robot: RobotView | None
    kind: str
    name: str
    message: Any
    applied: bool = True
    previous: Any = None
    topic: str = ""
    bound: bool = False

    @property
    def type(self) -> str:
        return self.message.type if isinstance(self.message, Telemetry) else ""

    @property
    def data(self) -> dict[str, Any]:
        if isinstance(self.message, (Status, Reply)):
            return self.message.data
        if isinstance(self.message, Telemetry):
            return self.message.data or {}
        return {}


class SealCheck:
    """Telemetry covered by seals (protocol: seals), checked after the fact.

    A message of a sealed stream is shown when it arrives and held here by (stream, seq) with its digest until
    a seal lists it: the same digest verifies it; another one means it was forged or altered on the way (a
    security event); none within `grace` seconds leaves it unsealed (counted: a seal lost with a crash of the
    robot's link, or a message a seal never covered). What a seal lists before its message arrives waits here
    too. Both are bounded (`limit` entries each); what is pushed out counts as unsealed.
    """

    def __init__(self, grace: float = 30.0, limit: int = 20_000):
        self.grace, self.limit = grace, limit
        self.pending: dict[tuple[str, int], tuple[str, float]] = {}  # received, not yet sealed
        self.expected: dict[tuple[str, int], tuple[str, float]] = {}  # sealed, not yet received
        self.verified = 0
        self.forged = 0
        self.unsealed = 0

    def received(self, stream: str, seq: int, digest: str, now: float) -> bool:
        """Take a sealed stream's message; False when a seal had listed another digest for it (forged)."""
        expected = self.expected.pop((stream, seq), None)
        if expected is not None:
            return self._compare(expected[0], digest)
        self._put(self.pending, (stream, seq), (digest, now))
        return True

    def sealed(self, stream: str, seq: int, digest: str, now: float) -> bool:
        """Take one entry of a seal; False when the message it names arrived with another digest (forged)."""
        pending = self.pending.pop((stream, seq), None)
        if pending is not None:
            return self._compare(digest, pending[0])
        self._put(self.expected, (stream, seq), (digest, now))
        return True

    def expire(self, now: float) -> int:
        """Give up on messages no seal covered within `grace` s; return how many."""
        old = [key for key, (_, t) in self.pending.items() if now - t > self.grace]
        for key in old:
            del self.pending[key]
        stale = [key for key, (_, t) in self.expected.items() if now - t > 10 * self.grace]
        for key in stale:
            del self.expected[key]
        self.unsealed += len(old)
        return len(old)

    def _compare(self, sealed: str, got: str) -> bool:
        if sealed == got:
            self.verified += 1
            return True
        self.forged += 1
        return False

    def _put(self, table: dict, key, value) -> None:
        table[key] = value
        if len(table) > self.limit:
            table.pop(next(iter(table)))
            self.unsealed += table is self.pending


@dataclass
class SecurityEvent:
    """A message the hub refused: when, from which robot (as the topic names it), on which topic, and why."""

    t: float
    robot: str
    topic: str
    why: str


class Fleet:
    def __init__(self, fleet: str, registry: RobotRegistry, *, keep_missions: int = 20, max_robots: int = 10000,
                 keep_events: int = 100, max_streams: int = 64, max_tasks: int = 20_000, max_ranges: int = 10_000,
                 limits: InboundLimits = inbound.DEFAULT_LIMITS, seal_grace: float = 30.0):
        self.fleet = fleet
        self.registry = registry  # the enrolled robots: only they take a slot, and only what they signed counts
        self.seal_grace = seal_grace
        self._expired_at = 0.0
        self.keep_missions = keep_missions
        self.max_robots = max_robots
        self.keep_events = keep_events
        self.max_streams = max_streams  # telemetry streams tracked per robot
        self.max_tasks = max_tasks  # tasks kept per robot, over all its missions
        self.max_ranges = max_ranges
        self.limits = limits
        self.robots: dict[str, RobotView] = {}
        self.malformed = 0  # messages refused for their content
        self.refused_robots = 0  # messages of robots that may not take a slot (unknown, or past max_robots)
        self.security: deque[SecurityEvent] = deque(maxlen=200)
        self.expected: dict[str, tuple[str, str, str]] = {}  # request id -> (robot or "all", verb, nonce)
        self._topics: dict[str, Any] = {}  # topic -> parse_topic's answer (ParsedTopic or None)

    def expect(self, command: dict[str, Any]) -> None:
        """Note a command this hub sent, so its replies are known as the answers to it (bounded: the last 1000)."""
        self.expected[command["id"]] = (command["robot"], command["verb"], command["nonce"])
        while len(self.expected) > 1000:
            self.expected.pop(next(iter(self.expected)))

    def robot(self, name: str) -> RobotView:
        view = self.robots.get(name)
        if view is None:
            view = self.robots[name] = RobotView(name, events=deque(maxlen=self.keep_events),
                                                 seals=SealCheck(self.seal_grace))
        return view

    def tracker(self, robot: RobotView, stream: str) -> SequenceTracker | None:
        """Return the robot's tracker of `stream`; None past max_streams (a robot cannot grow the hub's memory)."""
        tracker = robot.streams.get(stream)
        if tracker is None and len(robot.streams) < self.max_streams:
            tracker = robot.streams[stream] = SequenceTracker(max_ranges=self.max_ranges)
        return tracker

    def on_message(self, topic: str, payload: bytes, now: float | None = None) -> Change | None:
        """Take one message; return what it changed (a "refused" Change when it was refused), or None.

        None: another fleet's or another kind's topic (commands, pings), or a duplicate. A robot's status,
        replies and telemetry of the SIGNED_TYPES must carry its signature; other telemetry is checked
        against its seals.
        """
        now = time.time() if now is None else now
        where = self._topics.get(topic)
        if where is None:
            where = parse_topic(topic)
            if len(self._topics) >= 4096:  # topics repeat; made-up ones must not grow this
                self._topics.clear()
            self._topics[topic] = where
        if where is None or where.fleet != self.fleet or where.robot == ALL_ROBOTS or where.kind in ("cmd", "ping"):
            return None
        if now - self._expired_at > 1.0:
            self._expire_seals(now)
        robot = self.robots.get(where.robot)
        keyring = self.registry.keyring(where.robot)
        if keyring is None or (robot is None and len(self.robots) >= self.max_robots):
            self.refused_robots += 1
            return self._refused(None, where.robot, topic, "robot: not enrolled on this hub" if keyring is None
                                 else f"robot: more than {self.max_robots} robots", now)
        try:
            outer = inbound.parse_json(payload, self.limits)
            signed = is_robot_envelope(outer)
            if signed:
                body = open_robot_envelope(outer, topic, keyring)[0]
                message = inbound.read(where, body, self.limits)
            elif where.kind in ("status", "reply"):
                raise Refused("signatures", f"a robot's {where.kind} must carry its signature")
            else:
                message = inbound.read_message(where, outer, self.limits)
            if isinstance(message, Telemetry):
                must_sign = must_be_signed(message.type) or where.name in RESERVED_STREAMS
                if must_sign and not signed:
                    raise Refused("signatures", f"{message.type} telemetry must carry the robot's signature")
                if where.name == DROPS_STREAM and message.data is None:
                    raise Refused("type", "the drops stream carries drop reports")
        except SignatureRejected as rejection:
            return self._refuse(robot, where.robot, topic, f"signature: {rejection.message}", now)
        except (Refused, ValueError) as refusal:
            return self._refuse(robot, where.robot, topic, str(refusal), now)
        robot = robot or self.robot(where.robot)
        robot.last_seen = now
        if isinstance(message, Status):
            previous, robot.status, robot.status_at = robot.status, message.data, now
            for stream, seq in message.data["sent"].items():
                tracker = self.tracker(robot, stream)
                if tracker is not None:
                    tracker.announce(seq)
            return Change(robot, "status", "", message, previous=previous, topic=topic)
        if isinstance(message, Reply):
            robot.replies.append(message.data)
            sent = self.expected.get(message.request_id or "")
            bound = sent is not None and sent[1] == message.verb and sent[2] == message.data.get("nonce") \
                and sent[0] in (ALL_ROBOTS, where.robot)
            if bound and message.verb == "get_state":  # signed and bound: as good as the mission states themselves
                for state in message.data.get("missions", []):
                    self._mission_state(robot, Change(robot, "telemetry", "mission_states", message), state)
            return Change(robot, "reply", where.name, message, topic=topic, bound=bound)
        if not signed and not robot.seals.received(where.name, message.seq, telemetry_digest(payload), now):
            return self._refuse(robot, where.robot, topic, f"seal: {where.name} message {message.seq} differs from "
                                "what the robot sealed (forged or altered on the way)", now)
        return self._telemetry(robot, where.name, message, topic, now)

    def _refuse(self, robot: RobotView | None, name: str, topic: str, why: str, now: float) -> Change:
        self.malformed += 1
        if robot is not None:
            robot.refused += 1
        return self._refused(robot, name, topic, why, now)

    def _expire_seals(self, now: float) -> None:
        self._expired_at = now
        for robot in self.robots.values():
            robot.seals.expire(now)

    def _refused(self, robot: RobotView | None, name: str, topic: str, why: str, now: float) -> Change:
        event = SecurityEvent(now, name[:64], topic[:200], why[:300])
        self.security.append(event)
        return Change(robot, "refused", "", event, applied=False, topic=topic)

    def _telemetry(self, robot: RobotView, stream: str, message: Telemetry, topic: str, now: float) -> Change | None:
        tracker = self.tracker(robot, stream)
        if tracker is not None and not tracker.receive(message.seq):
            return None
        change = Change(robot, "telemetry", stream, message, topic=topic)
        data, kind = message.data, message.type
        if data is None:  # a type the hub does not read: counted by sequence number only
            return change
        if stream == DROPS_STREAM:
            target = self.tracker(robot, data["stream"])
            if target is not None:
                target.report_dropped(data["ranges"], data["reason"])
            return change
        if kind.endswith("/Event"):  # a log, not a state: every event counts, late ones too
            robot.events.append(data)
            return change
        if kind == "qai/Report":
            robot.reports.append(data)
            return change
        if kind == SEAL_TYPE:
            for sealed_stream, entries in data["streams"].items():
                for seq, digest in entries:
                    if not robot.seals.sealed(sealed_stream, seq, digest, now):
                        self.malformed += 1
                        robot.refused += 1
                        self._refused(robot, robot.name, topic, f"seal: {sealed_stream} message {seq} arrived "
                                      "different from what the robot sealed (forged or altered on the way)", now)
            return change
        if kind.endswith("/MissionState"):
            return self._mission_state(robot, change, data)
        # After an outage the backlog arrives after newer live data: keep the newest state by its own stamp
        # (per mission, per engine).
        key = (kind, data.get("engine", ""))
        stamp = _header_stamp(data)
        if stamp < robot.stamps.get(key, (-1, 0)):
            change.applied = False
            return change
        if key not in robot.stamps and len(robot.stamps) >= 4 * self.max_streams:
            robot.stamps.pop(next(iter(robot.stamps)))
        robot.stamps[key] = stamp
        if kind.endswith("/Odometry"):
            self._odometry(robot, data)
        elif kind.endswith("/BatteryState"):
            robot.battery = data
        elif kind.endswith("/EndurancePrediction"):
            robot.endurance = data
        elif kind.endswith("/DiagnosticArray"):
            change.previous, robot.health = robot.health, data
        elif kind.endswith("/EngineCapabilities"):
            engines = robot.engines
            change.previous = engines.pop(data["engine"], None)
            engines[data["engine"]] = data
            while len(engines) > 64:  # engines of one robot; a restart under a new name leaves the old one
                engines.pop(next(iter(engines)))
        return change

    def _mission_state(self, robot: RobotView, change: Change, data: dict[str, Any]) -> Change:
        """Merge a MissionState: the mission's own fields and each task it carries, where newer than held."""
        mission_id = data["mission_id"]
        stamp = _header_stamp(data)
        held = robot.missions.pop(mission_id, None)
        stamps = robot.task_stamps.pop(mission_id, {})
        tasks = {task["task_id"]: task for task in (held or {}).get("tasks", [])}
        newer = held is None or stamp >= stamps.get("", (-1, 0))
        taken = 0
        for task in data["tasks"]:
            task_id = task["task_id"]
            if task_id not in tasks and len(tasks) >= self.limits.max_tasks:
                continue  # a mission's tasks are bounded like the mission engine's own
            if stamp >= stamps.get(task_id, (-1, 0)) or task_id not in tasks:
                tasks[task_id] = task
                stamps[task_id] = stamp
                taken += 1
        merged = dict(data) if newer else dict(held)
        merged["tasks"] = list(tasks.values())
        if newer:
            stamps[""] = stamp
        change.previous, change.applied = held, newer or taken > 0
        robot.missions[mission_id] = merged
        robot.task_stamps[mission_id] = stamps
        while len(robot.missions) > self.keep_missions or (
                len(robot.missions) > 1 and sum(len(m["tasks"]) for m in robot.missions.values()) > self.max_tasks):
            oldest = next(iter(robot.missions))
            robot.missions.pop(oldest)
            robot.task_stamps.pop(oldest, None)
        return change

    @staticmethod
    def _odometry(robot: RobotView, data: dict[str, Any]) -> None:
        pose = data["pose"]["pose"]
        position = pose["position"]
        robot.position = (position["x"], position["y"], position["z"])
        q = pose["orientation"]
        try:
            robot.yaw = math.atan2(2 * (q["w"] * q["z"] + q["x"] * q["y"]), 1 - 2 * (q["y"] ** 2 + q["z"] ** 2))
        except TypeError:  # an axis is null
            robot.yaw = None
        linear = data["twist"]["twist"]["linear"]
        try:
            speed = math.sqrt(sum(linear[axis] ** 2 for axis in ("x", "y", "z")))
            robot.speed = speed if math.isfinite(speed) else None
        except TypeError:
            robot.speed = None


def _header_stamp(data: dict[str, Any]) -> tuple[int, int]:
    stamp = data["header"]["stamp"]
    return stamp["sec"], stamp["nanosec"]
