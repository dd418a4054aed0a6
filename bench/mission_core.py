"""Mission scheduler core, no ROS, beside its peer py_trees 2.6 in the same run.

The same 10,000-task graphs of instant tasks, to completion:
- chains: 1,000 chains of 10 (each task waits for the one before); py_trees: a Sequence of 10 Success
  leaves per chain under a Parallel;
- fan: one task, then 9,998 side by side, then one that waits for them all; py_trees: a Sequence of a
  Success, a Parallel of 9,998 Successes, and a Success;
- random: a random DAG (<= 3 dependencies each, priorities, a shared camera, exclusive motion) for the
  scheduler alone (py_trees has no such graph).
Each through the scheduler without a journal, with the journal without fsync, and with the durable
journal (WAL, synchronous=FULL), written as the mission engine does (one snapshot per round of engine
answers, encoded and committed); the ratios to py_trees per task, and of the journal to no journal.
Targets (issue 9): scheduler without journal at least as fast per task as py_trees (ratio <= 1.0);
durable journal within 2x of that. Memory: < 200 MB for 10,000 tasks.

    .venv/bin/python bench/mission_core.py [--repeat 3] [--profile] [--json PATH]
"""

from __future__ import annotations

import argparse
import random
from importlib import metadata
import resource
import tempfile
import time
from pathlib import Path

from qai_edge.figures import FigureLog
from qai_edge.tasks import TaskKindSpec
from qai_mission.journal import Journal
from qai_mission.model import KindRoute, MissionSpec, RetryPolicy, TaskSpec
from qai_mission.scheduler import Dispatch, Scheduler

ROUTES = {
    "move": KindRoute(TaskKindSpec("move", resources=frozenset({"motion"})), "/io", "/io/run_task"),
    "scan": KindRoute(TaskKindSpec("scan"), "/io", "/io/run_task"),
    "plan": KindRoute(TaskKindSpec("plan"), "/quantum", "/quantum/run_task"),
}


def chains(count: int = 1000, length: int = 10) -> MissionSpec:
    return MissionSpec("bench", "chains", tuple(
        TaskSpec(id=f"c{c}_{i}", kind="scan", depends_on=(f"c{c}_{i - 1}",) if i else ())
        for c in range(count) for i in range(length)))


def fan(width: int = 9998) -> MissionSpec:
    middle = tuple(TaskSpec(id=f"w{i}", kind="scan", depends_on=("start",)) for i in range(width))
    return MissionSpec("bench", "fan", (TaskSpec(id="start", kind="scan"), *middle,
                                        TaskSpec(id="join", kind="scan", depends_on=tuple(t.id for t in middle))))


def random_dag(n: int = 10_000, seed: int = 1) -> MissionSpec:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        deps = rng.sample(range(max(0, i - 50), i), k=min(i, rng.randint(0, 3))) if i else []
        tasks.append(TaskSpec(id=f"t{i}", kind=rng.choice(("move", "scan", "scan", "plan")),
                              priority=rng.randint(0, 5), depends_on=tuple(f"t{d}" for d in deps),
                              retry=RetryPolicy(max_retries=1, initial_backoff=0.0),
                              resources=frozenset({"camera"}) if rng.random() < 0.1 else frozenset()))
    return MissionSpec("bench", "random", tuple(tasks))


def run_scheduler(spec: MissionSpec, journal: Journal | None) -> float:
    """Seconds to run `spec` to completion, every dispatched task succeeding at once."""
    now = [0.0]
    scheduler = Scheduler(lambda: now[0])
    scheduler.set_routes(ROUTES, {"/io", "/quantum"})
    started = time.perf_counter()
    scheduler.add_mission(spec)
    mission = scheduler.missions["bench"]
    while not mission.status.terminal:
        changes = scheduler.take_changes()
        if journal is not None:
            journal.record(changes.missions, changes.durable)
        commands = scheduler.take_commands()
        if not commands:
            now[0] += 1.0
            scheduler.tick()
            continue
        for command in commands:
            if isinstance(command, Dispatch):
                scheduler.task_succeeded(command.task, command.attempt, {})
    changes = scheduler.take_changes()
    if journal is not None:
        journal.record(changes.missions, changes.durable)
    elapsed = time.perf_counter() - started
    assert mission.status.name == "SUCCEEDED", mission.status
    return elapsed


def py_trees_tree(shape: str):
    import py_trees

    success = py_trees.behaviours.Success
    if shape == "chains":
        return py_trees.composites.Parallel("chains", policy=py_trees.common.ParallelPolicy.SuccessOnAll(), children=[
            py_trees.composites.Sequence(f"c{c}", memory=True, children=[success(f"c{c}_{i}") for i in range(10)])
            for c in range(1000)])
    middle = py_trees.composites.Parallel("fan", policy=py_trees.common.ParallelPolicy.SuccessOnAll(),
                                          children=[success(f"w{i}") for i in range(9998)])
    return py_trees.composites.Sequence("fan", memory=True, children=[success("start"), middle, success("join")])


def run_py_trees(shape: str) -> float:
    """Seconds to build the tree and tick it to SUCCESS (its leaves succeed at once, as the tasks do)."""
    import py_trees

    started = time.perf_counter()
    tree = py_trees_tree(shape)
    tree.setup_with_descendants()
    while tree.status != py_trees.common.Status.SUCCESS:
        tree.tick_once()
    return time.perf_counter() - started


def best(repeat: int, fn, *args) -> float:
    return min(fn(*args) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the scheduler on the chains")
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    args = parser.parse_args()
    figures = FigureLog(args.json, "mission engine")
    shapes = {"chains": chains(), "fan": fan(), "random": random_dag()}
    if args.profile:
        import cProfile
        import pstats

        cProfile.runctx("run_scheduler(shapes['chains'], None)", globals(), {"shapes": shapes},
                        "/tmp/mission_core.prof")
        pstats.Stats("/tmp/mission_core.prof").sort_stats("cumulative").print_stats(25)
        return
    print(f"mission scheduler core vs py_trees {metadata.version('py_trees')}: 10,000 instant "
          f"tasks, best of {args.repeat}")
    print(f"  {'graph':<8} {'py_trees':>10} {'scheduler':>10} {'ratio':>6}   {'no fsync':>9} {'durable':>9} "
          f"{'durable/no journal':>19}")
    with tempfile.TemporaryDirectory() as directory:
        for name, spec in shapes.items():
            peer = best(args.repeat, run_py_trees, name) if name != "random" else None
            alone = best(args.repeat, run_scheduler, spec, None)
            journaled = {}
            for durable in (False, True):
                def with_journal(durable=durable):
                    path = Path(directory) / f"{name}-{durable}-{time.perf_counter_ns()}.db"
                    journal = Journal(path, durable=durable)
                    try:
                        return run_scheduler(spec, journal)
                    finally:
                        journal.close()
                journaled[durable] = best(args.repeat, with_journal)
            n = len(spec.tasks)
            peer_text = f"{peer / n * 1e6:8.1f}us" if peer else f"{'-':>10}"
            ratio = f"{alone / peer:6.2f}" if peer else f"{'-':>6}"
            print(f"  {name:<8} {peer_text} {alone / n * 1e6:8.1f}us {ratio}   {journaled[False] / n * 1e6:7.1f}us "
                  f"{journaled[True] / n * 1e6:7.1f}us {journaled[True] / alone:18.2f}x")
            figures.add(f"scheduler per task, {name}{' vs py_trees' if peer else ''}", alone / n * 1e6, "us",
                        **({"baseline": peer / n * 1e6, "ratio": alone / peer, "target": "ratio <= 1.0",
                            "met": alone / peer <= 1.0} if peer else {}))
            figures.add(f"journal without fsync per task, {name}, vs no journal", journaled[False] / n * 1e6, "us",
                        baseline=alone / n * 1e6, ratio=journaled[False] / alone)
            figures.add(f"durable journal per task, {name}, vs no journal", journaled[True] / n * 1e6, "us",
                        baseline=alone / n * 1e6, ratio=journaled[True] / alone, target="ratio <= 2",
                        met=journaled[True] / alone <= 2.0)
    print("  (per task; ratio: scheduler / py_trees, target <= 1.0; durable journal target <= 2x the scheduler alone)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  process max RSS {peak:.0f} MB (target < 200 MB)")
    figures.add("scheduler process max RSS, 10,000-task graphs", peak, "MB", target="< 200 MB", met=peak < 200)


if __name__ == "__main__":
    main()
