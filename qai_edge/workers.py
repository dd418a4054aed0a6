"""Blocking work (a task handler, a QAOA run) in worker threads, awaited by rclpy coroutines (action
execute callbacks) without holding the executor."""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from rclpy.node import Node
from rclpy.task import Future


def call_soon(node: Node, fn: Callable, *args) -> None:
    """Run fn on the node's executor thread (rclpy futures and goal handles are not for worker threads);
    creating the task also wakes the executor."""
    executor = node.executor
    if executor is not None:
        executor.create_task(fn, *args)


def in_worker(node: Node, pool: ThreadPoolExecutor, fn: Callable, *args) -> Future:
    """A Future (to await) of fn(*args) run in `pool`; it holds fn's result, or the exception it raised."""
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
    """Calls made from worker threads, run on the executor thread in the order they were made (rclpy's
    executor runs several pending tasks newest first, which would reorder, say, feedback messages)."""

    def __init__(self, node: Node):
        self._node = node
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def call(self, fn: Callable, *args) -> None:
        with self._lock:
            self._queue.append((fn, args))
            if self._scheduled:
                return
            self._scheduled = True
        call_soon(self._node, self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._scheduled = False
                    return
                fn, args = self._queue.popleft()
            fn(*args)
