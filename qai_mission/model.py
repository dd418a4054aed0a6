"""Missions and tasks as the mission engine's core sees them. No rclpy import.

One clock: every time is seconds on the mission engine's clock (ROS time: simulated time under
use_sim_time). A task's `deadline` is absolute on that clock; `deadline_in` is relative and becomes an
absolute deadline when the mission engine accepts the task (so a mission file, a hub command or an event
mission keeps its units whatever clock the robot runs on); timeouts and backoffs are relative. Parameter
values are decoded JSON; a value {"$result": "<task_id>.<key>[.<path>...]"} refers to an earlier task's
result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Mapping

from qai_edge.bounded import InputLimits
from qai_edge.tasks import TaskKindSpec

TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESULT_REF = "$result"

# What the message fields can carry (qai_interfaces/Task, RetryPolicy; builtin_interfaces Time/Duration):
# a value outside is refused, never wrapped.
INT32 = (-2**31, 2**31 - 1)
UINT32 = (0, 2**32 - 1)
MAX_SECONDS = 2**31 - 1  # Time.sec and Duration.sec are int32


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
    deadline: float | None = None  # absolute, on the mission engine's clock
    timeout: float | None = None
    retry: RetryPolicy = RetryPolicy()
    resources: frozenset[str] = frozenset()
    optional: bool = False
    parameters: Mapping[str, Any] = field(default_factory=dict)
    deadline_in: float | None = None  # seconds after acceptance; replaced by `deadline` once accepted

    def accepted_at(self, now: float) -> "TaskSpec":
        """Return this task with `deadline_in` turned into an absolute deadline on the clock that reads `now`."""
        if self.deadline_in is None:
            return self
        return replace(self, deadline=now + self.deadline_in, deadline_in=None)


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


@dataclass(frozen=True)
class MissionLimits:
    """Bounds on what a mission may hold, checked before anything is built from it.

    They are mission engine parameters; `qai-mission validate` reads the same from the profile.
    """

    max_tasks: int = 10_000  # per mission, and per add_tasks request
    max_mission_bytes: int = 16 << 20  # a mission document (file, hub command) as read
    max_task_parameter_bytes: int = 1 << 20  # one task's parameters as JSON
    max_parameter_depth: int = 16  # nesting inside a task's parameters
    max_string_length: int = 262_144  # characters in any one string
    max_dependencies: int = 10_000  # depends_on entries of one task
    max_resources: int = 64  # resources of one task
    max_retries: int = 1000
    max_name_length: int = 256  # mission name, kind and resource names

    def document(self) -> InputLimits:
        """Bounds of a whole mission document: its tasks, their fields and parameters."""
        return InputLimits(max_bytes=self.max_mission_bytes, max_depth=self.max_parameter_depth + 4,
                           max_nodes=max(self.max_mission_bytes // 8, 1000), max_string=self.max_string_length,
                           max_items=max(self.max_tasks, self.max_dependencies, 1000))

    def parameters(self) -> InputLimits:
        """Bounds of one task's parameters."""
        return InputLimits(max_bytes=self.max_task_parameter_bytes, max_depth=self.max_parameter_depth,
                           max_nodes=max(self.max_task_parameter_bytes // 2, 1000),
                           max_string=self.max_string_length, max_items=max(self.max_task_parameter_bytes // 2, 1000))


DEFAULT_LIMITS = MissionLimits()
