"""Measure what trusting only what robots sign costs the hub and the robot, each figure beside its baseline.

- hub ingest: N telemetry messages as a robot's hub_link sends them (odometry, sealed: a seal signed every
  50 messages; a signed mission state every 20) wait in the broker for a subscriber that was away, then
  drain into (1) a raw paho subscriber that decodes each payload's JSON and nothing else, the baseline, and
  (2) the hub's fleet model (qai_hub.fleet.Fleet: every signature verified, every message checked, every
  sealed message matched to its seal). Each runs alone, in a process of its own, on the same broker and the
  same messages. Messages per second and CPU per message; target ratio >= 0.5.
- reply verification: the hub taking one signed command reply (Fleet.on_message: parse, verify, check,
  bind to the request) against ML-DSA-65 verify alone, per reply.
- telemetry authentication, per message, as the robot pays it and as the hub does: a signature on every
  message against the seal (a 16-byte digest each, one signature per seal): why the high-rate streams are
  sealed (README, docs/hub_link.md).

    .venv/bin/python bench/hub_trust.py [--messages 20000] [--replies 300] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qai_edge.figures import FigureLog, wait_until

FLEET, ROBOT = "bench", "robot"
SEAL_EVERY, STATE_EVERY = 50, 20
LOG = FigureLog(None, "hub link")  # main() gives it the --json path


def line(name: str, ours: float, baseline: float, unit: str, versus: str, target: str = "",
         met: bool | None = None) -> None:
    ratio = ours / baseline if baseline else float("nan")
    print(f"{name:<54} {ours:>10.2f} {unit:<6} {versus} {baseline:>10.2f} {unit:<6} ratio {ratio:5.2f}"
          f"{'  ' + target if target else ''}", flush=True)
    LOG.add(f"{name}, vs {versus}", ours, unit, baseline=baseline, ratio=ratio,
            target=target.removeprefix("target ") or None, met=met)


def robot_messages(signer, count: int) -> list[tuple[str, bytes]]:
    """Return (topic, payload) as hub_link sends them: sealed odometry, seals and signed mission states."""
    from qai_hub.protocol import (SEAL_TYPE, SEALS_STREAM, RobotTopics, seal_data, sign_robot_message,
                                  telemetry_digest, telemetry_payload)

    topics = RobotTopics(FLEET, ROBOT)
    odom_topic, states_topic, seals_topic = (topics.telemetry(name) for name in ("odom", "mission_states",
                                                                                 SEALS_STREAM))
    messages, unsealed, seq = [], [], {"odom": 0, "mission_states": 0, SEALS_STREAM: 0}

    def next_seq(stream: str) -> int:
        seq[stream] += 1
        return seq[stream]

    while len(messages) < count:
        now = time.time()
        stamp = {"sec": int(now), "nanosec": int(now % 1 * 1e9)}
        if len(messages) % STATE_EVERY == STATE_EVERY - 1:
            data = {"header": {"stamp": stamp}, "mission_id": "m1", "name": "survey", "state": 1,
                    "tasks": [{"task_id": f"t{i}", "kind": "wait", "state": 2} for i in range(8)]}
            payload = telemetry_payload(next_seq("mission_states"), now, "qai_interfaces/msg/MissionState", data)
            messages.append((states_topic, sign_robot_message(signer, states_topic, payload)))
        elif len(unsealed) >= SEAL_EVERY:
            payload = telemetry_payload(next_seq(SEALS_STREAM), now, SEAL_TYPE, seal_data({"odom": unsealed}))
            messages.append((seals_topic, sign_robot_message(signer, seals_topic, payload)))
            unsealed = []
        else:
            n = next_seq("odom")
            data = {"header": {"stamp": stamp, "frame_id": "odom"}, "child_frame_id": "base_link",
                    "pose": {"pose": {"position": {"x": float(n), "y": 0.0, "z": 1.0},
                                      "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}},
                    "twist": {"twist": {"linear": {"x": 1.0, "y": 0.0, "z": 0.0}}}}
            payload = telemetry_payload(n, now, "nav_msgs/msg/Odometry", data)
            unsealed.append((n, telemetry_digest(payload)))
            messages.append((odom_topic, payload))
    return messages


# -- The subscribers, each in a process of its own ---------------------------------------------------

def run_subscriber(kind: str, port: int, count: int, registry: str, output: str, ready: str) -> None:
    """Connect with a persistent session, subscribe, go away; when asked back, drain `count` messages."""
    import orjson
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from qai_hub.fleet import Fleet
    from qai_hub.registry import RobotRegistry

    fleet = Fleet(FLEET, RobotRegistry(registry))
    got = {"n": 0, "first": None, "last": None, "cpu": None, "refused": 0}

    def on_message(client, userdata, message):
        if got["first"] is None:
            got["first"], got["cpu"] = time.perf_counter(), time.process_time()
        if kind == "raw":
            orjson.loads(message.payload)
        else:
            change = fleet.on_message(message.topic, message.payload)
            got["refused"] += change is not None and change.kind == "refused"
        got["n"] += 1
        if got["n"] == count:
            got["last"], got["cpu"] = time.perf_counter(), time.process_time() - got["cpu"]

    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600

    def connect(loop: bool = True) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{kind}", protocol=mqtt.MQTTv5)
        client.on_message = on_message
        client.max_inflight_messages_set(1000)
        subscribed = []
        client.on_subscribe = lambda *args: subscribed.append(True)
        client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        if loop:
            client.loop_start()
        return client, subscribed

    client, subscribed = connect()
    client.subscribe(f"qai/{FLEET}/#", 1)
    wait_until(lambda: subscribed, 10, "the subscription")
    client.disconnect()
    client.loop_stop()
    Path(ready).touch()
    wait_until(lambda: Path(ready + ".go").exists(), 600, "the go")
    client, _ = connect(loop=False)
    deadline = time.monotonic() + 600
    while got["last"] is None and time.monotonic() < deadline:  # paho's loop on this thread
        client.loop(0.1)
    client.disconnect()
    seconds = got["last"] - got["first"]
    Path(output).write_text(json.dumps({"rate": (count - 1) / seconds, "cpu_us": got["cpu"] / count * 1e6,
                                        "refused": got["refused"], "verified": sum(
                                            robot.seals.verified for robot in fleet.robots.values())}))


def drain(kind: str, port: int, messages: list, registry: Path, directory: Path) -> dict:
    """Queue `messages` in the broker for a subscriber that is away, then time it taking them all."""
    import paho.mqtt.client as mqtt

    output, ready = directory / f"{kind}.json", directory / f"{kind}.ready"
    process = subprocess.Popen([sys.executable, __file__, "--subscriber", kind, str(port), str(len(messages)),
                                str(registry), str(output), str(ready)])
    try:
        wait_until(ready.exists, 30, f"the {kind} subscriber")
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-robot", protocol=mqtt.MQTTv5)
        acked = [0]
        publisher.on_publish = lambda *args: acked.__setitem__(0, acked[0] + 1)
        publisher.max_inflight_messages_set(1000)
        publisher.connect("127.0.0.1", port)
        publisher.loop_start()
        for index, (topic, payload) in enumerate(messages):
            if index % 100 == 0:
                wait_until(lambda: index - acked[0] < 2000, 120, "the broker", 0.0005)
            publisher.publish(topic, payload, qos=1)
        wait_until(lambda: acked[0] >= len(messages), 120, "the broker's acknowledgements")
        publisher.disconnect()
        publisher.loop_stop()
        Path(str(ready) + ".go").touch()
        if process.wait(600) != 0:
            raise SystemExit(f"bench: the {kind} subscriber failed")
        return json.loads(output.read_text())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- In-process figures ----------------------------------------------------------------------------------

def measure_replies(signer, public_key, registry: Path, count: int) -> None:
    import base64

    import orjson

    from qai_hub.fleet import Fleet
    from qai_hub.protocol import RobotTopics, reply_payload, robot_signed_bytes, sign_robot_message
    from qai_hub.registry import RobotRegistry

    fleet = Fleet(FLEET, RobotRegistry(registry))
    topic = RobotTopics(FLEET, ROBOT).reply("submit_mission")
    replies = []
    for index in range(count):
        request = f"q{index}"
        nonce = f"{index:032x}"
        fleet.expect({"id": request, "robot": ROBOT, "verb": "submit_mission", "nonce": nonce})
        body = reply_payload(request, "submit_mission", ROBOT, "succeeded", time.time(), nonce=nonce,
                             mission_id="m1", message="mission succeeded")
        replies.append(sign_robot_message(signer, topic, body))
    signed = [(robot_signed_bytes(topic, envelope["msg"].encode()), base64.b64decode(envelope["signatures"][0]["sig"]))
              for envelope in map(orjson.loads, replies)]
    started = time.perf_counter()
    for message, signature in signed:
        public_key.verify(signature, message)
    alone = (time.perf_counter() - started) / count * 1e3
    started = time.perf_counter()
    bound = sum(fleet.on_message(topic, reply).bound for reply in replies)
    ours = (time.perf_counter() - started) / count * 1e3
    assert bound == count, f"{bound} of {count} replies bound to their request"
    print(f"\nreply verification: {count} signed submit_mission replies", flush=True)
    line("hub takes a signed reply (Fleet.on_message), ms", ours, alone, "ms", "ML-DSA-65 verify alone")


def measure_authentication(signer, public_key, count: int) -> None:
    import base64

    import orjson

    from qai_hub.protocol import robot_signed_bytes, sign_robot_message, telemetry_digest

    topic = "qai/bench/robot/telemetry/odom"
    payloads = [orjson.dumps({"seq": i, "stamp": 1.0, "type": "nav_msgs/msg/Odometry",
                              "data": {"pose": {"pose": {"position": {"x": float(i), "y": 0.0, "z": 1.0}}}}})
                for i in range(count)]
    started = time.perf_counter()
    signed = [sign_robot_message(signer, topic, p) for p in payloads]
    sign_each = (time.perf_counter() - started) / count * 1e6
    envelopes = [orjson.loads(s) for s in signed]
    started = time.perf_counter()
    for envelope in envelopes:
        public_key.verify(base64.b64decode(envelope["signatures"][0]["sig"]),
                          robot_signed_bytes(topic, envelope["msg"].encode()))
    verify_each = (time.perf_counter() - started) / count * 1e6
    started = time.perf_counter()
    for start in range(0, count, SEAL_EVERY):
        digests = [(i, telemetry_digest(p)) for i, p in enumerate(payloads[start:start + SEAL_EVERY], start)]
        sign_robot_message(signer, "qai/bench/robot/telemetry/seals", orjson.dumps({"odom": digests}))
    seal_each = (time.perf_counter() - started) / count * 1e6
    seal = sign_robot_message(signer, "s", orjson.dumps({"odom": [[i, "0" * 32] for i in range(SEAL_EVERY)]}))
    envelope = orjson.loads(seal)
    started = time.perf_counter()
    for start in range(0, count, SEAL_EVERY):
        public_key.verify(base64.b64decode(envelope["signatures"][0]["sig"]),
                          robot_signed_bytes("s", envelope["msg"].encode()))
        for p in payloads[start:start + SEAL_EVERY]:
            telemetry_digest(p)
    check_each = (time.perf_counter() - started) / count * 1e6
    print(f"\ntelemetry authentication: {count} odometry messages, a seal every {SEAL_EVERY}", flush=True)
    line("robot: seal, per message, us", seal_each, sign_each, "us", "a signature each")
    line("hub: check against the seal, per message, us", check_each, verify_each, "us", "a verification each")
    print(f"  a signature adds {len(signed[0]) - len(payloads[0])} bytes to each message; a seal "
          f"{len(seal) // SEAL_EVERY} bytes per message it covers")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000, help="telemetry messages ingested (default 20000)")
    parser.add_argument("--replies", type=int, default=300, help="signed replies verified (default 300)")
    parser.add_argument("--subscriber", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    args = parser.parse_args()
    if args.subscriber:
        kind, port, count, registry, output, ready = args.subscriber
        run_subscriber(kind, int(port), int(count), registry, output, ready)
        return 0
    if args.messages < 2 * SEAL_EVERY or args.replies < 1:
        parser.error("--messages must be at least 100 and --replies at least 1")
    global LOG
    LOG = FigureLog(args.json, "hub link")

    from qai_edge.isolation import isolate

    isolate("hub-trust-bench-ros-log-")
    from qai_edge.broker import LocalBroker, free_port
    from qai_hub.protocol import Signer, generate_key_pair, load_public_key
    from qai_hub.registry import enroll

    directory = Path(tempfile.mkdtemp(prefix="hub-trust-bench-"))
    key = directory / "robot.mldsa65.key"
    generate_key_pair(key, key.with_suffix(".pub"))
    enroll(directory / "registry", ROBOT, key.with_suffix(".pub"))
    signer, public_key = Signer.from_files(key), load_public_key(key.with_suffix(".pub"))
    broker = LocalBroker(free_port(), directory / "broker").start()
    print(f"hub trust bench: mosquitto on 127.0.0.1:{broker.port}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    try:
        messages = robot_messages(signer, args.messages)
        signed = sum(1 for topic, _ in messages if not topic.endswith("/odom"))
        print(f"\nhub ingest: {len(messages)} messages ({signed} signed, the rest sealed) drained from the broker",
              flush=True)
        raw = drain("raw", broker.port, messages, directory / "registry", directory)
        hub = drain("hub", broker.port, messages, directory / "registry", directory)
        expected = len(messages) - signed  # every sealed message verified against its seal
        print(f"  the hub refused {hub['refused']}, matched {hub['verified']} sealed messages to their seals "
              f"(of {expected}, the last ones waiting for a seal not sent)")
        if hub["refused"]:
            raise SystemExit("bench: the hub refused a robot's own message")
        line("hub ingest of authenticated telemetry, msg/s", hub["rate"], raw["rate"], "msg/s", "raw paho",
             "target ratio >= 0.5", hub["rate"] / raw["rate"] >= 0.5)
        line("hub ingest, CPU per message, us", hub["cpu_us"], raw["cpu_us"], "us", "raw paho")
        measure_replies(signer, public_key, directory / "registry", args.replies)
        measure_authentication(signer, public_key, min(args.messages, 2000))
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
