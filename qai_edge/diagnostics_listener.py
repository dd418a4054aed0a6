"""Feeds a HealthBoard from /diagnostics: the ROS edge of qai_edge.health."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from qai_edge.engine_node import DIAGNOSTICS_TOPIC
from qai_edge.health import HealthBoard
from qai_edge.polled import Polled


class DiagnosticsListener:
    """Feed `board` from /diagnostics; `polled`: as `drain()` reads them, not one executor wake per message."""

    def __init__(self, node: Node, board: HealthBoard, polled: bool = False):
        self.board = board
        self._polled = Polled(node) if polled else None
        if self._polled is not None:
            self._polled.subscribe(DiagnosticArray, DIAGNOSTICS_TOPIC, lambda array, age: self._on_array(array), 50)
        else:
            node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_array, 50)

    def drain(self) -> None:
        if self._polled is not None:
            self._polled.drain()

    def _on_array(self, array: DiagnosticArray) -> None:
        for status in array.status:
            level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
            self.board.update(status.name, level, status.message, status.hardware_id,
                              {kv.key: kv.value for kv in status.values})
