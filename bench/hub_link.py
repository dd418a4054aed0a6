"""Measure the hub link against raw paho: throughput, latency, drain, disk, signing, command latency.

hub_link (and a mission_engine) run in their own processes with a local mosquitto, and a hub-side
subscriber in a third process, on a private ROS domain. Each figure is printed beside its baseline
measured in the same run and the ratio.

- throughput, ROS topic -> MQTT through the link at QoS 1 (nav_msgs/Odometry, as fast as the link takes
  them, until the broker acknowledged all), against raw paho publishing the same payloads to the same
  broker (target ratio >= 0.5); the hub subscriber must then hold every sequence number (zero loss); and
  a second hub_link through a locked broker (its own account, ACLs and client id, as `qai-edge up` starts
  it) against the open one just before (target ratio >= 0.8);
- latency, ROS -> hub subscriber at 50 Hz telemetry, p50/p99 (target p99 < 10 ms on loopback), against
  raw paho -> the same subscriber at 50 Hz;
- drain after an outage that queued 100,000 messages (the broker down while ROS publishes), messages per
  second until the queue is empty, against raw paho publishing the same number from memory; the queue's
  disk size per message;
- ML-DSA-65 sign and verify cost per command (the hub's make_command and the robot's whole command
  gate) against cryptography's sign/verify alone; and command -> goal accepted, from `qai-hub`'s signed
  submit_mission to the robot's "accepted" reply, against MissionClient.submit over ROS.

    .venv/bin/python bench/hub_link.py [--messages 10000] [--latency-samples 500] [--outage 100000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from qai_edge.figures import FigureLog, percentile, wait_until

ROOT = Path(__file__).resolve().parents[1]
FLEET, ROBOT = "bench", "robot"
STOP_TOPIC = "qai/bench/stop"


LOG = FigureLog(None, "hub link")  # main() gives it the --json path


def line(name: str, ours: float, baseline: float, unit: str, target: str = "", met: bool | None = None,
         versus: str = "raw paho", figure: str | None = None):
    ratio = ours / baseline if baseline else float("nan")
    print(f"{name:<52} {ours:>11.2f} {unit:<8} baseline {baseline:>11.2f} {unit:<8} ratio {ratio:5.2f}"
          f"{'  ' + target if target else ''}", flush=True)
    figure = figure or name.strip().removesuffix(f", {unit}").removesuffix(f" {unit}")
    LOG.add(f"{figure}, vs {versus}", ours, unit, baseline=baseline, ratio=ratio,
            target=target.removeprefix("target ") or None, met=met)


# -- The hub-side subscriber, in its own process ------------------------------------------------------

def run_sink(port: int, output: str, ready: str, username: str = "", password_file: str = "") -> None:
    """Subscribe to qai/bench/#, note each message's arrival, write everything when told to stop.

    Told by a message on STOP_TOPIC, or SIGTERM.
    """
    import orjson
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from qai_hub.protocol import set_tcp_nodelay

    records: list = []
    done = threading.Event()

    def on_message(client, userdata, message):
        arrived = time.time()
        if message.topic == STOP_TOPIC:
            done.set()
            return
        try:
            payload = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            return
        data = payload.get("data", payload)
        stamp = data.get("header", {}).get("stamp") if isinstance(data, dict) else None
        sent = stamp["sec"] + stamp["nanosec"] * 1e-9 if stamp else payload.get("t")
        records.append((message.topic, payload.get("seq"), sent, arrived))

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe([("qai/bench/#", 1)])

    signal.signal(signal.SIGTERM, lambda *_: done.set())
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-hub-sink-{port}", protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, Path(password_file).read_text().strip())
    client.on_socket_open = set_tcp_nodelay
    client.on_connect = on_connect
    client.on_subscribe = lambda *a: Path(ready).touch()
    client.on_message = on_message
    client.reconnect_delay_set(0.1, 0.5)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, keepalive=10, clean_start=False, properties=properties)
    client.loop_start()
    done.wait()
    client.disconnect()
    client.loop_stop()
    Path(output).write_text(json.dumps(records))


class Sink:
    def __init__(self, port: int, directory: Path, username: str = "", password_file: str = ""):
        self.output, self.ready = directory / f"sink-{port}.json", directory / f"sink-{port}.ready"
        self.process = subprocess.Popen([sys.executable, __file__, "--sink", str(port), str(self.output),
                                         str(self.ready), username, password_file])
        wait_until(self.ready.exists, 20, "the hub subscriber")

    def results(self, raw_client=None) -> list:
        """Stop it (through `raw_client`, after what that client sent; else SIGTERM) and return its records."""
        if raw_client is not None:
            raw_client.publish(STOP_TOPIC, b"stop", qos=1).wait_for_publish(10)
        else:
            self.process.terminate()
        self.process.wait(60)
        return json.loads(self.output.read_text())


# -- The robot side ----------------------------------------------------------------------------------

def start_node(executable: str, name: str, namespace: str, parameters: dict, directory: Path):
    import yaml

    label = f"{namespace.strip('/')}_{name}"
    params = directory / f"{label}.yaml"
    params.write_text(yaml.safe_dump({f"{namespace}/{name}": {"ros__parameters": parameters}}))
    log = open(directory / f"{label}.log", "wb")
    return subprocess.Popen([str(Path(sys.executable).with_name(executable)), "--ros-args", "-r", f"__node:={name}",
                             "-r", f"__ns:={namespace}", "--params-file", str(params)], stdout=log,
                            stderr=subprocess.STDOUT)


class Robot:
    """The bench's ROS side: publishers into hub_link and its /diagnostics values."""

    def __init__(self, namespace: str, depth: int):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node("hub_bench", namespace=namespace)
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.bulk = self.node.create_publisher(Odometry, "bench_odom", qos)
        self.live = self.node.create_publisher(Odometry, "bench_live", qos)
        self.values: dict = {}
        self.bulk_sent = 0  # messages published on bench_odom
        name = f"{namespace}/hub_link"

        def on_diagnostics(array):
            for status in array.status:
                if status.name == name:
                    self.values = {kv.key: kv.value for kv in status.values}

        self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def value(self, key: str, default: int = -1) -> int:
        try:
            return int(float(self.values.get(key, default)))
        except ValueError:
            return default

    def odometry(self, index: int):
        from nav_msgs.msg import Odometry

        message = Odometry(child_frame_id="base_link")
        message.header.frame_id = "odom"
        now = time.time()
        message.header.stamp.sec, message.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
        message.pose.pose.position.x = float(index)
        message.pose.pose.orientation.w = 1.0
        return message

    def close(self, shutdown: bool = True):
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        if shutdown:
            rclpy.try_shutdown()


def raw_client(port: int, inflight: int):
    import paho.mqtt.client as mqtt

    from qai_hub.protocol import set_tcp_nodelay

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    client.on_socket_open = set_tcp_nodelay
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    acked = [0]

    def on_publish(*args):
        acked[0] += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, acked


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_publish_rate(port: int, payloads: list[bytes], topic: str, cpu: list | None = None) -> float:
    client, acked = raw_client(port, 1000)
    time.sleep(0.3)
    cpu_before = time.process_time()
    started = time.perf_counter()
    for index, payload in enumerate(payloads):
        # At most 2,000 ahead of the acknowledgements, as the link keeps it: paho scans its whole outgoing
        # queue on every acknowledgement, so 100,000 queued at once would measure that, not the broker.
        if index % 100 == 0:
            wait_until(lambda: index - acked[0] < 2000, 300, "raw paho to catch up", 0.0005)
        client.publish(topic, payload, qos=1)
    wait_until(lambda: acked[0] >= len(payloads), 300, "raw paho's acknowledgements")
    rate = len(payloads) / (time.perf_counter() - started)
    if cpu is not None:
        cpu.append((time.process_time() - cpu_before) / len(payloads))
    client.disconnect()
    client.loop_stop()
    return rate


def sample_payloads(robot: Robot, count: int) -> list[bytes]:

    from qai_hub.protocol import telemetry_payload
    from qai_io.hub_link import codec

    return [telemetry_payload(i + 1, time.time(), "nav_msgs/msg/Odometry", codec.to_dict(robot.odometry(i)))
            for i in range(count)]


# -- Measurements ------------------------------------------------------------------------------------

def measure_throughput(robot: Robot, port: int, count: int, hub_link_pid: int) -> None:
    print(f"\nthroughput: {count} Odometry messages at QoS 1 (window 1000)", flush=True)
    raw_cpu: list = []
    raw = raw_publish_rate(port, sample_payloads(robot, count), "qai/bench/raw/telemetry/odom", raw_cpu)
    ours, ours_cpu = link_rate(robot, count, hub_link_pid)
    line("ROS -> hub_link -> broker, msg/s", ours, raw, "msg/s", "target ratio >= 0.5", ours / raw >= 0.5)
    line("CPU per message (hub_link process; raw: publisher), us", ours_cpu * 1e6, raw_cpu[0] * 1e6, "us",
         figure="CPU per message, hub_link process", versus="the raw publisher")


def link_rate(robot: Robot, count: int, hub_link_pid: int) -> tuple[float, float]:
    """Return hub_link's rate (msg/s, ROS in to broker acknowledgement) and its CPU seconds per message."""
    before = robot.value("acknowledged")
    cpu_before = process_cpu(hub_link_pid)
    messages = [robot.odometry(i) for i in range(count)]
    started = time.perf_counter()
    # As fast as the link takes them: at most `ahead` messages published and not yet acknowledged by the
    # broker. A burst far beyond what the reader takes overflows the DDS transport, and Fast DDS then
    # repairs at its heartbeat pace: that would measure DDS, not the link.
    ahead = 2000
    for index, message in enumerate(messages):
        if index % 100 == 0:
            wait_until(lambda: index - (robot.value("acknowledged") - before) < ahead, 300, "the link to catch up",
                       0.001)
        robot.bulk.publish(message)
    robot.bulk_sent += count
    wait_until(lambda: robot.value("acknowledged") >= before + count, 300, "hub_link's acknowledgements")
    rate = count / (time.perf_counter() - started)
    # CPU per message does not depend on what else the machine runs: the throughput one core allows.
    return rate, (process_cpu(hub_link_pid) - cpu_before) / count


def measure_locked_throughput(open_robot: Robot, locked_robot: Robot, count: int, open_pid: int,
                              locked_pid: int) -> None:
    """Measure the link through a locked broker against an open one.

    Locked as `qai-edge up` starts it: the robot's account, ACLs, its own client id. Both warmed up, then
    measured in the order open, locked, locked, open.
    """
    print(f"\nthroughput, locked broker vs open: {count} Odometry messages at QoS 1, twice each", flush=True)
    for robot, pid in ((open_robot, open_pid), (locked_robot, locked_pid)):
        link_rate(robot, max(100, count // 4), pid)
    rates: dict[str, list[float]] = {"open": [], "locked": []}
    for kind in ("open", "locked", "locked", "open"):
        robot, pid = (open_robot, open_pid) if kind == "open" else (locked_robot, locked_pid)
        rates[kind].append(link_rate(robot, count, pid)[0])
    ours, baseline = statistics.mean(rates["locked"]), statistics.mean(rates["open"])
    line("ROS -> hub_link -> locked broker, msg/s", ours, baseline, "msg/s", "target ratio >= 0.8",
         ours / baseline >= 0.8, versus="an open broker")


def measure_latency(robot: Robot, port: int, samples: int) -> tuple[list, list]:
    import orjson

    print(f"\nlatency: {samples} messages at 50 Hz each way", flush=True)
    client, _ = raw_client(port, 1000)
    time.sleep(0.3)
    for index in range(samples):
        client.publish("qai/bench/raw/telemetry/lat", orjson.dumps({"t": time.time(), "i": index}), qos=1)
        time.sleep(0.02)
    for index in range(samples):
        robot.live.publish(robot.odometry(index))
        time.sleep(0.02)
    time.sleep(1.0)
    return client


def latency_figures(records: list, samples: int) -> None:
    ours = [(arrived - sent) * 1000 for topic, _, sent, arrived in records if topic.endswith("/telemetry/live")]
    raw = [(arrived - sent) * 1000 for topic, _, sent, arrived in records if topic.endswith("raw/telemetry/lat")]
    print(f"  ({len(ours)}/{samples} through the link, {len(raw)}/{samples} raw)")
    line("ROS -> hub subscriber at 50 Hz, p50 ms", statistics.median(ours), statistics.median(raw), "ms")
    line("ROS -> hub subscriber at 50 Hz, p99 ms", percentile(ours, 0.99), percentile(raw, 0.99), "ms",
         "target p99 < 10 ms", percentile(ours, 0.99) < 10)


def measure_outage(robot: Robot, broker, count: int, data_dir: Path) -> float:
    print(f"\noutage: {count} messages queued while the broker is down", flush=True)
    broker.stop()
    wait_until(lambda: robot.values.get("state") != "connected", 30, "hub_link to notice the outage")
    base = robot.value("queue_depth")
    sent = 0
    burst = 5000
    while sent < count:
        for index in range(min(burst, count - sent)):
            if index % 100 == 0:
                wait_until(lambda: sent + index - (robot.value("queue_depth") - base) < 2000, 300, "the queue", 0.001)
            robot.bulk.publish(robot.odometry(sent + index))
        sent += min(burst, count - sent)
        wait_until(lambda: robot.value("queue_depth") >= base + sent, 300, "the queue to take the burst", 0.05)
    time.sleep(1.5)  # the checkpointer backfills the log into the database
    queue = data_dir / ROBOT / "hub_queue.db"
    database = queue.stat().st_size
    log = sum(p.stat().st_size for p in queue.parent.glob("hub_queue.db-*"))
    depth = robot.value("queue_depth")
    print(f"  queue on disk: database {database / 1e6:.1f} MB for {depth} messages = {database / depth:.0f} "
          f"bytes/message (payload ~{len(sample_payloads(robot, 1)[0])} bytes); write-ahead log {log / 1e6:.1f} MB "
          f"(it starts over past 16 MB)")
    LOG.add("queue on disk per message (database)", database / depth, "bytes")
    connects = robot.value("connects")
    broker.start()
    wait_until(lambda: robot.value("connects") > connects, 60, "hub_link to reconnect", 0.01)
    started = time.perf_counter()
    wait_until(lambda: robot.value("queue_depth") == 0, 600, "the backlog to drain", 0.01)
    drained = depth / (time.perf_counter() - started)
    print(f"  drained {depth} messages at {drained:.0f} msg/s; raw paho, the same number:", flush=True)
    raw = raw_publish_rate(broker.port, sample_payloads(robot, count), "qai/bench/raw/telemetry/drain")
    line("drain after the outage, msg/s", drained, raw, "msg/s")
    return drained


def measure_signing(iterations: int) -> None:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    from qai_hub.protocol import Keyring, Signer, command_topic, generate_key_pair, make_command, signed_bytes
    from qai_io.hub_link.commands import CommandGate, NonceStore
    import orjson
    import yaml

    print(f"\nsigning: {iterations} commands (the demo mission as the body)", flush=True)
    directory = Path(tempfile.mkdtemp(prefix="hub-bench-keys-"))
    generate_key_pair(directory / "k.key", directory / "k.pub")
    signer = Signer.from_files(directory / "k.key")
    keyring, _, _ = Keyring.from_files([directory / "k.pub"])
    gate = CommandGate(fleet=FLEET, robot=ROBOT, keyring=keyring, nonces=NonceStore(directory / "n.db"),
                       max_verify_rate=1e9, max_parse_bytes=1e12)
    body = {"mission": yaml.safe_load((ROOT / "config" / "missions" / "demo.yaml").read_text())}
    topic = command_topic(FLEET, ROBOT, "submit_mission")
    message = signed_bytes(make_command(signer, fleet=FLEET, robot=ROBOT, verb="submit_mission", body=body,
                                        topic=topic), topic)
    key = mldsa.MLDSA65PrivateKey.generate()
    started = time.perf_counter()
    for _ in range(iterations):
        signature = key.sign(message)
    raw_sign = (time.perf_counter() - started) / iterations * 1e3
    started = time.perf_counter()
    for _ in range(iterations):
        key.public_key().verify(signature, message)
    raw_verify = (time.perf_counter() - started) / iterations * 1e3
    started = time.perf_counter()
    payloads = [orjson.dumps(make_command(signer, fleet=FLEET, robot=ROBOT, verb="submit_mission", body=body,
                                          topic=topic)) for _ in range(iterations)]
    ours_sign = (time.perf_counter() - started) / iterations * 1e3
    started = time.perf_counter()
    for payload in payloads:
        gate.check(topic, payload)
    ours_verify = (time.perf_counter() - started) / iterations * 1e3
    # The same checks with the nonces kept in memory instead (a stand-in for this line only): what the
    # durable replay protection (an fsync per command) costs.
    memory_gate = CommandGate(fleet=FLEET, robot=ROBOT, keyring=keyring, nonces=_MemoryNonces(),
                              max_verify_rate=1e9, max_parse_bytes=1e12)
    started = time.perf_counter()
    for payload in payloads:
        memory_gate.check(topic, payload)
    ours_verify_memory = (time.perf_counter() - started) / iterations * 1e3
    print(f"  ({len(message)} signed bytes, {len(payloads[0])} bytes on the wire)")
    line("ML-DSA-65 sign a command (make_command), ms", ours_sign, raw_sign, "ms", versus="ML-DSA-65 alone")
    line("ML-DSA-65 verify a command (whole gate), ms", ours_verify, raw_verify, "ms", versus="ML-DSA-65 alone")
    line("  the same, nonces in memory (no fsync), ms", ours_verify_memory, raw_verify, "ms", versus="ML-DSA-65 alone",
         figure="ML-DSA-65 verify a command, nonces in memory (no fsync)")


class _MemoryNonces:
    """NonceStore's checks with the nonces in a set: what the durable store's fsync costs, by difference."""

    usable, error, floor_ms = True, "", 0

    def __init__(self):
        self.seen_nonces: set = set()

    def seen(self, nonce: str, key: str, ts: int, tolerance_ms: int):
        return ("replayed", "used before") if nonce in self.seen_nonces else None

    def record(self, nonce: str, key: str, ts: int, tolerance_ms: int) -> bool:
        if nonce in self.seen_nonces:
            return False
        self.seen_nonces.add(nonce)
        return True


def measure_command_latency(port: int, namespace: str, keys: Path, samples: int) -> None:
    import orjson
    import paho.mqtt.client as mqtt

    from qai_hub.protocol import Signer, command_topic, is_robot_envelope, make_command, set_tcp_nodelay
    from qai_mission.client import MissionClient

    print(f"\ncommand -> goal accepted: {samples} submit_mission each way", flush=True)
    mission = {"tasks": [{"id": "w", "kind": "wait", "parameters": {"seconds": 0.01}}]}
    signer = Signer.from_files(keys / "hub.key")
    accepted: dict = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-hub-cmd", protocol=mqtt.MQTTv5)
    client.on_socket_open = set_tcp_nodelay

    def on_message(c, userdata, message):
        reply = orjson.loads(message.payload)
        if is_robot_envelope(reply):  # signed by the robot (the hub's check is measured in bench/hub_trust.py)
            reply = orjson.loads(reply["msg"])
        if reply.get("status") == "accepted":
            accepted[reply["id"]] = time.perf_counter()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(f"qai/{FLEET}/{ROBOT}/cmd/submit_mission/reply", 1)
    client.loop_start()
    time.sleep(0.5)
    ours = []
    topic = command_topic(FLEET, ROBOT, "submit_mission")
    for index in range(samples + 2):
        started = time.perf_counter()
        command = make_command(signer, fleet=FLEET, robot=ROBOT, verb="submit_mission", body={"mission": mission},
                               topic=topic)
        client.publish(topic, orjson.dumps(command), qos=1)
        wait_until(lambda: command["id"] in accepted, 30, "the accepted reply")
        if index >= 2:  # the first ones warm up discovery of the action server
            ours.append((accepted[command["id"]] - started) * 1000)
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()
    raw = []
    with MissionClient(namespace=namespace, node_name="hub_bench_client") as missions:
        for index in range(samples + 2):
            started = time.perf_counter()
            missions.submit(mission)
            if index >= 2:
                raw.append((time.perf_counter() - started) * 1000)
            time.sleep(0.1)
    line("signed command over MQTT -> accepted, p50 ms", statistics.median(ours), statistics.median(raw), "ms",
         versus="MissionClient over ROS")
    line("signed command over MQTT -> accepted, p99 ms", percentile(ours, 0.99), percentile(raw, 0.99), "ms",
         versus="MissionClient over ROS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10000, help="throughput messages (default 10000)")
    parser.add_argument("--latency-samples", type=int, default=500, help="messages at 50 Hz (default 500)")
    parser.add_argument("--outage", type=int, default=100000, help="messages queued in the outage (100000)")
    parser.add_argument("--signing", type=int, default=200, help="commands signed and verified (default 200)")
    parser.add_argument("--commands", type=int, default=20, help="commands sent end to end (default 20)")
    parser.add_argument("--sink", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    args = parser.parse_args()
    if args.sink:
        run_sink(int(args.sink[0]), *args.sink[1:])
        return 0
    global LOG
    LOG = FigureLog(args.json, "hub link")

    from qai_edge.isolation import isolate

    isolate("hub-bench-ros-log-")
    from qai_edge.broker import HUB_USER, BrokerAccounts, LocalBroker, free_port
    from qai_hub.protocol import generate_key_pair

    directory = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    keys = directory / "keys"
    generate_key_pair(keys / "hub.key", keys / "hub.pub")
    broker = LocalBroker(free_port(), directory / "broker").start()
    namespace = f"/hubbench{os.getpid()}"
    depth = max(args.messages, 5000)
    data_dir = directory / "data"
    streams = [f"bulk: topic=bench_odom type=nav_msgs/msg/Odometry qos=1 priority=3 ros_qos=reliable depth={depth}",
               "live: topic=bench_live type=nav_msgs/msg/Odometry qos=1 priority=5 ros_qos=reliable"]
    processes = [
        start_node("mission_engine", "mission_engine", namespace, {
            "data_dir": str(data_dir), "robot_id": ROBOT, "journal_durable": False}, directory),
        start_node("hub_link", "hub_link", namespace, {
            "data_dir": str(data_dir), "robot_id": ROBOT, "fleet": FLEET, "broker_port": broker.port,
            "streams": streams, "hub_public_keys": [str(keys / "hub.pub")], "heartbeat_period": 0.05,
            "drain_rate": 1_000_000.0, "reconnect_max": 0.5, "queue_max_messages": max(200000, 2 * args.outage),
            "max_pending": 100000}, directory)]
    # The same link on the locked broker qai-edge up starts: the robot's account, ACLs, its own client id.
    accounts = BrokerAccounts(directory / "accounts", FLEET)
    accounts.ensure([ROBOT])
    locked = LocalBroker(free_port(), directory / "locked", accounts=accounts, hub_port=free_port()).start()
    locked_namespace = f"{namespace}_locked"
    processes.append(start_node("hub_link", "hub_link", locked_namespace, {
        "data_dir": str(directory / "locked_data"), "robot_id": ROBOT, "fleet": FLEET, "broker_port": locked.port,
        "username": ROBOT, "password_file": str(accounts.password_file(ROBOT)),
        "streams": streams, "hub_public_keys": [str(keys / "hub.pub")], "heartbeat_period": 0.05,
        "drain_rate": 1_000_000.0, "max_pending": 100000}, directory))
    robot = locked_robot = None
    print(f"hub link bench: mosquitto on 127.0.0.1:{broker.port}, nodes under {namespace}, python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    try:
        robot = Robot(namespace, depth)
        wait_until(lambda: robot.values.get("state") == "connected", 60, "hub_link to connect")
        time.sleep(1.0)
        locked_robot = Robot(locked_namespace, depth)
        wait_until(lambda: locked_robot.values.get("state") == "connected", 60,
                   "hub_link to connect to the locked broker")
        sink = Sink(broker.port, directory)
        locked_sink = Sink(locked.hub_port, directory, HUB_USER, str(accounts.password_file(HUB_USER)))
        measure_throughput(robot, broker.port, args.messages, processes[1].pid)
        measure_locked_throughput(robot, locked_robot, args.messages, processes[1].pid, processes[2].pid)
        latency_client = measure_latency(robot, broker.port, args.latency_samples)
        records = sink.results(latency_client)
        latency_client.disconnect()
        latency_client.loop_stop()
        bulk = {seq for topic, seq, _, _ in records if topic.endswith("/telemetry/bulk")}
        raw = sum(1 for topic, *_ in records if topic.endswith("raw/telemetry/odom"))
        sent = robot.bulk_sent
        print(f"\n  loss check: the hub subscriber got {len(bulk)}/{sent} distinct sequence numbers "
              f"through the link, {raw}/{args.messages} raw")
        LOG.add("throughput runs: sequence numbers the hub got, vs raw paho", len(bulk) / sent * 100, "%",
                baseline=raw / args.messages * 100, target="100 %", met=bulk == set(range(1, sent + 1)))
        locked_bulk = {seq for topic, seq, _, _ in locked_sink.results() if topic.endswith("/telemetry/bulk")}
        print(f"  through the locked broker: {len(locked_bulk)}/{locked_robot.bulk_sent}")
        LOG.add("locked broker runs: sequence numbers the hub got", len(locked_bulk) / locked_robot.bulk_sent * 100,
                "%", target="100 %", met=locked_bulk == set(range(1, locked_robot.bulk_sent + 1)))
        latency_figures(records, args.latency_samples)
        if args.outage:
            before = robot.value("acknowledged")
            measure_outage(robot, broker, args.outage, data_dir)
            print(f"  acknowledged by the broker after the outage: {robot.value('acknowledged') - before}")
        measure_signing(args.signing)
        measure_command_latency(broker.port, namespace, keys, args.commands)
    finally:
        if locked_robot is not None:
            locked_robot.close(shutdown=False)
        if robot is not None:
            robot.close()
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.stop()
        locked.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
