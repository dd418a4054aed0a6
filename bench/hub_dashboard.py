"""The hub dashboard under a fleet: 50 simulated robots at 10 Hz through a real broker, seen in a real browser.

    .venv/bin/python bench/hub_dashboard.py [--robots 50] [--rate 10] [--seconds 30] [--screenshot FILE]

What runs, each in its own process: mosquitto; `qai-hub serve` (start_dashboard); the robots: FakeRobots
(test/fake_robots.py), plain paho clients that publish what hub_link publishes (retained status with a last
will, odometry at --rate, battery at 1 Hz, a mission's state every 2 s) in its topics and payloads, signed
and sealed with each robot's own key, enrolled on the hub, as hub_link signs and seals them: they
stand in for hub_link processes, fifty of which (each with rclpy and its own DDS participant) would not
fit on two cores; the baseline: a raw paho subscriber to the same topics that parses each message and
notes its latency; and headless Chromium (Debian's, via selenium) logged in to the dashboard.

Figures, over the measured window (after a warm-up):
- MQTT-to-browser latency of the robots' poses, p50/p99, measured in the page: when the page applied the
  update (received) and when it drew the frame that shows it (drawn), each minus the publisher's stamp;
  beside the raw subscriber's publisher-to-subscriber latency for the same messages, and the ratio;
- the server's CPU (share of one core) and memory (RSS, peak), beside the raw subscriber's;
- the latest state: once the robots stop, the last pose sequence number the page shows for each robot
  against the last one each robot sent (every robot must match: coalescing may skip poses a browser
  has not drawn yet, never the latest).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from qai_edge.figures import FigureLog, percentile

ROOT = Path(__file__).resolve().parents[1]
FLEET = "benchfleet"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


# -- Roles run as their own processes ------------------------------------------------------------------------

def run_robots(args) -> None:
    """Publish as `args.robots` robots until SIGTERM; print each robot's last odometry seq as JSON."""
    sys.path.insert(0, str(ROOT / "test"))
    from fake_robots import FakeRobot
    from robot_identity import TestRobots

    identities = TestRobots(args.identities)  # the keys main() made and enrolled
    robots = [FakeRobot(args.broker, FLEET, f"robot{index:03d}", robots=identities) for index in range(args.robots)]
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    period = 1.0 / args.rate
    tick, start = 0, time.monotonic()
    tasks = [{"task_id": "survey", "kind": "navigate", "state": 2, "progress": 0.0},
             {"task_id": "scan", "kind": "scan", "depends_on": ["survey"], "state": 0}]
    while not stop:
        t = tick * period
        for index, robot in enumerate(robots):
            if tick % (2 * args.rate) == index % (2 * args.rate):
                robot.status()
                robot.mission_state("survey-1", tasks, name="bench survey")
            if tick % args.rate == index % args.rate:
                robot.battery(max(0.0, 0.95 - t / 3600))
            angle = 0.2 * t + index
            radius = 20 + index
            robot.odom(radius * math.cos(angle), radius * math.sin(angle), 10.0, yaw=angle + math.pi / 2,
                       speed=0.2 * radius)
        tick += 1
        delay = start + tick * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    time.sleep(0.5)  # QoS 1: let the last ones out
    print(orjson.dumps({robot.robot: robot.seq.get("odom", 0) for robot in robots}).decode(), flush=True)
    for robot in robots:
        robot.close()


def run_baseline(args) -> None:
    """Subscribe to what the dashboard subscribes to, parse each message, note the odometry's latency."""
    import paho.mqtt.client as mqtt

    from qai_hub.protocol import set_tcp_nodelay

    latencies: list[float] = []
    window = []
    signal.signal(signal.SIGUSR1, lambda *a: (latencies.clear(), window.append(cpu_seconds(os.getpid()))))
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

    def on_message(client, userdata, message) -> None:
        payload = orjson.loads(message.payload)
        if message.topic.endswith("/telemetry/odom"):
            latencies.append(time.time() - payload["stamp"])

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_socket_open = set_tcp_nodelay
    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe([(f"qai/{FLEET}/+/status", 1), (f"qai/{FLEET}/+/telemetry/+", 1)])
    client.connect("127.0.0.1", args.broker)
    client.loop_start()
    print("ready", flush=True)
    while not stop:
        time.sleep(0.05)
    client.loop_stop()
    cpu = cpu_seconds(os.getpid()) - (window[-1] if window else 0.0)
    rss, peak = memory_mb(os.getpid())
    print(orjson.dumps({"latencies": latencies, "cpu": cpu, "rss": rss, "peak": peak}).decode(), flush=True)


# -- The bench ------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=50)
    parser.add_argument("--rate", type=int, default=10, help="odometry messages a second per robot")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--screenshot", default="", help="save the page here during the run (PNG)")
    parser.add_argument("--json", help="also write the figures here (qai_edge.figures records, for make bench)")
    parser.add_argument("--role", choices=("bench", "robots", "baseline"), default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--broker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--identities", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "robots":
        run_robots(args)
        return 0
    if args.role == "baseline":
        run_baseline(args)
        return 0

    sys.path.insert(0, str(ROOT / "test"))
    from dashboard_stack import Browser, write_login_file
    from robot_identity import TestRobots

    from qai_edge.broker import LocalBroker, free_port
    from qai_hub.client import BrokerOptions
    from qai_hub.dashboard_process import start_dashboard
    from qai_hub.protocol import generate_key_pair

    directory = Path(tempfile.mkdtemp(prefix="qai-dashboard-bench-"))
    identities = TestRobots(directory / "robots")
    for index in range(args.robots):  # each robot's key pair, enrolled on the hub
        identities.key(f"robot{index:03d}")
    broker = LocalBroker(free_port(), directory / "broker").start()
    generate_key_pair(directory / "hub.key", directory / "hub.pub")
    children: list[subprocess.Popen] = []
    dashboard = browser = None

    def role(name: str) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, __file__, "--role", name, "--broker", str(broker.port),
                                  "--robots", str(args.robots), "--rate", str(args.rate),
                                  "--identities", str(identities.directory)],
                                 stdout=subprocess.PIPE, text=True)
        children.append(child)
        return child

    try:
        dashboard = start_dashboard(write_login_file(directory), broker=BrokerOptions(port=broker.port), fleet=FLEET,
                                    robots=identities.registry_dir, key=directory / "hub.key",
                                    log_path=directory / "dashboard.log")
        baseline = role("baseline")
        assert baseline.stdout.readline().strip() == "ready"
        browser = Browser(directory)
        browser.login(dashboard.url)
        robots = role("robots")
        browser.wait(f"return window.qaiDashboard.model.poses.size >= {args.robots}", 60, "every robot on the page")
        time.sleep(args.warmup)
        # The measured window starts: samples cleared everywhere, CPU noted.
        browser.js("const s = window.qaiDashboard.stats; s.received.clear(); s.shown.clear(); s.ops = 0; "
                   "s.frames = 0;")
        os.kill(baseline.pid, signal.SIGUSR1)
        server_cpu = cpu_seconds(dashboard.process.pid)
        window_start = time.monotonic()
        if args.screenshot:
            time.sleep(min(5.0, args.seconds / 2))
            browser.js("[...document.querySelectorAll('#robots tbody tr')][3].click()")
            time.sleep(1.0)
            browser.driver.save_screenshot(args.screenshot)
        time.sleep(max(0.0, args.seconds - (time.monotonic() - window_start)))
        server_cpu = cpu_seconds(dashboard.process.pid) - server_cpu
        elapsed = time.monotonic() - window_start
        page = browser.js("const s = window.qaiDashboard.stats; return {received: s.received.values, "
                          "shown: s.shown.values, receivedCount: s.received.count, ops: s.ops, frames: s.frames}")
        rss, peak = memory_mb(dashboard.process.pid)
        robots.send_signal(signal.SIGTERM)
        last_sent = orjson.loads(robots.stdout.readline())
        baseline.send_signal(signal.SIGTERM)
        raw = orjson.loads(baseline.stdout.readline())
        time.sleep(2.0)  # let the last updates reach the page
        shown_seq = browser.js("return window.qaiDashboard.stats.lastSeq")
        stats = browser.js("return fetch('/api/stats').then(r => r.json())")
    finally:
        if browser is not None:
            browser.quit()
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait(10)
        if dashboard is not None:
            dashboard.stop()
        broker.stop()

    received_ms = [v * 1000 for v in page["received"]]
    shown_ms = [v * 1000 for v in page["shown"]]
    raw_ms = [v * 1000 for v in raw["latencies"]]
    matching = sum(1 for name, seq in last_sent.items() if shown_seq.get(name) == seq)
    load = os.getloadavg()[0]
    rate = args.robots * args.rate

    def row(what: str, ours: str, base: str, ratio: str) -> None:
        print(f"| {what} | {ours} | {base} | {ratio} |")

    print(f"\n{args.robots} robots x {args.rate} Hz odometry (+ status, battery, mission state) = {rate} poses/s "
          f"through mosquitto; {elapsed:.0f} s measured; load average {load:.1f} on {os.cpu_count()} cores\n")
    print("| what | dashboard | baseline: raw paho subscriber | ratio |")
    print("|------|-----------|-------------------------------|-------|")
    raw50, raw99 = percentile(raw_ms, 0.5), percentile(raw_ms, 0.99)
    log = FigureLog(args.json, "dashboard")
    scale = f"{args.robots} robots x {args.rate} Hz"
    for label, values in (("MQTT -> page, update applied", received_ms), ("MQTT -> page, frame drawn", shown_ms)):
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        row(f"{label}: p50 / p99 ms ({len(values)} samples)", f"{p50:.1f} / {p99:.1f}",
            f"{raw50:.1f} / {raw99:.1f} ({len(raw_ms)} samples)", f"{p50 / raw50:.1f} / {p99 / raw99:.1f}")
        log.add(f"{label} p50, {scale}, vs raw paho", p50, "ms", baseline=raw50, ratio=p50 / raw50)
        log.add(f"{label} p99, {scale}, vs raw paho", p99, "ms", baseline=raw99, ratio=p99 / raw99)
    row("CPU, % of one core", f"{100 * server_cpu / elapsed:.0f}", f"{100 * raw['cpu'] / elapsed:.0f}",
        f"{server_cpu / max(raw['cpu'], 1e-9):.1f}")
    log.add(f"server CPU, {scale}, vs raw paho", 100 * server_cpu / elapsed, "% core",
            baseline=100 * raw["cpu"] / elapsed, ratio=server_cpu / max(raw["cpu"], 1e-9))
    row("memory RSS / peak, MB", f"{rss:.0f} / {peak:.0f}", f"{raw['rss']:.0f} / {raw['peak']:.0f}",
        f"{rss / raw['rss']:.1f}")
    log.add("server peak RSS, vs raw paho", peak, "MB", baseline=raw["peak"], ratio=peak / raw["peak"])
    row("latest pose shown once the robots stopped", f"{matching}/{len(last_sent)} robots", "", "")
    log.add("robots whose latest pose the page shows", matching, "robots", target=f"== {len(last_sent)}",
            met=matching == len(last_sent))
    browsers = stats["browsers"][0] if stats["browsers"] else {}
    print(f"\npage: {page['receivedCount']} poses applied in {page['frames']} frames ({page['ops']} operations); "
          f"server: {stats['processed']} MQTT messages, {browsers.get('coalesced', 0)} updates coalesced, "
          f"{browsers.get('resyncs', 0)} resyncs, {stats['mqtt_overflowed']} overflowed; "
          f"mean latency applied {statistics.fmean(received_ms):.1f} ms")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")
    return 0 if matching == len(last_sent) else 1


if __name__ == "__main__":
    sys.exit(main())
