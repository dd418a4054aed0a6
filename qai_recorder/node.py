"""recorder: the robot's flight recorder, one rosbag2 (MCAP) bag per mission; the logic is qai_recorder.bags.

ROS interface (names relative to the robot's namespace):
- subscribes, serialized (messages are written as they arrive, never decoded), to each of `topics` once a
  publisher shows its type, with the reliability and durability its publishers offer (as rosbag2 does);
- subscribes to `mission_states`: a mission that starts opens its own bag, one that ends closes it (0.1 s
  after its last state, which is in it); one mission at a time (another running meanwhile shares its bag);
- publishes its heartbeat on `/diagnostics`: the open bag, messages written, bags removed for room, pauses.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections import OrderedDict
from pathlib import Path

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from rosbags.rosbag2 import WriterError

from qai_edge.engine_node import EngineNode, spin_node
from qai_edge.health import Level
from qai_edge.qos import MISSION_STATES_QOS
from qai_interfaces.msg import MissionState
from qai_recorder import bags
from qai_recorder.parameters import PARAMETERS

TERMINAL = 10  # mission states at or above this are final (qai_hub.protocol.TERMINAL)
MAX_MISSIONS = 1000  # missions whose latest state is kept
DECISION_DELAY = 0.1  # s after the last mission state before the bag follows: the final state gets in it


class Recorder(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("recorder", PARAMETERS, **kwargs)
        p = self.param
        root = Path(p("data_dir")).expanduser() / self.robot_id / "recordings"
        self.recordings = bags.Recordings(root, bags.Budget(p("max_bag_bytes"), p("max_total_bytes"),
                                                            p("reserve_bytes")))
        self.types = bags.TypeStore()
        for path in self.recordings.left_open():  # a crash left it open: rebuilt from what reached the disk
            try:
                kept = bags.recover(path, self.types)
                self.get_logger().warning(f"recovered {path.name}: {kept} messages, up to where it was cut")
            except (OSError, ValueError, bags.RecordingError) as error:
                self.get_logger().error(f"cannot recover {path}: {error}")
        self.wanted = list(p("topics"))
        self.subscribed: dict[str, str] = {}  # resolved topic -> type
        self.refused: dict[str, str] = {}
        self.bag: bags.Bag | None = None
        self.mission_id = ""
        self.paused = 0
        self.written = 0
        self.states: OrderedDict[str, int] = OrderedDict()  # mission id -> its latest state
        self._decision = self.create_timer(DECISION_DELAY, self._decide, clock=self._steady_clock)
        self._decision.cancel()
        self.create_subscription(MissionState, "mission_states", self._on_mission_state, MISSION_STATES_QOS)
        # The first bag opens at the first tick: after a restart the latched mission states say which it is.
        self.create_timer(p("flush_period"), self._tick, clock=self._steady_clock)
        self.create_timer(1.0, self._discover, clock=self._steady_clock)
        self.start()

    # -- Subscriptions ------------------------------------------------------------------------------------

    def _discover(self) -> None:
        published = dict(self.get_topic_names_and_types())
        for topic in self.wanted:
            name = self.resolve_topic_name(topic)
            if name in self.subscribed or name in self.refused or not published.get(name):
                continue
            msgtype = published[name][0]
            try:
                self.types.ensure(msgtype)
                kind = get_message(msgtype)
            except (bags.RecordingError, ValueError, ModuleNotFoundError, AttributeError) as error:
                self.refused[name] = str(error)
                self.get_logger().error(f"not recording {name}: {error}")
                continue
            self.create_subscription(kind, name, lambda data, n=name: self._on_message(n, data),
                                     self._qos(name), raw=True)
            self.subscribed[name] = msgtype

    def _qos(self, topic: str) -> QoSProfile:
        offered = [info.qos_profile for info in self.get_publishers_info_by_topic(topic)]
        reliable = offered and all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
        latched = offered and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
        return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE if reliable else
                          ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    def _on_message(self, topic: str, data: bytes) -> None:
        bag = self.bag
        if bag is None:
            return
        try:
            if topic not in bag.connections:
                bags.add_topic(bag, self.types, topic, self.subscribed[topic])
            bags.write(bag, topic, self.get_clock().now().nanoseconds, data)
            self.written += 1
        except OSError as error:  # a full or failing disk: pause, never crash; what reached the disk stays
            self._failed(error)

    # -- Bags: one per mission ----------------------------------------------------------------------------

    def _on_mission_state(self, message: MissionState) -> None:
        self.states[message.mission_id] = message.state
        self.states.move_to_end(message.mission_id)
        while len(self.states) > MAX_MISSIONS:
            self.states.popitem(last=False)
        self._decision.reset()  # decided once the burst is over (a restart gets every latched state at once)

    def _decide(self) -> None:
        """Record the mission that runs (the one already recorded while it runs, else the newest), or idle."""
        self._decision.cancel()
        running = [mission for mission, state in self.states.items() if state < TERMINAL]
        self.mission_id = self.mission_id if self.mission_id in running else (running[-1] if running else "")
        if self.bag is None or self.bag.mission_id != self.mission_id:
            self._open(self.mission_id)

    def _open(self, mission_id: str) -> None:
        """Close the open bag (if any) and open the next: for `mission_id`, or idle ("", if record_idle)."""
        self._close()
        if not mission_id and not self.param("record_idle"):
            return
        if not self.recordings.make_room(None):
            self.paused += 1
            return
        now = time.time()
        path = self.recordings.root / bags.bag_name(self.recordings.next_sequence(), now, mission_id)
        info = {"robot_id": self.robot_id, "profile": self.param("profile_name"), "mission_id": mission_id}
        try:
            self.bag = bags.open_bag(path, info, time.monotonic())
        except (OSError, WriterError) as error:  # a full disk, or the directory exists (a clock stepped back)
            self.paused += 1
            self.get_logger().error(f"recording paused: cannot open {path}: {error}")

    def _close(self) -> None:
        bag, self.bag = self.bag, None
        if bag is not None:
            try:
                bags.close_bag(bag)
            except OSError as error:
                self.get_logger().error(f"{bag.path.name} could not be closed ({error}): it is rebuilt at the next "
                                        "start from what reached the disk")

    def _failed(self, error: OSError) -> None:
        self.get_logger().error(f"recording paused: writing {self.bag.path.name} failed: {error}")
        self.paused += 1
        bag, self.bag = self.bag, None
        try:
            bag.writer.storage.bio.close()  # left marked open: the next start rebuilds it from what is on disk
        except (OSError, AttributeError):
            pass

    def _tick(self) -> None:
        bag = self.bag
        if bag is None:
            if self.mission_id or self.param("record_idle"):
                self._open(self.mission_id)  # the first, or after a pause for room
            return
        try:
            bags.flush(bag, time.monotonic())
        except OSError as error:
            self._failed(error)
            return
        size = bag.size()
        idle_over = not bag.mission_id and time.monotonic() - bag.started > self.param("idle_split_period")
        if size > self.param("max_bag_bytes") or idle_over:
            self._open(bag.mission_id)  # the next split
        elif not self.recordings.make_room(bag.path, size):
            self._close()
            self.paused += 1
            self.get_logger().error("recording paused: no room within max_total_bytes and reserve_bytes")

    def health(self):
        values = {"bag": self.bag.path.name if self.bag else "", "messages_written": str(self.written),
                  "topics": ",".join(sorted(self.subscribed)), "bags_removed_for_room": str(self.recordings.removed),
                  "pauses": str(self.paused), "topics_refused": ",".join(sorted(self.refused))}
        if self.bag is None and (self.mission_id or self.param("record_idle")):
            return Level.WARN, "recording paused: no room (max_total_bytes, reserve_bytes)", values
        return Level.OK, f"recording {self.bag.path.name}" if self.bag else "not recording (idle)", values

    def destroy_node(self) -> None:
        self._close()
        super().destroy_node()


def get_message(msgtype: str):
    """Return the Python class of `package/msg/Name` (its package's generated module)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def main(args=None) -> int:
    return spin_node(Recorder, args)


if __name__ == "__main__":
    sys.exit(main())
