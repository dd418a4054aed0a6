"""Flight recordings (qai_recorder.bags): standard rosbag2/MCAP bags, readable after a SIGKILL, on a bounded disk.

Bags are written with rosbags and read back with the `mcap` library and its ROS 2 decoder (mcap-ros2-support),
an independent implementation, and with rosbags' own reader.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.rosbag2 import Reader

from qai_recorder import bags


def odometry(i: int) -> bytes:
    """Return an Odometry serialized by rclpy, as the recorder receives it from DDS."""
    from nav_msgs.msg import Odometry
    from rclpy.serialization import serialize_message

    message = Odometry(child_frame_id="base_link")
    message.header.stamp.sec, message.header.frame_id = i, "odom"
    message.pose.pose.position.x, message.twist.twist.linear.x = float(i), 1.0
    return serialize_message(message)


def read_with_mcap(bag: Path) -> list[tuple[str, str, object]]:
    """(topic, schema name, decoded message) of every message, with the mcap library alone."""
    (file,) = bag.glob("*.mcap")
    with open(file, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        return [(channel.topic, schema.name, decoded)
                for schema, channel, _, decoded in reader.iter_decoded_messages()]


def custom_data(bag: Path) -> dict[str, str]:
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]


def test_a_bag_is_a_standard_rosbag2_mcap_that_an_independent_reader_decodes(tmp_path):
    from rclpy.serialization import serialize_message

    from qai_interfaces.msg import MissionState

    types = bags.TypeStore()
    bag = bags.open_bag(tmp_path / "00000_x_m1", {"robot_id": "r1", "profile": "demo", "mission_id": "m1"}, 0.0)
    bags.add_topic(bag, types, "/r1/odom", "nav_msgs/msg/Odometry")
    bags.add_topic(bag, types, "/r1/mission_states", "qai_interfaces/msg/MissionState")
    for i in range(50):
        bags.write(bag, "/r1/odom", 1_000_000_000 + i * 20_000_000, odometry(i))
    bags.write(bag, "/r1/mission_states", 2_000_000_000, serialize_message(MissionState(mission_id="m1", state=1)))
    bags.close_bag(bag)

    decoded = read_with_mcap(bag.path)
    odom = [m for topic, _, m in decoded if topic == "/r1/odom"]
    assert [m.pose.pose.position.x for m in odom] == [float(i) for i in range(50)]
    assert {(topic, schema) for topic, schema, _ in decoded} == {
        ("/r1/odom", "nav_msgs/msg/Odometry"), ("/r1/mission_states", "qai_interfaces/msg/MissionState")}
    assert [m.mission_id for topic, _, m in decoded if topic == "/r1/mission_states"] == ["m1"]
    with Reader(bag.path) as reader:  # rosbag2's metadata.yaml, as ros2 bag info reads it
        assert reader.message_count == 51
        assert {c.topic: c.msgtype for c in reader.connections}["/r1/odom"] == "nav_msgs/msg/Odometry"
        assert sum(1 for _ in reader.messages()) == 51
    custom = custom_data(bag.path)
    assert custom["qai.robot_id"] == "r1" and custom["qai.mission_id"] == "m1" and custom["qai.profile"] == "demo"
    assert not (bag.path / bags.MARKER).exists()


WRITER = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {test_dir!r})
    from qai_recorder import bags
    from test_recorder_bags import odometry
    if __name__ == "__main__":
        bag = bags.open_bag(Path({path!r}), {{"robot_id": "r1", "profile": "", "mission_id": "m2"}}, 0.0)
        bags.add_topic(bag, bags.TypeStore(), "/odom", "nav_msgs/msg/Odometry")
        for i in range(300):
            bags.write(bag, "/odom", 1_000_000_000 + i, odometry(i))
            if i == 199:
                bags.flush(bag, 0.0)
                print("flushed", flush=True)
        time.sleep(60)
    """)


def test_a_bag_cut_by_sigkill_reads_up_to_the_last_flush_once_recovered(tmp_path):
    path = tmp_path / "00001_x_m2"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(test_dir=str(Path(__file__).parent), path=str(path)))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "flushed"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    assert (path / bags.MARKER).exists() and not (path / "metadata.yaml").exists()

    recordings = bags.Recordings(tmp_path, bags.Budget(1 << 30, 1 << 30, 0))
    assert recordings.left_open() == [path]
    assert bags.recover(path) == 200  # the flushed 200; the 100 after the flush were still in memory
    odom = [m for _, _, m in read_with_mcap(path)]
    assert [m.pose.pose.position.x for m in odom] == [float(i) for i in range(200)]
    with Reader(path) as reader:
        assert reader.message_count == 200 == sum(1 for _ in reader.messages())
    assert custom_data(path)["qai.mission_id"] == "m2" and "rebuilt" in custom_data(path)["qai.recovered"]
    assert recordings.left_open() == []


def test_over_20_missions_the_recordings_stay_within_their_bound_and_the_reserve_is_never_eaten(tmp_path):
    free = {"bytes": 10 << 20}
    recordings = bags.Recordings(tmp_path / "rec", bags.Budget(64 << 10, 300 << 10, 1 << 20),
                                 free_bytes=lambda _: free["bytes"])
    types = bags.TypeStore()
    for mission in range(20):
        assert recordings.make_room(None)
        path = recordings.root / bags.bag_name(recordings.next_sequence(), 0.0, f"m{mission}")
        bag = bags.open_bag(path, {"robot_id": "r", "profile": "", "mission_id": f"m{mission}"}, 0.0)
        bags.add_topic(bag, types, "/odom", "nav_msgs/msg/Odometry")
        for i in range(150):  # about 100 KB a mission
            bags.write(bag, "/odom", i, odometry(i))
            if i % 50 == 49:
                bags.flush(bag, 0.0)
                assert recordings.make_room(bag.path, bag.size())
        bags.close_bag(bag)
        total = sum(bags.directory_bytes(p) for p in recordings.bags())
        assert total <= 300 << 10, f"{total} bytes after mission {mission}"
    names = [p.name.rsplit("_", 1)[-1] for p in recordings.bags()]
    assert names[-1] == "m19" and "m0" not in names and recordings.removed >= 15  # the oldest went first

    free["bytes"] = 512 << 10  # under the reserve: every closed bag goes, then there is no room
    assert not recordings.make_room(None) and recordings.bags() == []
