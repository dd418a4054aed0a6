"""A hub's session with its fleet: one MQTT connection that follows the robots and sends signed commands.

No rclpy import; no ROS on the hub.

It keeps the Fleet view (qai_hub.fleet: every message checked and verified as its robot's own, status,
missions, position, battery, health, and the sequence numbers of every telemetry stream), the replies that
answer its own commands (bound by request id and nonce), every report, the latest endurance prediction per
robot, and, per task, the states the hub saw it go through (so a task that ran again after it had succeeded
shows). It asks robots for telemetry that went missing (qai_hub.gaps, `resend`), and after a reconnect asks
for the state of the missions it waits on. Thread-safe: paho's network thread feeds it, the caller reads it.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Mapping, TypeVar

import orjson

from qai_hub.client import BrokerOptions, HubClient
from qai_hub.fleet import Change, Fleet
from qai_hub.gaps import GapFiller
from qai_hub.protocol import ROOT, Signer, command_topic, make_command
from qai_hub.registry import RobotRegistry

FINAL = ("succeeded", "failed", "canceled", "rejected", "error")


T = TypeVar("T")


class HubSession:
    def __init__(self, broker: BrokerOptions, fleet: str, signer: Signer, registry: RobotRegistry,
                 fill_gaps: bool = True):
        self.fleet_name, self.signer = fleet, signer
        self.fleet = Fleet(fleet, registry, keep_missions=100)
        self.replies: dict[str, list[dict[str, Any]]] = {}  # request id -> its replies (bound), in arrival order
        self.reports: dict[str, list[dict[str, Any]]] = {}  # robot -> reports
        self.endurance: dict[str, dict[str, Any]] = {}  # robot -> the latest EndurancePrediction
        self.first_battery: dict[str, dict[str, Any]] = {}  # robot -> its first BatteryState
        self.events: list[tuple[float, str, dict[str, Any]]] = []  # (time, robot, Event) as they came
        self.task_history: dict[tuple[str, str, str], list[int]] = {}  # (robot, mission, task) -> states seen
        self.gaps = GapFiller(self.fleet) if fill_gaps else None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self.client = HubClient(broker, self.on_message, client_id=f"hub-{uuid.uuid4().hex[:8]}",
                                on_reconnect=self._on_reconnect)
        self._filler = threading.Thread(target=self._fill_gaps, name="hub-gaps", daemon=True)

    def connect(self, timeout: float = 10.0) -> "HubSession":
        self.client.connect(timeout)
        self.client.subscribe(f"{ROOT}/{self.fleet_name}/#", timeout=timeout)
        if self.gaps is not None:
            self._filler.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._filler.is_alive():
            self._filler.join(5)
        self.client.close()

    # -- What arrives -------------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        with self._lock:
            change = self.fleet.on_message(topic, payload)
            if change is not None and change.robot is not None:
                self._take(change)
            self._changed.notify_all()

    def _take(self, change: Change) -> None:
        robot = change.robot.name
        if change.kind == "reply":
            if change.bound:
                self.replies.setdefault(change.message.request_id, []).append(change.data)
            return
        if change.kind != "telemetry" or not change.data:
            return
        kind, data = change.type, change.data
        if kind == "qai/Report":
            self.reports.setdefault(robot, []).append(data)
        elif kind.endswith("/EndurancePrediction"):
            self.endurance[robot] = data
        elif kind.endswith("/BatteryState"):
            self.first_battery.setdefault(robot, data)
        elif kind.endswith("/Event"):
            self.events.append((time.time(), robot, data))
        elif kind.endswith("/MissionState"):
            # Each task's state as the fleet now holds it: newest by the robot's stamp, so a backlog that
            # arrives after live data (a broker outage) does not look like a task running again.
            merged = change.robot.missions.get(data["mission_id"]) or {}
            held = {task["task_id"]: task["state"] for task in merged.get("tasks", [])}
            for task in data["tasks"]:
                state = held.get(task["task_id"], task["state"])
                history = self.task_history.setdefault((robot, data["mission_id"], task["task_id"]), [])
                if not history or history[-1] != state:
                    history.append(state)

    # -- Commands ------------------------------------------------------------------------------------

    def send(self, robot: str, verb: str, body: Mapping[str, Any], timeout: float = 10.0) -> str:
        """Sign and publish a command; return its request id (its replies land in `replies`)."""
        topic = command_topic(self.fleet_name, robot, verb)
        command = make_command(self.signer, fleet=self.fleet_name, robot=robot, verb=verb, body=body, topic=topic)
        with self._lock:
            self.fleet.expect(command)
        self.client.publish(topic, orjson.dumps(command), timeout)
        return command["id"]

    def _on_reconnect(self) -> None:
        """After a reconnect: ask each robot for the missions this session waits on (their replies may be lost)."""
        with self._lock:
            waiting = {(reply["robot"], reply["mission_id"]) for replies in self.replies.values() for reply in replies
                       if reply["status"] == "accepted" and reply["mission_id"]
                       and not any(r["status"] in FINAL for r in replies)}
        for robot, mission_id in waiting:
            threading.Thread(target=self.send, args=(robot, "get_state", {"mission_id": mission_id}),
                             daemon=True).start()

    def _fill_gaps(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                due = self.gaps.due(time.time())
            for robot, stream, ranges in due:
                try:
                    self.send(robot, "resend", {"stream": stream, "ranges": ranges})
                except Exception:  # noqa: BLE001 - the broker is away: asked again on the next round
                    pass

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

    def read(self, look: Callable[["HubSession"], T]) -> T:
        """Return `look(self)`, computed under the session's lock: a consistent view of what it holds."""
        with self._lock:
            return look(self)

    def final_reply(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            return next((r for r in self.replies.get(request_id, []) if r["status"] in FINAL), None)

    def accepted_mission(self, request_id: str) -> str | None:
        with self._lock:
            return next((r["mission_id"] for r in self.replies.get(request_id, [])
                         if r["status"] == "accepted" and r["mission_id"]), None)

    def mission_outcome(self, robot: str, mission_id: str) -> str | None:
        """Return the mission's outcome as its signed mission states show it (succeeded...), None while it runs."""
        with self._lock:
            view = self.fleet.robots.get(robot)
            state = view.missions.get(mission_id) if view is not None else None
            if state is None or state["state"] < 10:
                return None
            return {10: "succeeded", 11: "failed", 12: "canceled", 13: "rejected"}.get(state["state"], "failed")

    def reran(self, robot: str, mission_id: str) -> list[str]:
        """Tasks of a mission that the hub saw run again after they had succeeded."""
        with self._lock:
            return [task for (who, mission, task), states in self.task_history.items()
                    if who == robot and mission == mission_id and 10 in states and states.index(10) < len(states) - 1]
