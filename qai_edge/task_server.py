"""The RunTask action server every task-serving engine uses: goals in, handler calls in worker threads,
feedback, cancellation and results out.

Rules it keeps for the mission engine:
- every goal is accepted; a goal that cannot run (unknown kind, parameters that fail the kind's schema,
  JSON that does not parse) is aborted at once with `retryable: false` and a message naming the field;
- one goal per task: a new goal for a (mission, task) still running here replaces it, and the old one
  has stopped before the new one starts (a mission engine that restarted re-dispatches what was running);
- a cancel completes only after the handler returned, so "canceled" means the work has stopped.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future

from qai_edge.qos import ACTION_QOS_ARGUMENTS
from qai_edge.convert import key_values, kind_to_msg, optional_seconds_from_duration
from qai_edge.workers import InOrder, call_soon, in_worker
from qai_edge.tasks import (ServedKind, TaskCanceled, TaskContext, TaskFailed, TaskRequest, decode_values,
                            has_non_finite)
from qai_interfaces.action import RunTask

FEEDBACK_MIN_INTERVAL = 0.05  # s: at most ~20 feedback messages a second per goal


class _RunningGoal:
    def __init__(self, goal_handle, context: TaskContext):
        self.goal_handle = goal_handle
        self.context = context
        self.finished = Future()


class TaskServer:
    """Serves RunTask at <node>/run_task for the given kinds."""

    def __init__(self, node: Node, kinds: Sequence[ServedKind], max_workers: int = 8,
                 result_retention: float = 60.0):
        self._node = node
        self.kinds = {served.spec.name: served for served in kinds}
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="task")
        self._running: dict[tuple[str, str], _RunningGoal] = {}
        self._by_goal_id: dict[bytes, _RunningGoal] = {}
        self._lock = threading.Lock()
        self.counts = {"succeeded": 0, "failed": 0, "canceled": 0}
        self._feedback_in_order = InOrder(node)
        self.action_name = f"{node.get_fully_qualified_name()}/run_task"
        self._server = ActionServer(node, RunTask, "~/run_task", execute_callback=self._execute,
                                    goal_callback=lambda goal: GoalResponse.ACCEPT,
                                    cancel_callback=self._on_cancel_request,
                                    callback_group=ReentrantCallbackGroup(),
                                    # rclpy republishes every kept goal's status on each change: keep few.
                                    result_timeout=max(1, round(result_retention)), **ACTION_QOS_ARGUMENTS)

    def _ros_now(self) -> float:
        return self._node.get_clock().now().nanoseconds * 1e-9

    @property
    def running(self) -> int:
        return len(self._running)

    def kind_messages(self):
        return [kind_to_msg(served.spec) for served in self.kinds.values()]

    def destroy(self) -> None:
        with self._lock:
            for goal in self._running.values():
                goal.context.request_cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._server.destroy()

    def _on_cancel_request(self, goal_handle) -> CancelResponse:
        with self._lock:
            goal = self._by_goal_id.get(bytes(goal_handle.goal_id.uuid))
        if goal is not None:
            goal.context.request_cancel()
        return CancelResponse.ACCEPT

    async def _execute(self, goal_handle):
        goal = goal_handle.request
        task = goal.task
        served = self.kinds.get(task.kind)
        if served is None:
            return self._abort(goal_handle, f"kind {task.kind!r} is not served by {self._node.get_fully_qualified_name()}"
                               f" (serves: {', '.join(sorted(self.kinds)) or 'nothing'})", retryable=False)
        try:
            parameters = decode_values({pair.key: pair.value for pair in task.parameters})
        except ValueError as error:
            return self._abort(goal_handle, f"task {task.id!r}: parameters.{error}", retryable=False)
        errors = served.spec.parameter_errors(parameters)
        if errors:
            return self._abort(goal_handle, f"task {task.id!r}: {'; '.join(errors)}", retryable=False)

        key = (goal.mission_id, task.id)
        with self._lock:
            previous = self._running.get(key)
        if previous is not None:
            previous.context.request_cancel()
            await previous.finished

        request = TaskRequest(mission_id=goal.mission_id, task_id=task.id, kind=task.kind, attempt=goal.attempt,
                              parameters=parameters, timeout=optional_seconds_from_duration(task.timeout))
        running = _RunningGoal(goal_handle, TaskContext(self._feedback_publisher(goal_handle), clock=self._ros_now))
        with self._lock:
            self._running[key] = running
            self._by_goal_id[bytes(goal_handle.goal_id.uuid)] = running
        try:
            _, (outcome, value) = await in_worker(self._node, self._pool, self._run_handler, served, request,
                                                  running.context)
        finally:
            with self._lock:
                if self._running.get(key) is running:
                    del self._running[key]
                self._by_goal_id.pop(bytes(goal_handle.goal_id.uuid), None)
            call_soon(self._node, running.finished.set_result, None)  # wakes a goal waiting to replace this one

        if outcome == "succeeded":
            self.counts["succeeded"] += 1
            goal_handle.succeed()
            return RunTask.Result(result=key_values(value), retryable=True, message="")
        if outcome == "canceled":
            if goal_handle.is_cancel_requested:
                self.counts["canceled"] += 1
                goal_handle.canceled()
                return RunTask.Result(retryable=True, message="canceled")
            return self._abort(goal_handle, "replaced by a newer goal for the same task", retryable=False)
        return self._abort(goal_handle, value.message, value.retryable)

    def _abort(self, goal_handle, message: str, retryable: bool):
        self.counts["failed"] += 1
        self._node.get_logger().warning(f"task {goal_handle.request.task.id!r} "
                                        f"({goal_handle.request.task.kind}) failed: {message}")
        goal_handle.abort()
        return RunTask.Result(retryable=retryable, message=message)

    def _run_handler(self, served: ServedKind, request: TaskRequest, context: TaskContext) -> tuple:
        try:
            result = served.handler(request, context)
            result = dict(result or {})
            if has_non_finite(result):
                raise TaskFailed(f"result of {request.kind} holds NaN or infinity: {result}", retryable=False)
            outcome = ("succeeded", result)
        except TaskCanceled:
            outcome = ("canceled", None)
        except TaskFailed as failure:
            outcome = ("canceled", None) if context.canceled and failure.retryable else ("failed", failure)
        except Exception as error:  # a bug in a handler fails the task, not the engine
            self._node.get_logger().error(f"{request.kind} handler raised:\n{traceback.format_exc()}")
            outcome = ("failed", TaskFailed(f"{type(error).__name__}: {error}", retryable=True))
        return outcome

    def _feedback_publisher(self, goal_handle):
        last = [0.0]

        def publish(progress: float, status: str, values: Mapping[str, Any]) -> None:
            now = time.monotonic()
            if now - last[0] < FEEDBACK_MIN_INTERVAL and not (progress == 1.0):
                return
            last[0] = now
            feedback = RunTask.Feedback(progress=float(progress) if progress is not None else math.nan,
                                        status=status, values=key_values(values))
            self._feedback_in_order.call(self._publish_if_active, goal_handle, feedback)

        return publish

    @staticmethod
    def _publish_if_active(goal_handle, feedback) -> None:
        if goal_handle.is_active:
            goal_handle.publish_feedback(feedback)

