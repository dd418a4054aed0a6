"""Flights the recorder wrote (rosbag2, MCAP) read back as the intelligence engine saw them. No rclpy import.

A recording (qai_recorder: one bag per mission) holds the vehicle's streams as they arrived, each stamped
with its arrival on the robot's clock. `read_flight` decodes them with `rosbags` (the standard message
definitions), turns each message into a reading with the node's own converters (qai_intelligence.messages)
and replays them, in arrival order, through the engine's own core (qai_intelligence.engine.IntelligenceCore:
the same checks of each reading, the same ages, stall rule and feature builder), one anomaly tick every
`tick` seconds: the features are those the node would have computed in that flight, take-off and landing
included. A flight is named by the SHA-256 of its MCAP file, so a model can say which recordings made it.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import yaml
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import NavSatStatus

from qai_intelligence.data import ANOMALY_TICK
from qai_intelligence.engine import IntelligenceCore
from qai_intelligence.messages import battery_reading, command_reading, gps_reading, imu_reading, odom_reading
from qai_intelligence.runtime import ReturnPlan

# Topic (its last part, as in any namespace) -> (type, stream): what the node subscribes to.
TOPICS = {"odom": ("nav_msgs/msg/Odometry", "odom"), "data": ("sensor_msgs/msg/Imu", "imu"),
          "battery_state": ("sensor_msgs/msg/BatteryState", "battery"), "fix": ("sensor_msgs/msg/NavSatFix", "gps"),
          "cmd_vel": ("geometry_msgs/msg/Twist", "cmd")}
CONVERTERS = {"odom": odom_reading, "imu": imu_reading, "battery": battery_reading, "cmd": command_reading}
_TYPES = get_typestore(Stores.ROS2_JAZZY)


class RecordingError(ValueError):
    """A recording that cannot be used for training; the message names it and says why."""


@dataclass(frozen=True)
class RecordedFlight:
    path: str
    sha256: str  # of its MCAP file
    mission_id: str
    features: np.ndarray  # anomaly ticks x ANOMALY features
    seconds: float
    start_ns: int = 0  # the first tick's time on the robot's clock (the bag's stamps)


def find_bags(paths: Iterable[str | Path], missions_only: bool = True) -> list[Path]:
    """Return the bags under `paths` (each a bag or a directory of them), sorted; idle ones left out by default."""
    found: set[Path] = set()
    for path in map(Path, paths):
        path = path.expanduser()
        if not path.exists():
            raise RecordingError(f"{path}: no such file or directory")
        for metadata in ([path / "metadata.yaml"] if (path / "metadata.yaml").is_file()
                         else sorted(path.rglob("metadata.yaml"))):
            if not missions_only or _mission_id(metadata.parent):
                found.add(metadata.parent)
    return sorted(found)


def _mission_id(bag: Path) -> str:
    try:
        info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise RecordingError(f"{bag}: unreadable metadata.yaml ({error})") from None
    custom = info.get("custom_data") or {}
    return str(custom.get("qai.mission_id", "")) if isinstance(custom, dict) else ""


def read_flight(bag: str | Path, tick: float = ANOMALY_TICK) -> RecordedFlight:
    """Replay one recorded flight through the engine's core; return its anomaly features, tick by tick."""
    bag = Path(bag)
    files = sorted(bag.glob("*.mcap"))
    if len(files) != 1:
        raise RecordingError(f"{bag}: expected one .mcap file, found {len(files)}")
    digest = hashlib.sha256(files[0].read_bytes()).hexdigest()
    events: list[tuple[int, str, dict[str, float] | None, object]] = []
    try:
        with Reader(bag) as reader:
            wanted = [c for c in reader.connections if c.topic.rsplit("/", 1)[-1] in TOPICS
                      and TOPICS[c.topic.rsplit("/", 1)[-1]][0] == c.msgtype and "/control/" not in c.topic]
            for connection, stamp, raw in reader.messages(connections=wanted):
                stream = TOPICS[connection.topic.rsplit("/", 1)[-1]][1]
                message = _TYPES.deserialize_cdr(raw, connection.msgtype)
                events.append((stamp, stream, None if stream == "gps" else CONVERTERS[stream](message), message))
    except (OSError, KeyError, ValueError, AssertionError, IndexError, struct.error, ReaderError, SerdeError) as error:
        raise RecordingError(f"{bag}: cannot read it ({type(error).__name__}: {error})") from None
    if not events:
        raise RecordingError(f"{bag}: none of the streams the anomaly model reads ({', '.join(TOPICS)})")
    core = IntelligenceCore({}, ReturnPlan(), lambda: 0.0)
    origin = None
    ticks: list[list[float]] = []
    start = first = events[0][0] * 1e-9
    now, index = start, 0
    end = events[-1][0] * 1e-9
    while now <= end:
        while index < len(events) and events[index][0] * 1e-9 <= now:
            stamp, stream, reading, message = events[index]
            if stream == "gps":  # the node's own rule: the first fix is the origin
                if message.status.status >= NavSatStatus.STATUS_FIX and origin is None and all(
                        map(math.isfinite, (message.latitude, message.longitude, message.altitude))):
                    origin = (message.latitude, message.longitude, message.altitude)
                reading = gps_reading(message, origin)
            if reading is not None:
                core.offer(stream, reading, stamp * 1e-9)
            index += 1
        features = core.anomaly_features(now)
        if features is not None:
            first = now if not ticks else first
            ticks.append(features)
        now += tick
    if len(ticks) < 40:
        raise RecordingError(f"{bag}: {len(ticks)} anomaly ticks with every stream heard; at least 40 (2 s) needed")
    return RecordedFlight(str(bag), digest, _mission_id(bag), np.asarray(ticks, np.float32), end - start,
                          round(first * 1e9))
