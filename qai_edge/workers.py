"""Blocking work (a task handler, a QAOA run) in worker threads, awaited without holding the executor.

rclpy coroutines (action execute callbacks) await it; WorkerActionServer is an action served that way
(the RunTask server and the quantum bridge's Optimize are two of them).
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from rclpy.node import Node
from rclpy.task import Future


def call_soon(node: Node, fn: Callable, *args) -> bool:
    """Run fn on the node's executor thread (rclpy futures and goal handles are not for worker threads).

    Creating the task also wakes the executor. False (and nothing runs) while the node has no executor yet.
    """
    executor = node.executor
    if executor is None:
        return False
    executor.create_task(fn, *args)
    return True


def in_worker(node: Node, pool: ThreadPoolExecutor, fn: Callable, *args) -> Future:
    """Return a Future (to await) of fn(*args) run in `pool`: fn's result, or the exception it raised."""
    done = Future()

    def work():
        try:
            outcome = (True, fn(*args))
        except BaseException as error:  # handed to the awaiting coroutine, which decides
            outcome = (False, error)
        call_soon(node, done.set_result, outcome)

    pool.submit(work)
    return done


class InOrder:
    """Calls made from worker threads, run on the executor thread in the order they were made.

    rclpy's executor runs several pending tasks newest first, which would reorder, say, feedback messages.
    """

    def __init__(self, node: Node):
        self._node = node
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def call(self, fn: Callable, *args) -> None:
        """Queue fn(*args); before the node spins (no executor yet) it runs with the first call after."""
        with self._lock:
            self._queue.append((fn, args))
            if self._scheduled:
                return
            self._scheduled = True
        if not call_soon(self._node, self._drain):
            with self._lock:
                self._scheduled = False

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._scheduled = False
                    return
                fn, args = self._queue.popleft()
            try:
                fn(*args)
            except Exception:  # one failing call must not stop every later one
                self._node.get_logger().error(f"{getattr(fn, '__qualname__', fn)} raised:\n{traceback.format_exc()}")


class WorkerActionServer:
    """An action whose goals run as blocking handlers in a worker pool (RunTask, the bridge's Optimize).

    Every goal is accepted; `prepare(goal_handle)` (on the executor) validates it and returns either a
    result message to abort with at once, or (key, work) where work(context) runs in the pool with a
    qai_edge.tasks.TaskContext: feedback through context.feedback (published on the executor thread in
    the order it was made, at most one per `feedback_interval` seconds except a final progress of 1.0),
    cancellation through context.canceled / check_canceled. A cancel completes only after the handler
    returned, so "canceled" means the work has stopped; a new goal with the key of one still running
    replaces it once that one has stopped (key None: never). The outcome becomes a result through the
    subclass's succeeded / failed / canceled / replaced.
    """

    def __init__(self, node: Node, action_type, name: str, pool: ThreadPoolExecutor,
                 feedback_interval: float = 0.05, result_retention: float = 60.0):
        from rclpy.action import ActionServer, GoalResponse
        from rclpy.callback_groups import ReentrantCallbackGroup

        from qai_edge.qos import ACTION_QOS_ARGUMENTS

        self._node = node
        self._pool = pool
        self._feedback_interval = feedback_interval
        self._running: dict = {}
        self._by_goal_id: dict[bytes, object] = {}
        self._lock = threading.Lock()
        self._feedback_in_order = InOrder(node)
        self.counts = {"succeeded": 0, "failed": 0, "canceled": 0}
        self._server = ActionServer(node, action_type, name, execute_callback=self._execute,
                                    goal_callback=lambda goal: GoalResponse.ACCEPT,
                                    cancel_callback=self._on_cancel_request,
                                    callback_group=ReentrantCallbackGroup(),
                                    # rclpy republishes every kept goal's status on each change: keep few.
                                    result_timeout=max(1, round(result_retention)), **ACTION_QOS_ARGUMENTS)

    # What a subclass says.

    def prepare(self, goal_handle):
        raise NotImplementedError

    def feedback_message(self, progress: float, status: str, values: dict):
        raise NotImplementedError

    def succeeded(self, goal_handle, value):
        raise NotImplementedError

    def failed(self, goal_handle, message: str, retryable: bool):
        raise NotImplementedError

    def canceled(self, goal_handle):
        raise NotImplementedError

    def replaced(self, goal_handle):
        return self.failed(goal_handle, "replaced by a newer goal for the same task", False)

    def log_failure(self, goal_handle, message: str) -> None:
        self._node.get_logger().warning(message)

    # The machinery.

    @property
    def running(self) -> int:
        return len(self._by_goal_id)

    def _ros_now(self) -> float:
        return self._node.get_clock().now().nanoseconds * 1e-9

    def destroy(self) -> None:
        with self._lock:
            for goal in self._by_goal_id.values():
                goal.context.request_cancel()
        self._server.destroy()

    def _on_cancel_request(self, goal_handle):
        from rclpy.action import CancelResponse

        with self._lock:
            goal = self._by_goal_id.get(bytes(goal_handle.goal_id.uuid))
        if goal is not None:
            goal.context.request_cancel()
        return CancelResponse.ACCEPT

    def abort(self, goal_handle, message: str, retryable: bool):
        self.counts["failed"] += 1
        self.log_failure(goal_handle, message)
        goal_handle.abort()
        return self.failed(goal_handle, message, retryable)

    async def _execute(self, goal_handle):
        from qai_edge.tasks import TaskContext

        try:
            prepared = self.prepare(goal_handle)
        except Exception as error:  # a goal that cannot even be read is refused, with the reason
            return self.abort(goal_handle, f"{type(error).__name__}: {str(error)[:300]}", retryable=False)
        if not isinstance(prepared, tuple):
            return prepared  # aborted by prepare
        key, work = prepared
        if key is not None:
            with self._lock:
                previous = self._running.get(key)
            if previous is not None:
                previous.context.request_cancel()
                await previous.finished
        running = _RunningGoal(TaskContext(self._feedback_publisher(goal_handle), clock=self._ros_now))
        goal_id = bytes(goal_handle.goal_id.uuid)
        with self._lock:
            if key is not None:
                self._running[key] = running
            self._by_goal_id[goal_id] = running
        try:
            _, (outcome, value) = await in_worker(self._node, self._pool, self._run, work, running.context)
        finally:
            with self._lock:
                if key is not None and self._running.get(key) is running:
                    del self._running[key]
                self._by_goal_id.pop(goal_id, None)
            call_soon(self._node, running.finished.set_result, None)  # wakes a goal waiting to replace this one

        if outcome == "succeeded":
            self.counts["succeeded"] += 1
            goal_handle.succeed()
            return self.succeeded(goal_handle, value)
        if outcome == "canceled":
            if goal_handle.is_cancel_requested:
                self.counts["canceled"] += 1
                goal_handle.canceled()
                return self.canceled(goal_handle)
            self.counts["failed"] += 1
            goal_handle.abort()
            return self.replaced(goal_handle)
        return self.abort(goal_handle, value.message, value.retryable)

    def _run(self, work: Callable, context) -> tuple:
        import traceback

        from qai_edge.tasks import TaskCanceled, TaskFailed

        try:
            outcome = ("succeeded", work(context))
        except TaskCanceled:
            outcome = ("canceled", None)
        except TaskFailed as failure:
            outcome = ("canceled", None) if context.canceled and failure.retryable else ("failed", failure)
        except Exception as error:  # a bug in a handler fails the goal, not the engine
            self._node.get_logger().error(f"handler raised:\n{traceback.format_exc()}")
            outcome = ("failed", TaskFailed(f"{type(error).__name__}: {error}", retryable=True))
        return outcome

    def _feedback_publisher(self, goal_handle):
        import math
        import time

        last = [-math.inf]

        def publish(progress: float, status: str, values) -> None:
            now = time.monotonic()
            if now - last[0] < self._feedback_interval and not (progress == 1.0):
                return
            last[0] = now
            self._feedback_in_order.call(self._publish_if_active, goal_handle,
                                         self.feedback_message(progress, status, values))

        return publish

    @staticmethod
    def _publish_if_active(goal_handle, feedback) -> None:
        if goal_handle.is_active:
            goal_handle.publish_feedback(feedback)


class _RunningGoal:
    def __init__(self, context):
        self.context = context
        self.finished = Future()
