"""The recorder as a robot runs it: real sim_vehicle, mission_engine and recorder processes over real DDS.

A mission gets a bag of its own, holding the vehicle's odometry and the mission's states with their
standard types, which the `mcap` library (not the writer's) decodes; a recorder killed with SIGKILL
mid-mission has that bag rebuilt when it starts again, readable up to the kill.
"""

from __future__ import annotations

import os
import signal

import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from harness import status_values, unique_namespace, wait_for

TIMEOUT = 60.0


def decoded(bag) -> list[tuple[str, str, object]]:
    (file,) = bag.glob("*.mcap")
    with open(file, "rb") as stream:
        return [(channel.topic, schema.name, message) for schema, channel, _, message in
                make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]


def test_each_mission_gets_its_own_bag_and_a_killed_recorder_leaves_one_that_reads_up_to_the_kill(
        processes, ros_probe, tmp_path):
    from qai_mission.client import MissionClient, MissionOutcome

    namespace = unique_namespace()
    data = tmp_path / "data"
    processes.start_node("sim_vehicle", namespace=namespace)
    processes.start_node("mission_engine", namespace=namespace,
                         parameters={"data_dir": str(data), "heartbeat_period": 0.2})
    recorder_parameters = {"data_dir": str(data), "robot_id": "rec1", "profile_name": "test", "heartbeat_period": 0.2,
                           "topics": ["odom", "mission_states", "battery_state"]}
    recorder = processes.start_node("recorder", namespace=namespace, parameters=recorder_parameters)
    root = data / "rec1" / "recordings"

    def status():
        found = ros_probe.latest_status(f"{namespace}/recorder")
        return status_values(found) if found else {}

    ros_probe.watch_diagnostics()
    ros_probe.spin_until(lambda: {f"{namespace}/odom", f"{namespace}/mission_states"} <= set(
        status().get("topics", "").split(",")), TIMEOUT, lambda: f"the recorder subscribed: {status()}")
    missions = MissionClient(namespace=namespace)
    try:
        result = missions.run({"id": "short-one", "name": "short", "tasks": [
            {"id": "w", "kind": "wait", "parameters": {"seconds": 2.0}}]}, timeout=TIMEOUT)
        assert result.outcome is MissionOutcome.SUCCEEDED, result
        (bag,) = [p for p in root.iterdir() if p.name.endswith("_short-one")]
        wait_for(lambda: (bag / "metadata.yaml").exists(), TIMEOUT, "the mission's bag closed when it ended")
        messages = decoded(bag)
        kinds = {(topic, schema) for topic, schema, _ in messages}
        assert (f"{namespace}/odom", "nav_msgs/msg/Odometry") in kinds
        assert (f"{namespace}/mission_states", "qai_interfaces/msg/MissionState") in kinds
        odom = [m for topic, _, m in messages if topic == f"{namespace}/odom"]
        assert len(odom) >= 50 and odom[0].child_frame_id == "base_link"  # 50 Hz for 2 s
        states = [m.state for topic, _, m in messages if topic == f"{namespace}/mission_states"
                  and m.mission_id == "short-one"]
        assert 10 in states  # its SUCCEEDED state, published as the bag closed
        meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert meta["storage_identifier"] == "mcap" and meta["custom_data"]["qai.mission_id"] == "short-one"
        assert meta["custom_data"]["qai.robot_id"] == "rec1" and meta["custom_data"]["qai.profile"] == "test"

        # Killed mid-mission, started again: the cut bag is rebuilt from what reached the disk.
        long_id = missions.submit({"id": "cut-one", "name": "cut", "tasks": [
            {"id": "w", "kind": "wait", "parameters": {"seconds": 30.0}}]})
        ros_probe.spin_until(lambda: status().get("bag", "").endswith("_cut-one")
                             and int(status().get("messages_written", "0")) > 0, TIMEOUT, "recording cut-one")
        ros_probe.spin_for(2.5)  # more than one flush_period of flight in the bag
        os.kill(recorder.pid, signal.SIGKILL)
        recorder.popen.wait(10)
        (cut,) = [p for p in root.iterdir() if p.name.endswith("_cut-one")]
        assert not (cut / "metadata.yaml").exists()
        processes.start_node("recorder", namespace=namespace, parameters=recorder_parameters)
        wait_for(lambda: (cut / "metadata.yaml").exists(), TIMEOUT, "the cut bag rebuilt at the restart")
        odom = [m for topic, _, m in decoded(cut) if topic == f"{namespace}/odom"]
        assert len(odom) >= 50, len(odom)
        assert "rebuilt" in yaml.safe_load((cut / "metadata.yaml").read_text())[
            "rosbag2_bagfile_information"]["custom_data"]["qai.recovered"]
        # The restarted recorder goes on with the running mission in a bag of its own, and the latched states of
        # the finished one open none.
        ros_probe.spin_until(lambda: status().get("bag", "").endswith("_cut-one") and status()["bag"] != cut.name,
                             TIMEOUT, lambda: f"a new bag for the running mission: {status()}")
        assert len([p for p in root.iterdir() if p.name.endswith("_short-one")]) == 1
        missions.cancel(long_id)
    finally:
        missions.close()


FAILING_DISK = """\
import resource
import sys

from qai_recorder.node import main

if __name__ == "__main__":
    # Every file may grow to 150 kB, then each write fails (EFBIG; Python ignores SIGXFSZ): a disk that fails.
    resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
    sys.exit(main())
"""


def test_a_disk_that_fails_under_the_recorder_pauses_it_without_a_crash_and_loses_no_bag(
        processes, ros_probe, tmp_path):
    import sys

    namespace = unique_namespace()
    data = tmp_path / "data"
    processes.start_node("sim_vehicle", namespace=namespace)
    script = tmp_path / "failing_disk.py"
    script.write_text(FAILING_DISK)
    parameters = {"data_dir": str(data), "robot_id": "rec2", "heartbeat_period": 0.2, "topics": ["odom", "imu/data"]}
    recorder = processes._start_ros([sys.executable, str(script)], "recorder", namespace, parameters)
    root = data / "rec2" / "recordings"

    def status():
        found = ros_probe.latest_status(f"{namespace}/recorder")
        return status_values(found) if found else {}

    ros_probe.watch_diagnostics()
    ros_probe.spin_until(lambda: int(status().get("pauses", "0")) >= 2, TIMEOUT,
                         lambda: f"writes failing and the recorder pausing, again after a retry: {status()}")
    assert recorder.popen.poll() is None, "the recorder died of a failing disk"
    os.kill(recorder.pid, signal.SIGKILL)
    recorder.popen.wait(10)
    failed = [p for p in root.iterdir() if (p / "recording.json").exists()]
    assert len(failed) >= 2
    processes.start_node("recorder", namespace=namespace, parameters=parameters)  # a disk that works again
    wait_for(lambda: all((p / "metadata.yaml").exists() for p in failed), TIMEOUT, "the failed bags rebuilt")
    for bag in failed:
        odom = [m for topic, _, m in decoded(bag) if topic.endswith("/odom")]
        assert odom, f"{bag.name}: nothing kept"
