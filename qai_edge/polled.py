"""Subscriptions a node reads when it is ready for them, instead of being woken for every message.

rclpy's executor rebuilds its whole wait set in Python each time it wakes (0.3-1 ms here), so a node that
takes 100 Hz IMU and 50 Hz odometry spent most of its CPU on waking (py-spy: 78 % of the intelligence
engine's samples in `Executor._wait_for_ready_callbacks`; docs/performance.md). A subscription made through
`Polled.subscribe` sits in a callback group the executor leaves out of its wait set while the group is not
live; the middleware keeps what arrives (up to the subscription's history depth), and the node's own timer
calls `drain()`, which runs the callback for each waiting message, oldest first, with the seconds since the
middleware received it, so a reading keeps its arrival time and a stream's rate its true value.

A group can be live some of the time (`live`: a function the executor asks at each wake): the io engine
takes every odometry message as it arrives while it steers the vehicle, and drains them with its safety tick
while the vehicle stands idle on the ground. Making a group live takes effect at the executor's next wake;
`wake()` brings that about at once (thread-safe).
"""

from __future__ import annotations

import time
from typing import Callable

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.subscription import Subscription


class PolledGroup(CallbackGroup):
    """A callback group the executor waits on only while `live()` is true; otherwise its owner drains it."""

    def __init__(self, live: Callable[[], bool] = lambda: False):
        super().__init__()
        self.live = live

    def can_execute(self, entity) -> bool:
        return bool(self.live())

    def beginning_execution(self, entity) -> bool:
        return True

    def ending_execution(self, entity) -> None:
        pass


class Polled:
    """A node's polled subscriptions: `subscribe` them, then `drain()` them from the node's timers.

    Callbacks take (message, age): age in seconds since the middleware received it (0 where the middleware
    does not say). Draining a live group is harmless: it takes what the executor has not taken yet.
    """

    def __init__(self, node: Node, live: Callable[[], bool] = lambda: False):
        self.node = node
        self.group = PolledGroup(live)
        self._subscriptions: list[tuple[Subscription, Callable]] = []

    def subscribe(self, msg_type, topic: str, callback: Callable, qos, raw: bool = False) -> Subscription:
        """Subscribe `callback(message, age)`; `raw`: the message as its serialized bytes."""
        # The executor calls the subscription's callback while the group is live: with age 0, as it arrives.
        subscription = self.node.create_subscription(msg_type, topic, lambda message: callback(message, 0.0), qos,
                                                     callback_group=self.group, raw=raw)
        self._subscriptions.append((subscription, callback))
        return subscription

    def drain(self, limit: int = 1000) -> int:
        """Run the callbacks of every waiting message (at most `limit` per subscription); return how many."""
        taken = 0
        for subscription, callback in self._subscriptions:
            for _ in range(limit):
                with subscription.handle:
                    message_info = subscription.handle.take_message(subscription.msg_type, subscription.raw)
                if message_info is None:
                    break
                message, info = message_info
                received = info.get("received_timestamp") or 0
                age = max(0.0, time.time() - received * 1e-9) if received else 0.0
                callback(message, age)
                taken += 1
        return taken

    def wake(self) -> None:
        """Have the executor rebuild its wait set now (a group just became live); safe from any thread."""
        executor = self.node.executor
        if executor is not None:
            executor.wake()
