"""hub_link's telemetry: each configured stream's ROS subscription, what it sends to the hub and what not.

A stream with a rate is sampled at that rate: its subscription is read on the telemetry thread
(qai_edge.ticker, with the node's seal and replay-filter flush: none of them wakes the executor) from a polled
subscription (qai_edge.polled), the newest message each time (the older ones counted skipped, and taken
serialized: only the one sent is turned into Python), so a 50 Hz topic does not wake the node 50 times a
second to send 10; a /diagnostics summary stream takes every message into its summary. A stream without a
rate (mission states, events) is sent as each message comes, every one.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import orjson
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from qai_edge.polled import Polled
from qai_edge.ticker import Ticker
from qai_io.hub_link import codec
from qai_io.hub_link.outgoing import RobotOutgoing
from qai_io.hub_link.streams import DiagnosticsSummary, ReplayFilter, StreamSpec, StreamState

_ROS_QOS = {"sensor": dict(reliability=ReliabilityPolicy.BEST_EFFORT),
            "reliable": dict(reliability=ReliabilityPolicy.RELIABLE),
            "latched": dict(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)}
TAKE_AT_ONCE = 100  # more messages a telemetry callback takes from its subscription, at most


class Telemetry:
    def __init__(self, node: Node, outgoing: RobotOutgoing, replays: ReplayFilter, max_bytes: int):
        self.node, self.outgoing, self.replays, self.max_telemetry_bytes = node, outgoing, replays, max_bytes
        self.streams: dict[str, StreamState] = {}
        self.refused: dict[str, str] = {}  # stream name -> why it cannot run
        self._schedule: list = []  # (period, sample) of each stream with a rate: steady time, on the ticker
        self.ticker: Ticker | None = None

    def add(self, spec: StreamSpec) -> None:
        try:
            cls = codec.message_class(spec.type)
        except codec.CodecError as error:
            self.refused[spec.name] = str(error)
            return
        stream = self.streams[spec.name] = StreamState(spec, codec.type_name(cls))
        qos = QoSProfile(depth=spec.depth, **_ROS_QOS[spec.ros_qos])
        if spec.summary:
            stream.summary = DiagnosticsSummary()
        if spec.rate > 0:  # sampled at its rate, the newest message each time, not woken for each (qai_edge.polled)
            stream.polled = Polled(self.node)
            # Serialized, but for a summary: only the newest message of a turn is turned into Python.
            stream.subscription = stream.polled.subscribe(cls, spec.topic, partial(self._hold, stream), qos,
                                                          raw=not spec.summary)
            self._schedule.append((1.0 / spec.rate, partial(self._sample, stream)))
        else:
            stream.subscription = self.node.create_subscription(cls, spec.topic, partial(self._on_telemetry, stream),
                                                                qos)

    def start(self, also: Sequence[tuple[float, Callable[[], None]]] = ()) -> None:
        """Start sampling the streams with a rate, and `also` (period, call), on the telemetry thread."""
        def failed(tick, error: BaseException) -> None:
            if self.node.context.ok():
                self.node.get_logger().error(f"telemetry: {type(error).__name__}: {error!s:.200}",
                                             throttle_duration_sec=5.0)

        self.ticker = Ticker([*self._schedule, *also], None, failed, name="telemetry")
        self.ticker.start()

    def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()

    def _on_telemetry(self, stream: StreamState, message) -> None:
        self._encode(stream, message)
        # rclpy's executor takes one message per subscription per wait, and each wait rebuilds the wait set
        # (~0.3 ms here): a busy stream takes what else is waiting now, as the executor itself would.
        subscription = stream.subscription
        for _ in range(TAKE_AT_ONCE):
            with subscription.handle:
                taken = subscription.handle.take_message(subscription.msg_type, subscription.raw)
            if taken is None:
                return
            self._encode(stream, taken[0])

    def _encode(self, stream: StreamState, message) -> None:
        try:
            data = codec.to_dict(message)
        except Exception as error:  # noqa: BLE001 - a message the codec cannot take costs only itself
            stream.counts["errors"] += 1
            stream.last_error = f"{error!r:.200}"
            return
        if stream.spec.ros_qos == "latched" and not self.replays.is_news(stream.spec.name, data):
            stream.counts["skipped"] += 1  # the latched history a restart replays: sent before
            return
        self._send(stream, data)

    def _hold(self, stream: StreamState, message, age: float) -> None:
        if stream.summary is not None:
            stream.summary.update((s.name, s.level[0], s.message, s.hardware_id) for s in message.status)
            return
        if stream.held is not None:
            stream.counts["skipped"] += 1  # a newer one came before the stream's next turn
        stream.held = message

    def _sample(self, stream: StreamState) -> None:
        stream.polled.drain()
        if stream.summary is not None:
            self._send(stream, stream.summary.summary())
            return
        message, stream.held = stream.held, None
        if message is not None:
            try:
                message = deserialize_message(message, stream.subscription.msg_type)
            except Exception as error:  # noqa: BLE001 - a message that does not deserialize costs only itself
                stream.counts["errors"] += 1
                stream.last_error = f"{error!r:.200}"
                return
            self._encode(stream, message)

    def _send(self, stream: StreamState, data: dict) -> None:
        data_json = orjson.dumps(data)
        if len(data_json) > self.max_telemetry_bytes:
            stream.counts["too_large"] += 1
            return
        spec = stream.spec
        seq = self.outgoing.telemetry(spec.name, stream.type_name, data_json, spec.priority, spec.qos, spec.ttl)
        stream.counts["sent" if seq is not None else "overflowed"] += 1
