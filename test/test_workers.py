"""Work handed from worker threads to the executor thread."""

import threading

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from harness import wait_for
from qai_edge.workers import InOrder, call_soon


def run_from_a_thread(schedule):
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("workers_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    seen = []
    try:
        worker = threading.Thread(target=lambda: [schedule(node, seen.append, i) for i in range(50)])
        worker.start()
        worker.join()  # all 50 are pending before the executor runs any
        wait_for(lambda: len(seen) == 50, 10.0, "50 calls", step=lambda: executor.spin_once(timeout_sec=0.01))
        return seen
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_calls_from_a_worker_thread_run_in_the_order_they_were_made():
    queues = {}

    def in_order(node, fn, i):
        queues.setdefault(id(node), InOrder(node)).call(fn, i)

    assert run_from_a_thread(in_order) == list(range(50))


def test_plain_executor_tasks_would_not_keep_that_order():
    """Why InOrder exists: rclpy runs several pending tasks newest first."""
    assert run_from_a_thread(lambda node, fn, i: call_soon(node, fn, i)) != list(range(50))


def test_a_call_made_before_the_node_spins_runs_once_it_does_and_a_failing_call_stops_nothing():
    """A node's constructor may queue work (the mission engine's first flush): it must not jam the queue."""
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("workers_early", context=context)
    seen = []
    try:
        queue = InOrder(node)
        queue.call(seen.append, "early")  # no executor yet
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        queue.call(lambda: 1 / 0)
        queue.call(seen.append, "late")
        wait_for(lambda: seen == ["early", "late"], 10.0, "both calls",
                 step=lambda: executor.spin_once(timeout_sec=0.01))
        executor.shutdown()
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
