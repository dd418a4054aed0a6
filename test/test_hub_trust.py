"""Trust both ways, through real brokers and real robot processes.

The locked broker keeps each robot to its own topics and its own session; per-robot certificates do the same
over mutual TLS; `qai-hub send-mission` never reports an outcome its robot did not sign; a flood of junk on the
command topics leaves signed commands answered within a second; a broker killed in the middle of a mission
loses neither the mission's outcome nor a telemetry sequence number.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import pytest

from harness import ProcessGroup, RosProbe, installed, unique_namespace, wait_for
from hub_stack import HubKeys, HubSubscriber, make_tls_files, start_broker
from qai_edge.broker import HUB_USER, BrokerAccounts, LocalBroker, free_port
from qai_hub.client import BrokerOptions
from qai_hub.protocol import Signer, command_topic, make_command
from qai_hub.session import HubSession
from robot_identity import TestRobots

FLEET = "trust"
TIMEOUT = 30.0


class Robot:
    """A mission engine and a hub_link under one namespace (a robot), on a given broker."""

    def __init__(self, directory, group: ProcessGroup, keys: HubKeys, robots: TestRobots, name: str, port: int,
                 **link_parameters):
        self.name, self.group = name, group
        self.namespace = unique_namespace()
        group.start_node("mission_engine", namespace=self.namespace, parameters={
            "data_dir": str(directory / "data"), "robot_id": name, "heartbeat_period": 0.2})
        self.link = group.start_node("hub_link", namespace=self.namespace, parameters={
            "data_dir": str(directory / "data"), "robot_id": name, "fleet": FLEET, "broker_port": port,
            "heartbeat_period": 0.2, "status_period": 0.5, "reconnect_initial": 0.2, "reconnect_max": 1.0,
            "hub_public_keys": [keys.public], "robot_key": str(robots.key(name)), **link_parameters})


def client(port: int, username: str = "", password_file=None, client_id: str = "") -> tuple[mqtt.Client, dict]:
    """Connect raw paho (an attacker, or a test's eyes); return the connection and what happens to it."""
    seen: dict = {"messages": [], "connected": threading.Event(), "refused": None, "subscribed": set()}
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or uuid.uuid4().hex,
                       protocol=mqtt.MQTTv5)
    if username:
        paho.username_pw_set(username, password_file.read_text().strip() if password_file else "nothing")

    def on_connect(c, userdata, flags, reason_code, properties):
        seen["refused"] = str(reason_code) if reason_code.is_failure else None
        seen["connected"].set()

    paho.on_connect = on_connect
    paho.on_subscribe = lambda c, userdata, mid, codes, properties: seen["subscribed"].add(mid)
    paho.on_message = lambda c, userdata, message: seen["messages"].append((message.topic, message.payload))
    paho.connect("127.0.0.1", port)
    paho.loop_start()
    seen["connected"].wait(10)
    return paho, seen


def subscribe(paho: mqtt.Client, seen: dict, topic: str) -> None:
    """Subscribe and wait for the broker's SUBACK."""
    _, mid = paho.subscribe(topic, 1)
    wait_for(lambda: mid in seen["subscribed"], 10, f"the SUBACK for {topic}")


def close(paho: mqtt.Client) -> None:
    paho.disconnect()
    paho.loop_stop()


# -- The broker ------------------------------------------------------------------------------------------

def test_the_locked_broker_keeps_each_robot_to_its_own_topics_and_its_own_session(tmp_path):
    accounts = BrokerAccounts(tmp_path / "accounts", FLEET)
    accounts.ensure(["r1", "r2"])
    broker = LocalBroker(free_port(), tmp_path / "broker", accounts=accounts, hub_port=free_port()).start()
    clients = []
    try:
        anonymous, seen = client(broker.port)
        clients.append(anonymous)
        assert seen["refused"] == "Not authorized"
        r2, r2_seen = client(broker.port, "r2", accounts.password_file("r2"), client_id="r2")
        subscribe(r2, r2_seen, f"qai/{FLEET}/r2/cmd/+")
        # r1 connects with r2's client id: the broker gives it r1's (its username), r2 keeps its session.
        r1, r1_seen = client(broker.port, "r1", accounts.password_file("r1"), client_id="r2")
        hub, hub_seen = client(broker.hub_port, HUB_USER, accounts.password_file(HUB_USER))
        clients += [r2, r1, hub]
        assert r1_seen["refused"] is None and hub_seen["refused"] is None
        subscribe(hub, hub_seen, f"qai/{FLEET}/#")
        subscribe(r1, r1_seen, f"qai/{FLEET}/#")  # granted or not, it may read only its own
        r1.publish(f"qai/{FLEET}/r1/status", b"mine", 1).wait_for_publish(5)
        r1.publish(f"qai/{FLEET}/r2/status", b"forged", 1).wait_for_publish(5)  # not its topic: dropped
        hub.publish(f"qai/{FLEET}/r2/status", b"forged by the hub", 1).wait_for_publish(5)  # nor the hub's
        hub.publish(f"qai/{FLEET}/r2/cmd/get_state", b"for r2", 1).wait_for_publish(5)
        wait_for(lambda: any(t.endswith("/r2/cmd/get_state") for t, _ in r2_seen["messages"]), 10, "r2's command")
        wait_for(lambda: any(p == b"mine" for _, p in hub_seen["messages"]), 10, "r1's own status at the hub")
        assert not any(p in (b"forged", b"forged by the hub") for _, p in hub_seen["messages"])
        assert not any("/r2/" in t for t, _ in r1_seen["messages"])  # r1 reads nothing of r2's
        assert r2.is_connected()  # not pushed off by the client id
    finally:
        for paho in clients:
            close(paho)
        broker.stop()


def test_mutual_tls_with_per_robot_certificates_keeps_each_robot_to_its_own_topics(tmp_path):
    """A robot's certificate names it (common name = robot id): its username for the ACL, so its own topics only."""
    files = make_tls_files(tmp_path, clients=("r1",))
    accounts = BrokerAccounts(tmp_path / "accounts", FLEET)
    accounts.ensure([])
    tls_port = free_port()
    broker = start_broker(tmp_path / "broker", extra_config=(
        f"listener {tls_port} 127.0.0.1\ncafile {files['ca']}\ncertfile {files['server_cert']}\n"
        f"keyfile {files['server_key']}\nrequire_certificate true\nuse_identity_as_username true\n"
        f"use_username_as_clientid true\nacl_file {accounts.directory / 'robots.acl'}\n"))
    import ssl

    robot = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anything", protocol=mqtt.MQTTv5)
    context = ssl.create_default_context(cafile=str(files["ca"]))
    context.load_cert_chain(str(files["cert:r1"]), str(files["key:r1"]))
    robot.tls_set_context(context)
    hub, hub_seen = client(broker.port)  # the open test listener: a hub that reads everything
    try:
        subscribe(hub, hub_seen, f"qai/{FLEET}/#")
        connected = threading.Event()
        robot.on_connect = lambda *args: connected.set()
        robot.connect("127.0.0.1", tls_port)
        robot.loop_start()
        assert connected.wait(10)
        robot.publish(f"qai/{FLEET}/r1/telemetry/odom", b"r1 over mTLS", 1).wait_for_publish(5)
        robot.publish(f"qai/{FLEET}/r2/telemetry/odom", b"r1 pretending", 1).wait_for_publish(5)
        wait_for(lambda: any(p == b"r1 over mTLS" for _, p in hub_seen["messages"]), 10, "r1's telemetry")
        assert not any(p == b"r1 pretending" for _, p in hub_seen["messages"])
        # Without a certificate the TLS listener refuses the connection (TLS 1.3: after the handshake).
        bare = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        bare.tls_set_context(ssl.create_default_context(cafile=str(files["ca"])))
        outcome: list[str] = []
        bare.on_connect = lambda *args: outcome.append("connected")
        bare.on_disconnect = lambda *args: outcome.append("closed")
        bare.on_connect_fail = lambda *args: outcome.append("closed")
        try:
            bare.connect("127.0.0.1", tls_port)
            bare.loop_start()
            wait_for(lambda: outcome, 10, "the broker to answer a client without a certificate")
        except (ssl.SSLError, OSError):
            outcome.append("closed")
        finally:
            bare.loop_stop()
        assert outcome[0] == "closed"
    finally:
        robot.loop_stop()
        robot.disconnect()
        close(hub)
        broker.stop()


# -- The hub never believes what its robot did not sign ---------------------------------------------------

@pytest.fixture
def open_stack(tmp_path):
    """Yield an open broker (an attacker may publish anything), one enrolled robot running, the hub's keys."""
    group = ProcessGroup(tmp_path)
    broker = start_broker(tmp_path / "broker")
    keys, robots = HubKeys(tmp_path), TestRobots(tmp_path / "robots")
    robots.key("ghost")  # enrolled, but never runs
    robot = Robot(tmp_path, group, keys, robots, "r1", broker.port)
    hub = HubSubscriber(broker.port, FLEET, robots=robots)
    try:
        wait_for(lambda: hub.fleet.robots.get("r1") and hub.fleet.robots["r1"].online, TIMEOUT,
                 lambda: f"r1 online\n{robot.link.log()}")
        yield {"broker": broker, "keys": keys, "robots": robots, "robot": robot, "hub": hub, "group": group,
               "dir": tmp_path}
    finally:
        hub.close()
        group.stop_all()
        broker.stop()


def qai_hub(stack, *args, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed("qai-hub")), "--port", str(stack["broker"].port), "--fleet", FLEET,
                           "--robots", str(stack["robots"].registry_dir), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_send_mission_never_reports_an_outcome_its_robot_did_not_sign(open_stack, tmp_path):
    """The finding: any client that published a reply with the request's id made send-mission exit 0."""
    mission = tmp_path / "m.yaml"
    mission.write_text("tasks:\n  - {id: w, kind: wait, parameters: {seconds: 0.2}}\n")
    not_enrolled = qai_hub(open_stack, "send-mission", str(mission), "--robot", "nobody", "--key",
                           open_stack["keys"].private, "--timeout", "5")
    assert not_enrolled.returncode == 2 and "not enrolled" in not_enrolled.stderr
    # An attacker answers every command to the enrolled-but-absent "ghost" with a success: unsigned, or
    # signed by another robot (r1, enrolled: a compromised robot), with the request's id and nonce.
    attacker, attacker_seen = client(open_stack["broker"].port)
    r1 = open_stack["robots"].signer("r1")

    def answer(c, userdata, message):
        command = orjson.loads(message.payload)
        topic = f"qai/{FLEET}/ghost/cmd/submit_mission/reply"
        reply = orjson.dumps({"id": command["id"], "nonce": command["nonce"], "verb": "submit_mission",
                              "robot": "ghost", "status": "succeeded", "stamp": time.time(), "mission_id": "x"})
        from qai_hub.protocol import sign_robot_message

        c.publish(topic, reply, 1)
        c.publish(topic, sign_robot_message(r1, topic, reply), 1)

    attacker.on_message = answer
    try:
        subscribe(attacker, attacker_seen, f"qai/{FLEET}/ghost/cmd/+")
        forged = qai_hub(open_stack, "send-mission", str(mission), "--robot", "ghost", "--key",
                         open_stack["keys"].private, "--timeout", "8")
        assert forged.returncode == 4, forged.stdout + forged.stderr  # no answer: the forgeries do not count
        assert "SUCCEEDED" not in forged.stdout and "no final answer" in forged.stderr
        real = qai_hub(open_stack, "send-mission", str(mission), "--robot", "r1", "--key", open_stack["keys"].private)
        assert real.returncode == 0 and "SUCCEEDED" in real.stdout, real.stdout + real.stderr
    finally:
        close(attacker)


def flood(port: int, topics: list[str], rate: float, stop: threading.Event, sent: list[int], **login) -> None:
    """Publish junk (malformed, unsigned, oversized) on `topics` at about `rate` messages a second until `stop`."""
    flooder, seen = client(port, **login)
    junk = [b"{not json", b'{"v":1}', b"x" * 1500,
            orjson.dumps({**make_command(None, fleet=FLEET, robot="all", verb="get_state", body={},
                                         topic=command_topic(FLEET, "all", "get_state")), "signatures": []})]
    try:
        while not stop.is_set():
            began = time.monotonic()
            for _ in range(max(1, int(rate / 100))):
                for topic in topics:
                    flooder.publish(topic, junk[sent[0] % len(junk)], 0)
                    sent[0] += 1
            stop.wait(max(0.0, 0.01 - (time.monotonic() - began)))
    finally:
        close(flooder)


def answered_within(hub: HubSubscriber, keys: HubKeys, robot: str, count: int = 5) -> list[float]:
    latencies = []
    for _ in range(count):
        topic, command = keys.command(FLEET, robot, "get_state", {})
        began = time.monotonic()
        hub.publish(topic, orjson.dumps(command))
        hub.wait_reply(command["id"], "done", timeout=10)
        latencies.append(time.monotonic() - began)
    return latencies


def test_a_flood_of_junk_on_the_command_topics_leaves_signed_commands_answered_within_a_second(open_stack):
    """The finding: junk on all/cmd/... used up every robot's command rate limit before any signature check.

    Here the broker is open (defense in depth: a broker that lets anyone publish): 1,000 junk commands a second
    on each of two command topics cost the robot's gate only its cheap checks, never the signature checks signed
    commands need.
    """
    # One signed command first: the link's first call of the mission engine's service waits for DDS to have
    # discovered it (1.8 s once, under the whole suite's load), which is not what the flood costs.
    answered_within(open_stack["hub"], open_stack["keys"], "r1", count=1)
    stop, sent = threading.Event(), [0]
    topics = [f"qai/{FLEET}/all/cmd/get_state", f"qai/{FLEET}/r1/cmd/submit_mission"]
    thread = threading.Thread(target=flood, args=(open_stack["broker"].port, topics, 1000.0, stop, sent), daemon=True)
    thread.start()
    try:
        wait_for(lambda: sent[0] > 2000, TIMEOUT, "the flood under way")
        latencies = answered_within(open_stack["hub"], open_stack["keys"], "r1")
        assert max(latencies) < 1.0, latencies
    finally:
        stop.set()
        thread.join(5)
    # Nor does the flood become a flood of log lines (they cost the robot more than the refusals: before, one
    # a refusal, the link fell behind a 2,000-a-second flood on a loaded machine). All are counted on status.
    lines = [line for line in open_stack["robot"].link.log().splitlines() if "command refused" in line]
    codes = {line.split("command refused (", 1)[1].split(")", 1)[0] for line in lines}
    assert sent[0] > 2000 and len(lines) <= 2 * len(codes), "\n".join(lines[:20])


@pytest.fixture
def locked_stack(tmp_path):
    """Yield a locked broker (accounts r1, r2 and the hub's), robot r1 running on it, the hub following it."""
    group = ProcessGroup(tmp_path)
    accounts = BrokerAccounts(tmp_path / "accounts", FLEET)
    accounts.ensure(["r1", "r2"])
    broker = LocalBroker(free_port(), tmp_path / "broker", accounts=accounts, hub_port=free_port()).start()
    keys, robots = HubKeys(tmp_path), TestRobots(tmp_path / "robots")
    robot = Robot(tmp_path, group, keys, robots, "r1", broker.port, username="r1",
                  password_file=str(accounts.password_file("r1")))
    hub = HubSubscriber(broker.hub_port, FLEET, robots=robots, username=HUB_USER,
                        password_file=str(accounts.password_file(HUB_USER)))
    try:
        wait_for(lambda: hub.fleet.robots.get("r1") and hub.fleet.robots["r1"].online, TIMEOUT,
                 lambda: f"r1 online\n{robot.link.log()}")
        yield {"broker": broker, "accounts": accounts, "keys": keys, "robots": robots, "hub": hub, "group": group}
    finally:
        hub.close()
        group.stop_all()
        broker.stop()


def test_through_the_locked_broker_no_flood_reaches_a_robot(locked_stack):
    """Anonymous clients are refused; another robot's account may not publish commands: signed ones pass at once."""
    broker, accounts = locked_stack["broker"], locked_stack["accounts"]
    anonymous, seen = client(broker.port)
    close(anonymous)
    assert seen["refused"] == "Not authorized"
    stop, sent = threading.Event(), [0]
    topics = [f"qai/{FLEET}/all/cmd/get_state", f"qai/{FLEET}/r1/cmd/get_state"]
    thread = threading.Thread(target=flood, args=(broker.port, topics, 5000.0, stop, sent), daemon=True,
                              kwargs={"username": "r2", "password_file": accounts.password_file("r2")})
    thread.start()
    try:
        wait_for(lambda: sent[0] > 5000, TIMEOUT, "the flood under way")
        latencies = answered_within(locked_stack["hub"], locked_stack["keys"], "r1")
        assert max(latencies) < 1.0, latencies
        status = locked_stack["hub"].fleet.robots["r1"].status
        assert not status["commands"]["rejected"], status["commands"]  # nothing of the flood reached r1's gate
    finally:
        stop.set()
        thread.join(5)


# -- A broker that crashes mid-mission ------------------------------------------------------------------------

@pytest.mark.slow
def test_a_broker_killed_mid_mission_loses_neither_the_outcome_nor_a_sequence_number(tmp_path):
    """Get the outcome and every sequence number across a broker crash.

    The finding: with the broker SIGKILLed for 20 s, send-mission never got its result (exit 4 although the
    mission succeeded) and telemetry the broker had acknowledged never arrived, unreported.
    """
    group = ProcessGroup(tmp_path)
    accounts = BrokerAccounts(tmp_path / "accounts", FLEET)
    accounts.ensure(["r1"])
    port, hub_port = free_port(), free_port()
    broker = LocalBroker(port, tmp_path / "broker", accounts=accounts, hub_port=hub_port).start()
    keys, robots = HubKeys(tmp_path), TestRobots(tmp_path / "robots")
    Robot(tmp_path, group, keys, robots, "r1", port, username="r1",
          password_file=str(accounts.password_file("r1")))
    options = BrokerOptions(port=hub_port, username=HUB_USER, password_file=str(accounts.password_file(HUB_USER)))
    session = HubSession(options, FLEET, Signer.from_files(keys.private), robots.registry).connect()
    mission = tmp_path / "m.yaml"  # a chain of twelve waits, about 18 s: it ends while the broker is down
    lines = ["tasks:"] + [f"  - {{id: w{i}, kind: wait, parameters: {{seconds: 1.5}}"
                          f"{', depends_on: [w%d]' % (i - 1) if i else ''}}}" for i in range(12)]
    mission.write_text("\n".join(lines) + "\n")
    try:
        wait_for(lambda: session.fleet.robots.get("r1") and session.fleet.robots["r1"].online, TIMEOUT,
                 "r1 online at the hub")
        send = subprocess.Popen([str(installed("qai-hub")), "--port", str(hub_port), "--fleet", FLEET, "--username",
                                 HUB_USER, "--password-file", str(accounts.password_file(HUB_USER)), "--robots",
                                 str(robots.registry_dir), "send-mission", str(mission), "--robot", "r1", "--key",
                                 keys.private, "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        wait_for(lambda: any(task["state"] == 10 for m in session.fleet.robots["r1"].missions.values()
                             for task in m["tasks"]), TIMEOUT, "the mission under way")
        broker.kill()  # as a crash: no persistence saved since its last autosave
        time.sleep(20.0)  # the outage of the finding: the robot queues on disk; the hub's clients reconnect in vain
        broker.start()
        output, _ = send.communicate(timeout=150)
        assert send.returncode == 0 and "SUCCEEDED" in output, output
        robot = session.fleet.robots["r1"]

        def accounted():  # the backlog in: the mission's end seen, and no sequence number unaccounted for
            finished = any(m["state"] >= 10 for m in robot.missions.values())
            return finished and all(tracker.missing_count() == 0 for tracker in robot.streams.values())

        wait_for(accounted, 60, lambda: "every sequence number received or reported dropped: " + str(
            {name: (tracker.missing_ranges(), len(tracker.received)) for name, tracker in robot.streams.items()}))
        assert robot.streams["mission_states"].highest > 10 and robot.seals.forged == 0
    finally:
        session.close()
        group.stop_all()
        broker.stop()


def test_a_hub_link_whose_nonce_store_cannot_be_opened_keeps_telemetry_flowing_and_answers_commands(tmp_path):
    """The finding: a nonce store that could not be opened made hub_link crash-loop, taking telemetry with it."""
    group = ProcessGroup(tmp_path)
    broker = start_broker(tmp_path / "broker")
    keys, robots = HubKeys(tmp_path), TestRobots(tmp_path / "robots")
    (tmp_path / "data" / "r9").mkdir(parents=True)
    (tmp_path / "data" / "r9" / "hub_nonces.db").mkdir()  # a directory where the database should be
    probe = RosProbe("nonce_probe")
    robot = Robot(tmp_path, group, keys, robots, "r9", broker.port)
    hub = HubSubscriber(broker.port, FLEET, robots=robots)
    try:
        wait_for(lambda: hub.fleet.robots.get("r9") and hub.fleet.robots["r9"].online, TIMEOUT,
                 lambda: f"r9 online\n{robot.link.log()}")
        topic, command = keys.command(FLEET, "r9", "get_state", {})
        hub.publish(topic, orjson.dumps(command))
        reply = hub.wait_reply(command["id"], "rejected")
        assert reply["reason"] == "unavailable" and "nonce store" in reply["message"]
        seen = len(hub.on("/r9/telemetry/diagnostics"))
        wait_for(lambda: len(hub.on("/r9/telemetry/diagnostics")) > seen + 1, TIMEOUT, "telemetry going on")
        assert robot.link.popen.poll() is None
    finally:
        probe.close()
        hub.close()
        group.stop_all()
        broker.stop()
