"""The hub's view of a fleet, built from what arrives over MQTT. No rclpy import; no ROS on the hub.

Fleet.on_message takes every message of `qai/<fleet>/#` and keeps, per robot: the retained status
(online or offline, link figures, mission summary), the latest state of each mission (the mission
engine sends the tasks that changed since its previous message: they are merged by task, each kept from
the newest message that carried it, so the backlog after an outage never undoes newer states), position, speed
and heading, battery, the predicted endurance, the /diagnostics summary, the engines' announcements
(engine_capabilities: their kinds, start stamps and so their restarts), the latest events, and a
SequenceTracker per telemetry stream: which sequence numbers arrived (duplicates, which QoS 1 allows
after a reconnect, are counted and dropped), which the robot reported as dropped (and why), and which
are still missing. It answers what each message changed (a Change), for views that follow the fleet
live (qai-hub watch, the dashboard). Everything it keeps is bounded: robots, missions, replies, events,
and sequence numbers (kept as ranges).
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

import orjson

from qai_hub.protocol import DROPS_STREAM, parse_topic


class RangeSet:
    """A set of integers kept as sorted disjoint ranges.

    A stream's sequence numbers cost one range, not one entry per number. Supports `in`, `len`,
    iteration and `add`.
    """

    def __init__(self):
        self._starts: list[int] = []
        self._ends: list[int] = []  # inclusive
        self._count = 0

    def __contains__(self, value: int) -> bool:
        index = bisect.bisect_right(self._starts, value) - 1
        return index >= 0 and value <= self._ends[index]

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        for start, end in zip(self._starts, self._ends):
            yield from range(start, end + 1)

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends))

    @property
    def highest(self) -> int | None:
        return self._ends[-1] if self._ends else None

    def add(self, value: int) -> bool:
        """Add `value`; False when it was there already."""
        index = bisect.bisect_right(self._starts, value) - 1
        if index >= 0 and value <= self._ends[index]:
            return False
        self._count += 1
        joins_left = index >= 0 and self._ends[index] == value - 1
        joins_right = index + 1 < len(self._starts) and self._starts[index + 1] == value + 1
        if joins_left and joins_right:
            self._ends[index] = self._ends[index + 1]
            del self._starts[index + 1], self._ends[index + 1]
        elif joins_left:
            self._ends[index] = value
        elif joins_right:
            self._starts[index + 1] = value
        else:
            self._starts.insert(index + 1, value)
            self._ends.insert(index + 1, value)
        return True


class SequenceTracker:
    """Sequence numbers of one stream as the hub saw them."""

    def __init__(self, since: int | None = None):
        self.since = since  # the first number this hub could have seen (None: the first one it saw)
        self.received = RangeSet()
        self.duplicates = 0
        self.dropped: dict[int, str] = {}  # seq -> reason the robot gave

    def receive(self, seq: int) -> bool:
        """Record `seq`; False when it had arrived before (a duplicate, to be ignored)."""
        if not self.received.add(seq):
            self.duplicates += 1
            return False
        if self.since is None or seq < self.since:
            self.since = seq
        return True

    def report_dropped(self, ranges: list[list[int]], reason: str) -> None:
        for low, high in ranges:
            for seq in range(int(low), int(high) + 1):
                self.dropped[seq] = reason

    @property
    def highest(self) -> int:
        return max(self.received.highest or 0, max(self.dropped, default=0))

    def missing(self, up_to: int | None = None) -> list[int]:
        """Return the numbers from `since` to `up_to` (default: the highest seen) neither received nor dropped."""
        last = self.highest if up_to is None else up_to
        first = self.since if self.since is not None else 1
        return [seq for seq in range(first, last + 1) if seq not in self.received and seq not in self.dropped]

    def missing_count(self) -> int:
        """Return len(missing()) without listing them: ranges, not numbers."""
        if self.since is None:
            return 0
        span = self.highest - self.since + 1
        dropped_apart = sum(1 for seq in self.dropped if seq >= self.since and seq not in self.received)
        return max(0, span - len(self.received) - dropped_apart)


@dataclass
class RobotView:
    name: str
    status: dict[str, Any] = field(default_factory=dict)
    status_at: float | None = None
    last_seen: float | None = None
    missions: dict[str, dict[str, Any]] = field(default_factory=dict)  # mission id -> latest MissionState data
    position: tuple[float, float, float] | None = None
    yaw: float | None = None  # rad, from the odometry's orientation
    speed: float | None = None  # m/s, the odometry's linear twist
    battery: dict[str, Any] | None = None
    endurance: dict[str, Any] | None = None  # the latest EndurancePrediction
    health: dict[str, Any] | None = None
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)  # engine -> its latest EngineCapabilities
    events: deque = field(default_factory=lambda: deque(maxlen=100))  # the latest Event data
    streams: dict[str, SequenceTracker] = field(default_factory=dict)
    replies: list[dict[str, Any]] = field(default_factory=list)
    stamps: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    task_stamps: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # mission -> task ("": itself)

    @property
    def online(self) -> bool:
        return self.status.get("state") == "online"

    def tracker(self, stream: str) -> SequenceTracker:
        return self.streams.setdefault(stream, SequenceTracker())

    def current_mission(self) -> dict[str, Any] | None:
        """Return the newest active mission, else the newest finished one."""
        if not self.missions:
            return None
        active = [m for m in self.missions.values() if m.get("state", 0) < 10]
        return (active or list(self.missions.values()))[-1]


@dataclass
class Change:
    """What one message changed: Fleet.on_message's answer for a message it took.

    kind is "status", "reply" or "telemetry"; name the stream (or the reply's verb); message the payload;
    applied False for telemetry older (by its header stamp) than the state kept, which the backlog after
    an outage brings; previous the value it replaced (the status, a mission's state, an engine's
    announcement), or None.
    """

    robot: RobotView
    kind: str
    name: str
    message: dict[str, Any]
    applied: bool = True
    previous: Any = None

    @property
    def type(self) -> str:
        return self.message.get("type", "") if self.kind == "telemetry" else ""

    @property
    def data(self) -> dict[str, Any]:
        data = self.message.get("data") if self.kind == "telemetry" else self.message
        return data if isinstance(data, dict) else {}


class Fleet:
    def __init__(self, fleet: str, keep_missions: int = 20, max_robots: int = 10000, keep_events: int = 100):
        self.fleet = fleet
        self.keep_missions = keep_missions
        self.max_robots = max_robots
        self.keep_events = keep_events
        self.robots: dict[str, RobotView] = {}
        self.malformed = 0
        self.refused_robots = 0  # messages of robots beyond max_robots

    def robot(self, name: str) -> RobotView:
        view = self.robots.get(name)
        if view is None:
            view = self.robots[name] = RobotView(name, events=deque(maxlen=self.keep_events))
        return view

    def on_message(self, topic: str, payload: bytes, now: float | None = None) -> Change | None:
        """Take one message; return what it changed, or None (another topic, malformed, a duplicate)."""
        now = time.time() if now is None else now
        where = parse_topic(topic)
        if where is None or where.fleet != self.fleet or where.robot == "all" or where.kind in ("cmd", "ping"):
            return None
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.malformed += 1
            return None
        if not isinstance(message, dict):
            self.malformed += 1
            return None
        if where.robot not in self.robots and len(self.robots) >= self.max_robots:
            self.refused_robots += 1
            return None
        robot = self.robot(where.robot)
        robot.last_seen = now
        if where.kind == "status":
            previous, robot.status, robot.status_at = robot.status, message, now
            return Change(robot, "status", "", message, previous=previous)
        if where.kind == "reply":
            robot.replies = [*robot.replies[-49:], message]
            return Change(robot, "reply", where.name, message)
        if where.kind == "telemetry":
            return self._telemetry(robot, where.name, message)
        return None

    def _telemetry(self, robot: RobotView, stream: str, message: dict[str, Any]) -> Change | None:
        seq, data = message.get("seq"), message.get("data")
        if not isinstance(seq, int) or not isinstance(data, dict):
            self.malformed += 1
            return None
        if not robot.tracker(stream).receive(seq):
            return None
        change = Change(robot, "telemetry", stream, message)
        if stream == DROPS_STREAM:
            if isinstance(data.get("stream"), str) and isinstance(data.get("ranges"), list):
                robot.tracker(data["stream"]).report_dropped(data["ranges"], str(data.get("reason", "")))
            return change
        kind = message.get("type", "")
        if not isinstance(kind, str):
            self.malformed += 1
            return None
        if kind.endswith("/Event"):  # a log, not a state: every event counts, late ones too
            robot.events.append(data)
            return change
        if kind.endswith("/MissionState"):
            return self._mission_state(robot, change, data)
        # After an outage the backlog arrives after newer live data: keep the newest state by its own stamp
        # (per mission, per engine).
        key = (kind, str(data.get("mission_id") or data.get("engine") or ""))
        stamp = _header_stamp(data)
        if stamp < robot.stamps.get(key, (-1, 0)):
            change.applied = False
            return change
        robot.stamps[key] = stamp
        if kind.endswith("/Odometry"):
            self._odometry(robot, data)
        elif kind.endswith("/BatteryState"):
            robot.battery = data
        elif kind.endswith("/EndurancePrediction"):
            robot.endurance = data
        elif kind.endswith("/DiagnosticArray"):
            change.previous, robot.health = robot.health, data
        elif kind.endswith("/EngineCapabilities") and isinstance(data.get("engine"), str):
            engines = robot.engines
            change.previous = engines.pop(data["engine"], None)
            engines[data["engine"]] = data
            while len(engines) > 64:  # engines of one robot; a restart under a new name leaves the old one
                engines.pop(next(iter(engines)))
        return change

    def _mission_state(self, robot: RobotView, change: Change, data: dict[str, Any]) -> Change:
        """Merge a MissionState: the mission's own fields and each task it carries, where newer than held."""
        mission_id = str(data.get("mission_id", ""))
        stamp = _header_stamp(data)
        held = robot.missions.pop(mission_id, None)
        stamps = robot.task_stamps.pop(mission_id, {})
        tasks = {str(task.get("task_id", "")): task for task in (held or {}).get("tasks", [])}
        newer = held is None or stamp >= stamps.get("", (-1, 0))
        taken = 0
        for task in data.get("tasks") or []:
            if not isinstance(task, dict):
                continue
            task_id = str(task.get("task_id", ""))
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
        while len(robot.missions) > self.keep_missions:
            oldest = next(iter(robot.missions))
            robot.missions.pop(oldest)
            robot.task_stamps.pop(oldest, None)
        return change

    @staticmethod
    def _odometry(robot: RobotView, data: dict[str, Any]) -> None:
        pose = _get(data, "pose", "pose")
        position = _get(pose, "position")
        robot.position = tuple(position.get(axis) for axis in ("x", "y", "z"))
        q = _get(pose, "orientation")
        try:
            robot.yaw = math.atan2(2 * (q["w"] * q["z"] + q["x"] * q["y"]), 1 - 2 * (q["y"] ** 2 + q["z"] ** 2))
        except (KeyError, TypeError):
            robot.yaw = None
        linear = _get(data, "twist", "twist", "linear")
        try:
            robot.speed = math.sqrt(sum(linear[axis] ** 2 for axis in ("x", "y", "z")))
        except (KeyError, TypeError):
            robot.speed = None


def _get(data: Any, *keys: str) -> dict[str, Any]:
    """Return data[k1][k2]...; {} where a level is missing or not an object."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _header_stamp(data: dict[str, Any]) -> tuple[int, int]:
    stamp = _get(data, "header", "stamp")
    sec, nanosec = stamp.get("sec", 0), stamp.get("nanosec", 0)
    return (sec, nanosec) if isinstance(sec, int) and isinstance(nanosec, int) else (0, 0)
