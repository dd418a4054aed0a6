"""Drive the mission scheduler in-process.

A fake clock, kinds on two engines, and helpers to answer its commands the way engines would.
"""

from __future__ import annotations

from qai_edge.tasks import TaskKindSpec
from qai_mission.model import KindRoute, MissionSpec, RetryPolicy, TaskSpec
from qai_mission.scheduler import Cancel, Dispatch, Scheduler

MOTION = "motion"

ROUTES = {
    "move": KindRoute(TaskKindSpec("move", resources=frozenset({MOTION}), result_keys=("position",)),
                      "/io", "/io/run_task"),
    "scan": KindRoute(TaskKindSpec("scan", result_keys=("samples",)), "/io", "/io/run_task"),
    "plan": KindRoute(TaskKindSpec("plan", result_keys=("order",)), "/quantum", "/quantum/run_task"),
    "slow": KindRoute(TaskKindSpec("slow", default_timeout=10.0), "/quantum", "/quantum/run_task"),
    "return_home": KindRoute(TaskKindSpec("return_home", resources=frozenset({MOTION})), "/io", "/io/run_task"),
}


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def task(id, kind="scan", **fields) -> TaskSpec:
    if "depends_on" in fields:
        fields["depends_on"] = tuple(fields["depends_on"])
    if "resources" in fields:
        fields["resources"] = frozenset(fields["resources"])
    if "retry" in fields and isinstance(fields["retry"], dict):
        fields["retry"] = RetryPolicy(**fields["retry"])
    return TaskSpec(id=id, kind=kind, **fields)


def mission(id, *tasks, name="") -> MissionSpec:
    return MissionSpec(id=id, name=name, tasks=tuple(tasks))


class Harness:
    def __init__(self, routes=ROUTES, engines=("/io", "/quantum")):
        self.clock = FakeClock()
        self.scheduler = Scheduler(self.clock)
        self.scheduler.set_routes(routes, engines)
        self.log: list = []  # every command, in order

    def add(self, *tasks, id="m1"):
        self.scheduler.add_mission(mission(id, *tasks))
        return self.commands()

    def commands(self) -> list:
        commands = self.scheduler.take_commands()
        self.log.extend(commands)
        return commands

    def dispatched(self, commands=None) -> list[str]:
        return [c.task.id for c in (self.commands() if commands is None else commands) if isinstance(c, Dispatch)]

    def task(self, task_id, mission_id="m1"):
        return self.scheduler.missions[mission_id].tasks[task_id]

    def succeed(self, task_id, result=None, mission_id="m1"):
        t = self.task(task_id, mission_id)
        self.scheduler.task_succeeded(t, t.attempt, result or {})
        return self.commands()

    def fail(self, task_id, message="boom", retryable=True, mission_id="m1"):
        t = self.task(task_id, mission_id)
        self.scheduler.task_failed(t, t.attempt, message, retryable)
        return self.commands()

    def confirm_cancel(self, task_id, mission_id="m1"):
        t = self.task(task_id, mission_id)
        self.scheduler.task_canceled(t, t.attempt)
        return self.commands()

    def advance(self, seconds):
        self.clock.now += seconds
        self.scheduler.tick()
        return self.commands()

    def status(self, task_id, mission_id="m1"):
        return self.task(task_id, mission_id).status.name

    def mission_status(self, mission_id="m1"):
        return self.scheduler.missions[mission_id].status.name


def cancels(commands) -> list[str]:
    return [c.task.id for c in commands if isinstance(c, Cancel)]
