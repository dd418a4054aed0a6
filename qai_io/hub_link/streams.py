"""Telemetry streams: their configuration, payloads, and the summaries the link keeps. No rclpy import.

A stream is one ROS topic published to `qai/<fleet>/<robot>/telemetry/<stream>`. The profile lists them
as strings (ROS parameters cannot hold lists of mappings):

    "odom: topic=odom type=nav_msgs/msg/Odometry rate=10 qos=1 priority=3 ttl=600 ros_qos=sensor"

    topic     ROS topic (relative names follow the robot's namespace); default: the stream name
    type      message type, package/msg/Type (required)
    rate      messages per second sent, the newest at each turn (0: every message as it comes); the others
              are skipped, never queued
    qos       MQTT QoS, 0 or 1 (default 1)
    priority  0-9, higher is more important: sent first after an outage, evicted last (default 5)
    ttl       seconds a queued message stays useful; older ones are dropped and reported (default 3600)
    ros_qos   sensor (best effort), reliable, or latched (reliable, transient local: mission_states);
              default reliable
    depth     ROS history depth: messages held while the link is busy (default 10 for sensor, else 100)
    summary   true for a /diagnostics stream: the latest level and message of every node, `rate` times
              a second, instead of every array

Each payload is `{"seq": n, "stamp": t, "type": "...", "data": {...}}`: `seq` counts 1, 2, 3, ... per
stream across restarts of the node, `stamp` is when the link took the message (seconds since the epoch),
`data` the message by the codec (qai_io.hub_link.codec).
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping


from qai_hub.protocol import DROPS_STREAM, NAME, TERMINAL

ROS_QOS = ("sensor", "reliable", "latched")
_KEYS = ("topic", "type", "rate", "qos", "priority", "ttl", "ros_qos", "depth", "summary")
MAX_PRIORITY = 9
REPLY_PRIORITY = 10  # command replies and drop reports go before any stream
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    type: str
    topic: str
    rate: float = 0.0
    qos: int = 1
    priority: int = 5
    ttl: float = 3600.0
    ros_qos: str = "reliable"
    depth: int = 100
    summary: bool = False


def parse_stream(text: str) -> StreamSpec:
    """Parse one stream entry; ValueError says which key is wrong and why."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"expected 'name: key=value ...', got {text!r:.80}")
    name, _, rest = text.partition(":")
    name = name.strip()
    if not NAME.match(name):
        raise ValueError(f"stream name {name!r:.70}: expected 1-64 letters, digits, '_' or '-'")
    if name == DROPS_STREAM:
        raise ValueError(f"stream name {name!r} is reserved for drop reports")
    values: dict[str, str] = {}
    for token in rest.split():
        key, equals, value = token.partition("=")
        if not equals or key not in _KEYS:
            raise ValueError(f"{name}: {token!r:.60} is not key=value with a key among {', '.join(_KEYS)}")
        if key in values:
            raise ValueError(f"{name}: {key} given twice")
        values[key] = value
    if "type" not in values:
        raise ValueError(f"{name}: type is missing (e.g. type=nav_msgs/msg/Odometry)")

    def number(key: str, default: float, low: float, high: float) -> float:
        if key not in values:
            return default
        try:
            value = float(values[key])
        except ValueError:
            raise ValueError(f"{name}: {key}: expected a number, got {values[key]!r:.40}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"{name}: {key}: must be between {low:g} and {high:g}, got {values[key]}")
        return value

    ros_qos = values.get("ros_qos", "reliable")
    if ros_qos not in ROS_QOS:
        raise ValueError(f"{name}: ros_qos: expected one of {', '.join(ROS_QOS)}, got {ros_qos!r:.40}")
    qos = number("qos", 1, 0, 1)
    priority = number("priority", 5, 0, MAX_PRIORITY)
    depth = number("depth", 10 if ros_qos == "sensor" else 100, 1, 100000)
    if qos != int(qos) or priority != int(priority) or depth != int(depth):
        raise ValueError(f"{name}: qos, priority and depth are integers")
    summary = values.get("summary", "false")
    if summary not in ("true", "false"):
        raise ValueError(f"{name}: summary: expected true or false, got {summary!r:.40}")
    spec = StreamSpec(name=name, type=values["type"], topic=values.get("topic", name),
                      rate=number("rate", 0.0, 0.0, 10000.0), qos=int(qos), priority=int(priority),
                      ttl=number("ttl", 3600.0, 1.0, 365 * 86400.0), ros_qos=ros_qos, depth=int(depth),
                      summary=summary == "true")
    if spec.summary and (spec.type != DIAGNOSTICS_TYPE or spec.rate <= 0):
        raise ValueError(f"{name}: summary=true needs type={DIAGNOSTICS_TYPE} and a rate above 0")
    return spec


def parse_streams(entries: Iterable[str]) -> tuple[list[StreamSpec], dict[str, str]]:
    """Every good entry, and for each bad one its name (or index) and the reason it was refused."""
    specs, rejected = [], {}
    for index, entry in enumerate(entries):
        try:
            spec = parse_stream(entry)
        except ValueError as error:
            label = entry.partition(":")[0].strip() if isinstance(entry, str) and ":" in entry else f"#{index}"
            rejected[label[:64] or f"#{index}"] = str(error)
            continue
        if any(other.name == spec.name for other in specs):
            rejected[spec.name] = f"{spec.name}: a stream of that name is already configured"
            continue
        specs.append(spec)
    return specs, rejected


@dataclass
class StreamState:
    """One running stream: its spec and what happened to its messages."""

    spec: StreamSpec
    type_name: str
    counts: dict[str, int] = field(default_factory=lambda: {"sent": 0, "skipped": 0, "errors": 0, "too_large": 0,
                                                            "overflowed": 0})
    last_error: str = ""
    summary: "DiagnosticsSummary | None" = None
    subscription: Any = None  # the ROS subscription, set by the node
    polled: Any = None  # a stream with a rate: its subscription's reader (qai_edge.polled.Polled), set by the node
    held: Any = None  # the newest message it read, to send at the stream's next turn


class DiagnosticsSummary:
    """The latest level and message per /diagnostics status name, bounded to `max_names` (oldest dropped)."""

    def __init__(self, max_names: int = 200):
        self.max_names = max_names
        self._latest: dict[str, dict[str, Any]] = {}

    def update(self, statuses: Iterable[tuple[str, int, str, str]]) -> None:
        for name, level, message, hardware_id in statuses:
            self._latest.pop(name, None)
            self._latest[name] = {"level": level, "message": message[:200], "hardware_id": hardware_id[:64]}
            while len(self._latest) > self.max_names:
                self._latest.pop(next(iter(self._latest)))

    def summary(self) -> dict[str, Any]:
        worst = max((entry["level"] for entry in self._latest.values()), default=0)
        return {"worst": worst, "nodes": dict(sorted(self._latest.items()))}


class ReplayFilter:
    """What the latched streams already sent, so the history a restart replays is not sent again as news.

    A latched topic (mission_states, engine_capabilities: transient local) hands a new subscriber its last
    messages: after a restart of hub_link, the same mission states again. Each message of such a stream is
    keyed by what it is about (its `mission_id`, else its `engine`) and dated by its header stamp; one not
    newer than the last sent for its key is dropped. The last stamps are kept in a file (written at most every
    `flush` call, atomically), so they outlive the process; at most `max_keys` keys, the oldest forgotten.
    """

    KEYS = ("mission_id", "engine")

    def __init__(self, path: str | Path | None, max_keys: int = 2000):
        self.path = Path(path) if path else None
        self.max_keys = max_keys
        self.replayed = 0
        self._sent: dict[str, tuple[int, int]] = {}
        self._dirty = False
        self._lock = threading.Lock()  # streams sampled on the telemetry thread and the executor's share it
        if self.path is not None:
            try:
                loaded = json.loads(self.path.read_text())
                self._sent = {str(k): (int(v[0]), int(v[1])) for k, v in list(loaded.items())[-max_keys:]}
            except (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError):
                self._sent = {}  # none yet, or unreadable: at worst a replay is sent once more

    def is_news(self, stream: str, data: Mapping[str, Any]) -> bool:
        """Return False for a message already sent (by its key and stamp); note the ones that are news."""
        stamp = data.get("header", {}).get("stamp") if isinstance(data.get("header"), dict) else None
        if not isinstance(stamp, dict):
            return True
        key = f"{stream}/" + next((str(data[k]) for k in self.KEYS if isinstance(data.get(k), str)), "")
        when = (int(stamp.get("sec", 0)), int(stamp.get("nanosec", 0)))
        with self._lock:
            return self._note(key, when)

    def _note(self, key: str, when: tuple[int, int]) -> bool:
        last = self._sent.get(key)
        if last is not None and when <= last:
            self.replayed += 1
            return False
        self._sent.pop(key, None)
        self._sent[key] = when
        while len(self._sent) > self.max_keys:
            self._sent.pop(next(iter(self._sent)))
        self._dirty = True
        return True

    def flush(self) -> None:
        """Write the last stamps when they changed (call it every second or so)."""
        with self._lock:
            if self.path is None or not self._dirty:
                return
            self._dirty = False
            sent = {k: list(v) for k, v in self._sent.items()}
        try:
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps(sent))
            os.replace(temporary, self.path)
        except OSError:
            self._dirty = True  # tried again at the next flush


class MissionBoard:
    """The latest state of each mission (as codec dicts of MissionState), for the retained status."""

    def __init__(self, keep_finished: int = 20):
        self.keep_finished = keep_finished
        self._missions: dict[str, dict[str, Any]] = {}

    def update(self, state: Mapping[str, Any]) -> None:
        mission_id = state.get("mission_id", "")
        self._missions.pop(mission_id, None)
        self._missions[mission_id] = {key: state.get(key) for key in (
            "mission_id", "name", "state", "tasks_total", "tasks_succeeded", "tasks_failed", "tasks_running")}
        self._missions[mission_id]["message"] = str(state.get("message", ""))[:300]
        finished = [m for m, s in self._missions.items() if s["state"] >= TERMINAL]
        for mission in finished[:max(0, len(finished) - self.keep_finished)]:
            del self._missions[mission]

    def summary(self) -> dict[str, Any]:
        missions = list(self._missions.values())
        active = [m for m in missions if m["state"] < TERMINAL]
        finished = [m for m in missions if m["state"] >= TERMINAL]
        return {"active": active, "last_finished": finished[-1] if finished else None}
