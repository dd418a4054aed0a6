"""Checks a mission (or tasks added to a running one) before anything runs. No rclpy import.

Every error names the task and the field: `task 'survey': parameters.speed: -1 is less than the
minimum of 0`. A rejected mission or addition changes nothing.
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


def check_tasks(tasks: Iterable[TaskSpec], kinds: Mapping[str, KindRoute], now: float,
                existing: Mapping[str, TaskSpec] | None = None) -> None:
    """Raise MissionInvalid listing every problem of `tasks` (new) given `existing` tasks of the mission."""
    tasks = list(tasks)
    existing = existing or {}
    errors: list[str] = []
    if not tasks:
        raise MissionInvalid(["tasks: a mission needs at least one task"] if not existing
                             else ["tasks: no tasks to add"])

    seen: dict[str, TaskSpec] = {}
    for index, task in enumerate(tasks):
        name = f"task {task.id!r}" if task.id else f"task #{index}"
        if not TASK_ID.match(task.id or ""):
            errors.append(f"{name}: id: must be 1-64 letters, digits, '_' or '-'")
        elif task.id in seen or task.id in existing:
            errors.append(f"{name}: id: duplicate task id")
        seen.setdefault(task.id, task)
    graph = {**existing, **seen}

    for index, task in enumerate(tasks):
        name = f"task {task.id!r}" if task.id else f"task #{index}"
        route = kinds.get(task.kind)
        if route is None:
            served = ", ".join(sorted(kinds)) or "none"
            errors.append(f"{name}: kind: {task.kind!r} is not served by any running engine (served: {served})")
        listed = set()
        for dependency in task.depends_on:
            if dependency == task.id:
                errors.append(f"{name}: depends_on: a task cannot depend on itself")
            elif dependency not in graph:
                errors.append(f"{name}: depends_on: unknown task {dependency!r}")
            elif dependency in listed:
                errors.append(f"{name}: depends_on: {dependency!r} is listed twice")
            listed.add(dependency)
        if task.deadline is not None:
            if not math.isfinite(task.deadline):
                errors.append(f"{name}: deadline: must be a finite time")
            elif task.deadline <= now:
                errors.append(f"{name}: deadline: is in the past ({now - task.deadline:.3f} s ago)")
        if task.timeout is not None and not (math.isfinite(task.timeout) and task.timeout > 0):
            errors.append(f"{name}: timeout: must be a positive duration, got {task.timeout}")
        errors.extend(f"{name}: retry.{problem}" for problem in _retry_problems(task))
        for resource in task.resources:
            if not resource:
                errors.append(f"{name}: resources: empty resource name")
        errors.extend(f"{name}: {problem}" for problem in _parameter_problems(task, kinds, graph))

    if not errors:
        cycle = find_cycle(graph)
        if cycle:
            errors.append(f"task {cycle[0]!r}: depends_on: dependency cycle {' -> '.join(cycle)}")
    if errors:
        raise MissionInvalid(errors)


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


def _parameter_problems(task: TaskSpec, kinds: Mapping[str, KindRoute], graph: Mapping[str, TaskSpec]) -> list[str]:
    problems = []
    referencing = set()
    for key, value in task.parameters.items():
        if has_non_finite(value):
            problems.append(f"parameters.{key}: NaN or infinity is not a valid value")
        for ref in references_in(value):
            referencing.add(key)
            source, _, path = ref.partition(".")
            result_key = path.split(".")[0]
            source_route = kinds.get(graph[source].kind) if source in graph else None
            if source not in graph:
                problems.append(f"parameters.{key}: refers to unknown task {source!r}")
            elif source not in ancestors(task, graph):
                problems.append(f"parameters.{key}: refers to task {source!r}, which this task does not depend on "
                                "(add it to depends_on)")
            elif not result_key:
                problems.append(f"parameters.{key}: reference {ref!r} names no result key")
            elif source_route and source_route.spec.result_keys and result_key not in source_route.spec.result_keys:
                problems.append(f"parameters.{key}: {graph[source].kind} results have no key {result_key!r} "
                                f"(they have: {', '.join(source_route.spec.result_keys)})")
    route = kinds.get(task.kind)
    if route is not None:
        problems.extend(route.spec.parameter_errors(task.parameters, skip=lambda name: name in referencing))
    return problems


def ancestors(task: TaskSpec, graph: Mapping[str, TaskSpec]) -> set[str]:
    found: set[str] = set()
    stack = list(task.depends_on)
    while stack:
        current = stack.pop()
        if current in found or current not in graph:
            continue
        found.add(current)
        stack.extend(graph[current].depends_on)
    return found


def find_cycle(graph: Mapping[str, TaskSpec]) -> list[str] | None:
    """One dependency cycle as [a, b, ..., a] (a depends on b ...), or None. Iterative DFS."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for root in graph:
        if colour[root] != WHITE:
            continue
        path: list[str] = []
        stack = [(root, iter(graph[root].depends_on))]
        colour[root] = GREY
        path.append(root)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
                path.pop()
            elif child in colour and colour[child] == GREY:
                return path[path.index(child):] + [child]
            elif child in colour and colour[child] == WHITE:
                colour[child] = GREY
                path.append(child)
                stack.append((child, iter(graph[child].depends_on)))
    return None
