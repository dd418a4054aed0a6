"""Blocking work (a task handler, a QAOA run) in worker threads, awaited by rclpy coroutines (action
execute callbacks) without holding the executor."""

from __future__ import annotations

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
