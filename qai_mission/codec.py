"""Missions as plain data (YAML mission files, JSON from the hub, the journal) and back. No rclpy import.

A mission document:

    id: survey-1                 # optional: the mission engine assigns one
    name: Survey the north field
    tasks:
      - id: plan
        kind: plan_route
        priority: 5              # higher first; preempts lower on a shared resource
        parameters: {waypoints: [[0, 0, 5], [40, 0, 5], [40, 30, 5]]}
      - id: fly
        kind: navigate
        depends_on: [plan]
        timeout: 120             # seconds per attempt
        deadline_in: 600         # seconds after the mission engine accepts it (or `deadline`: absolute,
                                 # seconds on the robot's clock: the epoch unless it runs on simulated time)
        retry: {max_retries: 2, initial_backoff: 1.0, backoff_multiplier: 2.0, max_backoff: 10.0}
        resources: [camera]      # exclusive, on top of the kind's own
        optional: false
        parameters:
          waypoints: {$result: plan.waypoints}   # an earlier task's result, resolved when this one starts

Documents are read within MissionLimits (qai_edge.bounded: size, nesting, aliases, duplicate keys, UTF-8)
and every field is range-checked against what its message field can carry, so nothing wraps. Errors name
the field: `tasks[1] (fly).timeout: expected a positive number of seconds, got 'soon'`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from qai_edge.bounded import InputRejected, check_value, load_yaml
from qai_edge.text import shorten
from qai_mission.model import (DEFAULT_LIMITS, INT32, MAX_SECONDS, MissionLimits, MissionSpec, RetryPolicy,
                               TaskSpec)

_TASK_KEYS = {"id", "kind", "priority", "depends_on", "deadline", "deadline_in", "timeout", "retry", "resources",
              "optional", "parameters"}
_RETRY_KEYS = {"max_retries", "initial_backoff", "backoff_multiplier", "max_backoff"}
_MISSION_KEYS = {"id", "name", "tasks"}


class MissionFormatError(ValueError):
    """A mission document that does not describe a mission; the message names the field."""


def load_mission_file(path: str | Path, limits: MissionLimits = DEFAULT_LIMITS) -> MissionSpec:
    """Read a YAML mission file within `limits`; relative deadlines stay relative (see model)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limits.max_mission_bytes:
            raise MissionFormatError(f"{path}: {size} bytes, the limit (max_mission_bytes) is "
                                     f"{limits.max_mission_bytes}")
        data = path.read_bytes()
    except OSError as error:
        raise MissionFormatError(f"{path}: cannot read: {error.strerror or error}") from None
    return mission_from_document(data, str(path), limits)


def mission_from_document(data: bytes | str, where: str, limits: MissionLimits = DEFAULT_LIMITS) -> MissionSpec:
    """Read a mission from YAML (or JSON, which is YAML) text: bounded, strict, errors starting with `where`."""
    try:
        document = load_yaml(data, where, limits.document())
        check_value(document, "mission", limits.document())
    except InputRejected as error:
        raise MissionFormatError(str(error)) from None
    try:
        return mission_from_dict(document, limits)
    except MissionFormatError as error:
        raise MissionFormatError(f"{where}: {error}") from None


def mission_from_dict(data: Any, limits: MissionLimits = DEFAULT_LIMITS) -> MissionSpec:
    if not isinstance(data, dict):
        raise MissionFormatError(f"mission: expected a mapping, got {type(data).__name__}")
    _known(data, _MISSION_KEYS, "mission")
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise MissionFormatError("tasks: expected a non-empty list of tasks")
    if len(tasks) > limits.max_tasks:
        raise MissionFormatError(f"tasks: {len(tasks)} tasks, the limit (max_tasks_per_mission) is {limits.max_tasks}")
    return MissionSpec(id=_text(data.get("id", ""), "id", 64), name=_text(data.get("name", ""), "name",
                                                                          limits.max_name_length),
                       tasks=tuple(task_from_dict(task, f"tasks[{i}]", limits) for i, task in enumerate(tasks)))


def task_from_dict(data: Any, where: str = "task", limits: MissionLimits = DEFAULT_LIMITS) -> TaskSpec:
    if not isinstance(data, dict):
        raise MissionFormatError(f"{where}: expected a mapping, got {type(data).__name__}")
    if isinstance(data.get("id"), str):
        where = f"{where} ({_field(data['id'])})"
    _known(data, _TASK_KEYS, where)
    for required in ("id", "kind"):
        if required not in data:
            raise MissionFormatError(f"{where}.{required}: missing")
    deadline = _optional_seconds(data.get("deadline"), f"{where}.deadline", positive=True)
    deadline_in = _optional_seconds(data.get("deadline_in"), f"{where}.deadline_in", positive=True)
    if deadline is not None and deadline_in is not None:
        raise MissionFormatError(f"{where}.deadline_in: give deadline or deadline_in, not both")
    retry = data.get("retry") or {}
    if not isinstance(retry, dict):
        raise MissionFormatError(f"{where}.retry: expected a mapping, got {shorten(retry)}")
    _known(retry, _RETRY_KEYS, f"{where}.retry")
    defaults = RetryPolicy()
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
        raise MissionFormatError(f"{where}.parameters: expected a mapping of names to values")
    _check_parameters(parameters, f"{where}.parameters", limits)
    depends_on = _text_list(data.get("depends_on", []), f"{where}.depends_on", 64)
    if len(depends_on) > limits.max_dependencies:
        raise MissionFormatError(f"{where}.depends_on: {len(depends_on)} entries, the limit is "
                                 f"{limits.max_dependencies}")
    resources = _text_list(data.get("resources", []), f"{where}.resources", limits.max_name_length)
    if len(resources) > limits.max_resources:
        raise MissionFormatError(f"{where}.resources: {len(resources)} entries, the limit is {limits.max_resources}")
    return TaskSpec(
        id=_text(data["id"], f"{where}.id", 64),
        kind=_text(data["kind"], f"{where}.kind", limits.max_name_length),
        priority=_integer(data.get("priority", 0), f"{where}.priority", *INT32),
        depends_on=tuple(depends_on),
        deadline=deadline,
        deadline_in=deadline_in,
        timeout=_optional_seconds(data.get("timeout"), f"{where}.timeout", positive=True),
        retry=RetryPolicy(
            max_retries=_integer(retry.get("max_retries", defaults.max_retries), f"{where}.retry.max_retries",
                                 0, limits.max_retries),
            initial_backoff=_seconds(retry.get("initial_backoff", defaults.initial_backoff),
                                     f"{where}.retry.initial_backoff"),
            backoff_multiplier=_number(retry.get("backoff_multiplier", defaults.backoff_multiplier),
                                       f"{where}.retry.backoff_multiplier", 1.0, 1000.0),
            max_backoff=_seconds(retry.get("max_backoff", defaults.max_backoff), f"{where}.retry.max_backoff")),
        resources=frozenset(resources),
        optional=_boolean(data.get("optional", False), f"{where}.optional"),
        parameters=dict(parameters),
    )


def task_to_dict(task: TaskSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"id": task.id, "kind": task.kind}
    if task.priority:
        data["priority"] = task.priority
    if task.depends_on:
        data["depends_on"] = list(task.depends_on)
    if task.deadline is not None:
        data["deadline"] = task.deadline
    if task.deadline_in is not None:
        data["deadline_in"] = task.deadline_in
    if task.timeout is not None:
        data["timeout"] = task.timeout
    if task.retry != RetryPolicy():
        data["retry"] = {"max_retries": task.retry.max_retries, "initial_backoff": task.retry.initial_backoff,
                         "backoff_multiplier": task.retry.backoff_multiplier, "max_backoff": task.retry.max_backoff}
    if task.resources:
        data["resources"] = sorted(task.resources)
    if task.optional:
        data["optional"] = True
    if task.parameters:
        data["parameters"] = dict(task.parameters)
    return data


def mission_to_dict(mission: MissionSpec) -> dict[str, Any]:
    return {"id": mission.id, "name": mission.name, "tasks": [task_to_dict(task) for task in mission.tasks]}


def check_task_parameters(parameters: Mapping[str, Any], where: str, limits: MissionLimits = DEFAULT_LIMITS) -> None:
    """Raise MissionFormatError when decoded task parameters are outside `limits` (depth, sizes, NaN)."""
    _check_parameters(parameters, where, limits)


def _check_parameters(parameters: Mapping[str, Any], where: str, limits: MissionLimits) -> None:
    bounds = limits.parameters()
    try:
        check_value(dict(parameters), where, bounds)
        size = len(json.dumps(parameters, allow_nan=False, separators=(",", ":")))
    except InputRejected as error:
        raise MissionFormatError(str(error)) from None
    if size > limits.max_task_parameter_bytes:
        raise MissionFormatError(f"{where}: {size} bytes as JSON, the limit (max_task_parameter_bytes) is "
                                 f"{limits.max_task_parameter_bytes}")


def _known(data: Mapping, allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise MissionFormatError(f"{where}.{_field(key)}: unknown field (expected one of: "
                                     f"{', '.join(sorted(allowed))})")


def _field(name: Any) -> str:
    """Return a name for an error message: as it is when short text, else shortened."""
    return name if isinstance(name, str) and len(name) <= 64 else shorten(name, 64)


def _text(value: Any, where: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise MissionFormatError(f"{where}: expected a string, got {shorten(value)}")
    if len(value) > max_length:
        raise MissionFormatError(f"{where}: {len(value)} characters, the limit is {max_length}: {shorten(value, 40)}")
    return value


def _text_list(value: Any, where: str, max_length: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MissionFormatError(f"{where}: expected a list of strings, got {shorten(value)}")
    for item in value:
        _text(item, where, max_length)
    return value


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MissionFormatError(f"{where}: expected an integer, got {shorten(value)}")
    if not low <= value <= high:
        raise MissionFormatError(f"{where}: {shorten(value, 24)} is outside [{low}, {high}]")
    return value


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise MissionFormatError(f"{where}: expected true or false, got {shorten(value)}")
    return value


def _number(value: Any, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MissionFormatError(f"{where}: expected a finite number, got {shorten(value)}")
    if not low <= value <= high:
        raise MissionFormatError(f"{where}: {shorten(value, 24)} is outside [{low:g}, {high:g}]")
    return float(value)


def _seconds(value: Any, where: str) -> float:
    return _number(value, where, 0.0, MAX_SECONDS)


def _optional_seconds(value: Any, where: str, positive: bool = False) -> float | None:
    if value is None:
        return None
    number = _number(value, where)
    if positive and number <= 0:
        raise MissionFormatError(f"{where}: expected a positive number of seconds, got {shorten(value)}")
    if number > MAX_SECONDS:
        raise MissionFormatError(f"{where}: {shorten(value, 24)} s is more than a time message holds "
                                 f"({MAX_SECONDS} s)")
    return number
