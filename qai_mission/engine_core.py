"""The mission engine's core, wired as the node needs it, with no rclpy import.

The scheduler, the engine registry, admission, state publication and the journal writer (qai_mission.node
maps messages to these calls; tests drive it in-process).

Flow of a change: something happens (a goal accepted, a result, a tick) -> the scheduler changes state
and issues commands -> `flush` snapshots the durable changes and hands them to the journal writer -> once
they are on disk, the node acts on the commands (sends goals, cancels) and publishes the states that are
due. A journal that fails stops dispatch (commands after a failed write are not acted on) and the health
turns ERROR; missions are refused with the reason.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from qai_edge.health import Level
from qai_edge.tasks import TaskKindSpec
from qai_mission.admission import Accept, Admission, Decision, Reject, Wait
from qai_mission.journal import Journal, JournalError, JournalWriter
from qai_mission.model import MissionSpec, TaskStatus
from qai_mission.publication import StatePublication, Update
from qai_mission.registry import EngineRegistry, Transition
from qai_mission.scheduler import Scheduler

FINISHED_IN_MEMORY = 100  # finished missions kept in memory for quick status answers; the journal has the rest
# Kinds that bring the vehicle down. When one fails for good (its engine refused it, lost it, or never came
# back in time), the vehicle may be left in the air with no plan: the node says so on `events`
# (RETURN_HOME_FAILED) and that event's rule starts the profile's return-home mission, which waits for its
# engine to be ready again.
FAIL_SAFE_KINDS = ("return_home", "land")
RETURN_HOME_FAILED = "return_home_failed"


@dataclass(frozen=True)
class Stranded:
    """A fail-safe task that failed for good."""

    mission_id: str
    task_id: str
    kind: str
    message: str

    @property
    def text(self) -> str:
        return (f"{self.kind} {self.mission_id}/{self.task_id} failed ({self.message}): the vehicle may be in the "
                "air with no plan; starting the return-home mission")


def open_journal(path: str, durable: bool, log) -> tuple[Journal | None, str]:
    """Open the journal; or return None and why not.

    Without a journal the engine stays up, refusing missions with the reason.
    """
    try:
        return Journal(path, durable=durable), ""
    except JournalError as error:
        log.error(f"{error}. Missions are refused until the journal is usable.")
        return None, str(error)


class MissionEngineCore:
    # Parameters that take effect at run time through set_parameter.
    PARAMETERS = ("max_concurrent_missions", "kind_grace_period", "engine_timeout", "state_period", "max_engine_losses",
                  "max_tasks_per_engine", "keep_finished_missions", "finished_retention")

    @classmethod
    def from_parameters(cls, param: Callable[[str], Any], clock, steady, journal: Journal | None, journal_problem: str,
                        log) -> "MissionEngineCore":
        """Return a core set up from the mission engine's parameters (qai_mission.parameters)."""
        core = cls(clock, steady, journal, Admission(param("max_concurrent_missions"), param("kind_grace_period"),
                                                     steady()),
                   engine_timeout=param("engine_timeout"), state_period=param("state_period"),
                   max_engine_losses=param("max_engine_losses"), max_running_per_engine=param("max_tasks_per_engine"),
                   log=log, journal_problem=journal_problem)
        core.keep_finished, core.finished_retention = param("keep_finished_missions"), param("finished_retention")
        return core

    def __init__(self, clock: Callable[[], float], steady: Callable[[], float], journal: Journal | None,
                 admission: Admission, engine_timeout: float, state_period: float, max_engine_losses: int,
                 max_running_per_engine: int, log, journal_problem: str = ""):
        self.clock, self.steady, self.log = clock, steady, log
        self.journal = journal
        self.journal_problem = journal_problem or ("" if journal is not None else "no journal")
        self.scheduler = Scheduler(clock, max_engine_losses, max_running_per_engine)
        self.registry = EngineRegistry(engine_timeout)
        self.admission = admission
        self.publication = StatePublication(state_period)
        self.keep_finished, self.finished_retention = 1000, 7 * 86400.0
        self.waiters: dict[str, tuple[Any, Any]] = {}  # mission id -> (ExecuteMission goal handle, future)
        self._goal_missions: dict[str, str] = {}  # ExecuteMission goal id -> mission id
        self._wakeups: list[Callable[[], None]] = []  # coroutines waiting for routes or time
        self.stranded: list[Stranded] = []  # fail-safe tasks that failed, for the node to say (take_stranded)
        self._lock = threading.Lock()
        self._writing = 0  # batches handed to the writer whose commands are not acted on yet
        self.writer = None
        if journal is not None:
            for record in journal.unfinished():
                self.scheduler.restore(record)
            for mission_id, why in journal.quarantined.items():
                log.error(f"mission {mission_id} quarantined: its journal rows cannot be read ({why}); it is "
                          "not resumed")
            resumed = [m.id for m in self.scheduler.missions.values() if not m.status.terminal]
            if resumed:
                log.info(f"resumed {len(resumed)} unfinished mission(s) from {journal.path}: {', '.join(resumed)}")
            self.writer = JournalWriter(journal)

    # -- Journal first, then act ---------------------------------------------------------------------

    def flush(self, act: Callable[[list, str], None]) -> None:
        """Take what changed; once its durable part is written, call act(commands, error).

        `error` is '' when the write succeeded.
        """
        changes = self.scheduler.take_changes()
        commands = self.scheduler.take_commands()
        for task in changes.tasks:
            if task.status == TaskStatus.FAILED and task.spec.kind in FAIL_SAFE_KINDS:
                self.stranded.append(Stranded(task.mission.id, task.id, task.spec.kind, task.message))
        self.publication.changed(changes.missions, changes.tasks)
        if self.writer is None or self.journal_problem:
            act(commands, self.journal_problem)
            return
        batch = self.journal.snapshot(changes.missions, changes.durable)
        with self._lock:
            idle = not self._writing
            if batch or commands or not idle:
                self._writing += 1
        if not (batch or commands) and idle:
            act(commands, "")  # nothing to write, and nothing written earlier still waits to be acted on
            return

        def written(error) -> None:
            with self._lock:
                self._writing -= 1
            act(commands, self._journal_failed(error) if error else "")

        self.writer.submit(batch, written)

    def _journal_failed(self, error) -> str:
        if not self.journal_problem:
            self.journal_problem = str(error)
            self.log.error(f"{error}: dispatch stopped; missions are refused until the journal is usable")
        return self.journal_problem

    def due_states(self) -> list[Update]:
        updates = self.publication.due(self.steady(), self.scheduler.missions)
        if any(update.mission.status.terminal for update in updates):
            finished = [m for m in self.scheduler.missions.values() if m.status.terminal and m.id not in self.waiters]
            for old in finished[:-FINISHED_IN_MEMORY]:
                self.scheduler.forget(old.id)
        return updates

    def prune(self) -> None:
        if self.writer is not None:
            older_than = self.clock() - self.finished_retention
            self.writer.call(lambda: self.journal.prune(self.keep_finished, older_than))

    # -- Engines -------------------------------------------------------------------------------------

    def announce(self, engine: str, task_action: str, kinds: list[TaskKindSpec], stamp: tuple[int, int]) -> bool:
        """Take an engine's announcement; True when it says the engine restarted (its attempts are gone)."""
        announced = self.registry.announce(engine, task_action, kinds, stamp, self.steady())
        if announced.new:
            self.log.info(f"engine {engine} announced: {', '.join(k.name for k in kinds) or 'no kinds'}")
            self.admission.open_grace(self.steady())  # its kinds are coming: missions needing them may wait
        if announced.restarted:
            self.log.warning(f"engine {engine} restarted: its running tasks are lost")
            self._engine_lost(engine)
        elif announced.kinds_changed and engine in self.registry.up():
            waiting = {k.name: k.not_ready for k in kinds if not k.ready}
            self.log.info(f"engine {engine}: "
                          + ("; ".join(f"{name} not ready ({why})" for name, why in waiting.items())
                             if waiting else "every kind ready"))
            self._routes_changed()  # a kind became ready (tasks held for it go), or came, went, or is not ready
        return announced.restarted

    def check_engines(self, reachable: Callable[[str], bool]) -> list[Transition]:
        transitions = self.registry.check(self.steady(), reachable)
        for transition in transitions:
            if transition.kind == "up":
                self.log.info(f"engine {transition.engine} up: {transition.detail}")
            elif transition.kind == "lost":
                self.log.warning(f"engine {transition.engine} lost ({transition.detail}): its tasks wait for it")
                self.scheduler.engine_silent(transition.engine, transition.detail)
                self.admission.open_grace(self.steady())
            elif transition.kind == "gone":
                self.log.warning(f"engine {transition.engine} gone ({transition.detail}): its tasks are given up")
                self._engine_lost(transition.engine)
            else:
                self.log.warning(f"engine {transition.engine} {transition.detail}")
        if any(t.kind in ("up", "lost", "gone") for t in transitions):
            self._routes_changed()
        return transitions

    def _engine_lost(self, engine: str) -> None:
        self.scheduler.engine_lost(engine)
        self.admission.open_grace(self.steady())
        self._routes_changed()

    def _routes_changed(self) -> None:
        for conflict in self.registry.conflicts():
            self.log.warning(f"kind served twice: {conflict}", once=True)
        self.scheduler.set_routes(self.registry.routes(), self.registry.up())
        self.wake()

    # -- Admission -----------------------------------------------------------------------------------

    def decide(self, spec: MissionSpec, waiting_until: float | None = None,
               routes: Mapping[str, Any] | None = None) -> Decision:
        """Admission's decision; heavy for a big mission, and safe to run on a worker thread."""
        missions = self.scheduler.missions
        active = sum(1 for m in list(missions.values()) if not m.status.terminal)
        exists = (lambda mission_id: mission_id in missions
                  or (self.journal is not None and self.journal.mission(mission_id) is not None))
        try:
            routes = self.scheduler.routes if routes is None else routes
            return self.admission.decide(spec, routes, self.clock(), self.steady(), active, exists,
                                         self.journal_problem, waiting_until)
        except JournalError as error:  # reading it failed: no mission can be accepted safely
            return Reject(f"the mission journal is unusable, so no mission can be accepted: "
                          f"{self._journal_failed(error)}")

    def accept(self, decision: Accept, goal_id: str = "") -> Decision:
        """Add an accepted mission (on the node's thread), unless one with its id was added meanwhile."""
        spec = decision.spec
        if spec.id in self.scheduler.missions:
            return Reject(f"id: mission {spec.id!r} already exists")
        if self.journal_problem:
            return Reject(f"the mission journal is unusable, so no mission can be accepted: {self.journal_problem}")
        self.scheduler.add_mission(spec, goal_id=goal_id)
        if goal_id:
            self._goal_missions[goal_id] = spec.id
        self.log.info(f"mission {spec.id} accepted: {len(spec.tasks)} tasks")
        return decision

    def admit_now(self, spec: MissionSpec) -> Decision:
        """Decide and add at once (event missions): waiting is not an option for them.

        Kinds of an engine that is down (lost, restarting) count as served: the mission's tasks wait for it, as
        a fail-safe mission must when the engine it needs is the one that went away.
        """
        decision = self.decide(spec, waiting_until=self.steady(), routes=self.registry.routes(include_down=True))
        if isinstance(decision, Wait):
            return Reject(f"waiting for {decision.why}")
        return self.accept(decision) if isinstance(decision, Accept) else decision

    def on_event(self, rules, code: str) -> Decision | None:
        """Start the mission an event rule names (qai_mission.event_rules), unless its mission still runs."""
        spec = rules.mission_for(code, self.is_running)
        if spec is None:
            return None
        decision = self.admit_now(spec)
        if isinstance(decision, Accept):
            rules.started(code, decision.spec.id)
        return decision

    def take_stranded(self) -> list[Stranded]:
        stranded, self.stranded = self.stranded, []
        return stranded

    def on_wake(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, at the next change of routes or the next steady tick."""
        self._wakeups.append(callback)

    def wake(self) -> None:
        wakeups, self._wakeups = self._wakeups, []
        for callback in wakeups:
            callback()

    # -- Tasks and missions --------------------------------------------------------------------------

    def attempt_ended(self, task, attempt: int, outcome) -> None:
        """Pass a RunTask outcome (qai_edge.task_client.Outcome) into the scheduler."""
        s = self.scheduler
        if outcome.status == "succeeded":
            s.task_succeeded(task, attempt, outcome.result or {})
        elif outcome.status == "canceled":
            s.task_canceled(task, attempt)
        elif outcome.status == "unknown" and outcome.reattached:
            s.attempt_lost(task, attempt)
        elif outcome.status == "aborted" and outcome.not_ready:
            # Its engine says the kind is not ready (the announcement saying so may still be on its way).
            if self.registry.mark_not_ready(task.engine, task.spec.kind, outcome.message.removeprefix("not ready: ")):
                self.scheduler.set_routes(self.registry.routes(), self.registry.up())
            s.task_not_ready(task, attempt, outcome.message)
        else:
            s.task_failed(task, attempt, outcome.message, outcome.retryable)

    def cancel(self, mission_id: str, task_id: str, reason: str) -> str:
        """Cancel a task, or the mission when task_id is empty; '' when requested, else why not."""
        try:
            if task_id:
                self.scheduler.cancel_task(mission_id, task_id, reason)
            else:
                self.scheduler.cancel_mission(mission_id, reason)
        except (LookupError, ValueError) as error:
            return str(error.args[0])
        return ""

    def mission_of_goal(self, goal_id: str) -> str | None:
        return self._goal_missions.get(goal_id)

    def is_running(self, mission_id: str) -> bool:
        mission = self.scheduler.missions.get(mission_id)
        return mission is not None and not mission.status.terminal

    # -- Parameters and health ------------------------------------------------------------------------

    def set_parameter(self, name: str, value) -> None:
        setters: Mapping[str, Callable[[Any], None]] = {
            "max_concurrent_missions": lambda v: setattr(self.admission, "max_missions", v),
            "kind_grace_period": lambda v: setattr(self.admission, "grace", v),
            "engine_timeout": lambda v: setattr(self.registry, "timeout", v),
            "state_period": lambda v: setattr(self.publication, "period", v),
            "max_engine_losses": lambda v: setattr(self.scheduler, "max_engine_losses", v),
            "max_tasks_per_engine": lambda v: setattr(self.scheduler, "max_running_per_engine", v),
            "keep_finished_missions": lambda v: setattr(self, "keep_finished", v),
            "finished_retention": lambda v: setattr(self, "finished_retention", v),
        }
        setters[name](value)
        self.scheduler.schedule()  # a larger per-engine limit may let waiting tasks start

    def health(self) -> tuple[Level, str, dict]:
        s = self.scheduler
        values = {
            "missions_active": sum(1 for m in s.missions.values() if not m.status.terminal),
            "queue_depth": s.queue_depth(), "tasks_running": s.running_count(),
            "tasks_waiting_for_engine_place": s.waiting_for_place(), "missed_deadlines": s.missed_deadlines,
            "engines_up": ",".join(sorted(self.registry.up())), "kinds_routed": ",".join(sorted(s.routes)),
            "kinds_not_ready": "; ".join(f"{k}: {why}" for k, why in sorted(self.registry.not_ready().items())),
            "journal": str(self.journal.path) if self.journal else "",
        }
        if self.journal is not None:
            values.update(journal_bytes=self.journal.size_bytes(), journal_commits=self.journal.commits,
                          journal_last_commit_ms=f"{self.journal.last_commit_seconds * 1000:.2f}",
                          journal_pending=self.writer.pending() if self.writer else 0,
                          quarantined=",".join(sorted(self.journal.quarantined)))
        if self.journal_problem:
            return Level.ERROR, f"journal unusable, dispatch stopped: {self.journal_problem}", values
        if self.journal is not None and self.journal.quarantined:
            quarantined = len(self.journal.quarantined)
            return Level.WARN, f"{quarantined} mission(s) quarantined (journal rows unreadable)", values
        return Level.OK, "running", values

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.journal is not None:
            self.journal.close()
