"""Mission scheduler core, no ROS: a random task DAG scheduled to completion with instant tasks.

Prints task state transitions per second and peak memory, with no journal, with the journal without
fsync, and with the durable journal (WAL, synchronous=FULL), so the cost of durability shows as a ratio.
Targets (issue 3): >= 100,000 transitions/s and < 200 MB for 10,000 tasks.

    .venv/bin/python bench/mission_core.py [--tasks 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from qai_edge.tasks import TaskKindSpec
from qai_mission.journal import Journal
from qai_mission.model import KindRoute, MissionSpec, RetryPolicy, TaskSpec
from qai_mission.scheduler import Dispatch, Scheduler

ROUTES = {
    "move": KindRoute(TaskKindSpec("move", resources=frozenset({"motion"})), "/io", "/io/run_task"),
    "scan": KindRoute(TaskKindSpec("scan"), "/io", "/io/run_task"),
    "plan": KindRoute(TaskKindSpec("plan"), "/quantum", "/quantum/run_task"),
}


def random_dag(n: int, rng: random.Random) -> MissionSpec:
    tasks = []
    for i in range(n):
        deps = rng.sample(range(max(0, i - 50), i), k=min(i, rng.randint(0, 3))) if i else []
        tasks.append(TaskSpec(id=f"t{i}", kind=rng.choice(("move", "scan", "scan", "plan")),
                              priority=rng.randint(0, 5), depends_on=tuple(f"t{d}" for d in deps),
                              retry=RetryPolicy(max_retries=1, initial_backoff=0.0),
                              resources=frozenset({"camera"}) if rng.random() < 0.1 else frozenset()))
    return MissionSpec("bench", "bench", tuple(tasks))


def run(spec: MissionSpec, journal: Journal | None, fail_rate: float, seed: int) -> tuple[float, int]:
    rng = random.Random(seed)
    now = [0.0]
    scheduler = Scheduler(lambda: now[0])
    scheduler.set_routes(ROUTES, {"/io", "/quantum"})
    started = time.perf_counter()
    scheduler.add_mission(spec)
    mission = scheduler.missions["bench"]
    while not mission.status.terminal:
        if journal is not None:
            journal.record(*scheduler.take_changes())
        else:
            scheduler.take_changes()
        commands = scheduler.take_commands()
        if not commands:
            now[0] += 1.0
            scheduler.tick()
            continue
        for command in commands:
            if isinstance(command, Dispatch):
                if rng.random() < fail_rate:
                    scheduler.task_failed(command.task, command.attempt, "bench failure", retryable=True)
                else:
                    scheduler.task_succeeded(command.task, command.attempt, {})
    elapsed = time.perf_counter() - started
    assert mission.status.name == "SUCCEEDED" or fail_rate > 0, mission.status
    return elapsed, scheduler.transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of attempts that fail (retried once)")
    args = parser.parse_args()
    spec = random_dag(args.tasks, random.Random(args.seed))

    elapsed, transitions = run(spec, None, args.fail_rate, args.seed)
    tracemalloc.start()  # a second run, for memory only: tracing slows it several times over
    run(spec, None, args.fail_rate, args.seed)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"mission core: {args.tasks} tasks, random DAG (<= 3 dependencies each), instant tasks")
    print(f"  no journal:        {transitions} transitions in {elapsed:.3f} s = {transitions / elapsed:,.0f}/s "
          f"(target >= 100,000/s)")
    print(f"  peak Python memory {peak / 2**20:.1f} MB traced, process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (target < 200 MB)")
    with tempfile.TemporaryDirectory() as directory:
        for durable in (False, True):
            journal = Journal(Path(directory) / f"journal-{durable}.db", durable=durable)
            j_elapsed, j_transitions = run(spec, journal, args.fail_rate, args.seed)
            label = "durable journal:  " if durable else "journal, no fsync:"
            print(f"  {label} {j_transitions} transitions in {j_elapsed:.3f} s = {j_transitions / j_elapsed:,.0f}/s, "
                  f"{journal.commits} commits, {j_elapsed / elapsed:.1f}x the time without journal")
            journal.close()


if __name__ == "__main__":
    main()
