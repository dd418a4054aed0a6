"""The hub's view of a fleet, built from what arrives over MQTT. No rclpy import; no ROS on the hub.

Fleet.on_message takes every message of `qai/<fleet>/#` and keeps, per robot: the retained status
(online or offline, link figures, mission summary), the latest state of each mission (its tasks merged:
the mission engine sends the tasks that changed since its last state message), position,
battery, the /diagnostics summary, and a SequenceTracker per telemetry stream: which sequence numbers
arrived (duplicates, which QoS 1 allows after a reconnect, are counted and dropped), which the robot
reported as dropped (and why), and which are still missing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from qai_io.hub.topics import DROPS_STREAM, parse_topic


class SequenceTracker:
    """Sequence numbers of one stream as the hub saw them."""

    def __init__(self, since: int | None = None):
        self.since = since  # the first number this hub could have seen (None: the first one it saw)
        self.received: set[int] = set()
        self.duplicates = 0
        self.dropped: dict[int, str] = {}  # seq -> reason the robot gave

    def receive(self, seq: int) -> bool:
        """Record `seq`; False when it had arrived before (a duplicate, to be ignored)."""
        if seq in self.received:
            self.duplicates += 1
            return False
        if self.since is None or seq < self.since:
            self.since = seq
        self.received.add(seq)
        return True

    def report_dropped(self, ranges: list[list[int]], reason: str) -> None:
        for low, high in ranges:
            for seq in range(int(low), int(high) + 1):
                self.dropped[seq] = reason

    @property
    def highest(self) -> int:
        return max(self.received | set(self.dropped), default=0)

    def missing(self, up_to: int | None = None) -> list[int]:
        """Return the numbers from `since` to `up_to` (default: the highest seen) neither received nor dropped."""
        last = self.highest if up_to is None else up_to
        first = self.since if self.since is not None else 1
        return [seq for seq in range(first, last + 1) if seq not in self.received and seq not in self.dropped]


@dataclass
class RobotView:
    name: str
    status: dict[str, Any] = field(default_factory=dict)
    status_at: float | None = None
    last_seen: float | None = None
    missions: dict[str, dict[str, Any]] = field(default_factory=dict)  # mission id -> latest MissionState data
    position: tuple[float, float, float] | None = None
    battery: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    streams: dict[str, SequenceTracker] = field(default_factory=dict)
    replies: list[dict[str, Any]] = field(default_factory=list)
    stamps: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

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


class Fleet:
    def __init__(self, fleet: str, keep_missions: int = 20):
        self.fleet = fleet
        self.keep_missions = keep_missions
        self.robots: dict[str, RobotView] = {}
        self.malformed = 0

    def robot(self, name: str) -> RobotView:
        return self.robots.setdefault(name, RobotView(name))

    def on_message(self, topic: str, payload: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        where = parse_topic(topic)
        if where is None or where.fleet != self.fleet or where.robot == "all" or where.kind in ("cmd", "ping"):
            return
        try:
            message = json.loads(payload)
        except ValueError:
            self.malformed += 1
            return
        if not isinstance(message, dict):
            self.malformed += 1
            return
        robot = self.robot(where.robot)
        robot.last_seen = now
        if where.kind == "status":
            robot.status, robot.status_at = message, now
        elif where.kind == "reply":
            robot.replies = [*robot.replies[-49:], message]
        elif where.kind == "telemetry":
            self._telemetry(robot, where.name, message)

    def _telemetry(self, robot: RobotView, stream: str, message: dict[str, Any]) -> None:
        seq, data = message.get("seq"), message.get("data")
        if not isinstance(seq, int) or not isinstance(data, dict):
            self.malformed += 1
            return
        if not robot.tracker(stream).receive(seq):
            return
        if stream == DROPS_STREAM:
            if isinstance(data.get("stream"), str) and isinstance(data.get("ranges"), list):
                robot.tracker(data["stream"]).report_dropped(data["ranges"], str(data.get("reason", "")))
            return
        kind = message.get("type", "")
        # After an outage the backlog arrives after newer live data: keep the newest state by its own stamp.
        key = (kind, data.get("mission_id", ""))
        stamp = _header_stamp(data)
        if stamp < robot.stamps.get(key, (-1, 0)):
            return
        robot.stamps[key] = stamp
        if kind.endswith("/MissionState"):
            mission_id = data.get("mission_id", "")
            previous = robot.missions.pop(mission_id, None)
            if previous is not None:  # a state carries the tasks that changed since the last: merge them
                tasks = {task.get("task_id"): task for task in previous.get("tasks", [])}
                tasks.update((task.get("task_id"), task) for task in data.get("tasks", []))
                data = {**data, "tasks": list(tasks.values())}
            robot.missions[mission_id] = data
            while len(robot.missions) > self.keep_missions:
                robot.missions.pop(next(iter(robot.missions)))
        elif kind.endswith("/Odometry"):
            position = data.get("pose", {}).get("pose", {}).get("position", {})
            robot.position = tuple(position.get(axis) for axis in ("x", "y", "z"))
        elif kind.endswith("/BatteryState"):
            robot.battery = data
        elif kind.endswith("/DiagnosticArray"):
            robot.health = data


def _header_stamp(data: dict[str, Any]) -> tuple[int, int]:
    stamp = data.get("header", {}).get("stamp", {}) if isinstance(data.get("header"), dict) else {}
    return (stamp.get("sec", 0), stamp.get("nanosec", 0)) if isinstance(stamp, dict) else (0, 0)
