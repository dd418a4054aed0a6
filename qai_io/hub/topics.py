"""MQTT topic names of the hub link. No rclpy import.

Topics:
    qai/<fleet>/<robot>/status                 retained: online / offline (last will), mission summary, link
    qai/<fleet>/<robot>/telemetry/<stream>     JSON telemetry, one stream per configured ROS topic
    qai/<fleet>/<robot>/telemetry/drops        which sequence numbers of which stream were dropped, and why
    qai/<fleet>/<robot>/cmd/<verb>             signed commands to one robot
    qai/<fleet>/all/cmd/<verb>                 signed commands to every robot of the fleet
    qai/<fleet>/<robot>/cmd/<verb>/reply       acceptance, progress, result or rejection, with the request id
    qai/<fleet>/<robot>/link/ping              the link's own round-trip probe
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROOT = "qai"
ALL_ROBOTS = "all"
VERBS = ("submit_mission", "cancel_mission", "add_tasks", "get_state")
DROPS_STREAM = "drops"

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
