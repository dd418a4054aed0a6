"""Flight recordings as rosbag2 directories with MCAP storage, on a bounded disk. No rclpy import.

A recording is a standard rosbag2 bag (`metadata.yaml` and one `.mcap` file, ROS 2 profile, CDR messages,
`ros2msg` schemas), written with `rosbags` (a maintained implementation of the format): `ros2 bag info` and
`ros2 bag play` open it, and so do Foxglove and PlotJuggler. Its metadata's custom_data names the robot,
the profile and the mission (`qai.robot_id`, `qai.profile`, `qai.mission_id`; "" while idle).

What a crash leaves: messages go to the file in chunks closed at least every `flush_period` (and at
`max_bag_bytes`), each followed by a flush, so a SIGKILL loses at most the last period; the bag then lacks
its summary, footer and metadata.yaml. A `recording.json` beside the file marks the bag as open; on the next
start (`recover`) every bag still marked is rebuilt from the complete records of its file (read with the
`mcap` library's stream reader, which stops at the cut) into a complete bag, its custom_data saying
`qai.recovered`. Disk: one bag at most `max_bag_bytes` (then the next split starts), every recording together
at most `max_total_bytes`, and at least `reserve_bytes` of the disk left free: the oldest closed bags go first;
when that is not enough, recording pauses (counted) until there is room again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

MARKER = "recording.json"
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class RecordingError(Exception):
    """A recording that cannot be made or used; the message says why."""


# -- Message types: the standard ones from rosbags' Jazzy store, ours from their .msg files ----------------

def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    return [Path(prefix) / "share" for prefix in prefixes]


class TypeStore:
    """The message definitions a bag's schemas need: rosbags' ROS 2 Jazzy types, and any package's .msg files."""

    def __init__(self, share_dirs: Iterable[Path] | None = None):
        self.store = get_typestore(Stores.ROS2_JAZZY)
        self.share_dirs = list(share_dirs) if share_dirs is not None else _share_dirs()
        self._loaded: set[str] = set()

    def ensure(self, msgtype: str) -> None:
        """Make `msgtype` (package/msg/Name) known, loading its package's .msg files if need be."""
        if msgtype in self.store.types:
            return
        package = msgtype.split("/", 1)[0]
        if package in self._loaded:
            raise RecordingError(f"{msgtype}: no message definition in package {package}")
        self._loaded.add(package)
        for share in self.share_dirs:
            directory = share / package / "msg"
            if directory.is_dir():
                types = {}
                for path in sorted(directory.glob("*.msg")):
                    types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
                self.store.register(types)
                break
        if msgtype not in self.store.types:
            raise RecordingError(f"{msgtype}: no message definition found (looked in {package}/msg under "
                                 f"{', '.join(map(str, self.share_dirs))})")


# -- One bag ------------------------------------------------------------------------------------------------

@dataclass
class Bag:
    """One open rosbag2 directory being written."""

    path: Path
    mission_id: str
    writer: Writer
    started: float
    connections: dict = field(default_factory=dict)  # topic -> rosbags Connection
    messages: int = 0
    last_flush: float = 0.0

    @property
    def file(self) -> Path:
        return self.path / f"{self.path.name}.mcap"

    def size(self) -> int:
        try:
            return self.file.stat().st_size + self.writer.storage.chunk.bio.tell()
        except (OSError, AttributeError):
            return 0


def open_bag(path: Path, info: dict[str, str], now: float) -> Bag:
    """Open a new bag at `path` (which must not exist), marked open until it is closed."""
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    for key, value in info.items():
        writer.set_custom_data(f"qai.{key}", str(value))
    writer.open()
    (path / MARKER).write_text(json.dumps(info))
    return Bag(path, info.get("mission_id", ""), writer, now, last_flush=now)


def add_topic(bag: Bag, types: TypeStore, topic: str, msgtype: str) -> None:
    types.ensure(msgtype)
    bag.connections[topic] = bag.writer.add_connection(topic, msgtype, typestore=types.store)


def write(bag: Bag, topic: str, stamp_ns: int, data: bytes) -> None:
    bag.writer.write(bag.connections[topic], stamp_ns, data)
    bag.messages += 1


def flush(bag: Bag, now: float) -> None:
    """Close the pending chunk and push it to the disk: what was written survives a SIGKILL from here on."""
    storage = bag.writer.storage
    if storage is not None and storage.chunk.bio.tell():
        storage.close_chunk()
    if storage is not None:
        storage.bio.flush()
        os.fsync(storage.bio.fileno())
    bag.last_flush = now


def close_bag(bag: Bag) -> None:
    bag.writer.close()
    (bag.path / MARKER).unlink(missing_ok=True)


# -- Recovery after a crash -------------------------------------------------------------------------------

def recover(path: Path, types: TypeStore | None = None) -> int:
    """Rebuild a bag a crash left open from the complete records of its file; return the messages kept."""
    types = types or TypeStore()
    info = json.loads((path / MARKER).read_text())
    source = next(iter(sorted(path.glob("*.mcap"))), None)
    rebuilt = path.parent / ".recovering" / path.name  # the same name: metadata.yaml names the file
    shutil.rmtree(rebuilt.parent, ignore_errors=True)
    rebuilt.parent.mkdir()
    writer = Writer(rebuilt, version=9, storage_plugin=StoragePlugin.MCAP)
    for key, value in info.items():
        writer.set_custom_data(f"qai.{key}", str(value))
    writer.set_custom_data("qai.recovered", "rebuilt after the recorder stopped without closing the bag")
    writer.open()
    schemas: dict[int, Schema] = {}
    connections: dict[int, object] = {}
    kept = 0
    if source is not None:
        with open(source, "rb") as stream:
            try:
                for record in StreamReader(stream, skip_magic=False).records:
                    if isinstance(record, Schema):
                        schemas[record.id] = record
                    elif isinstance(record, Channel) and record.schema_id in schemas:
                        connections[record.id] = _reconnect(writer, types, record, schemas[record.schema_id])
                    elif isinstance(record, Message) and record.channel_id in connections:
                        writer.write(connections[record.channel_id], record.log_time, record.data)
                        kept += 1
            except (McapError, EOFError, ValueError, OSError, KeyError):
                pass  # the cut: everything before it is kept
    writer.close()
    shutil.rmtree(path)
    os.replace(rebuilt, path)
    rebuilt.parent.rmdir()
    return kept


def _reconnect(writer: Writer, types: TypeStore, channel: Channel, schema: Schema):
    """Add a channel of the cut file to the rebuilt bag: its definition from the store, else from the file."""
    try:
        types.ensure(schema.name)
        return writer.add_connection(channel.topic, schema.name, typestore=types.store,
                                     serialization_format=channel.message_encoding)
    except RecordingError:
        digest = "RIHS01_" + hashlib.sha256(schema.data).hexdigest()  # not the type's own hash: it is unknown here
        return writer.add_connection(channel.topic, schema.name, msgdef=schema.data.decode(), rihs01=digest,
                                     serialization_format=channel.message_encoding)


# -- The recordings directory, bounded --------------------------------------------------------------------

def bag_name(sequence: int, when: float, mission_id: str) -> str:
    label = _SAFE.sub("_", mission_id)[:64] if mission_id else "idle"
    return f"{sequence:05d}_{time.strftime('%Y%m%d-%H%M%S', time.gmtime(when))}_{label}"


def directory_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


@dataclass
class Budget:
    max_bag_bytes: int
    max_total_bytes: int
    reserve_bytes: int


class Recordings:
    """The recordings directory: its bags in order, made room for by removing the oldest closed ones."""

    def __init__(self, root: Path, budget: Budget,
                 free_bytes: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free):
        self.root = root
        self.budget = budget
        self.free_bytes = free_bytes
        self.removed = 0
        self._sizes: dict[Path, int] = {}  # closed bags do not change: each is measured once, not every flush
        root.mkdir(parents=True, exist_ok=True)

    def bags(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_dir() and re.match(r"^\d{5}_", p.name))

    def next_sequence(self) -> int:
        bags = self.bags()
        return int(bags[-1].name[:5]) + 1 if bags else 0

    def left_open(self) -> list[Path]:
        return [p for p in self.bags() if (p / MARKER).exists()]

    def make_room(self, open_path: Path | None, open_size: int = 0) -> bool:
        """Remove the oldest closed bags until the budget holds; False when it still does not (pause)."""
        while True:
            closed = [p for p in self.bags() if p != open_path]
            total = sum(self._size(p) for p in closed) + open_size
            short = self.free_bytes(self.root) < self.budget.reserve_bytes
            if total <= self.budget.max_total_bytes and not short:
                return True
            if not closed:
                return False
            shutil.rmtree(closed[0], ignore_errors=True)
            self._sizes.pop(closed[0], None)
            self.removed += 1

    def _size(self, bag: Path) -> int:
        if (bag / MARKER).exists():  # still open (or cut, until it is rebuilt): measured each time
            return directory_bytes(bag)
        if bag not in self._sizes:
            self._sizes[bag] = directory_bytes(bag)
        return self._sizes[bag]
