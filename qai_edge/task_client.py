"""RunTask goals from the mission engine to the engines: send, follow, cancel and reattach in one object.

The client side of qai_edge.task_server (as py_trees_ros keeps its action clients beside the tree).

Rules it keeps:
- a goal carries the id the mission engine journaled before sending it, so after a restart the mission
  engine can reattach to the same goal;
- a goal the engine never answers fails after `goal_timeout` (the task can retry; a retry that reaches the
  engine replaces the old goal if it did arrive);
- a result request (or its answer) can be lost while the engine's result service is still matching
  ours: results are asked for again every `result_period` (`reattach_period` for reattached goals,
  whose answer should be immediate);
- a cancel asked for before the engine accepted the goal is sent once it does;
- our task servers accept every goal (qai_edge.workers), so a rejection means the engine has a goal with this
  id already (rclpy refuses a second copy of a goal it tracks: a request delivered twice, after a restart
  under load, can be answered "rejected" before the first copy's "accepted"): the goal is followed as a
  reattached one, and a goal the engine does not know after all ends "unknown", which the scheduler retries.
Everything runs on the node's executor; answers come back through the callbacks with the caller's token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle
from rclpy.node import Node
from unique_identifier_msgs.msg import UUID

from qai_edge.convert import decoded_key_values
from qai_edge.qos import ACTION_QOS_ARGUMENTS
from qai_interfaces.action import RunTask


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as its engine (or the lack of one) says."""

    status: str  # succeeded, canceled, aborted, rejected, unanswered, unknown (the engine no longer knows it)
    result: dict | None = None
    message: str = ""
    retryable: bool = True
    reattached: bool = False
    not_ready: bool = False  # aborted because its kind is not ready on that engine: send it again once it is


class _Goal:
    __slots__ = ("engine", "token", "handle", "sent_at", "asked_at", "reattached", "cancel_when_accepted")

    def __init__(self, engine: str, token: Any, reattached: bool):
        self.engine, self.token, self.reattached = engine, token, reattached
        self.handle: ClientGoalHandle | None = None
        self.sent_at = self.asked_at = time.monotonic()
        self.cancel_when_accepted = False


class TaskClient:
    def __init__(self, node: Node, callback_group, on_accepted: Callable[[Any], None],
                 on_feedback: Callable[[Any, float, str], None], on_outcome: Callable[[Any, Outcome], None],
                 goal_timeout: float = 10.0, result_period: float = 10.0, reattach_period: float = 2.0):
        self._node, self._group = node, callback_group
        self._on_accepted, self._on_feedback, self._on_outcome = on_accepted, on_feedback, on_outcome
        self.goal_timeout, self.result_period, self.reattach_period = goal_timeout, result_period, reattach_period
        self._clients: dict[str, ActionClient] = {}
        self._actions: dict[str, str] = {}
        self._goals: dict[str, _Goal] = {}  # goal id (hex) -> goal

    def connect(self, engine: str, action_name: str) -> None:
        """Use `action_name` for `engine`'s goals (replacing a client for an older name)."""
        if self._actions.get(engine) == action_name:
            return
        old = self._clients.pop(engine, None)
        if old is not None:
            old.destroy()
        self._actions[engine] = action_name
        if action_name:
            self._clients[engine] = ActionClient(self._node, RunTask, action_name, callback_group=self._group,
                                                 **ACTION_QOS_ARGUMENTS)

    def reachable(self, engine: str) -> bool:
        client = self._clients.get(engine)
        return client is not None and client.server_is_ready()

    def in_flight(self) -> int:
        return len(self._goals)

    def send(self, engine: str, goal_id: str, goal: RunTask.Goal, token: Any) -> None:
        client = self._clients.get(engine)
        if client is None:
            self._on_outcome(token, Outcome("rejected", message=f"engine {engine} has no task action",
                                            retryable=True))
            return
        self._goals[goal_id] = entry = _Goal(engine, token, reattached=False)
        future = client.send_goal_async(goal, feedback_callback=partial(self._feedback, goal_id),
                                        goal_uuid=_uuid(goal_id))
        future.add_done_callback(partial(self._answered, goal_id, entry))

    def reattach(self, engine: str, goal_id: str, token: Any, cancel: bool) -> None:
        """Follow a goal sent before a restart (and cancel it, when that was in flight)."""
        client = self._clients.get(engine)
        if client is None:  # the scheduler reattaches only to an engine that is up, which has a client
            self._node.get_logger().error(f"cannot reattach to goal {goal_id}: no action client for {engine}")
            self._on_outcome(token, Outcome("unknown", message=f"no action client for {engine}", reattached=True))
            return
        self._goals[goal_id] = entry = _Goal(engine, token, reattached=True)
        entry.handle = ClientGoalHandle(client, _uuid(goal_id), RunTask.Impl.SendGoalService.Response(accepted=True))
        self._ask_result(goal_id, entry)
        if cancel:
            entry.handle.cancel_goal_async()

    def cancel(self, goal_id: str) -> None:
        entry = self._goals.get(goal_id)
        if entry is None:
            return  # ended already, or its engine was lost (which settles it)
        if entry.handle is not None:
            entry.handle.cancel_goal_async()
        else:
            entry.cancel_when_accepted = True

    def engine_down(self, engine: str) -> None:
        """Forget the goals on an engine that is gone (the scheduler has settled its tasks)."""
        for goal_id in [g for g, entry in self._goals.items() if entry.engine == engine]:
            del self._goals[goal_id]

    def poll(self, up: Callable[[str], bool]) -> None:
        """Expire goals never answered; ask again for results that did not come. Call it periodically."""
        now = time.monotonic()
        for goal_id, entry in list(self._goals.items()):
            if entry.handle is None:
                if now - entry.sent_at > self.goal_timeout:
                    del self._goals[goal_id]
                    self._on_outcome(entry.token, Outcome(
                        "unanswered", message=f"{entry.engine} did not answer the goal within {self.goal_timeout:g} s"))
            elif up(entry.engine):
                period = self.reattach_period if entry.reattached else self.result_period
                if now - entry.asked_at > period:
                    if entry.reattached:  # rare (after a restart), and its answer should be immediate: say so
                        self._node.get_logger().info(f"asking {entry.engine} again for the result of reattached "
                                                     f"goal {goal_id}")
                    self._ask_result(goal_id, entry)

    def destroy(self) -> None:
        for client in self._clients.values():
            client.destroy()
        self._clients.clear()

    # -- Answers ---------------------------------------------------------------------------------

    def _answered(self, goal_id: str, entry: _Goal, future) -> None:
        if self._goals.get(goal_id) is not entry:
            return  # given up on already
        handle = future.result()
        if not handle.accepted:  # it has this goal already (see the module docstring): follow that one
            client = self._clients.get(entry.engine)
            if client is None:
                del self._goals[goal_id]
                self._on_outcome(entry.token, Outcome("rejected", message=f"{entry.engine} rejected the goal"))
                return
            entry.reattached = True
            handle = ClientGoalHandle(client, _uuid(goal_id), RunTask.Impl.SendGoalService.Response(accepted=True))
        entry.handle = handle
        self._on_accepted(entry.token)
        self._ask_result(goal_id, entry)
        if entry.cancel_when_accepted:
            handle.cancel_goal_async()

    def _feedback(self, goal_id: str, message) -> None:
        entry = self._goals.get(goal_id)
        if entry is not None:
            self._on_feedback(entry.token, message.feedback.progress, message.feedback.status)

    def _ask_result(self, goal_id: str, entry: _Goal) -> None:
        entry.asked_at = time.monotonic()
        entry.handle.get_result_async().add_done_callback(partial(self._result, goal_id, entry))

    def _result(self, goal_id: str, entry: _Goal, future) -> None:
        if self._goals.get(goal_id) is not entry:
            return  # answered already (results are asked for again until one comes)
        del self._goals[goal_id]
        response = future.result()
        status, result = response.status, response.result
        if entry.reattached:
            self._node.get_logger().info(f"reattached goal {goal_id} on {entry.engine}: status {status}")
        if status == GoalStatus.STATUS_SUCCEEDED:
            try:
                outcome = Outcome("succeeded", result=decoded_key_values(result.result))
            except ValueError as error:
                outcome = Outcome("aborted", message=f"result is not valid JSON: {error}", retryable=False)
        elif status == GoalStatus.STATUS_CANCELED:
            outcome = Outcome("canceled")
        elif status == GoalStatus.STATUS_ABORTED:
            outcome = Outcome("aborted", message=result.message or "aborted by its engine", retryable=result.retryable,
                              not_ready=result.not_ready)
        else:
            outcome = Outcome("unknown", message=f"{entry.engine} lost the goal (status {status})",
                              reattached=entry.reattached)
        self._on_outcome(entry.token, outcome)


def _uuid(goal_id: str) -> UUID:
    return UUID(uuid=list(uuid.UUID(hex=goal_id).bytes))
