"""Training from recordings: recorded flights read back as the engine saw them, and the anomaly model fine-tuned.

The flights are written with the recorder's own bag writer (qai_recorder.bags), their messages built from the
simulator's vehicle model and serialized by rclpy, at the simulator node's rates: what the recorder writes
from a real stack (test_recorder_node records one; the demo's bag is read in test_demo), made here in a
second instead of a minute.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from harness import installed
from qai_intelligence import checkpoint
from qai_intelligence.features import ANOMALY
from qai_intelligence.finetune import fine_tune_anomaly, nll_per_flight
from qai_intelligence.recordings import RecordingError, find_bags, read_flight
from qai_intelligence.store import SHIPPED
from qai_io.motion import MotionRun, Pose, PositionController, WaypointPlan
from qai_recorder import bags
from qai_sim.vehicle_model import VehicleConfig, VehicleModel

NAMESPACE = "/drone9"
RATES = {"odom": 50, "imu": 100, "battery": 2, "fix": 5}


def record_flight(root, sequence: int, seed: int, payload: float, seconds: float = 12.0):
    """Fly the vehicle model through two waypoints and write what its sensors said as a recorded mission."""
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import BatteryState, Imu, NavSatFix

    model = VehicleModel(VehicleConfig(seed=seed, payload=payload, wind=(1.0, 0.5), wind_gust=0.5),
                         position=(0.0, 0.0, 2.0))
    run = MotionRun(WaypointPlan([(8.0, 3.0, 4.0), (0.0, 6.0, 3.0)], 0.5), PositionController(), 3.0)
    mission = f"m{seed}"
    bag = bags.open_bag(root / bags.bag_name(sequence, 0.0, mission),
                        {"robot_id": "drone9", "profile": "test", "mission_id": mission}, 0.0)
    types = bags.TypeStore()
    for topic, kind in (("odom", "nav_msgs/msg/Odometry"), ("imu/data", "sensor_msgs/msg/Imu"),
                        ("battery_state", "sensor_msgs/msg/BatteryState"), ("navsat/fix", "sensor_msgs/msg/NavSatFix"),
                        ("cmd_vel", "geometry_msgs/msg/Twist")):
        bags.add_topic(bag, types, f"{NAMESPACE}/{topic}", kind)
    start_ns = 1_800_000_000 * 10**9
    for step in range(int(seconds * 100)):
        t = step / 100
        stamp = start_ns + step * 10_000_000
        if step % (100 // RATES["odom"]) == 0:
            position, yaw, body, yaw_rate = model.odometry()
            odom = Odometry(child_frame_id="base_link")
            odom.header.stamp.sec, odom.header.stamp.nanosec = divmod(stamp, 10**9)
            p = odom.pose.pose
            p.position.x, p.position.y, p.position.z = position
            p.orientation.z, p.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
            odom.twist.twist.linear.x, odom.twist.twist.linear.y, odom.twist.twist.linear.z = body
            odom.twist.twist.angular.z = yaw_rate
            bags.write(bag, f"{NAMESPACE}/odom", stamp, serialize_message(odom))
            cos_yaw, sin_yaw = math.cos(yaw), math.sin(yaw)
            command = run.on_odometry(Pose(*position, yaw, cos_yaw * body[0] - sin_yaw * body[1],
                                           sin_yaw * body[0] + cos_yaw * body[1], body[2]), t)
            model.command(*command)
            twist = Twist()
            twist.linear.x, twist.linear.y, twist.linear.z = command[:3]
            bags.write(bag, f"{NAMESPACE}/cmd_vel", stamp + 1000, serialize_message(twist))
        force, gyro, _ = model.imu()
        imu = Imu()
        imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = force
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = gyro
        bags.write(bag, f"{NAMESPACE}/imu/data", stamp + 2000, serialize_message(imu))
        if step % (100 // RATES["battery"]) == 0:
            voltage, current, fraction = model.battery_reading()
            battery = BatteryState(voltage=voltage, current=-current, percentage=fraction, capacity=5.0)
            bags.write(bag, f"{NAMESPACE}/battery_state", stamp + 3000, serialize_message(battery))
        if step % (100 // RATES["fix"]) == 0:
            east, north, up = model.gps_position()
            fix = NavSatFix(latitude=47.4 + north / 111_111.0, longitude=8.5 + east / 75_000.0, altitude=488.0 + up)
            fix.status.status = 0
            bags.write(bag, f"{NAMESPACE}/navsat/fix", stamp + 4000, serialize_message(fix))
        model.step(0.01)
        if step % 100 == 99:
            bags.flush(bag, t)
    bags.close_bag(bag)
    return bag.path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("recordings")
    for i in range(4):
        record_flight(root, i, seed=10 + i, payload=1.0)
    (root / "00099_idle").mkdir()  # not a bag: left out
    return root


def test_a_recorded_flight_replays_into_the_engines_own_features(recordings):
    bags_found = find_bags([recordings])
    assert len(bags_found) == 4
    flight = read_flight(bags_found[0])
    assert flight.features.shape[1] == len(ANOMALY.features) and np.isfinite(flight.features).all()
    assert 11.0 < flight.seconds < 12.5 and abs(len(flight.features) - flight.seconds / 0.05) < 5
    column = {name: flight.features[:, i] for i, name in enumerate(ANOMALY.features)}
    assert column["vx"].max() > 1.0 and 14.0 < column["voltage"].mean() < 17.0
    assert (column["age_gps"] == 0).all() and (column["age_odom"] == 0).all()  # every stream on time
    assert abs(column["accel_z"].mean() - 9.81) < 0.5 and abs(column["cmd_forward"]).max() > 1.0
    assert flight.mission_id == "m10" and len(flight.sha256) == 64


def test_fine_tuning_on_recordings_is_repeatable_and_never_worse_than_the_base_on_validation(recordings, tmp_path):
    flights = [read_flight(b) for b in find_bags([recordings])]
    torch.set_num_threads(1)
    first = fine_tune_anomaly(SHIPPED / "anomaly", flights, seed=3, iterations=30)
    second = fine_tune_anomaly(SHIPPED / "anomaly", list(reversed(flights)), seed=3, iterations=30)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    recorded = first.metrics["recorded_validation"]
    assert recorded["flights"] == 1 and recorded["nll_tuned"] <= recorded["nll_base"]
    assert sorted(r["sha256"] for r in first.data["recordings"]) == sorted(f.sha256 for f in flights)
    assert first.model.config.extra["threshold"] == checkpoint.read_meta(SHIPPED / "anomaly")["config"]["extra"][
        "threshold"]
    held = [f.features for f in flights if f.sha256 in
            {r["sha256"] for r in first.data["recordings"] if r["split"] == "validation"}]
    assert np.mean(nll_per_flight(first.model, held)) == pytest.approx(recorded["nll_tuned"])


def test_qai_train_from_recordings_writes_a_checkpoint_naming_its_recordings_and_refuses_bad_input(
        recordings, tmp_path):
    out = tmp_path / "tuned"
    done = subprocess.run([str(installed("qai-train")), "anomaly", "--from-recordings", str(recordings), "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    meta = checkpoint.read_meta(out)
    assert len(meta["data"]["recordings"]) == 4 and meta["command"].endswith("--from-recordings ...")
    model, _ = checkpoint.load(out, "anomaly", ANOMALY.features)  # loads as the engine would
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, reason in (([str(empty)], "at least 2 are needed"), ([str(tmp_path / "missing")], "no such file"),
                         (["x", "--cell", "ltc"], "only for the anomaly model")):
        done = subprocess.run([str(installed("qai-train")), "anomaly", "--from-recordings", *args, "--out",
                               str(tmp_path / "never")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and reason in done.stdout + done.stderr, (args, done.stdout, done.stderr)
    assert not (tmp_path / "never").exists()
    with pytest.raises(RecordingError, match="expected one .mcap file"):
        read_flight(empty)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "metadata"])
def test_a_damaged_recording_is_refused_naming_it_never_a_traceback(recordings, tmp_path, damage):
    """Refuse a cut file or broken metadata, naming the bag; read flipped message bytes only as finite features.

    MCAP as written carries no checksum, so those may read: then the engine's own reading checks must keep
    every feature finite (a flipped float that became NaN or huge is refused as a reading, as in the node).
    """
    bag = tmp_path / "bag"
    shutil.copytree(find_bags([recordings])[0], bag)
    (file,) = bag.glob("*.mcap")
    data = file.read_bytes()
    if damage == "truncated":
        file.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        file.write_bytes(data[:2000] + bytes(b ^ 0x5A for b in data[2000:4000]) + data[4000:])
    else:
        (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, mapping")
    try:
        flight = read_flight(bag)
    except RecordingError as error:
        assert str(bag) in str(error)
        return
    assert damage == "flipped" and np.isfinite(flight.features).all()
