"""The RunTask action server every task-serving engine uses.

Goals in, handler calls in worker threads (qai_edge.workers.WorkerActionServer), feedback, cancellation
and results out.

Rules it keeps for the mission engine:
- every goal is accepted; a goal that cannot run (unknown kind, parameters that fail the kind's schema,
  JSON that does not parse) is aborted at once with `retryable: false` and a message naming the field;
  one whose kind is not ready (ServedKind.readiness: no fresh odometry yet, models loading) is aborted
  with `not_ready: true`, and the mission engine sends it again once the kind is announced ready;
- one goal per task: a new goal for a (mission, task) still running here replaces it, and the old one
  has stopped before the new one starts (a mission engine that restarted re-dispatches what was running);
- a cancel completes only after the handler returned, so "canceled" means the work has stopped.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Mapping, Sequence

from rclpy.node import Node

from qai_edge.convert import key_values, kind_to_msg, optional_seconds_from_duration
from qai_edge.tasks import ServedKind, TaskKindSpec, TaskRequest, decode_values, has_non_finite
from qai_edge.text import cut, shorten
from qai_edge.workers import WorkerActionServer
from qai_interfaces.action import RunTask

FEEDBACK_MIN_INTERVAL = 0.05  # s: at most ~20 feedback messages a second per goal


def parameter_errors(spec: TaskKindSpec, parameters: Mapping[str, Any]) -> list[str]:
    """Return schema violations as 'parameters.<name>: why' (the same words as mission validation)."""
    return spec.parameter_errors(parameters)


class TaskServer(WorkerActionServer):
    """Serves RunTask at <node>/run_task for the given kinds."""

    def __init__(self, node: Node, kinds: Sequence[ServedKind], max_workers: int = 8,
                 result_retention: float = 60.0, pool: ThreadPoolExecutor | None = None):
        self._own_pool = pool is None
        super().__init__(node, RunTask, "~/run_task",
                         pool or ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="task"),
                         feedback_interval=FEEDBACK_MIN_INTERVAL, result_retention=result_retention)
        self.kinds = {served.spec.name: served for served in kinds}
        self.action_name = f"{node.get_fully_qualified_name()}/run_task"
        # Set by a not-ready refusal: the caller now holds the kind as not ready until an announcement says
        # otherwise, which a blip shorter than a heartbeat would never cause (EngineNode announces on it).
        self.refused_not_ready = False

    def readiness(self) -> dict[str, str]:
        """Return each kind's readiness now: '' when ready, else why not."""
        return {name: served.not_ready() for name, served in self.kinds.items()}

    def kind_messages(self, readiness: Mapping[str, str] | None = None):
        readiness = self.readiness() if readiness is None else readiness
        return [kind_to_msg(replace(served.spec, ready=not readiness.get(name), not_ready=readiness.get(name, "")))
                for name, served in self.kinds.items()]

    def destroy(self) -> None:
        super().destroy()
        if self._own_pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def prepare(self, goal_handle):
        goal = goal_handle.request
        task = goal.task
        served = self.kinds.get(task.kind)
        if served is None:
            return self.abort(goal_handle, f"kind {shorten(task.kind)} is not served by "
                              f"{self._node.get_fully_qualified_name()} (serves: "
                              f"{', '.join(sorted(self.kinds)) or 'nothing'})", retryable=False)
        try:
            parameters = decode_values({pair.key: pair.value for pair in task.parameters})
        except ValueError as error:
            return self.abort(goal_handle, f"task {shorten(task.id)}: parameters.{cut(str(error))}", retryable=False)
        except RecursionError:  # json's decoder recurses once per nesting level
            return self.abort(goal_handle, f"task {shorten(task.id)}: parameters: a value is nested too deeply to "
                              f"decode", retryable=False)
        errors = parameter_errors(served.spec, parameters)
        if errors:
            return self.abort(goal_handle, f"task {shorten(task.id)}: {'; '.join(errors[:5])}", retryable=False)
        why = served.not_ready()
        if why:  # announced ready a moment ago, or sent before the announcement that said otherwise arrived
            self.counts["not_ready"] = self.counts.get("not_ready", 0) + 1
            self.refused_not_ready = True  # the engine announces again, even if ready by its next heartbeat
            self._node.get_logger().info(f"task {shorten(task.id)} ({task.kind}) refused for now: not ready: {why}")
            goal_handle.abort()
            return RunTask.Result(retryable=True, not_ready=True, message=f"not ready: {why}")
        request = TaskRequest(mission_id=goal.mission_id, task_id=task.id, kind=task.kind, attempt=goal.attempt,
                              parameters=parameters, timeout=optional_seconds_from_duration(task.timeout))

        def work(context):
            result = dict(served.handler(request, context) or {})
            if has_non_finite(result):
                from qai_edge.tasks import TaskFailed

                raise TaskFailed(f"result of {request.kind} holds NaN or infinity: {shorten(result, 200)}",
                                 retryable=False)
            return result

        return (goal.mission_id, task.id), work

    def feedback_message(self, progress, status, values):
        return RunTask.Feedback(progress=float(progress) if progress is not None else math.nan, status=status,
                                values=key_values(values))

    def succeeded(self, goal_handle, value):
        return RunTask.Result(result=key_values(value), retryable=True, message="")

    def failed(self, goal_handle, message, retryable):
        return RunTask.Result(retryable=retryable, message=message)

    def canceled(self, goal_handle):
        return RunTask.Result(retryable=True, message="canceled")

    def log_failure(self, goal_handle, message):
        task = goal_handle.request.task
        self._node.get_logger().warning(f"task {shorten(task.id)} ({shorten(task.kind)}) failed: {message}")
