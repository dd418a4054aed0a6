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
        deadline_in: 600         # seconds after submission (or `deadline`: absolute, seconds since the epoch)
        retry: {max_retries: 2, initial_backoff: 1.0, backoff_multiplier: 2.0, max_backoff: 10.0}
        resources: [camera]      # exclusive, on top of the kind's own
        optional: false
        parameters:
          waypoints: {$result: plan.waypoints}   # an earlier task's result, resolved when this one starts

Errors name the field: `tasks[1] (fly).timeout: expected a positive number of seconds, got 'soon'`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import yaml

from qai_mission.model import MissionSpec, RetryPolicy, TaskSpec

_TASK_KEYS = {"id", "kind", "priority", "depends_on", "deadline", "deadline_in", "timeout", "retry", "resources",
              "optional", "parameters"}
_RETRY_KEYS = {"max_retries", "initial_backoff", "backoff_multiplier", "max_backoff"}
_MISSION_KEYS = {"id", "name", "tasks"}


class MissionFormatError(ValueError):
    """A mission document that does not describe a mission; the message names the field."""


def load_mission_file(path: str | Path, now: float) -> MissionSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise MissionFormatError(f"{path}: cannot read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise MissionFormatError(f"{path}:{where} not valid YAML: {getattr(error, 'problem', error)}") from None
    try:
        return mission_from_dict(data, now)
    except MissionFormatError as error:
        raise MissionFormatError(f"{path}: {error}") from None


def mission_from_dict(data: Any, now: float | None = None) -> MissionSpec:
    """`now` turns `deadline_in` into an absolute deadline; without it `deadline_in` is an error."""
    if not isinstance(data, dict):
        raise MissionFormatError(f"mission: expected a mapping, got {type(data).__name__}")
    _known(data, _MISSION_KEYS, "mission")
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise MissionFormatError("tasks: expected a non-empty list of tasks")
    return MissionSpec(id=_text(data.get("id", ""), "id"), name=_text(data.get("name", ""), "name"),
                       tasks=tuple(task_from_dict(task, f"tasks[{i}]", now) for i, task in enumerate(tasks)))


def task_from_dict(data: Any, where: str = "task", now: float | None = None) -> TaskSpec:
    if not isinstance(data, dict):
        raise MissionFormatError(f"{where}: expected a mapping, got {type(data).__name__}")
    if isinstance(data.get("id"), str):
        where = f"{where} ({data['id']})"
    _known(data, _TASK_KEYS, where)
    for required in ("id", "kind"):
        if required not in data:
            raise MissionFormatError(f"{where}.{required}: missing")
    deadline = _optional_number(data.get("deadline"), f"{where}.deadline")
    if "deadline_in" in data:
        if deadline is not None:
            raise MissionFormatError(f"{where}.deadline_in: give deadline or deadline_in, not both")
        seconds = _optional_number(data["deadline_in"], f"{where}.deadline_in", positive=True)
        if now is None:
            raise MissionFormatError(f"{where}.deadline_in: only mission files may give a relative deadline")
        deadline = now + seconds
    retry = data.get("retry") or {}
    if not isinstance(retry, dict):
        raise MissionFormatError(f"{where}.retry: expected a mapping, got {retry!r}")
    _known(retry, _RETRY_KEYS, f"{where}.retry")
    defaults = RetryPolicy()
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
        raise MissionFormatError(f"{where}.parameters: expected a mapping of names to values")
    return TaskSpec(
        id=_text(data["id"], f"{where}.id"),
        kind=_text(data["kind"], f"{where}.kind"),
        priority=_integer(data.get("priority", 0), f"{where}.priority"),
        depends_on=tuple(_text_list(data.get("depends_on", []), f"{where}.depends_on")),
        deadline=deadline,
        timeout=_optional_number(data.get("timeout"), f"{where}.timeout", positive=True),
        retry=RetryPolicy(
            max_retries=_integer(retry.get("max_retries", defaults.max_retries), f"{where}.retry.max_retries"),
            initial_backoff=_number(retry.get("initial_backoff", defaults.initial_backoff),
                                    f"{where}.retry.initial_backoff"),
            backoff_multiplier=_number(retry.get("backoff_multiplier", defaults.backoff_multiplier),
                                       f"{where}.retry.backoff_multiplier"),
            max_backoff=_number(retry.get("max_backoff", defaults.max_backoff), f"{where}.retry.max_backoff")),
        resources=frozenset(_text_list(data.get("resources", []), f"{where}.resources")),
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


def _known(data: Mapping, allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise MissionFormatError(f"{where}.{key}: unknown field (expected one of: {', '.join(sorted(allowed))})")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MissionFormatError(f"{where}: expected a string, got {value!r}")
    return value


def _text_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MissionFormatError(f"{where}: expected a list of strings, got {value!r}")
    return value


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MissionFormatError(f"{where}: expected an integer, got {value!r}")
    return value


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise MissionFormatError(f"{where}: expected true or false, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MissionFormatError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _optional_number(value: Any, where: str, positive: bool = False) -> float | None:
    if value is None:
        return None
    number = _number(value, where)
    if positive and number <= 0:
        raise MissionFormatError(f"{where}: expected a positive number of seconds, got {value!r}")
    return number
