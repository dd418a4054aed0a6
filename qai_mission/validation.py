"""Checks a mission (or tasks added to a running one) before anything runs. No rclpy import.

One validation path: the mission engine runs `check_tasks` at admission with the kinds its engines
announced and its own clock; `qai-mission validate` runs the same checks offline, the kind checks with
the kinds it could hear announced (and says when it heard none). Every error names the task and the
field: `task 'survey': parameters.speed: -1 is less than the minimum of 0`. A rejected mission or
addition changes nothing.

- static checks (the graph alone): ids, dependencies, cycles, timeouts, retry policies, resources,
  parameter values, result references to tasks that are not dependencies;
- kind checks (the announced kinds): the kind is served, parameters fit its schema (which may carry the
  engine's static limits: a geofence, a speed limit), result references name keys its results have;
- clock checks (the mission engine's clock): an absolute deadline not already past.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from qai_edge.tasks import has_non_finite
from qai_mission.model import TASK_ID, KindRoute, TaskSpec, references_in

MAX_ERRORS_SHOWN = 10


class MissionInvalid(ValueError):
    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
        more = len(errors) - MAX_ERRORS_SHOWN
        super().__init__(shown + (f"; and {more} more" if more > 0 else ""))


def check_tasks(tasks: Iterable[TaskSpec], kinds: Mapping[str, KindRoute] | None, now: float | None,
                existing: Mapping[str, TaskSpec] | None = None) -> None:
    """Raise MissionInvalid listing every problem of `tasks` (new) given `existing` tasks of the mission.

    `kinds` None skips the kind checks and `now` None the clock checks (offline validation).
    """
    tasks = list(tasks)
    existing = existing or {}
    static = static_problems(tasks, existing)
    errors = static + other_problems(tasks, kinds, now, existing, look_for_cycles=not static)
    if errors:
        raise MissionInvalid(in_task_order(errors, tasks))


def other_problems(tasks: list[TaskSpec], kinds: Mapping[str, KindRoute] | None, now: float | None,
                   existing: Mapping[str, TaskSpec], look_for_cycles: bool = True) -> list[str]:
    """Return the problems the kind and clock checks find, and dependency cycles.

    Cycles are looked for only in an otherwise sound graph.
    """
    graph = {**existing, **{task.id: task for task in tasks}}
    errors = kind_problems(tasks, kinds, graph) if kinds is not None else []
    if now is not None:
        errors += clock_problems(tasks, now)
    if look_for_cycles and not errors:
        cycle = find_cycle(graph)
        if cycle:
            errors.append(f"task {cycle[0]!r}: depends_on: dependency cycle {' -> '.join(cycle)}")
    return errors


def in_task_order(errors: list[str], tasks: list[TaskSpec]) -> list[str]:
    """Errors sorted by the task they name (stable), so each task's problems read together."""
    position = {f"task {task.id!r}:": index for index, task in enumerate(tasks)}
    position.update({f"task #{index}:": index for index in range(len(tasks))})

    def key(error: str) -> int:
        head = error.split(": ", 1)[0] + ":"
        return position.get(head, len(tasks))

    return sorted(errors, key=key)


def _name(task: TaskSpec, index: int) -> str:
    return f"task {task.id!r}" if task.id else f"task #{index}"


def static_problems(tasks: list[TaskSpec], existing: Mapping[str, TaskSpec]) -> list[str]:
    if not tasks:
        return ["tasks: a mission needs at least one task"] if not existing else ["tasks: no tasks to add"]
    errors: list[str] = []
    seen: dict[str, TaskSpec] = {}
    for index, task in enumerate(tasks):
        name = _name(task, index)
        if not TASK_ID.match(task.id or ""):
            errors.append(f"{name}: id: must be 1-64 letters, digits, '_' or '-'")
        elif task.id in seen or task.id in existing:
            errors.append(f"{name}: id: duplicate task id")
        seen.setdefault(task.id, task)
    graph = {**existing, **seen}
    for index, task in enumerate(tasks):
        name = _name(task, index)
        listed = set()
        for dependency in task.depends_on:
            if dependency == task.id:
                errors.append(f"{name}: depends_on: a task cannot depend on itself")
            elif dependency not in graph:
                errors.append(f"{name}: depends_on: unknown task {dependency!r}")
            elif dependency in listed:
                errors.append(f"{name}: depends_on: {dependency!r} is listed twice")
            listed.add(dependency)
        if task.deadline is not None and task.deadline_in is not None:
            errors.append(f"{name}: deadline_in: give deadline or deadline_in, not both")
        for field, value in (("deadline", task.deadline), ("deadline_in", task.deadline_in)):
            if value is not None and not (math.isfinite(value) and value > 0):
                errors.append(f"{name}: {field}: must be a positive, finite time, got {value}")
        if task.timeout is not None and not (math.isfinite(task.timeout) and task.timeout > 0):
            errors.append(f"{name}: timeout: must be a positive duration, got {task.timeout}")
        errors.extend(f"{name}: retry.{problem}" for problem in _retry_problems(task))
        for resource in task.resources:
            if not resource:
                errors.append(f"{name}: resources: empty resource name")
        errors.extend(f"{name}: {problem}" for problem in _reference_problems(task, graph))
    return errors


def kind_problems(tasks: list[TaskSpec], kinds: Mapping[str, KindRoute], graph: Mapping[str, TaskSpec]) -> list[str]:
    errors: list[str] = []
    for index, task in enumerate(tasks):
        name = _name(task, index)
        route = kinds.get(task.kind)
        if route is None:
            served = ", ".join(sorted(kinds)) or "none"
            errors.append(f"{name}: kind: {task.kind!r} is not served by any running engine (served: {served})")
            continue
        referencing = set()
        for key, value in task.parameters.items():
            for ref in references_in(value):
                referencing.add(key)
                source, _, path = ref.partition(".")
                result_key = path.split(".")[0]
                source_route = kinds.get(graph[source].kind) if source in graph else None
                if (source_route and source_route.spec.result_keys and result_key
                        and result_key not in source_route.spec.result_keys):
                    errors.append(f"{name}: parameters.{key}: {graph[source].kind} results have no key "
                                  f"{result_key!r} (they have: {', '.join(source_route.spec.result_keys)})")
        errors.extend(f"{name}: {problem}" for problem in route.spec.parameter_errors(
            task.parameters, skip=lambda parameter: parameter in referencing))
    return errors


def clock_problems(tasks: list[TaskSpec], now: float) -> list[str]:
    return [f"{_name(task, index)}: deadline: is in the past ({now - task.deadline:.3f} s ago)"
            for index, task in enumerate(tasks)
            if task.deadline is not None and math.isfinite(task.deadline) and task.deadline <= now]


def _retry_problems(task: TaskSpec) -> list[str]:
    retry = task.retry
    problems = []
    if retry.max_retries < 0:
        problems.append(f"max_retries: must be >= 0, got {retry.max_retries}")
    if not (math.isfinite(retry.initial_backoff) and retry.initial_backoff >= 0):
        problems.append(f"initial_backoff: must be >= 0, got {retry.initial_backoff}")
    if not (math.isfinite(retry.backoff_multiplier) and retry.backoff_multiplier >= 1):
        problems.append(f"backoff_multiplier: must be >= 1, got {retry.backoff_multiplier}")
    if not (math.isfinite(retry.max_backoff) and retry.max_backoff >= 0):
        problems.append(f"max_backoff: must be >= 0, got {retry.max_backoff}")
    return problems


def _reference_problems(task: TaskSpec, graph: Mapping[str, TaskSpec]) -> list[str]:
    problems = []
    for key, value in task.parameters.items():
        if has_non_finite(value):
            problems.append(f"parameters.{key}: NaN or infinity is not a valid value")
        for ref in references_in(value):
            source, _, path = ref.partition(".")
            if source not in graph:
                problems.append(f"parameters.{key}: refers to unknown task {source!r}")
            elif not depends_on_transitively(task, source, graph):
                problems.append(f"parameters.{key}: refers to task {source!r}, which this task does not depend on "
                                "(add it to depends_on)")
            elif not path.split(".")[0]:
                problems.append(f"parameters.{key}: reference {ref!r} names no result key")
    return problems


def depends_on_transitively(task: TaskSpec, source: str, graph: Mapping[str, TaskSpec]) -> bool:
    """Tell whether `task` runs only after `source` succeeded.

    Breadth first, so a direct dependency (the usual reference) is found at once even in a long chain.
    """
    seen: set[str] = set()
    frontier = list(task.depends_on)
    while frontier:
        if source in frontier:
            return True
        following = []
        for current in frontier:
            if current not in seen and current in graph:
                seen.add(current)
                following.extend(graph[current].depends_on)
        frontier = following
    return False


def find_cycle(graph: Mapping[str, TaskSpec]) -> list[str] | None:
    """One dependency cycle as [a, b, ..., a] (a depends on b ...), or None. Iterative DFS."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for root in graph:
        if colour[root] != white:
            continue
        path: list[str] = []
        stack = [(root, iter(graph[root].depends_on))]
        colour[root] = grey
        path.append(root)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = black
                stack.pop()
                path.pop()
            elif child in colour and colour[child] == grey:
                return path[path.index(child):] + [child]
            elif child in colour and colour[child] == white:
                colour[child] = grey
                path.append(child)
                stack.append((child, iter(graph[child].depends_on)))
    return None
