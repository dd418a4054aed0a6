"""Models deployed from the hub, signed: `qai-hub deploy-model` to the robot's promotion gate, and back.

Real mosquitto, real hub_link and intelligence_engine processes over real DDS, `qai-hub` run as an operator
runs it, and commands made by hand for what an attacker or a damaged link would send.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import orjson

from harness import installed, unique_namespace, wait_for
from hub_stack import HubKeys, HubSubscriber, start_broker
from io_stack import call_service, save_bad_endurance_model
from robot_identity import TestRobots

FLEET, ROBOT = "mf", "modelbot"
TIMEOUT = 120.0  # a gate decision scores both models in a child process that imports torch first


def qai_hub(port: int, robots: TestRobots, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed("qai-hub")), "--port", str(port), "--fleet", FLEET, "--robots",
                           str(robots.registry_dir), *args], capture_output=True, text=True, timeout=TIMEOUT + 30)


def logs(group) -> str:
    return "\n".join(f"--- {child.name} ({child.describe()})\n{child.log()[-2500:]}" for child in group.children)


def test_a_model_deployed_signed_from_the_hub_is_gated_activated_and_rolled_back_and_bad_ones_are_refused(
        processes, ros_probe, tmp_path):
    """The hub's signed model goes through the robot's gate; unsigned, tampered, replayed and worse ones do not.

    The store starts with a bad endurance model active: the shipped one beats it on the gate.
    """
    from qai_hub import model_signing
    from qai_intelligence.store import SHIPPED
    from qai_interfaces.srv import ActivateModel

    untrained = tmp_path / "bad"
    save_bad_endurance_model(untrained)
    store = tmp_path / "models"
    shutil.copytree(untrained, store / ROBOT / "endurance" / "v0001")
    (store / ROBOT / "endurance" / "active.json").write_text(json.dumps({"version": "v0001", "history": ["v0001"]}))
    keys, robots = HubKeys(tmp_path / "hub"), TestRobots(tmp_path / "robots")
    broker = start_broker(tmp_path / "broker")
    try:
        namespace = unique_namespace()
        processes.start_node("intelligence_engine", namespace=namespace, parameters={
            "robot_id": ROBOT, "model_store": str(store), "policy_enabled": False, "heartbeat_period": 0.2,
            "model_keys": [keys.public]})
        processes.start_node("hub_link", namespace=namespace, parameters={
            "robot_id": ROBOT, "fleet": FLEET, "broker_port": broker.port, "status_period": 0.5,
            "hub_public_keys": [keys.public], "robot_key": str(robots.key(ROBOT)), "mission_engine_timeout": 60.0})
        hub = HubSubscriber(broker.port, FLEET, robots=robots)
        try:
            wait_for(lambda: hub.fleet.robots.get(ROBOT) and hub.fleet.robots[ROBOT].online, 30.0,
                     lambda: f"{ROBOT} online at the hub\n{logs(processes)}")

            # A ROS peer offering an unsigned checkpoint from outside the store: refused before the gate.
            peer = call_service(ros_probe, ActivateModel, f"{namespace}/intelligence_engine/activate_model",
                                ActivateModel.Request(model="endurance", checkpoint=str(SHIPPED / "endurance")))
            assert not peer.activated and "unsigned: no hub_signature.json" in peer.message, peer.message
            assert peer.active_version == "v0001"

            # The operator deploys the shipped model, signed: the gate activates it (v0002: nothing was added
            # for the refused one) and the answer carries the gate's figures.
            done = qai_hub(broker.port, robots, "deploy-model", str(SHIPPED / "endurance"), "--robot", ROBOT,
                           "--key", keys.private)
            assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs(processes)}"
            assert f"{ROBOT}: endurance model v0002 ACTIVE (was v0001)" in done.stdout, done.stdout
            assert "candidate:" in done.stdout and "active:" in done.stdout

            # Made by hand: a tampered model, an unsigned one, and a signed worse one (sent twice).
            files = model_signing.read_files(SHIPPED / "endurance")
            signature = model_signing.sign(keys.signer, "endurance", files)
            tampered = dict(files, **{"meta.json": files["meta.json"].replace(b"cfc", b"CFC", 1)})
            worse = model_signing.read_files(untrained)

            def deploy(body_files, document):
                topic, command = keys.command(FLEET, ROBOT, "deploy_model", {
                    "task": "endurance", "files": model_signing.encode_files(body_files), "signature": document})
                hub.publish(topic, orjson.dumps(command))
                return topic, command

            for body_files, document, reason in (
                    (tampered, signature, "meta.json: differs from what the hub signed"),
                    (files, {**signature, "signatures": []}, "unsigned"),
                    (files, model_signing.sign(keys.intruder, "endurance", files), "unknown_key")):
                _, command = deploy(body_files, document)
                reply = hub.wait_reply(command["id"], "rejected")
                assert reply["reason"] == "model_refused" and reason in reply["message"], reply
            topic, command = deploy(worse, model_signing.sign(keys.signer, "endurance", worse))
            _, meanwhile = deploy(files, signature)  # one change at a time: refused, not queued
            busy = hub.wait_reply(meanwhile["id"], "rejected")
            assert busy["reason"] == "engine_unavailable" and "in progress" in busy["message"], busy
            refused = hub.wait_reply(command["id"], "failed", timeout=TIMEOUT)
            assert refused["model"]["activated"] is False and refused["model"]["active_version"] == "v0002", refused
            assert set(refused["model"]["metrics"]) >= {"candidate", "active"}
            hub.publish(topic, orjson.dumps(command))
            assert hub.wait_reply(command["id"], "rejected")["reason"] == "replayed"

            # Rolled back from the hub: v0001 again.
            back = qai_hub(broker.port, robots, "rollback-model", "endurance", "--robot", ROBOT, "--key",
                           keys.private)
            assert back.returncode == 0, f"{back.stdout}\n{back.stderr}"
            assert f"{ROBOT}: endurance model v0001 ACTIVE (was v0002)" in back.stdout, back.stdout
            log = [json.loads(line) for line in (store / ROBOT / "changes.jsonl").read_text().splitlines()]
            changes = [e["action"] for e in log if e["action"] != "added"]
            assert changes[-3:] == ["activated", "refused", "rolled_back"], log
            assert [e.get("trust", "") for e in log if e["action"] == "added"][-2:] == [
                f"signed by the hub (key {keys.signer.key_ids[0]})"] * 2
            assert not list((tmp_path / "data").rglob("deploy/*")), "hub_link left a deployed checkpoint behind"
        finally:
            hub.close()
    finally:
        processes.stop_all()
        broker.stop()
