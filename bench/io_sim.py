"""I/O engine and simulated vehicle figures.

- Real-time factor at 100 Hz physics, one vehicle: the model alone (with sensor readings at the node's
  rates), and the sim_vehicle node run at real_time_factor 100 with /clock (target >= 20x).
- Control latency from an odometry message to the published cmd_vel: in-process (the io_engine's
  odometry callback, monitor to controller to publish) and across processes (this process publishes
  odometry, the io_engine process answers on cmd_vel), p50/p99 (targets: < 5 ms, < 10 ms).
- Waypoint tracking on the standard 10-waypoint course (qai_sim.simulation.STANDARD_COURSE): mean and max
  cross-track error, calm and windy.

    .venv/bin/python bench/io_sim.py [--json PATH]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from qai_edge.figures import FigureLog, percentile
from qai_edge.isolation import isolate


def model_rtf() -> float:
    from qai_sim.vehicle_model import VehicleConfig, VehicleModel

    model = VehicleModel(VehicleConfig(seed=1, wind=(1.0, 0.0), wind_gust=0.3), position=(0, 0, 5))
    steps = 20_000
    began = time.perf_counter()
    for i in range(steps):
        model.command(2.0, 0.5, 0.0, 0.1)
        model.step(0.01)
        if i % 2 == 0:
            model.odometry()
        model.imu()
        if i % 20 == 0:
            model.gps_position()
        if i % 50 == 0:
            model.battery_reading()
    return steps * 0.01 / (time.perf_counter() - began)


def start(executable: str, namespace: str, parameters: dict, directory: Path) -> subprocess.Popen:
    import yaml

    from qai_edge.paths import installed_executable

    params = directory / f"{executable}.yaml"
    params.write_text(yaml.safe_dump({f"{namespace}/{executable}": {"ros__parameters": parameters}}))
    return subprocess.Popen([str(installed_executable(executable)), "--ros-args", "-r", f"__ns:={namespace}",
                             "--params-file", str(params)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


def spin_until(executor, predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("no answer")
        executor.spin_once(timeout_sec=0.02)


def node_rtf(directory: Path) -> float:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    namespace = "/bench_rtf"
    sim = start("sim_vehicle", namespace, {"real_time_factor": 1000.0, "publish_clock": True,
                                           "heartbeat_period": 0.5}, directory)
    node = rclpy.create_node("bench_rtf")
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    readings = []

    def on_array(array):
        for status in array.status:
            if status.name == f"{namespace}/sim_vehicle":
                value = {kv.key: kv.value for kv in status.values}.get("real_time_factor")
                if value and float(value) > 0:
                    readings.append(float(value))

    node.create_subscription(DiagnosticArray, "/diagnostics", on_array, 10)
    try:
        spin_until(executor, lambda: len(readings) >= 6, 60)
    finally:
        stop(sim)
        executor.shutdown()
        node.destroy_node()
    return statistics.median(readings[2:])


def odometry(x: float, stamp: float):
    from nav_msgs.msg import Odometry

    msg = Odometry()
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(stamp % 1 * 1e9)
    msg.pose.pose.position.x, msg.pose.pose.position.z = x, 5.0
    msg.pose.pose.orientation.w = 1.0
    return msg


def in_process_latency(samples: int = 2000) -> list[float]:
    from qai_io.motion import HoldPlan, MotionRun, PositionController
    from qai_io.node import IoEngine

    node = IoEngine()
    node.core._motion = MotionRun(HoldPlan((0.0, 0.0, 5.0), None), PositionController(), 3.0)
    latencies = []
    for i in range(samples):
        msg = odometry(0.3 * math.sin(i / 20), time.time())
        began = time.perf_counter()
        node._on_odom(msg)  # monitor, pose, controller, cmd_vel publish
        latencies.append((time.perf_counter() - began) * 1000)
    node.core._motion = None
    node.destroy_node()
    return latencies[100:]


def cross_process_latency(directory: Path, samples: int = 1000) -> list[float]:
    import json

    import rclpy
    from diagnostic_msgs.msg import KeyValue
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from rclpy.action import ActionClient

    from qai_edge.qos import ACTION_QOS_ARGUMENTS
    from qai_interfaces.action import RunTask
    from qai_interfaces.msg import Task

    namespace = "/bench_latency"
    io = start("io_engine", namespace, {"odom_min_rate": 0.0, "imu_min_rate": 0.0, "battery_min_rate": 0.0,
                                        "gps_min_rate": 0.0}, directory)
    node = rclpy.create_node("bench_latency", namespace=namespace)
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    received = []
    node.create_subscription(Twist, "cmd_vel", lambda msg: received.append(time.perf_counter()), 100)
    odom_pub = node.create_publisher(Odometry, "odom", 100)
    client = ActionClient(node, RunTask, f"{namespace}/io_engine/run_task", **ACTION_QOS_ARGUMENTS)
    try:
        spin_until(executor, client.server_is_ready, 60)
        for _ in range(20):  # fresh odometry, so the hold task can start
            odom_pub.publish(odometry(0.0, time.time()))
            executor.spin_once(timeout_sec=0.02)
        goal = RunTask.Goal(mission_id="bench", attempt=1, task=Task(
            id="hold", kind="hold", parameters=[KeyValue(key="duration", value=json.dumps(600))]))
        sent = client.send_goal_async(goal)
        spin_until(executor, sent.done, 30)
        deadline = time.monotonic() + 30
        while not received:  # odometry keeps flowing (without it the task fails safe) until commands come
            if time.monotonic() > deadline:
                raise TimeoutError("no cmd_vel from the io_engine")
            odom_pub.publish(odometry(0.0, time.time()))
            executor.spin_once(timeout_sec=0.02)
        latencies = []
        for i in range(samples):
            received.clear()
            began = time.perf_counter()
            odom_pub.publish(odometry(0.3 * math.sin(i / 20), time.time()))
            spin_until(executor, lambda: received, 5)
            latencies.append((received[0] - began) * 1000)
            time.sleep(0.005)
        sent.result().cancel_goal_async()
        executor.spin_once(timeout_sec=0.2)
        return latencies[50:]
    finally:
        stop(io)
        executor.shutdown()
        node.destroy_node()


def tracking() -> list[tuple[str, float, float, float, bool]]:
    from qai_io.motion import WaypointPlan
    from qai_sim.simulation import STANDARD_COURSE, cross_track_errors, fly
    from qai_sim.vehicle_model import VehicleConfig, VehicleModel

    rows = []
    for label, wind, gust in (("calm", (0.0, 0.0), 0.0), ("wind 3 m/s + gusts", (3.0, 0.0), 0.5)):
        model = VehicleModel(VehicleConfig(seed=1, wind=wind, wind_gust=gust))
        log = fly(model, WaypointPlan(STANDARD_COURSE, tolerance=0.5), speed=5.0)
        errors = cross_track_errors(log.path[int(log.duration > 5) * 150:], STANDARD_COURSE)
        rows.append((label, statistics.mean(errors), max(errors), log.duration, log.finished))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    figures = FigureLog(parser.parse_args().json, "I/O")
    environment = isolate("qai-edge-bench-ros-log-")
    import rclpy

    print(f"io_engine and sim_vehicle (ROS_DOMAIN_ID={environment['ROS_DOMAIN_ID']}, LOCALHOST discovery)")
    model_factor = model_rtf()
    print(f"  real-time factor, model alone (100 Hz physics, sensor readings): {model_factor:.0f}x")
    figures.add("real-time factor, vehicle model alone", model_factor, "x")
    rclpy.init()
    try:
        with tempfile.TemporaryDirectory(prefix="qai-edge-bench-") as directory:
            node_factor = node_rtf(Path(directory))
            print(f"  real-time factor, sim_vehicle node asked for 1000x with /clock (its ceiling): {node_factor:.1f}x "
                  f"(target >= 20x)")
            figures.add("real-time factor, sim_vehicle node (asked for 1000x)", node_factor, "x", target=">= 20x",
                        met=node_factor >= 20)
            inner = in_process_latency()
            print(f"  odometry -> cmd_vel in-process (io_engine callback): p50 {statistics.median(inner):.3f} ms, "
                  f"p99 {percentile(inner, 0.99):.3f} ms (target p99 < 5 ms)")
            figures.add("odometry -> cmd_vel in-process p50", statistics.median(inner), "ms")
            figures.add("odometry -> cmd_vel in-process p99", percentile(inner, 0.99), "ms", target="< 5 ms",
                        met=percentile(inner, 0.99) < 5)
            outer = cross_process_latency(Path(directory))
            print(f"  odometry -> cmd_vel across processes (publish to receive): "
                  f"p50 {statistics.median(outer):.2f} ms, p99 {percentile(outer, 0.99):.2f} ms (target p99 < 10 ms)")
            figures.add("odometry -> cmd_vel across processes p50", statistics.median(outer), "ms")
            figures.add("odometry -> cmd_vel across processes p99", percentile(outer, 0.99), "ms", target="< 10 ms",
                        met=percentile(outer, 0.99) < 10)
    finally:
        rclpy.try_shutdown()
    for label, mean, worst, duration, finished in tracking():
        print(f"  standard 10-waypoint course, {label}: cross-track mean {mean:.2f} m, max {worst:.2f} m, "
              f"{duration:.0f} s{'' if finished else ' (NOT FINISHED)'}")
        course = f"standard course, {label}{'' if finished else ' (NOT FINISHED)'}"
        figures.add(f"{course}: cross-track mean", mean, "m")
        figures.add(f"{course}: cross-track max", worst, "m")
        figures.add(f"{course}: time", duration, "s")


if __name__ == "__main__":
    main()
