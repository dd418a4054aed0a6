"""Property tests of the scheduler on random task graphs.

The engines succeed, fail, time out, get canceled and disappear at random, and:
- every task ends in a terminal state, and so does its mission;
- no task is dispatched before all its dependencies succeeded;
- no two attempts holding the same exclusive resource overlap (from dispatch until the attempt ended);
- a mission succeeds only when no required task failed.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mission_sim import ROUTES, Harness, mission, task
from qai_mission.model import MissionStatus, TaskStatus
from qai_mission.scheduler import Cancel, Dispatch

KINDS = ["move", "scan", "plan"]


@st.composite
def task_graphs(draw, prefix="t", max_tasks=14):
    n = draw(st.integers(1, max_tasks))
    tasks = []
    for i in range(n):
        deps = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        tasks.append(task(
            f"{prefix}{i}", draw(st.sampled_from(KINDS)),
            priority=draw(st.integers(0, 3)),
            depends_on=[f"{prefix}{d}" for d in deps],
            resources=draw(st.sets(st.sampled_from(["camera", "arm"]), max_size=1)),
            retry={"max_retries": draw(st.integers(0, 2)), "initial_backoff": draw(st.sampled_from([0.0, 0.5, 2.0]))},
            optional=draw(st.booleans()),
            timeout=draw(st.one_of(st.none(), st.sampled_from([1.0, 5.0]))),
        ))
    return tasks


def key(t):
    return (t.mission.id, t.id)


class Invariants:
    """Watches every command and every report the simulated engines send."""

    def __init__(self, harness: Harness):
        self.h = harness
        self.open: dict[tuple, tuple] = {}  # (mission id, task id) -> (task, attempt, resources)
        self.cancel_requested: set[tuple] = set()

    def take(self):
        for command in self.h.commands():
            t = command.task
            if isinstance(command, Dispatch):
                for dependency in t.spec.depends_on:
                    assert t.mission.tasks[dependency].status == TaskStatus.SUCCEEDED, \
                        f"{t.id} dispatched before {dependency} succeeded"
                held = {r for (_, _, resources) in self.open.values() for r in resources}
                assert not (t.resources & held), f"{t.id} dispatched while {t.resources & held} is held"
                assert key(t) not in self.open, f"{t.id} dispatched twice"
                self.open[key(t)] = (t, command.attempt, t.resources)
            elif isinstance(command, Cancel):
                assert key(t) in self.open
                self.cancel_requested.add(key(t))

    def end(self, t):
        del self.open[key(t)]
        self.cancel_requested.discard(key(t))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs=st.lists(task_graphs(), min_size=1, max_size=3), data=st.data())
def test_random_missions_always_end_consistently(graphs, data):
    h = Harness()
    watch = Invariants(h)
    for index, tasks in enumerate(graphs):
        h.scheduler.add_mission(mission(f"m{index}", *tasks))
        watch.take()
    engines_up = {"/io", "/quantum"}
    silent: set[str] = set()  # fell silent (stalled): their attempts go on, nothing new is sent to them

    def all_done():
        return all(m.status.terminal for m in h.scheduler.missions.values())

    for step in range(400):
        if all_done():
            break
        late = step > 300  # then engines behave, so every run ends
        action = data.draw(st.sampled_from(
            ["succeed", "succeed", "fail", "final_fail", "confirm", "advance", "cancel_task", "cancel_mission",
             "lose_engine", "silence_engine", "restore_engines"]
            if not late else ["succeed", "confirm", "advance", "restore_engines"]))
        if action in ("succeed", "fail", "final_fail", "confirm") and watch.open:
            chosen = data.draw(st.sampled_from(sorted(watch.open)))
            t, attempt, _ = watch.open[chosen]
            if action == "confirm":
                if chosen not in watch.cancel_requested:
                    continue
                watch.end(t)
                h.scheduler.task_canceled(t, attempt)
            else:
                watch.end(t)
                if action == "succeed":
                    h.scheduler.task_succeeded(t, attempt, {"order": [1]})
                else:
                    h.scheduler.task_failed(t, attempt, "boom", retryable=action == "fail")
        elif action == "advance":
            h.clock.now += data.draw(st.sampled_from([0.1, 0.5, 1.0, 3.0]))
            h.scheduler.tick()
        elif action == "cancel_task":
            live = [t for m in h.scheduler.missions.values() for t in m.tasks.values() if not t.status.terminal]
            if live:
                t = data.draw(st.sampled_from(live))
                h.scheduler.cancel_task(t.mission.id, t.id)
        elif action == "cancel_mission":
            live = [m for m in h.scheduler.missions.values() if not m.status.terminal]
            if live:
                h.scheduler.cancel_mission(data.draw(st.sampled_from(live)).id)
        elif action == "silence_engine" and engines_up:
            engine = data.draw(st.sampled_from(sorted(engines_up)))
            engines_up.discard(engine)
            silent.add(engine)
            h.scheduler.engine_silent(engine, "no heartbeat")
        elif action == "lose_engine" and engines_up | silent:
            engine = data.draw(st.sampled_from(sorted(engines_up | silent)))
            engines_up.discard(engine)
            silent.discard(engine)
            for t, _, _ in list(watch.open.values()):
                if t.engine == engine:
                    watch.end(t)  # its process is gone: the attempt has stopped
            h.scheduler.engine_lost(engine)
        elif action == "restore_engines":
            engines_up, silent = {"/io", "/quantum"}, set()
            h.scheduler.set_routes(ROUTES, engines_up)
        watch.take()
        if late and not watch.open and not all_done():
            h.clock.now += 5.0
            h.scheduler.set_routes(ROUTES, {"/io", "/quantum"})
            engines_up, silent = {"/io", "/quantum"}, set()
            h.scheduler.tick()
            watch.take()

    assert all_done(), {m.id: m.status.name for m in h.scheduler.missions.values()}
    for m in h.scheduler.missions.values():
        for t in m.tasks.values():
            assert t.status.terminal, t
            assert (t.status == TaskStatus.SUCCEEDED) == (t.result is not None)
        required_failed = [t for t in m.tasks.values() if t.status == TaskStatus.FAILED and not t.spec.optional]
        if m.status == MissionStatus.SUCCEEDED:
            assert not required_failed
        if m.status == MissionStatus.FAILED:
            assert required_failed
    assert not watch.open
