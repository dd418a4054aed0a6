"""Polled subscriptions (qai_edge.polled): read by the node's own timer, not by waking the executor per message."""

import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Int32

from harness import wait_for
from qai_edge.polled import Polled


@pytest.fixture
def ros():
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("polled_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def publish(node, executor, publisher, values, subscription):
    wait_for(lambda: publisher.get_subscription_count() >= 1, 10.0, "the subscription matched",
             step=lambda: executor.spin_once(timeout_sec=0.01))
    for value in values:
        publisher.publish(Int32(data=value))
    time.sleep(0.3)  # delivery on loopback; the test below then checks what the executor did with it


def test_a_polled_subscription_does_not_wake_the_executor_and_its_drain_takes_every_message_in_order(ros):
    node, executor = ros
    seen, ages = [], []
    polled = Polled(node)
    subscription = polled.subscribe(Int32, "numbers",
                                    lambda message, age: (seen.append(message.data), ages.append(age)), 20)
    publish(node, executor, node.create_publisher(Int32, "numbers", 20), range(10), subscription)
    woken = [executor.spin_once(timeout_sec=0.05) for _ in range(10)]  # a plain subscription is taken here
    assert len(woken) == 10 and seen == []
    assert polled.drain() == 10
    assert seen == list(range(10))
    assert all(0.2 <= age < 10.0 for age in ages), ages  # how long ago the middleware had each one
    assert polled.drain() == 0


def test_a_live_group_is_taken_as_it_arrives_and_stops_being_when_it_is_no_longer_live(ros):
    node, executor = ros
    seen = []
    live = [True]
    polled = Polled(node, live=lambda: live[0])
    subscription = polled.subscribe(Int32, "live_numbers", lambda message, age: seen.append((message.data, age)), 20)
    publisher = node.create_publisher(Int32, "live_numbers", 20)
    publish(node, executor, publisher, [1, 2, 3], subscription)
    wait_for(lambda: len(seen) == 3, 10.0, "the executor taking them",
             step=lambda: executor.spin_once(timeout_sec=0.05))
    assert seen == [(1, 0.0), (2, 0.0), (3, 0.0)]
    live[0] = False
    polled.wake()
    executor.spin_once(timeout_sec=0.05)  # the wake: the wait set is rebuilt without the subscription
    publish(node, executor, publisher, [4], subscription)
    for _ in range(5):
        executor.spin_once(timeout_sec=0.05)
    assert [value for value, _ in seen] == [1, 2, 3]
    assert polled.drain() == 1 and seen[-1][0] == 4
