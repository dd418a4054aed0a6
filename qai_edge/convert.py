"""Conversions between qai_interfaces / builtin_interfaces messages and core types.

Done once at the edge of a node. Messages only; no rclpy import.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import KeyValue

from qai_edge.tasks import ON_RESTART_FAIL, ON_RESTART_REDISPATCH, TaskKindSpec, decode_json, encode_json
from qai_edge.text import shorten
from qai_interfaces.msg import TaskKind

_NS = 1_000_000_000


def seconds_from_duration(duration: Duration) -> float:
    return duration.sec + duration.nanosec / _NS


def optional_seconds_from_duration(duration: Duration) -> float | None:
    """Zero means 'not given'."""
    return None if duration.sec == 0 and duration.nanosec == 0 else seconds_from_duration(duration)


def duration_from_seconds(seconds: float | None) -> Duration:
    if seconds is None or not math.isfinite(seconds):
        return Duration()
    nanoseconds = round(seconds * _NS)
    return Duration(sec=nanoseconds // _NS, nanosec=nanoseconds % _NS)


def optional_seconds_from_time(stamp: Time) -> float | None:
    """Zero means 'not given'."""
    return None if stamp.sec == 0 and stamp.nanosec == 0 else stamp.sec + stamp.nanosec / _NS


def time_from_seconds(seconds: float | None) -> Time:
    if seconds is None or not math.isfinite(seconds):
        return Time()
    nanoseconds = round(seconds * _NS)
    return Time(sec=nanoseconds // _NS, nanosec=nanoseconds % _NS)


def key_values(values: Mapping[str, Any]) -> list[KeyValue]:
    """Return a mapping as KeyValue pairs whose values are JSON text."""
    return [KeyValue(key=str(key), value=encode_json(value)) for key, value in values.items()]


def json_pairs(pairs: Iterable[KeyValue]) -> dict[str, str]:
    return {pair.key: pair.value for pair in pairs}


def decoded_key_values(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: decode_json(pair.value) for pair in pairs}


_ON_RESTART_TO_MSG = {ON_RESTART_REDISPATCH: TaskKind.ON_RESTART_REDISPATCH, ON_RESTART_FAIL: TaskKind.ON_RESTART_FAIL}
_ON_RESTART_FROM_MSG = {value: key for key, value in _ON_RESTART_TO_MSG.items()}


def kind_to_msg(spec: TaskKindSpec) -> TaskKind:
    return TaskKind(name=spec.name, description=spec.description,
                    parameters_schema=encode_json(spec.parameters_schema) if spec.parameters_schema else "",
                    result_keys=list(spec.result_keys), resources=sorted(spec.resources),
                    default_timeout=duration_from_seconds(spec.default_timeout),
                    on_restart=_ON_RESTART_TO_MSG[spec.on_restart], ready=spec.ready, not_ready=spec.not_ready)


def kind_from_msg(msg: TaskKind) -> TaskKindSpec:
    return TaskKindSpec(name=msg.name, description=msg.description,
                        parameters_schema=decode_json(msg.parameters_schema) if msg.parameters_schema else None,
                        result_keys=tuple(msg.result_keys), resources=frozenset(msg.resources),
                        default_timeout=optional_seconds_from_duration(msg.default_timeout),
                        on_restart=_ON_RESTART_FROM_MSG.get(msg.on_restart, ON_RESTART_FAIL),
                        ready=bool(msg.ready), not_ready=shorten(msg.not_ready, 300) if not msg.ready else "")
