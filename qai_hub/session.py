"""A hub's session with its fleet: one MQTT connection that follows the robots and sends signed commands.

No rclpy import; no ROS on the hub.

It keeps the Fleet view (qai_hub.fleet: status, missions, position, battery, health, and the sequence
numbers of every telemetry stream), every reply by request id, every report, the latest endurance
prediction per robot, and, per task, the states the hub saw it go through (so a task that ran again after
it had succeeded shows). Thread-safe: paho's network thread feeds it, the caller reads it.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Mapping

import orjson
import paho.mqtt.client as mqtt

from qai_hub.fleet import Fleet
from qai_hub.protocol import ROOT, Signer, command_topic, make_command, parse_topic, set_tcp_nodelay

FINAL = ("succeeded", "failed", "canceled", "rejected", "error")


class HubSession:
    def __init__(self, host: str, port: int, fleet: str, signer: Signer):
        self.fleet_name, self.signer = fleet, signer
        self.fleet = Fleet(fleet, keep_missions=100)
        self.replies: dict[str, list[dict[str, Any]]] = {}  # request id -> replies, in arrival order
        self.reports: dict[str, list[dict[str, Any]]] = {}  # robot -> reports
        self.endurance: dict[str, dict[str, Any]] = {}  # robot -> the latest EndurancePrediction
        self.first_battery: dict[str, dict[str, Any]] = {}  # robot -> its first BatteryState
        self.events: list[tuple[float, str, dict[str, Any]]] = []  # (time, robot, Event) as they came
        self.task_history: dict[tuple[str, str, str], list[int]] = {}  # (robot, mission, task) -> states seen
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"hub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_socket_open = set_tcp_nodelay
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda client, userdata, message: self.on_message(message.topic, message.payload)
        self.host, self.port = host, port

    def connect(self, timeout: float = 10.0) -> "HubSession":
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise ConnectionError(f"the broker at {self.host}:{self.port} did not accept the connection")
        return self

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(f"{ROOT}/{self.fleet_name}/#", qos=1)  # again after every reconnect
        self._connected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # -- What arrives -------------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        where = parse_topic(topic)
        if where is None or where.kind in ("cmd", "ping"):
            return
        with self._lock:
            self.fleet.on_message(topic, payload)
            if where.kind == "reply":
                self._reply(payload)
            elif where.kind == "telemetry":
                self._telemetry(where.robot, where.name, payload)
            self._changed.notify_all()

    def _reply(self, payload: bytes) -> None:
        try:
            reply = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(reply, dict) and isinstance(reply.get("id"), str):
            self.replies.setdefault(reply["id"], []).append(reply)

    def _telemetry(self, robot: str, stream: str, payload: bytes) -> None:
        try:
            message = orjson.loads(payload)
            data = message["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        kind = message.get("type", "")
        if stream == "reports":
            self.reports.setdefault(robot, []).append(data)
        elif kind.endswith("/EndurancePrediction"):
            self.endurance[robot] = data
        elif kind.endswith("/BatteryState"):
            self.first_battery.setdefault(robot, data)
        elif kind.endswith("/Event"):
            self.events.append((time.time(), robot, data))
        elif kind.endswith("/MissionState"):
            for task in data.get("tasks", []):
                history = self.task_history.setdefault((robot, data.get("mission_id", ""), task.get("task_id")), [])
                if not history or history[-1] != task.get("state"):
                    history.append(task.get("state"))

    # -- Commands ------------------------------------------------------------------------------------

    def send(self, robot: str, verb: str, body: Mapping[str, Any], timeout: float = 10.0) -> str:
        """Sign and publish a command; return its request id (its replies land in `replies`)."""
        topic = command_topic(self.fleet_name, robot, verb)
        command = make_command(self.signer, fleet=self.fleet_name, robot=robot, verb=verb, body=body, topic=topic)
        info = self.client.publish(topic, orjson.dumps(command), qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise ConnectionError(f"the broker did not acknowledge the command on {topic}")
        return command["id"]

    def wait(self, condition, timeout: float) -> bool:
        """Wait until `condition()` (called under the session's lock) holds, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
            return True

    def final_reply(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            return next((r for r in self.replies.get(request_id, []) if r.get("status") in FINAL), None)

    def accepted_mission(self, request_id: str) -> str | None:
        with self._lock:
            return next((r.get("mission_id") for r in self.replies.get(request_id, [])
                         if r.get("status") == "accepted" and r.get("mission_id")), None)

    def reran(self, robot: str, mission_id: str) -> list[str]:
        """Tasks of a mission that the hub saw run again after they had succeeded."""
        with self._lock:
            return [task for (who, mission, task), states in self.task_history.items()
                    if who == robot and mission == mission_id and 10 in states and states.index(10) < len(states) - 1]
