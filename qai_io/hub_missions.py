"""Run verified hub commands on the mission engine, asynchronously, from hub_link's executor thread.

submit_mission becomes an ExecuteMission goal (`execute_mission`): the reply `accepted` once the mission
engine reports the mission, `progress` per feedback (at most one per progress_period), then `succeeded`,
`failed`, `canceled` or `rejected` (the engine's validation errors verbatim). cancel_mission, add_tasks
and get_state call the services `cancel_task`, `add_tasks`, `get_mission_state` and reply `done` or
`rejected`. Nothing here blocks the executor: every wait is an awaited future with a deadline.

A mission whose goal result never comes (the mission engine restarted and resumed it from its journal)
is still answered: when `mission_states` shows it finished and no result followed within a few seconds,
the final reply is made from that state.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import orjson
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.task import Future

from qai_edge.qos import ACTION_QOS_ARGUMENTS
from qai_interfaces.action import ExecuteMission
from qai_interfaces.srv import AddTasks, CancelTask, GetMissionState
from qai_hub.protocol import TERMINAL, mission_state_name
from qai_io.hub_link import codec
from qai_io.hub_link.commands import Command
from qai_mission.codec import MissionFormatError, mission_from_dict, task_from_dict
from qai_mission.messages import mission_to_msg, task_to_msg

Reply = Callable[..., None]  # reply(command, status, **fields)
_FINAL = {10: "succeeded", 11: "failed", 12: "canceled", 13: "rejected"}
_ORPHAN_GRACE = 5.0  # s a finished mission's goal result may lag its state message
MAX_REPLY_BYTES = 256 * 1024


@dataclass
class _Followed:
    command: Command
    accepted: bool = False
    last_progress: float = 0.0
    finished_state: dict[str, Any] | None = None
    finished_at: float = 0.0
    answered: bool = False


class AsyncWaits:
    """Waits for hub_link's command handlers that never block the executor: awaited futures with a deadline."""

    _node: Node
    _timeout: float
    _reply: Reply

    async def _guarded(self, handler, command: Command) -> None:
        try:
            await handler(command)
        except Exception as error:  # noqa: BLE001 - a command must not take the node down; say what broke
            self._node.get_logger().error(f"command {command.id} ({command.verb}) failed: {error!r}")
            self._reply(command, "error", message=f"hub_link could not run the command: {error!r:.300}")

    async def _wait_until(self, ready: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + self._timeout
        while not ready():
            if time.monotonic() > deadline:
                return False
            await self._sleep(0.1)
        return True

    async def _sleep(self, seconds: float) -> None:
        done = Future()
        self._wait_for_future_or_timer(done, seconds)
        await done

    async def _wait_for(self, future: Future, seconds: float) -> bool:
        done = Future()
        future.add_done_callback(lambda _: done.done() or done.set_result(True))
        self._wait_for_future_or_timer(done, seconds)
        return bool(await done)

    def _wait_for_future_or_timer(self, done: Future, seconds: float) -> None:
        timer = None

        def expire():
            timer.cancel()
            if not done.done():
                done.set_result(False)

        timer = self._node.create_timer(seconds, expire)
        done.add_done_callback(lambda _: self._node.destroy_timer(timer))


class MissionCommands(AsyncWaits):
    def __init__(self, node: Node, reply: Reply, ros_now: Callable[[], float], *, timeout: float,
                 progress_period: float):
        self._node = node
        self._reply = reply
        self._ros_now = ros_now
        self._timeout = timeout
        self._progress_period = progress_period
        self._action = ActionClient(node, ExecuteMission, "execute_mission", **ACTION_QOS_ARGUMENTS)
        self._services = {"cancel_mission": node.create_client(CancelTask, "cancel_task"),
                          "add_tasks": node.create_client(AddTasks, "add_tasks"),
                          "get_state": node.create_client(GetMissionState, "get_mission_state")}
        self._followed: dict[str, _Followed] = {}  # mission id -> the submit command
        node.create_timer(1.0, self._answer_orphans)

    @property
    def following(self) -> int:
        return len(self._followed)

    def run(self, command: Command) -> None:
        """Start handling `command` (call on the executor thread)."""
        handler = self._submit if command.verb == "submit_mission" else self._call_service
        self._node.executor.create_task(self._guarded, handler, command)

    # -- submit_mission -----------------------------------------------------------------------

    async def _submit(self, command: Command) -> None:
        try:
            spec = mission_from_dict(command.body["mission"])  # deadline_in stays relative: the engine's clock
        except MissionFormatError as error:
            self._reply(command, "rejected", reason="bad_schema", message=f"body.mission: {error}")
            return
        if not spec.id:  # named after the request, so the hub knows it before the engine answers
            spec = replace(spec, id="hub-" + re.sub(r"[^A-Za-z0-9_-]", "-", command.id)[:60])
        if not await self._wait_until(self._action.server_is_ready):
            self._reply(command, "rejected", reason="engine_unavailable", mission_id=spec.id,
                        message=f"the mission engine's execute_mission action is not available "
                                f"(waited {self._timeout:g} s)")
            return
        self._followed[spec.id] = _Followed(command)
        goal = ExecuteMission.Goal(mission=mission_to_msg(spec))
        handle = await self._action.send_goal_async(
            goal, feedback_callback=lambda message: self._on_feedback(spec.id, message.feedback))
        if not handle.accepted:
            self._followed.pop(spec.id, None)
            self._reply(command, "rejected", reason="mission_rejected", mission_id=spec.id,
                        message="the mission engine refused the goal")
            return
        response = await handle.get_result_async()
        result = response.result
        self._finish(spec.id, result.state, result.message, {"result": codec.to_dict(result)})

    def _on_feedback(self, mission_id: str, feedback) -> None:
        followed = self._followed.get(mission_id)
        if followed is None or followed.answered:
            return
        now = time.monotonic()
        if not followed.accepted:
            followed.accepted = True
            self._reply(followed.command, "accepted", mission_id=mission_id, state=mission_state_name(feedback.state))
        elif now - followed.last_progress < self._progress_period:
            return
        followed.last_progress = now
        self._reply(followed.command, "progress", mission_id=mission_id, state=mission_state_name(feedback.state),
                    feedback=codec.to_dict(feedback))

    def _finish(self, mission_id: str, state: int, message: str, fields: dict[str, Any]) -> None:
        followed = self._followed.pop(mission_id, None)
        if followed is None or followed.answered:
            return
        followed.answered = True
        status = _FINAL.get(state, "failed")
        extra = {"reason": "mission_rejected"} if status == "rejected" else {}
        self._reply(followed.command, status, mission_id=mission_id, state=mission_state_name(state),
                    message=message, **extra, **fields)

    def on_mission_state(self, state: dict[str, Any]) -> None:
        """Take a mission_states message (as a codec dict): note when a followed mission finished."""
        followed = self._followed.get(state.get("mission_id", ""))
        if followed is not None and state.get("state", 0) >= TERMINAL and followed.finished_state is None:
            followed.finished_state = state
            followed.finished_at = time.monotonic()

    def _answer_orphans(self) -> None:
        now = time.monotonic()
        for mission_id, followed in list(self._followed.items()):
            if followed.finished_state is not None and now - followed.finished_at > _ORPHAN_GRACE:
                state = followed.finished_state
                self._finish(mission_id, state["state"], state.get("message", ""),
                             {"result": {"mission_id": mission_id, "from": "mission_states",
                                         "tasks": state.get("tasks", [])}})

    # -- Services -------------------------------------------------------------------------------

    async def _call_service(self, command: Command) -> None:
        client = self._services[command.verb]
        body = command.body
        try:
            if command.verb == "add_tasks":
                tasks = [task_from_dict(task, f"tasks[{i}]") for i, task in enumerate(body["tasks"])]
                request = AddTasks.Request(mission_id=body["mission_id"], tasks=[task_to_msg(t) for t in tasks])
            else:
                request = codec.from_dict(client.srv_type.Request, body)
        except (MissionFormatError, codec.CodecError) as error:
            self._reply(command, "rejected", reason="bad_schema", message=f"body.{error}")
            return
        if not await self._wait_until(client.service_is_ready):
            self._reply(command, "rejected", reason="engine_unavailable",
                        message=f"the mission engine's {client.srv_name} service is not available "
                                f"(waited {self._timeout:g} s)")
            return
        future = client.call_async(request)
        if not await self._wait_for(future, self._timeout):
            client.remove_pending_request(future)
            self._reply(command, "rejected", reason="engine_unavailable",
                        message=f"{client.srv_name} did not answer within {self._timeout:g} s")
            return
        response = future.result()
        if command.verb == "get_state":
            self._reply(command, "done", **_bounded_state(codec.to_dict(response)))
        elif response.accepted:
            self._reply(command, "done", message=response.message)
        else:
            self._reply(command, "rejected", reason="mission_rejected", message=response.message)


def _bounded_state(response: dict[str, Any]) -> dict[str, Any]:
    """Fit a get_state answer in one reply: without task lists, then with fewer missions, if need be."""
    if len(orjson.dumps(response)) <= MAX_REPLY_BYTES:
        return response
    missions = [{k: v for k, v in m.items() if k != "tasks"} for m in response.get("missions", [])]
    truncated = {**response, "missions": missions, "truncated": "tasks left out to fit the reply"}
    while missions and len(orjson.dumps(truncated)) > MAX_REPLY_BYTES:
        missions = missions[: len(missions) // 2]
        truncated["missions"] = missions
        truncated["truncated"] = f"tasks left out, and only the newest {len(missions)} missions, to fit the reply"
    return truncated
