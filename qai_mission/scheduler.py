"""The mission engine's scheduler: a priority task graph over exclusive resources. No rclpy, no I/O.

It is driven by events (a mission added, an attempt succeeded/failed/was canceled, an engine lost,
time passing) and answers with commands (Dispatch a task to its engine, Cancel an attempt) and the set of
tasks and missions that changed, which the node journals before it acts on the commands.

Rules:
- ready tasks start by priority (higher first), then earliest deadline, then submission order;
- a task holds its exclusive resources from dispatch until its attempt has ended (succeeded, failed, or
  its cancel confirmed), so two holders of a resource never overlap;
- preemption: a ready task blocked only by lower-priority holders cancels them; it starts once every
  cancel is confirmed; a preempted task goes back to READY (not counted as a failure);
- a failed attempt retries per its policy (exponential backoff); a final failure skips the task's
  dependents and, unless the task is optional, fails the mission (what still runs is canceled);
- timeouts are per attempt (time spent waiting for a lost engine counts); a deadline passing fails the task;
- an engine that falls silent keeps its attempts (a stalled process beats again with its goals running);
  one that restarted, or stayed silent long enough to be gone, has lost them: its running tasks wait for
  it to return and run again, within their timeout; a task whose
  attempts keep taking its engine down (a "poison" task) fails after `max_engine_losses` such losses,
  instead of being sent to the restarted engine again and again;
- at most `max_running_per_engine` attempts run on one engine at once; more wait, in order, for a place.

Changes come out in two sets: every task whose state or progress changed (for state messages), and the
subset whose change must survive a crash (state transitions and results, not progress: the journal).
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from qai_edge.tasks import ON_RESTART_REDISPATCH
from qai_mission.model import (KindRoute, MissionSpec, MissionStatus, TaskSpec, TaskStatus, UnresolvedReference,
                               references_in, resolve_references)

RUNNING, CANCELING = TaskStatus.RUNNING, TaskStatus.CANCELING

# Why an attempt is being canceled, i.e. what its confirmed cancel turns into.
PREEMPT, CANCEL, TIMEOUT, DEADLINE, MISSION_ENDING = "preempt", "cancel", "timeout", "deadline", "mission_ending"


class Task:
    __slots__ = ("spec", "mission", "seq", "sort_key", "status", "attempt", "retries_used", "preemptions", "engine",
                 "progress", "message", "started_at", "finished_at", "result", "remaining_deps", "dependents",
                 "resources", "attempt_deadline", "timer_token", "queue_token", "retry_at", "pending_outcome",
                 "on_restart", "has_references", "goal_id", "engine_losses", "journal_row", "not_ready")

    def __init__(self, spec: TaskSpec, mission: "Mission", seq: int):
        self.spec = spec
        self.mission = mission
        self.seq = seq
        self.sort_key = (-spec.priority, spec.deadline if spec.deadline is not None else math.inf, mission.seq, seq)
        self.status = TaskStatus.PENDING
        self.attempt = 0  # dispatches so far
        self.retries_used = 0
        self.preemptions = 0
        self.engine = ""
        self.progress = math.nan
        self.message = ""
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.result: dict[str, Any] | None = None
        self.remaining_deps = 0
        self.dependents: list[Task] = []
        self.resources: frozenset[str] = spec.resources
        self.attempt_deadline: float | None = None
        self.timer_token = 0
        self.queue_token = 0
        self.retry_at: float | None = None
        self.pending_outcome = ""
        self.on_restart = ON_RESTART_REDISPATCH
        self.has_references = bool(spec.parameters) and any(references_in(v) for v in spec.parameters.values())
        self.goal_id = ""  # the current attempt's RunTask goal id (hex), journaled before the goal is sent
        self.engine_losses = 0  # attempts that ended because their engine died or restarted
        self.journal_row: int | None = None  # its row in the journal, once inserted (then it is updated)
        self.not_ready = ""  # why its engine last refused it as not ready (it waits for the kind to be ready)

    @property
    def id(self) -> str:
        return self.spec.id

    def __repr__(self) -> str:
        return f"<Task {self.mission.spec.id}/{self.spec.id} {self.status.name}>"


class Mission:
    __slots__ = ("spec", "seq", "status", "tasks", "message", "created_at", "finished_at", "cancel_requested",
                 "failing", "terminal_count", "goal_id")

    def __init__(self, spec: MissionSpec, seq: int, created_at: float):
        self.spec = spec
        self.seq = seq
        self.status = MissionStatus.ACCEPTED
        self.tasks: dict[str, Task] = {}
        self.message = ""
        self.created_at = created_at
        self.finished_at: float | None = None
        self.cancel_requested = False
        self.failing = False
        self.terminal_count = 0
        self.goal_id = ""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def name(self) -> str:
        return self.spec.name

    def count(self, status: TaskStatus) -> int:
        return sum(1 for task in self.tasks.values() if task.status == status)


class _Results(Mapping):
    """Task id -> result of the mission's tasks that have one, looked up on demand."""

    def __init__(self, mission: Mission):
        self._tasks = mission.tasks

    def __getitem__(self, task_id: str) -> dict:
        task = self._tasks.get(task_id)
        if task is None or task.result is None:
            raise KeyError(task_id)
        return task.result

    def __iter__(self):
        return (task_id for task_id, task in self._tasks.items() if task.result is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(slots=True)
class Dispatch:
    task: Task
    route: KindRoute
    attempt: int
    parameters: Mapping[str, Any]
    timeout: float | None  # what is left of the attempt's timeout


@dataclass(slots=True)
class Reattach:
    """After a restart: follow (and, when `cancel`, cancel) the goal of an attempt that was in flight."""

    task: Task
    route: KindRoute | None
    attempt: int
    goal_id: str
    cancel: bool


@dataclass(slots=True)
class Cancel:
    task: Task
    engine: str
    attempt: int
    reason: str


@dataclass(slots=True)
class Changes:
    """What changed since the last take_changes().

    Missions, tasks (state or progress), and the tasks whose change the journal must keep (a subset of
    `tasks`).
    """

    missions: list[Mission]
    tasks: list[Task]
    durable: list[Task]


class Scheduler:
    def __init__(self, clock: Callable[[], float], max_engine_losses: int = 3,
                 max_running_per_engine: int | None = None):
        self.clock = clock
        self.max_engine_losses = max_engine_losses
        self.max_running_per_engine = max_running_per_engine
        self.missions: dict[str, Mission] = {}
        self.routes: dict[str, KindRoute] = {}
        self.available_engines: set[str] = set()
        self.transitions = 0
        self.missed_deadlines = 0
        self._seq = itertools.count()
        self._ready: list = []
        self._holders: dict[str, Task] = {}
        self._waiting_resource: dict[str, list] = {}
        self._waiting_engine: list[Task] = []
        self._running_on: dict[str, set[Task]] = {}
        self._awaiting_reattach: list[Task] = []
        self._silent_engines: set[str] = set()  # lost, not gone: their attempts are kept
        self._timers: list = []
        self._commands: list = []
        self._changed_tasks: dict[Task, Task] = {}  # insertion-ordered set (tasks hash by identity)
        self._durable_tasks: dict[Task, Task] = {}
        self._changed_missions: dict[str, Mission] = {}
        self._waiting_place: dict[str, list] = {}  # engine -> heap of ready tasks waiting for a place on it
        self._goal_prefix = os.urandom(8).hex()  # goal ids: unique across restarts, cheap to make
        self._goal_counter = itertools.count()

    # -- Inputs -------------------------------------------------------------------------------

    def set_routes(self, routes: Mapping[str, KindRoute], available_engines: Iterable[str]) -> None:
        """Set the kinds served now, and which engines are up. Tasks waiting for an engine are reconsidered."""
        self.routes = dict(routes)
        self.available_engines = set(available_engines)
        for engine in self._silent_engines & self.available_engines:  # back: what it ran goes on
            self._silent_engines.discard(engine)
            for task in self._running_on.get(engine, ()):
                if task.status == RUNNING:
                    task.message = f"engine {engine} back; attempt {task.attempt} goes on"
                    self._changed(task, durable=False)
        waiting, self._waiting_engine = self._waiting_engine, []
        for task in waiting:
            if task.status == TaskStatus.READY:
                self._push_ready(task)
        self._reattach_ready_engines()
        self.schedule()

    def add_mission(self, spec: MissionSpec, goal_id: str = "") -> Mission:
        """Add an already validated mission and start what can start."""
        now = self.clock()
        spec = MissionSpec(spec.id, spec.name, tuple(task.accepted_at(now) for task in spec.tasks))
        mission = Mission(spec, next(self._seq), now)
        mission.goal_id = goal_id
        self.missions[spec.id] = mission
        self._changed_missions[spec.id] = mission
        self._add_tasks(mission, spec.tasks, now)
        self.schedule()
        return mission

    def add_tasks(self, mission_id: str, specs: Iterable[TaskSpec]) -> None:
        """Add validated tasks to a mission that has not finished."""
        mission = self.missions[mission_id]
        if mission.status.terminal or mission.cancel_requested or mission.failing:
            raise ValueError(f"mission {mission_id!r} is {mission.status.name.lower()}: no tasks can be added")
        now = self.clock()
        specs = tuple(task.accepted_at(now) for task in specs)
        mission.spec = MissionSpec(mission.spec.id, mission.spec.name, mission.spec.tasks + specs)
        self._changed_missions[mission_id] = mission
        self._add_tasks(mission, specs, now)
        self.schedule()

    def task_started(self, task: Task, attempt: int) -> None:
        """Record that the engine accepted the goal."""
        if task.attempt == attempt and task.status == RUNNING:
            task.message = f"running on {task.engine}"
            self._changed(task, durable=False)

    def task_feedback(self, task: Task, attempt: int, progress: float, status: str) -> None:
        if task.attempt == attempt and task.status in (RUNNING, CANCELING):
            task.progress = progress
            if status and task.status == RUNNING:  # while canceling, the message is why (and stays)
                task.message = status
            self._changed(task, durable=False)

    def task_succeeded(self, task: Task, attempt: int, result: Mapping[str, Any]) -> None:
        if not self._current(task, attempt):
            return
        self._release(task)
        task.result = dict(result)
        task.progress = 1.0
        self._set_status(task, TaskStatus.SUCCEEDED, "succeeded")
        for dependent in task.dependents:
            dependent.remaining_deps -= 1
            if dependent.remaining_deps == 0 and dependent.status == TaskStatus.PENDING:
                self._make_ready(dependent)
        self._check_mission(task.mission)
        self.schedule()

    def task_failed(self, task: Task, attempt: int, message: str, retryable: bool = True) -> None:
        if not self._current(task, attempt):
            return
        if task.status == CANCELING and task.pending_outcome != PREEMPT:
            self._attempt_ended_by_cancel(task)
        else:
            self._attempt_failed(task, message, retryable)
        self._check_mission(task.mission)
        self.schedule()

    def task_not_ready(self, task: Task, attempt: int, message: str) -> None:
        """Record that the engine could not take the attempt yet: its kind is not ready there.

        The task waits for the kind to be announced ready (schedule() holds it while its route says not ready)
        and is sent again then; no retry of its policy is used. Its attempt clock keeps running, so the wait
        is bounded by the task's timeout.
        """
        if not self._current(task, attempt):
            return
        if task.status == CANCELING and task.pending_outcome != PREEMPT:
            self._attempt_ended_by_cancel(task)
        else:
            self._release(task)
            task.pending_outcome = ""
            task.not_ready = f"{task.engine}: {message}"
            self._make_ready(task, f"waiting for {task.spec.kind} to be ready on {task.not_ready}")
        self._check_mission(task.mission)
        self.schedule()

    def task_canceled(self, task: Task, attempt: int) -> None:
        """Record that the engine confirmed the attempt stopped."""
        if not self._current(task, attempt):
            return
        if task.status == RUNNING:  # canceled by someone else than us
            self._attempt_failed(task, "canceled by its engine", retryable=True)
        else:
            self._attempt_ended_by_cancel(task)
        self._check_mission(task.mission)
        self.schedule()

    def engine_silent(self, engine: str, why: str) -> None:
        """Record that the engine fell silent: nothing new goes to it, but its attempts are not given up.

        A process stalled by a loaded CPU beats again with its goals still running; sending them again would
        run a task twice. Its restart or its staying silent (engine_lost) settles them.
        """
        self.available_engines.discard(engine)
        self._silent_engines.add(engine)
        for task in sorted(self._running_on.get(engine, ()), key=lambda t: t.seq):
            if task.status == RUNNING:
                task.message = f"engine {engine} lost ({why}); waiting for it to return"
                self._changed(task, durable=False)

    def engine_lost(self, engine: str) -> None:
        """Record that the engine's process is gone: its attempts have stopped; running tasks wait for it to return."""
        self._silent_engines.discard(engine)
        self.available_engines.discard(engine)
        tasks = sorted(self._running_on.get(engine, ()), key=lambda t: t.seq)
        # Every attempt on the engine has stopped before any consequence (a failed mission canceling the
        # rest) is drawn, so nothing is asked of the lost engine.
        poisoned = []
        for task in tasks:
            if task.status == RUNNING:
                self._release(task)
                task.engine_losses += 1
                if task.engine_losses >= self.max_engine_losses:
                    poisoned.append(task)
                    self._reset_attempt_clock(task)
                    self._set_status(task, TaskStatus.READY, f"engine {engine} lost")
                else:
                    self._set_status(task, TaskStatus.READY, f"engine {engine} lost; waiting for it to return")
                    self._push_ready(task)
        for task in poisoned:
            self._final_fail(task, f"engine lost {task.engine_losses} times while running this task (last: "
                                   f"{engine}); not sent again")
        for task in tasks:
            if task.status == CANCELING:
                self._attempt_ended_by_cancel(task)
        for task in tasks:
            self._check_mission(task.mission)
        self.schedule()

    def cancel_task(self, mission_id: str, task_id: str, reason: str = "") -> None:
        """Cancel a task; raise LookupError / ValueError with a readable message when it cannot."""
        mission = self._mission(mission_id)
        task = mission.tasks.get(task_id)
        if task is None:
            raise LookupError(f"mission {mission_id!r} has no task {task_id!r}")
        if task.status.terminal:
            raise ValueError(f"task {task_id!r} already ended ({task.status.name})")
        self._cancel(task, CANCEL, f"canceled{': ' + reason if reason else ''}")
        self._check_mission(mission)
        self.schedule()

    def cancel_mission(self, mission_id: str, reason: str = "") -> None:
        mission = self._mission(mission_id)
        if mission.status.terminal:
            raise ValueError(f"mission {mission_id!r} already ended ({mission.status.name})")
        mission.cancel_requested = True
        mission.message = f"canceled{': ' + reason if reason else ''}"
        if mission.status != MissionStatus.CANCELING:
            mission.status = MissionStatus.CANCELING
            self._changed_missions[mission_id] = mission
        for task in mission.tasks.values():
            if not task.status.terminal:
                self._cancel(task, MISSION_ENDING, mission.message, skip_dependents=False)
        self._check_mission(mission)
        self.schedule()

    def tick(self) -> None:
        """Fire due timeouts, deadlines and retry backoffs."""
        now = self.clock()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, what, task, token = heapq.heappop(timers)
            if task.status.terminal:
                continue
            if what == "retry":
                if task.status == TaskStatus.RETRY_WAIT and token == task.timer_token:
                    task.retry_at = None
                    self._make_ready(task)
            elif what == "timeout":
                if token == task.timer_token and task.attempt_deadline is not None:
                    self._on_timeout(task)
            elif what == "deadline":
                self._on_deadline(task)
            self._check_mission(task.mission)
        self.schedule()

    def idle(self) -> bool:
        """Whether a tick has nothing to do: every mission finished (a timer left of one fires into nothing)."""
        return all(m.status.terminal for m in self.missions.values())

    def next_timer(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def attempt_lost(self, task: Task, attempt: int) -> None:
        """Handle an attempt whose goal the engine no longer knows after a restart.

        The kind's on_restart policy says whether the task runs again or fails.
        """
        if not self._current(task, attempt):
            return
        self._release(task)
        self._reset_attempt_clock(task)
        if task.status == CANCELING:
            task.pending_outcome, outcome = "", task.pending_outcome
            if outcome == PREEMPT:
                self._make_ready(task, "requeued after a mission engine restart")
            elif outcome in (CANCEL, MISSION_ENDING):
                self._set_status(task, TaskStatus.CANCELED, task.message)
                if outcome == CANCEL:
                    self._skip_dependents(task, f"skipped: {task.id!r} was canceled")
            else:
                self._attempt_failed(task, task.message, retryable=outcome == TIMEOUT)
        elif task.on_restart == ON_RESTART_REDISPATCH:
            self._make_ready(task, "interrupted by a mission engine restart; runs again")
        else:
            self._final_fail(task, f"interrupted by a mission engine restart, and {task.spec.kind} "
                                   "is not safe to run again")
        self._check_mission(task.mission)
        self.schedule()

    def restore(self, record) -> Mission:
        """Rebuild a mission from its journal record (qai_mission.journal.MissionRecord).

        Finished tasks stay finished; attempts that were in flight keep their resources and are reattached
        (Reattach commands) once their engine is up; timers pick up where they were.
        """
        spec = MissionSpec(record.id, record.name, tuple(t.spec for t in record.tasks))
        mission = Mission(spec, record.seq, record.created_at)
        self._seq = itertools.count(max(next(self._seq), record.seq + 1, *(t.seq + 1 for t in record.tasks)))
        mission.goal_id = record.goal_id
        mission.status = record.status
        mission.message = record.message
        mission.cancel_requested = record.cancel_requested
        mission.failing = record.failing
        mission.finished_at = record.finished_at
        self.missions[mission.id] = mission
        for saved in record.tasks:
            task = Task(saved.spec, mission, saved.seq)
            for name in ("status", "attempt", "retries_used", "preemptions", "engine", "message", "result",
                         "started_at", "finished_at", "retry_at", "attempt_deadline", "pending_outcome",
                         "on_restart", "goal_id", "engine_losses"):
                setattr(task, name, getattr(saved, name))
            task.journal_row = saved.row
            task.resources = saved.resources or saved.spec.resources
            mission.tasks[task.id] = task
            if task.status.terminal:
                mission.terminal_count += 1
        now = self.clock()
        for task in mission.tasks.values():
            for dependency_id in task.spec.depends_on:
                dependency = mission.tasks[dependency_id]
                dependency.dependents.append(task)
                if dependency.status != TaskStatus.SUCCEEDED:
                    task.remaining_deps += 1
            if task.status.terminal:
                continue
            if task.spec.deadline is not None:
                self._push_timer(task.spec.deadline, "deadline", task, 0)
            if task.status in (RUNNING, CANCELING):
                for resource in task.resources:
                    self._holders[resource] = task
                self._running_on.setdefault(task.engine, set()).add(task)
                self._awaiting_reattach.append(task)
                if task.attempt_deadline is not None:
                    self._push_timer(task.attempt_deadline, "timeout", task, task.timer_token)
            elif task.status == TaskStatus.RETRY_WAIT:
                self._push_timer(task.retry_at if task.retry_at is not None else now, "retry", task, task.timer_token)
            elif task.status == TaskStatus.READY:
                self._push_ready(task)
        self._changed_missions[mission.id] = mission
        self._check_mission(mission)
        self._reattach_ready_engines()
        return mission

    def _reattach_ready_engines(self) -> None:
        waiting = []
        for task in self._awaiting_reattach:
            if task.status not in (RUNNING, CANCELING):
                continue
            if task.engine in self.available_engines:
                route = self.routes.get(task.spec.kind)
                self._commands.append(Reattach(task, route, task.attempt, task.goal_id, task.status == CANCELING))
            else:
                waiting.append(task)
        self._awaiting_reattach = waiting

    # -- Outputs ------------------------------------------------------------------------------

    def take_commands(self) -> list:
        commands, self._commands = self._commands, []
        return commands

    def take_changes(self) -> Changes:
        changes = Changes(list(self._changed_missions.values()), list(self._changed_tasks.values()),
                          list(self._durable_tasks.values()))
        self._changed_missions.clear()
        self._changed_tasks.clear()
        self._durable_tasks.clear()
        return changes

    def queue_depth(self) -> int:
        return sum(1 for m in self.missions.values() if not m.status.terminal
                   for t in m.tasks.values() if t.status in (TaskStatus.READY, TaskStatus.RETRY_WAIT))

    def running_count(self) -> int:
        return sum(len(tasks) for tasks in self._running_on.values())

    def waiting_for_place(self) -> int:
        return sum(len(heap) for heap in self._waiting_place.values())

    def forget(self, mission_id: str) -> None:
        """Drop a finished mission from memory (the journal keeps it)."""
        mission = self.missions.get(mission_id)
        if mission is not None and mission.status.terminal:
            del self.missions[mission_id]

    # -- Scheduling -----------------------------------------------------------------------------

    def schedule(self) -> None:
        """Start every ready task whose engine is up and whose resources are free, best first.

        Tasks blocked on a resource wait in that resource's heap; while the resource is free, the top of
        its heap competes with the ready heap, so a release wakes one task, not all of its waiters.
        """
        ready = self._ready
        holders = self._holders
        waiting = self._waiting_resource
        while True:
            best, source = (ready[0], ready) if ready else (None, None)
            for resource, bucket in waiting.items():
                if bucket and resource not in holders and (best is None or bucket[0] < best):
                    best, source = bucket[0], bucket
            if best is None:
                return
            heapq.heappop(source)
            _, token, task = best
            if task.status != TaskStatus.READY or token != task.queue_token:
                continue
            route = self.routes.get(task.spec.kind)
            if route is None or route.engine not in self.available_engines:
                self._waiting_engine.append(task)
                continue
            if not route.spec.ready:
                self._hold_until_ready(task, route)
                continue
            cap = self.max_running_per_engine
            if cap is not None and len(self._running_on.get(route.engine, ())) >= cap:
                heapq.heappush(self._waiting_place.setdefault(route.engine, []), best)
                continue
            resources = task.resources | route.spec.resources
            busy = [r for r in resources if r in holders]
            if busy:
                self._maybe_preempt(task, busy)
                heapq.heappush(waiting.setdefault(busy[0], []), best)
                continue
            self._dispatch(task, route, resources)

    def _hold_until_ready(self, task: Task, route: KindRoute) -> None:
        """Keep a task whose kind is announced not ready until it is, for at most the task's timeout."""
        self._waiting_engine.append(task)
        why = f"{route.engine}: {route.spec.not_ready or 'not ready'}"
        if task.not_ready == why:
            return
        task.not_ready = why
        if task.attempt_deadline is None:
            timeout = task.spec.timeout or route.spec.default_timeout
            if timeout:
                task.attempt_deadline = self.clock() + timeout
                self._push_timer(task.attempt_deadline, "timeout", task, task.timer_token)
        self._set_status(task, TaskStatus.READY, f"waiting for {task.spec.kind} to be ready on {why}")

    def _maybe_preempt(self, task: Task, busy: list[str]) -> None:
        holders = list(dict.fromkeys(self._holders[r] for r in busy))
        if all(holder.spec.priority < task.spec.priority for holder in holders):
            for holder in holders:
                if holder.status == RUNNING:
                    self._request_cancel(holder, PREEMPT, f"preempted by {task.id!r} (priority {task.spec.priority})")

    def _dispatch(self, task: Task, route: KindRoute, resources: frozenset[str]) -> None:
        mission = task.mission
        parameters = task.spec.parameters
        if task.has_references:
            try:
                parameters = resolve_references(dict(parameters), _Results(mission))
            except UnresolvedReference as error:
                self._final_fail(task, f"parameters: {error}")
                self._check_mission(mission)
                return
        now = self.clock()
        task.attempt += 1
        task.not_ready = ""
        task.goal_id = f"{self._goal_prefix}{next(self._goal_counter):016x}"
        task.engine = route.engine
        task.resources = resources
        task.on_restart = route.spec.on_restart
        task.started_at = now
        for resource in resources:
            self._holders[resource] = task
        self._running_on.setdefault(route.engine, set()).add(task)
        if task.attempt_deadline is None:
            timeout = task.spec.timeout or route.spec.default_timeout
            if timeout:
                task.attempt_deadline = now + timeout
                self._push_timer(task.attempt_deadline, "timeout", task, task.timer_token)
        remaining = None if task.attempt_deadline is None else max(0.0, task.attempt_deadline - now)
        self._set_status(task, RUNNING, f"dispatched to {route.engine} (attempt {task.attempt})")
        if mission.status == MissionStatus.ACCEPTED:
            mission.status = MissionStatus.RUNNING
            self._changed_missions[mission.id] = mission
        self._commands.append(Dispatch(task, route, task.attempt, parameters, remaining))

    # -- Transitions ----------------------------------------------------------------------------

    def _add_tasks(self, mission: Mission, specs: Iterable[TaskSpec], now: float) -> None:
        tasks = mission.tasks
        new = []
        for spec in specs:
            task = Task(spec, mission, next(self._seq))
            tasks[spec.id] = task
            new.append(task)
            self._changed_tasks[task] = self._durable_tasks[task] = task
        for task in new:
            blocked_by = None
            for dependency_id in task.spec.depends_on:
                dependency = tasks[dependency_id]
                dependency.dependents.append(task)
                status = dependency.status
                if status != TaskStatus.SUCCEEDED:
                    task.remaining_deps += 1
                    if blocked_by is None and status >= TaskStatus.SUCCEEDED:
                        blocked_by = dependency
            if task.spec.deadline is not None:
                self._push_timer(task.spec.deadline, "deadline", task, 0)
            if blocked_by is not None:
                self._skip(task, f"skipped: {blocked_by.id!r} ended {blocked_by.status.name}")
        for task in new:
            if task.remaining_deps == 0 and task.status == TaskStatus.PENDING:
                self._make_ready(task)
        self._check_mission(mission)

    def _set_status(self, task: Task, status: TaskStatus, message: str) -> None:
        task.status = status
        task.message = message
        self.transitions += 1
        if status >= TaskStatus.SUCCEEDED:
            task.finished_at = self.clock()
            task.mission.terminal_count += 1
        self._changed_tasks[task] = task
        self._durable_tasks[task] = task

    def _changed(self, task: Task, durable: bool = True) -> None:
        self._changed_tasks[task] = task
        if durable:
            self._durable_tasks[task] = task

    def _make_ready(self, task: Task, message: str = "ready") -> None:
        self._set_status(task, TaskStatus.READY, message)
        self._push_ready(task)

    def _push_ready(self, task: Task) -> None:
        task.queue_token += 1
        heapq.heappush(self._ready, (task.sort_key, task.queue_token, task))

    def _push_timer(self, when: float, what: str, task: Task, token: int) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), what, task, token))

    def _release(self, task: Task) -> None:
        """Free the resources of an attempt that has ended."""
        for resource in task.resources:
            if self._holders.get(resource) is task:
                del self._holders[resource]  # its waiters compete again in schedule()
        running = self._running_on.get(task.engine)
        if running is not None and task in running:
            running.discard(task)
            waiting = self._waiting_place.get(task.engine)
            while waiting:  # a place on the engine is free: the best task waiting for one competes again
                entry = heapq.heappop(waiting)
                _, token, waiter = entry
                if waiter.status == TaskStatus.READY and token == waiter.queue_token:
                    heapq.heappush(self._ready, entry)
                    break

    def _current(self, task: Task, attempt: int) -> bool:
        """Whether an engine's report is about the task's live attempt (not a stale one)."""
        return task.attempt == attempt and task.status in (RUNNING, CANCELING)

    def _request_cancel(self, task: Task, outcome: str, reason: str) -> None:
        task.pending_outcome = outcome
        self._set_status(task, CANCELING, reason)
        self._commands.append(Cancel(task, task.engine, task.attempt, reason))

    def _cancel(self, task: Task, outcome: str, reason: str, skip_dependents: bool = True) -> None:
        if task.status == RUNNING:
            self._request_cancel(task, outcome, reason)
        elif task.status == CANCELING:
            if task.pending_outcome == PREEMPT:
                task.pending_outcome = outcome
            task.message = reason
            self._changed(task)
        else:
            self._set_status(task, TaskStatus.CANCELED, reason)
            if skip_dependents:
                self._skip_dependents(task, f"skipped: {task.id!r} was canceled")

    def _attempt_ended_by_cancel(self, task: Task) -> None:
        self._release(task)
        outcome = task.pending_outcome
        task.pending_outcome = ""
        if outcome == PREEMPT:
            task.preemptions += 1
            self._reset_attempt_clock(task)
            self._make_ready(task, f"requeued: {task.message}")
        elif outcome == TIMEOUT:
            self._attempt_failed(task, task.message, retryable=True)
        elif outcome == DEADLINE:
            self._final_fail(task, task.message)
        else:  # CANCEL, MISSION_ENDING
            self._set_status(task, TaskStatus.CANCELED, task.message)
            if outcome == CANCEL:
                self._skip_dependents(task, f"skipped: {task.id!r} was canceled")

    def _attempt_failed(self, task: Task, message: str, retryable: bool) -> None:
        self._release(task)
        self._reset_attempt_clock(task)
        mission = task.mission
        retry = task.spec.retry
        if retryable and task.retries_used < retry.max_retries and not (mission.failing or mission.cancel_requested):
            delay = retry.delay(task.retries_used)
            task.retries_used += 1
            task.retry_at = self.clock() + delay
            self._set_status(task, TaskStatus.RETRY_WAIT, f"attempt {task.attempt} failed: {message}; "
                             f"retry {task.retries_used}/{retry.max_retries} in {delay:.3g} s")
            self._push_timer(task.retry_at, "retry", task, task.timer_token)
        else:
            self._final_fail(task, message)

    def _reset_attempt_clock(self, task: Task) -> None:
        task.attempt_deadline = None
        task.timer_token += 1
        task.not_ready = ""  # a new attempt's wait for readiness gets a new clock

    def _final_fail(self, task: Task, message: str) -> None:
        self._set_status(task, TaskStatus.FAILED, message)
        self._skip_dependents(task, f"skipped: {task.id!r} failed")
        mission = task.mission
        if not task.spec.optional and not mission.failing and not mission.cancel_requested:
            mission.failing = True
            mission.message = f"task {task.id!r} failed: {message}"
            self._changed_missions[mission.id] = mission
            for other in mission.tasks.values():
                if not other.status.terminal:
                    if other.status in (RUNNING, CANCELING):
                        self._cancel(other, MISSION_ENDING, f"canceled: {mission.message}")
                    else:
                        self._skip(other, f"skipped: {mission.message}")

    def _skip(self, task: Task, reason: str) -> None:
        self._set_status(task, TaskStatus.SKIPPED, reason)
        self._skip_dependents(task, f"skipped: {task.id!r} was skipped")

    def _skip_dependents(self, task: Task, reason: str) -> None:
        stack = list(task.dependents)
        while stack:
            dependent = stack.pop()
            if not dependent.status.terminal and dependent.status not in (RUNNING, CANCELING):
                self._set_status(dependent, TaskStatus.SKIPPED, reason)
                stack.extend(dependent.dependents)

    def _on_timeout(self, task: Task) -> None:
        route = self.routes.get(task.spec.kind)
        timeout = task.spec.timeout or (route.spec.default_timeout if route is not None else None)
        message = f"timed out after {timeout:g} s" if timeout else "timed out"
        if task.status == RUNNING:
            self._request_cancel(task, TIMEOUT, message)
        elif task.status == TaskStatus.READY and task.not_ready:  # its kind was never ready again in time
            self._attempt_failed(task, f"{message} waiting for {task.spec.kind} to be ready on {task.not_ready}",
                                 retryable=True)
        elif task.status == TaskStatus.READY:  # interrupted: its engine did not come back in time
            self._attempt_failed(task, f"{message}: engine {task.engine} did not return", retryable=True)

    def _on_deadline(self, task: Task) -> None:
        self.missed_deadlines += 1
        message = "missed its deadline"
        if task.status == RUNNING:
            self._request_cancel(task, DEADLINE, message)
        elif task.status == CANCELING:
            if task.pending_outcome in (PREEMPT, TIMEOUT):
                task.pending_outcome = DEADLINE
                task.message = message
                self._changed(task)
        else:
            self._final_fail(task, message)

    def _check_mission(self, mission: Mission) -> None:
        if mission.status.terminal or mission.terminal_count < len(mission.tasks):
            return
        if mission.cancel_requested:
            mission.status = MissionStatus.CANCELED
        elif mission.failing:
            mission.status = MissionStatus.FAILED
        else:
            mission.status = MissionStatus.SUCCEEDED
            counts = {status: mission.count(status) for status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED,
                                                                   TaskStatus.CANCELED, TaskStatus.SKIPPED)}
            mission.message = ", ".join(f"{n} {status.name.lower()}" for status, n in counts.items() if n)
        mission.finished_at = self.clock()
        self._changed_missions[mission.id] = mission

    def _mission(self, mission_id: str) -> Mission:
        mission = self.missions.get(mission_id)
        if mission is None:
            raise LookupError(f"no mission {mission_id!r}")
        return mission
