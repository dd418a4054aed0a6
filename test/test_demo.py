"""The end-to-end demo as a user runs it (`qai-edge demo`), checked by its outcome, not its output text.

The survey succeeded, every point was scanned, the report reached the hub, the hub received every telemetry
sequence number (or an accounted drop), the flight's rosbag2 recording reads with two libraries, a killed
engine was restarted without re-running finished tasks, and nothing is left running.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from dashboard_stack import chromium_paths
from harness import installed


def run_demo(tmp_path, *options: str, timeout: float = 420.0) -> tuple[dict, str]:
    summary = tmp_path / "summary.json"
    before = {p.pid for p in psutil.process_iter()}
    done = subprocess.run([str(installed("qai-edge")), "demo", "--points", "2", "--scan-seconds", "1",
                           "--dashboard-port", "0", "--summary-json", str(summary), *options],
                          capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    workdir = re.search(r"in (/\S+qai-demo-\S+)", output).group(1)
    left = [p for p in psutil.process_iter(["pid", "cmdline", "environ"]) if p.pid not in before
            and _ours(p, workdir)]
    assert not left, f"left running: {[' '.join(p.info['cmdline'] or []) for p in left]}"
    return json.loads(summary.read_text()), output


def _ours(process, workdir: str) -> bool:
    """Tell whether the demo started this process: its files, or a node of its robots on this test's ROS domain."""
    command = " ".join(process.info["cmdline"] or [])
    environ = process.info["environ"] or {}
    return workdir in command or ("__ns:=/drone" in command
                                  and environ.get("ROS_DOMAIN_ID") == os.environ.get("ROS_DOMAIN_ID"))


def assert_recorded(bag: Path, size: int) -> None:
    """Check the survey's own rosbag2 (MCAP) bag: the standard topics and types, read by both libraries."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.rosbag2 import Reader

    assert bag.name and size > 0, bag
    with Reader(bag) as reader:
        types = {c.topic.rsplit("/", 1)[-1]: c.msgtype for c in reader.connections}
        assert reader.message_count > 100
    assert types["odom"] == "nav_msgs/msg/Odometry" and types["data"] == "sensor_msgs/msg/Imu"
    assert types["battery_state"] == "sensor_msgs/msg/BatteryState" and types["cmd_vel"] == "geometry_msgs/msg/Twist"
    assert types["mission_states"] == "qai_interfaces/msg/MissionState"
    (file,) = bag.glob("*.mcap")
    with open(file, "rb") as stream:
        decoded = [(channel.topic, message) for _, channel, _, message in
                   make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]
    odom = [m for topic, m in decoded if topic.endswith("/odom")]
    assert len(odom) > 100 and max(m.pose.pose.position.z for m in odom) > 2.0  # it flew


def assert_survey_complete(robot: dict) -> None:
    assert robot["outcome"] == "succeeded", robot
    assert robot["points_scanned"] == robot["points"] and robot["points"] >= 1
    assert robot["report_received"]
    assert robot["solver"] in ("qaoa", "held_karp") and robot["verified"]
    for stream, counts in robot["telemetry"].items():
        assert counts["missing"] == 0, f"{stream}: {counts}"
        assert counts["received"] + counts["dropped"] == counts["sent"], f"{stream}: {counts}"


@pytest.mark.slow
def test_the_demo_flies_a_signed_survey_from_the_hub_end_to_end(tmp_path):
    screenshot = tmp_path / "dashboard.png"
    summary, output = run_demo(tmp_path, "--keep-dir", *(("--screenshot", str(screenshot)) if chromium_paths() else ()))
    workdir = Path(re.search(r"files kept in (/\S+)", output).group(1))
    try:
        (robot,) = summary["robots"].values()
        assert_recorded(Path(robot["recording"]["bag"]), robot["recording"]["bytes"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert_survey_complete(robot)
    assert robot["telemetry"]["odom"]["received"] > 100 and robot["telemetry"]["mission_states"]["received"] > 10
    assert robot["distance_m"] > 20 and robot["energy_wh"] > 0
    assert summary["dashboard"].startswith("http://127.0.0.1:")
    if chromium_paths():  # the page a person watching the demo sees, taken during the first leg
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20000


@pytest.mark.slow
def test_the_fault_demo_restarts_the_killed_engine_and_reruns_no_finished_task(tmp_path):
    summary, _ = run_demo(tmp_path, "--faults")
    (robot,) = summary["robots"].values()
    faults = summary["faults"]
    assert faults["killed"]["node"] == "mission_engine" and faults["killed"]["pid"]
    assert faults["restarted"] and faults["restarted"]["pid"] != faults["killed"]["pid"]
    assert not [f for f in faults["injected"] if f["problem"]], faults["injected"]
    assert robot["reran_after_success"] == []
    assert_survey_complete(robot)


@pytest.mark.parametrize("options, named", [
    (("--robots", "0"), "--robots"), (("--robots", "2", "--points", "1"), "--points"),
    (("--points", "99"), "--points"), (("--dashboard-port", "99999"), "--dashboard-port"),
    (("--linger", "nan"), "--linger"), (("--linger", "inf"), "--linger"), (("--timeout", "-5"), "--timeout"),
    (("--scan-seconds", "nan"), "--scan-seconds"),
])
def test_bad_options_are_refused_naming_the_option_before_anything_starts(options, named):
    done = subprocess.run([str(installed("qai-edge")), "demo", *options], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
