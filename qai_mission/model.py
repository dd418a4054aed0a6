"""Missions and tasks as the mission engine's core sees them. No rclpy import.

Times are seconds on the node's clock (ROS time, so sim time under use_sim_time); deadlines are
absolute, timeouts and backoffs relative. Parameter values are decoded JSON; a value
{"$result": "<task_id>.<key>[.<path>...]"} refers to an earlier task's result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Mapping

from qai_edge.tasks import TaskKindSpec

TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESULT_REF = "$result"


class TaskStatus(IntEnum):
    """Mirrors qai_interfaces/TaskState; values >= SUCCEEDED are terminal."""

    PENDING = 0
    READY = 1
    RUNNING = 2
    CANCELING = 3
    RETRY_WAIT = 4
    SUCCEEDED = 10
    FAILED = 11
    CANCELED = 12
    SKIPPED = 13

    @property
    def terminal(self) -> bool:
        return self >= TaskStatus.SUCCEEDED


class MissionStatus(IntEnum):
    """Mirrors qai_interfaces/MissionState."""

    ACCEPTED = 0
    RUNNING = 1
    CANCELING = 2
    SUCCEEDED = 10
    FAILED = 11
    CANCELED = 12
    REJECTED = 13

    @property
    def terminal(self) -> bool:
        return self >= MissionStatus.SUCCEEDED


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 0
    initial_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    max_backoff: float = 0.0  # 0: no cap

    def delay(self, retries_done: int) -> float:
        """Wait before retry number `retries_done + 1`."""
        delay = self.initial_backoff * self.backoff_multiplier ** retries_done
        return min(delay, self.max_backoff) if self.max_backoff > 0 else delay


@dataclass(frozen=True)
class TaskSpec:
    id: str
    kind: str
    priority: int = 0
    depends_on: tuple[str, ...] = ()
    deadline: float | None = None
    timeout: float | None = None
    retry: RetryPolicy = RetryPolicy()
    resources: frozenset[str] = frozenset()
    optional: bool = False
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MissionSpec:
    id: str
    name: str = ""
    tasks: tuple[TaskSpec, ...] = ()


@dataclass(frozen=True)
class KindRoute:
    """A kind as the mission engine routes it: what the engine announced, and which engine."""

    spec: TaskKindSpec
    engine: str  # fully qualified node name
    task_action: str


def result_reference(value: Any) -> str | None:
    """'task.key...' when `value` is a result reference, else None."""
    if isinstance(value, dict) and len(value) == 1 and RESULT_REF in value and isinstance(value[RESULT_REF], str):
        return value[RESULT_REF]
    return None


def references_in(value: Any) -> list[str]:
    """Every result reference inside a parameter value (they may sit inside lists and objects)."""
    ref = result_reference(value)
    if ref is not None:
        return [ref]
    if isinstance(value, dict):
        return [r for v in value.values() for r in references_in(v)]
    if isinstance(value, list):
        return [r for v in value for r in references_in(v)]
    return []


class UnresolvedReference(LookupError):
    pass


def resolve_references(value: Any, results: Mapping[str, Mapping[str, Any]]) -> Any:
    """Replace every result reference with the value it points at; `results` maps task id -> result."""
    ref = result_reference(value)
    if ref is not None:
        task_id, _, path = ref.partition(".")
        if task_id not in results:
            raise UnresolvedReference(f"{ref}: task {task_id!r} has no result")
        current: Any = results[task_id]
        walked = task_id
        for part in path.split(".") if path else []:
            walked += f".{part}"
            if isinstance(current, dict) and part in current:
                current = current[part]
            elif isinstance(current, list) and part.lstrip("-").isdigit() and -len(current) <= int(part) < len(current):
                current = current[int(part)]
            else:
                raise UnresolvedReference(f"{ref}: {walked} does not exist in the result of {task_id!r}")
        return current
    if isinstance(value, dict):
        return {k: resolve_references(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_references(v, results) for v in value]
    return value
