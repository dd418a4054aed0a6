"""Which nodes are healthy, from their /diagnostics heartbeats.

No rclpy import: the ROS listener (qai_edge.diagnostics_listener) converts each DiagnosticStatus and calls
HealthBoard.update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterable, Mapping


class Level(IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass
class NodeHealth:
    name: str  # the status name: the node's fully qualified name
    level: Level = Level.STALE
    message: str = "no heartbeat yet"
    hardware_id: str = ""
    values: dict[str, str] = field(default_factory=dict)
    received_at: float | None = None


class HealthBoard:
    """Latest heartbeat per expected node; a node whose heartbeat is overdue reads as STALE.

    `expected` maps each status name to its heartbeat period; a heartbeat older than `stale_periods`
    periods (and at least `min_stale_after` seconds) is stale.
    """

    def __init__(self, expected: Mapping[str, float], stale_periods: float = 3.0,
                 min_stale_after: float = 2.0, clock=time.monotonic):
        self._stale_after = {name: max(period * stale_periods, min_stale_after)
                             for name, period in expected.items()}
        self._nodes = {name: NodeHealth(name) for name in expected}
        self._clock = clock

    def update(self, name: str, level: int, message: str, hardware_id: str = "",
               values: Mapping[str, str] | None = None) -> bool:
        """Record a heartbeat; returns False (and ignores it) for a node this board does not watch."""
        node = self._nodes.get(name)
        if node is None:
            return False
        node.level = Level(level) if level in Level._value2member_map_ else Level.ERROR
        node.message = message
        node.hardware_id = hardware_id
        node.values = dict(values or {})
        node.received_at = self._clock()
        return True

    def snapshot(self) -> list[NodeHealth]:
        now = self._clock()
        result = []
        for name, node in self._nodes.items():
            if node.received_at is not None and now - node.received_at > self._stale_after[name]:
                age = now - node.received_at
                result.append(NodeHealth(name, Level.STALE, f"no heartbeat for {age:.1f} s",
                                         node.hardware_id, node.values, node.received_at))
            else:
                result.append(NodeHealth(name, node.level, node.message, node.hardware_id,
                                         dict(node.values), node.received_at))
        return result

    def all_ok(self) -> bool:
        return all(node.level == Level.OK for node in self.snapshot())

    def level_of(self, name: str) -> Level:
        return next(node.level for node in self.snapshot() if node.name == name)


def format_table(nodes: Iterable[NodeHealth]) -> str:
    rows = [(node.name, node.level.name, node.hardware_id or "-", node.message) for node in nodes]
    header = ("NODE", "LEVEL", "HARDWARE_ID", "MESSAGE")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]
    lines = []
    for row in (header, *rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return "\n".join(lines)
