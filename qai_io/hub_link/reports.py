"""Reports: what a mission produced (a survey's summary), published to the hub. No rclpy import.

The hub_link serves the task kind `report`: a mission ends with it, its `content` gathered from earlier
tasks' results (`{"$result": "scan_1.summary"}`), and hub_link publishes it on the robot's `reports`
telemetry stream (`qai/<fleet>/<robot>/telemetry/reports`): through the same on-disk queue as all
telemetry, so it is not lost while the broker is away, and with its own sequence numbers, so the hub can
tell that none is missing. The task succeeds once the report is queued (on disk), not once delivered.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from qai_edge.tasks import TaskFailed, TaskKindSpec

STREAM = "reports"
TYPE = "qai/Report"
PRIORITY = 8  # above telemetry: a report is what the mission was for
TTL = 7 * 86400.0  # s it may wait for the broker

REPORT = TaskKindSpec(
    "report", "Publish a report to the hub (reports stream): `name` and `content` (any JSON, e.g. earlier "
    "results gathered by $result references). Succeeds once it is queued on disk for the broker.",
    {"type": "object", "required": ["name", "content"], "additionalProperties": False, "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "content": {}}},
    result_keys=("seq", "bytes"), default_timeout=30.0)


def report_data(name: str, mission_id: str, task_id: str, content: Any, max_bytes: int) -> bytes:
    """Return the report as JSON; TaskFailed (not retryable) when it is larger than `max_bytes`."""
    data = orjson.dumps({"name": name, "mission_id": mission_id, "task_id": task_id, "content": content})
    if len(data) > max_bytes:
        raise TaskFailed(f"parameters.content: {len(data)} bytes as a report, more than the limit of {max_bytes} "
                         "(max_telemetry_bytes)", retryable=False)
    return data


def enqueue(outgoing, data: bytes) -> int | None:
    """Queue a report, signed (qai_io.hub_link.outgoing.RobotOutgoing); return its sequence number."""
    return outgoing.telemetry(STREAM, TYPE, data, PRIORITY, 1, TTL)


def report_result(seq: int | None, data: bytes) -> Mapping[str, Any]:
    if seq is None:
        raise TaskFailed("the hub link's queue is full (its thread is behind): the report was not queued",
                         retryable=True)
    return {"seq": seq, "bytes": len(data)}
