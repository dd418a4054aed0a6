"""FakeRobot: a paho client that stands in for a robot's hub_link, named as a fake.

It speaks hub_link's MQTT interface exactly (qai_hub.protocol, the payloads of qai_io.hub_link.streams and
the codec's JSON of each message type), through a real broker, signed with its own robot key (a TestRobots
identity, enrolled where the hub looks) and with its telemetry sealed, as hub_link does. Used where a real
hub_link cannot be: fifty robots at 10 Hz in one process for bench/hub_dashboard.py (fifty hub_link processes
would not fit on two cores), and robots that send what a real one never would (strings holding HTML, for the
XSS probe, or hostile payloads). The tests of the whole path run the real hub_link beside the real mission engine.
"""

from __future__ import annotations

import math
import socket
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from qai_hub.protocol import (ROOT, SEAL_TYPE, must_be_signed, seal_data, set_tcp_nodelay, sign_robot_message,
                              telemetry_digest)
from robot_identity import TestRobots, shared_robots


def stamp_of(seconds: float) -> dict[str, int]:
    return {"sec": int(seconds), "nanosec": int((seconds % 1) * 1e9)}


class FakeRobot:
    def __init__(self, port: int, fleet: str, robot: str, keepalive: int = 10, robots: TestRobots | None = None,
                 seal_every: int = 50):
        self.fleet, self.robot, self.port = fleet, robot, port
        self.base = f"{ROOT}/{fleet}/{robot}"
        self.seq: dict[str, int] = {}
        self.signer = (robots or shared_robots()).signer(robot)
        self.unsealed: dict[str, list[tuple[int, str]]] = {}
        self.seal_every = seal_every  # sealed messages between two seals
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fake-{fleet}-{robot}"[:200],
                                  protocol=mqtt.MQTTv5)
        self.client.on_socket_open = set_tcp_nodelay
        status_topic = f"{self.base}/status"
        self.client.will_set(status_topic, sign_robot_message(self.signer, status_topic, orjson.dumps(
            {"state": "offline", "robot": robot, "fleet": fleet, "reason": "connection lost"})), qos=1, retain=True)
        self.client.connect("127.0.0.1", port, keepalive=keepalive)
        self.client.loop_start()

    def _publish(self, topic: str, payload: dict[str, Any], qos: int = 1, retain: bool = False,
                 signed: bool = True) -> bytes:
        data = orjson.dumps(payload)
        if signed:
            data = sign_robot_message(self.signer, topic, data)
        self.client.publish(topic, data, qos=qos, retain=retain)
        return data

    def status(self, state: str = "online", **extra: Any) -> None:
        payload = {"state": state, "robot": self.robot, "fleet": self.fleet, "stamp": time.time(),
                   "missions": {"active": [], "last_finished": None},
                   "link": {"state": "connected", "connected": True, "protocol": "5", "connects": 1, "queue_depth": 0,
                            "inflight": 0, "rtt_ms": 1.0, "dropped": {}},
                   "commands": {"accepted": 0, "rejected": {}}, "streams": {}, "streams_refused": {}, **extra}
        self._publish(f"{self.base}/status", payload, retain=True)

    def telemetry(self, stream: str, type_name: str, data: dict[str, Any], qos: int = 1,
                  stamp: float | None = None) -> int:
        seq = self.seq[stream] = self.seq.get(stream, 0) + 1
        signed = must_be_signed(type_name) or stream in ("drops", "seals")
        payload = self._publish(f"{self.base}/telemetry/{stream}", {
            "seq": seq, "stamp": time.time() if stamp is None else stamp, "type": type_name, "data": data},
            qos=qos, signed=signed)
        if not signed:
            self.unsealed.setdefault(stream, []).append((seq, telemetry_digest(payload)))
            if sum(map(len, self.unsealed.values())) >= self.seal_every:
                self.seal()
        return seq

    def seal(self) -> None:
        """Publish a seal over the telemetry sent since the last one, as hub_link does every seal_period."""
        if self.unsealed:
            digests, self.unsealed = self.unsealed, {}
            self.telemetry("seals", SEAL_TYPE, seal_data(digests))

    def odom(self, x: float, y: float, z: float = 0.0, yaw: float = 0.0, speed: float = 0.0, qos: int = 1) -> int:
        now = time.time()
        data = {"header": {"stamp": stamp_of(now), "frame_id": "odom"}, "child_frame_id": "base_link",
                "pose": {"pose": {"position": {"x": x, "y": y, "z": z},
                                  "orientation": {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2), "w": math.cos(yaw / 2)}},
                         "covariance": [0.0] * 36},
                "twist": {"twist": {"linear": {"x": speed * math.cos(yaw), "y": speed * math.sin(yaw), "z": 0.0},
                                    "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}, "covariance": [0.0] * 36}}
        return self.telemetry("odom", "nav_msgs/msg/Odometry", data, qos=qos, stamp=now)

    def battery(self, percentage: float, voltage: float = 15.0) -> int:
        data = {"header": {"stamp": stamp_of(time.time()), "frame_id": ""}, "voltage": voltage,
                "percentage": percentage, "current": -5.0, "charge": None, "capacity": None, "temperature": None}
        return self.telemetry("battery_state", "sensor_msgs/msg/BatteryState", data)

    def mission_state(self, mission_id: str, tasks: list[dict[str, Any]], state: int = 1, name: str = "",
                      message: str = "") -> int:
        data = {"header": {"stamp": stamp_of(time.time()), "frame_id": ""}, "mission_id": mission_id, "name": name,
                "state": state, "message": message, "tasks_total": len(tasks),
                "tasks_succeeded": sum(1 for t in tasks if t.get("state") == 10),
                "tasks_failed": sum(1 for t in tasks if t.get("state") == 11),
                "tasks_running": sum(1 for t in tasks if t.get("state") == 2),
                "tasks": [{"task_id": "", "kind": "wait", "depends_on": [], "state": 0, "attempt": 0, "preemptions": 0,
                           "engine": "", "progress": None, "message": "", "started": {"sec": 0, "nanosec": 0},
                           "finished": {"sec": 0, "nanosec": 0}, "result": [], **task} for task in tasks]}
        return self.telemetry("mission_states", "qai_interfaces/msg/MissionState", data)

    def event(self, code: str, message: str, severity: int = 1, values: dict[str, str] | None = None) -> int:
        data = {"header": {"stamp": stamp_of(time.time()), "frame_id": ""}, "source": f"/{self.robot}/io_engine",
                "code": code, "severity": severity, "message": message,
                "values": [{"key": k, "value": v} for k, v in (values or {}).items()]}
        return self.telemetry("events", "qai_interfaces/msg/Event", data)

    def kill(self) -> None:
        """Drop the connection without a DISCONNECT, as a crash or a lost link does: the broker sends the will."""
        sock = self.client.socket()
        self.client.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
