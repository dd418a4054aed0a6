"""Whether a mission may start: accepted, rejected with the reason, or waiting for its kinds. No rclpy import.

Checks, in order: the journal is usable; the id is well formed and new; fewer than `max_missions` run;
the mission engine's clock runs (under use_sim_time it reads 0 until /clock arrives); every task passes
validation (qai_mission.validation: the same checks `qai-mission validate` runs) with the kinds the
engines that are up serve, on the mission engine's clock.

Right after the mission engine starts, after an engine was lost, and after an engine announced itself
(it is up once its action server is reached), engines are still (re)announcing themselves: a mission
whose only problem is kinds nobody serves yet waits for them (and for a stopped clock to run) until the
grace period that opened then has passed, and is rejected with the reason after.
A mission submitted outside any grace period is answered at once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from qai_mission.model import TASK_ID, KindRoute, MissionSpec
from qai_mission.validation import MissionInvalid, in_task_order, other_problems, static_problems


@dataclass(frozen=True)
class Accept:
    spec: MissionSpec  # with its id assigned


@dataclass(frozen=True)
class Reject:
    message: str


@dataclass(frozen=True)
class Wait:
    why: str  # what it waits for, for the submitter
    until: float  # steady seconds: then it is decided without waiting


Decision = Accept | Reject | Wait


class Admission:
    def __init__(self, max_missions: int, grace: float, started_at: float):
        self.max_missions = max_missions
        self.grace = grace  # s after start / an engine loss during which unserved kinds are waited for
        self._grace_until = started_at + grace

    def open_grace(self, now: float) -> None:
        """Let missions wait a while for kinds nobody serves yet.

        Opened when an engine went away, or came and is still being reached.
        """
        self._grace_until = max(self._grace_until, now + self.grace)

    def grace_until(self) -> float:
        return self._grace_until

    def decide(self, spec: MissionSpec, routes: Mapping[str, KindRoute], clock_now: float, steady_now: float,
               active: int, exists: Callable[[str], bool], journal_problem: str = "",
               waiting_until: float | None = None) -> Decision:
        """Decide whether the mission is accepted, refused, or waits.

        `clock_now`: the mission engine's clock (0: not running yet); `steady_now`: for the grace period;
        `waiting_until`: set when the mission already waits (it keeps the limit it got).
        """
        if journal_problem:
            return Reject(f"the mission journal is unusable, so no mission can be accepted: {journal_problem}")
        if spec.id and not TASK_ID.match(spec.id):
            return Reject("id: a mission id is 1-64 letters, digits, '_' or '-'")
        if spec.id and exists(spec.id):
            return Reject(f"id: mission {spec.id!r} already exists")
        if active >= self.max_missions:
            return Reject(f"{active} missions are running, the most max_concurrent_missions allows")
        tasks = list(spec.tasks)
        problems = static_problems(tasks, {})
        if problems:  # nothing to wait for: say everything that is wrong
            problems += other_problems(tasks, routes, None, {}, look_for_cycles=False)
            return Reject(str(MissionInvalid(in_task_order(problems, tasks))))
        limit = waiting_until if waiting_until is not None else self._grace_until
        missing = sorted({task.kind for task in tasks} - set(routes))
        if clock_now <= 0.0:
            why = "the mission engine's clock to start (use_sim_time is set: is /clock published?)"
            if steady_now < limit:
                return Wait(why, limit)
            return Reject(f"waited for {why}")
        if missing and steady_now < limit:
            return Wait(f"engines serving {', '.join(missing)} (none is up yet)", limit)
        problems = other_problems(tasks, routes, clock_now, {})
        if problems:
            return Reject(str(MissionInvalid(in_task_order(problems, tasks))))
        return Accept(spec if spec.id else replace(spec, id=new_mission_id(clock_now)))


def new_mission_id(now: float) -> str:
    """'m<UTC date>-<time>-<random>' from the mission engine's clock: sortable, and unique."""
    return time.strftime("m%Y%m%d-%H%M%S-", time.gmtime(now)) + uuid.uuid4().hex[:6]
