"""The mission engine's cores in-process, on fake clocks.

The engine registry, admission, event rules, state publication, and the core that wires them with the journal.
"""

import threading
from pathlib import Path

import pytest

from mission_sim import ROUTES, FakeClock, mission, task
from qai_edge.health import Level
from qai_edge.tasks import TaskKindSpec
from qai_mission.admission import Accept, Admission, Reject, Wait
from qai_mission.engine_core import MissionEngineCore
from qai_mission.event_rules import EventRules
from qai_mission.journal import Journal
from qai_mission.model import MissionStatus
from qai_mission.publication import StatePublication
from qai_mission.registry import EngineRegistry
from qai_mission.scheduler import Dispatch

KINDS = [TaskKindSpec("scan"), TaskKindSpec("move")]


# -- Registry -------------------------------------------------------------------------------------------

def test_an_engine_is_up_once_its_heartbeat_is_fresh_and_its_server_reachable():
    registry = EngineRegistry(timeout=3.0)
    registry.announce("/io", "/io/run_task", KINDS, (1, 0), now=0.0)
    assert registry.check(0.1, reachable=lambda engine: False) == []
    (up,) = registry.check(0.2, reachable=lambda engine: True)
    assert (up.engine, up.kind) == ("/io", "up") and set(registry.routes()) == {"scan", "move"}


def test_a_silent_engine_is_lost_after_the_timeout():
    registry = EngineRegistry(timeout=3.0)
    registry.announce("/io", "/io/run_task", KINDS, (1, 0), now=0.0)
    registry.check(0.1, lambda e: True)
    for t in (1.0, 2.0, 2.9):
        assert registry.check(t, lambda e: True) == []
    (lost,) = registry.check(3.2, lambda e: True)
    assert lost.kind == "lost" and "no heartbeat for 3.2 s" in lost.detail and registry.routes() == {}


def _checks(registry, start, end, heartbeats=()):
    """Check every 0.5 s from `start` to `end` (as the node's steady timer does); return (time, kind)s."""
    seen = []
    for step in range(round(start * 10), round(end * 10) + 1, 5):
        now = step / 10
        if now in heartbeats:
            registry.heartbeat("/io", now)
        seen += [(now, t.kind) for t in registry.check(now, lambda e: True)]
    return seen


def test_a_lost_engine_that_beats_again_is_up_and_one_silent_for_three_timeouts_is_gone():
    registry = EngineRegistry(timeout=3.0)
    registry.announce("/io", "/io/run_task", KINDS, (1, 0), now=0.0)
    assert _checks(registry, 0.0, 5.0, heartbeats=(5.0,)) == [(0.0, "up"), (3.0, "lost"), (5.0, "up")]
    assert _checks(registry, 5.5, 30.0) == [(8.0, "lost"), (14.0, "gone")]  # gone once, 3 timeouts silent


def test_a_lost_engine_that_announces_a_new_start_stamp_restarted():
    registry = EngineRegistry(timeout=3.0)
    registry.announce("/io", "/io/run_task", KINDS, (1, 0), now=0.0)
    assert _checks(registry, 0.0, 3.5) == [(0.0, "up"), (3.0, "lost")]
    assert registry.announce("/io", "/io/run_task", KINDS, (9, 0), now=4.0).restarted
    assert _checks(registry, 4.0, 20.0) == [(4.0, "up"), (7.0, "lost"), (13.0, "gone")]


def test_a_new_start_stamp_from_an_engine_that_was_up_is_a_restart():
    registry = EngineRegistry(timeout=3.0)
    registry.announce("/io", "/io/run_task", KINDS, (1, 0), now=0.0)
    registry.check(0.1, lambda e: True)
    assert not registry.announce("/io", "/io/run_task", KINDS, (1, 0), now=1.0).restarted  # a repeat
    assert registry.announce("/io", "/io/run_task", KINDS, (9, 0), now=2.0).restarted


def test_a_stall_of_the_mission_engine_itself_does_not_lose_every_engine():
    """Lose no engine until a full timeout after a long gap between checks.

    Heartbeats queue while the executor is busy; the full timeout gives the queued heartbeats time to be read.
    """
    registry = EngineRegistry(timeout=3.0)
    registry.announce("/io", "/io/run_task", KINDS, (1, 0), now=0.0)
    registry.check(0.1, lambda e: True)
    assert registry.check(8.0, lambda e: True) == []  # 8 s without a check: we were stalled
    registry.heartbeat("/io", 8.1)  # the queued heartbeats arrive
    assert registry.check(8.2, lambda e: True) == [] and registry.up() == {"/io"}
    # A real silence still counts, once the hold is over.
    lost_at = next(t / 10 for t in range(85, 200, 5) if registry.check(t / 10, lambda e: True))
    assert lost_at == 11.5 and registry.up() == set()


# -- Admission ------------------------------------------------------------------------------------------

def _decide(admission, spec, routes=ROUTES, clock=1000.0, steady=1.0, active=0, until=None):
    return admission.decide(spec, routes, clock, steady, active, exists=lambda mission_id: mission_id == "taken",
                            waiting_until=until)


def test_a_mission_whose_kinds_are_not_up_yet_waits_during_the_grace_period_then_is_rejected():
    admission = Admission(max_missions=4, grace=15.0, started_at=0.0)
    spec = mission("", task("a", "scan"))
    decision = _decide(admission, spec, routes={}, steady=2.0)
    assert isinstance(decision, Wait) and "scan" in decision.why and decision.until == 15.0
    assert isinstance(_decide(admission, spec, routes={}, steady=14.0, until=decision.until), Wait)
    rejected = _decide(admission, spec, routes={}, steady=15.5, until=decision.until)
    assert isinstance(rejected, Reject) and "'scan' is not served by any running engine" in rejected.message
    assert isinstance(_decide(admission, spec, steady=3.0), Accept)  # once served, at once


def test_outside_any_grace_period_an_unserved_kind_is_rejected_at_once():
    admission = Admission(max_missions=4, grace=15.0, started_at=0.0)
    assert isinstance(_decide(admission, mission("", task("a", "teleport")), steady=100.0), Reject)
    admission.open_grace(now=200.0)  # an engine went away: its kinds may come back
    assert isinstance(_decide(admission, mission("", task("a", "teleport")), steady=201.0), Wait)


def test_a_broken_mission_is_rejected_at_once_with_every_problem_even_in_the_grace_period():
    admission = Admission(max_missions=4, grace=15.0, started_at=0.0)
    decision = _decide(admission, mission("", task("a", "teleport", depends_on=["zz"])), routes={}, steady=1.0)
    assert isinstance(decision, Reject)
    assert "unknown task 'zz'" in decision.message and "'teleport' is not served" in decision.message


def test_a_stopped_clock_is_waited_for_then_said():
    admission = Admission(max_missions=4, grace=5.0, started_at=0.0)
    spec = mission("", task("a", "scan"))
    assert isinstance(_decide(admission, spec, clock=0.0, steady=1.0), Wait)
    rejected = _decide(admission, spec, clock=0.0, steady=6.0)
    assert isinstance(rejected, Reject) and "/clock" in rejected.message


def test_admission_limits_ids_and_concurrency():
    admission = Admission(max_missions=2, grace=0.0, started_at=0.0)
    assert "already exists" in _decide(admission, mission("taken", task("a"))).message
    assert "most max_concurrent_missions allows" in _decide(admission, mission("", task("a")), active=2).message
    accepted = _decide(admission, mission("", task("a")))
    assert isinstance(accepted, Accept) and accepted.spec.id.startswith("m")


# -- Event rules ----------------------------------------------------------------------------------------

def test_an_event_starts_its_mission_once_and_two_codes_for_one_file_start_one(tmp_path):
    template = mission("", task("home", "move", deadline_in=60.0), name="return home")
    rules = EventRules.parse(["battery_reserve: home.yaml", "endurance_low: home.yaml"],
                             resolve=lambda path: tmp_path / path, load=lambda path: template)
    running = set()
    first = rules.mission_for("battery_reserve", running.__contains__)
    assert first.name == "return home" and first.tasks[0].deadline_in == 60.0  # counted when accepted
    rules.started("battery_reserve", first.id)
    running.add(first.id)
    assert rules.mission_for("battery_reserve", running.__contains__) is None  # repeated event
    assert rules.mission_for("endurance_low", running.__contains__) is None  # same file
    running.clear()
    assert rules.mission_for("endurance_low", running.__contains__) is not None
    assert rules.mission_for("unknown", running.__contains__) is None


def test_a_malformed_rule_names_itself():
    with pytest.raises(ValueError, match=r"event_missions\[1\]: expected 'code: mission file'"):
        EventRules.parse(["a: x.yaml", "nothing"], resolve=Path, load=lambda path: None)


# -- Publication ----------------------------------------------------------------------------------------

def test_states_carry_the_tasks_that_changed_and_the_first_and_last_carry_all():
    from mission_sim import Harness

    h = Harness()
    publication = StatePublication(period=1.0)
    h.add(*(task(f"t{i}") for i in range(50)))
    changes = h.scheduler.take_changes()
    publication.changed(changes.missions, changes.tasks)
    (first,) = publication.due(0.0, h.scheduler.missions)
    assert first.full and len(first.tasks) == 50
    h.succeed("t3")
    changes = h.scheduler.take_changes()
    publication.changed(changes.missions, changes.tasks)
    assert publication.due(0.5, h.scheduler.missions) == []  # throttled: progress and task changes only
    (update,) = publication.due(1.1, h.scheduler.missions)
    assert not update.full and [t.id for t in update.tasks] == ["t3"]
    for i in range(50):
        if h.task(f"t{i}").status.name == "RUNNING":
            h.succeed(f"t{i}")
    changes = h.scheduler.take_changes()
    publication.changed(changes.missions, changes.tasks)
    (last,) = publication.due(1.2, h.scheduler.missions)  # the mission ended: at once, with every task
    assert last.full and last.mission.status == MissionStatus.SUCCEEDED and len(last.tasks) == 50


# -- The core with its journal --------------------------------------------------------------------------

class _Log:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda message, **kwargs: self.lines.append((level, message))


def _core(tmp_path, journal=True):
    clock = FakeClock()
    log = _Log()
    core = MissionEngineCore(clock, clock, Journal(tmp_path / "j.db") if journal else None,
                             Admission(16, 0.0, 0.0), engine_timeout=3.0, state_period=0.0, max_engine_losses=3,
                             max_running_per_engine=64, log=log)
    core.registry.announce("/io", "/io/run_task", [r.spec for r in ROUTES.values()], (1, 0), clock.now)
    core.check_engines(lambda engine: True)
    return core, clock, log


def _flush(core):
    done, acted = threading.Event(), []
    core.flush(lambda commands, error: (acted.append((commands, error)), done.set()))
    assert done.wait(10)
    return acted[0]


def test_commands_are_acted_on_only_after_their_changes_are_on_disk(tmp_path):
    core, clock, _ = _core(tmp_path)
    accepted = core.decide(mission("m1", task("a", "scan")))
    core.accept(accepted)
    commands, error = _flush(core)
    assert error == "" and [type(c) for c in commands] == [Dispatch]
    (record,) = Journal(tmp_path / "j.db").unfinished()  # on disk when the dispatch was allowed
    assert record.tasks[0].status.name == "RUNNING" and record.tasks[0].goal_id == commands[0].task.goal_id
    core.close()


def test_a_failing_journal_stops_dispatch_refuses_missions_and_reports_error(tmp_path):
    core, clock, log = _core(tmp_path)
    core.accept(core.decide(mission("m1", task("a", "scan"))))
    core.journal._db.close()  # the disk went away before the mission could be written
    commands, error = _flush(core)
    assert "write failed" in error  # the node drops the dispatch: not written, not done
    level, message, _ = core.health()
    assert level == Level.ERROR and "dispatch stopped" in message
    rejected = core.decide(mission("m2", task("b", "scan")))
    assert isinstance(rejected, Reject) and "journal is unusable" in rejected.message
    core.writer.close()


def test_parameters_changed_at_run_time_reach_the_cores(tmp_path):
    core, _, _ = _core(tmp_path, journal=False)
    core.set_parameter("engine_timeout", 9.0)
    core.set_parameter("max_tasks_per_engine", 2)
    core.set_parameter("max_concurrent_missions", 1)
    assert core.registry.timeout == 9.0 and core.scheduler.max_running_per_engine == 2
    assert core.admission.max_missions == 1


def test_an_engine_that_announced_itself_late_is_waited_for_until_it_is_reached(tmp_path):
    """A slow engine (torch, models) announces after the start-up grace period: its kinds are worth a wait."""
    clock = FakeClock(100.0)
    core = MissionEngineCore(clock, clock, Journal(tmp_path / "j.db"), Admission(16, 10.0, 0.0), engine_timeout=3.0,
                             state_period=0.0, max_engine_losses=3, max_running_per_engine=16, log=_Log())
    spec = mission("", task("a", "plan"))
    decision = core.decide(spec)
    assert isinstance(decision, Reject) and "'plan' is not served" in decision.message  # nobody announced it
    core.announce("/quantum", "/quantum/run_task", [ROUTES["plan"].spec], (1, 0))  # not reachable yet
    assert isinstance(core.decide(spec), Wait)
    core.close()


# -- Readiness and the fail-safe ---------------------------------------------------------------------------

def test_an_announcement_that_a_kind_became_ready_lets_its_held_tasks_go(tmp_path):
    """The finding behind it: readiness in an announcement changed nothing until the engine went down and up."""
    from dataclasses import replace

    from qai_edge.task_client import Outcome

    core, clock, _ = _core(tmp_path)
    kinds = [r.spec for r in ROUTES.values()]
    core.accept(core.decide(mission("m1", task("a", "scan", timeout=60))))
    (dispatch,) = _flush(core)[0]
    core.attempt_ended(dispatch.task, dispatch.attempt, Outcome("aborted", message="not ready: no odometry yet",
                                                                not_ready=True))
    assert _flush(core)[0] == [] and core.registry.not_ready() == {"scan": "no odometry yet"}
    core.announce("/io", "/io/run_task", [replace(k, ready=k.name != "scan", not_ready="no odometry yet"
                                                  if k.name == "scan" else "") for k in kinds], (1, 0))
    assert _flush(core)[0] == []  # announced not ready: still held
    core.announce("/io", "/io/run_task", kinds, (1, 0))  # ready now
    (again,) = _flush(core)[0]
    assert again.task.id == "a" and again.attempt == 2 and again.task.retries_used == 0
    core.close()


def test_a_return_home_that_fails_for_good_is_said_so_the_return_home_mission_starts(tmp_path):
    from qai_edge.task_client import Outcome

    core, clock, _ = _core(tmp_path)
    core.accept(core.decide(mission("m1", task("home", "move", retry={"max_retries": 0}))))
    (dispatch,) = _flush(core)[0]
    assert core.take_stranded() == []
    core.attempt_ended(dispatch.task, dispatch.attempt, Outcome("aborted", message="engine lost", retryable=True))
    _flush(core)
    assert core.take_stranded() == []  # "move" is not a fail-safe kind
    core.accept(core.decide(mission("m2", task("rh", "return_home", retry={"max_retries": 0}))))
    (dispatch,) = _flush(core)[0]
    core.attempt_ended(dispatch.task, dispatch.attempt, Outcome("aborted", message="geofence", retryable=False))
    _flush(core)
    (stranded,) = core.take_stranded()
    assert (stranded.mission_id, stranded.task_id, stranded.kind) == ("m2", "rh", "return_home")
    assert "may be in the air with no plan" in stranded.text and core.take_stranded() == []
    core.close()
