"""Benchmark the mission engine over ROS, between processes, on a private domain.

A mission_engine node drives an engine node (the test-only engine, test/task_engine.py, whose `echo` kind
returns at once), each in its own process.

Prints
- submit-to-engine-start latency: single-task missions one after another, from MissionClient.submit()
  to the engine's handler starting (same machine clock), p50/p99 (target p99 < 20 ms);
- throughput: 1,000 independent trivial tasks in one mission, and a chain of 200 (each waiting for the
  previous), tasks/s (target >= 200/s), with the durable journal and without fsync (the cost of
  durability as a ratio);
- a 5,000-task mission submitted while another mission runs (issue 8): the time to accept it and to run
  it, and the running mission's dispatch latency (its task ending -> the next starting, on the engine's
  clock) meanwhile, beside the same latency with nothing else running (the ratio says what the big
  mission costs it). Each measurement runs on fresh processes.

    .venv/bin/python bench/mission_ros.py [--tasks 1000] [--latency-samples 200] [--big 5000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qai_edge.figures import FigureLog, percentile
from qai_edge.isolation import isolate

ROOT = Path(__file__).resolve().parents[1]


def start(command: list[str], name: str, namespace: str, parameters: dict, directory: Path) -> subprocess.Popen:
    import yaml

    params = directory / f"{name}.yaml"
    params.write_text(yaml.safe_dump({f"{namespace}/{name}": {"ros__parameters": parameters}}))
    log = open(directory / f"{name}.log", "wb")
    return subprocess.Popen([*command, "--ros-args", "-r", f"__node:={name}", "-r", f"__ns:={namespace}",
                             "--params-file", str(params)], stdout=log, stderr=subprocess.STDOUT)


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until_served(client, kind: str, timeout: float = 30.0) -> None:
    from qai_mission.client import MissionRejected

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.run({"tasks": [{"id": "warm_up", "kind": kind}]}, timeout=timeout)
            return
        except MissionRejected:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_stack(directory: Path, durable: bool, measurement: str, args):
    """Run one measurement on a fresh mission_engine and test engine.

    Finished goals that an action server keeps slow later goals down, so measurements do not share processes.
    """
    from qai_mission.client import MissionClient, MissionOutcome

    tag = f"{'d' if durable else 'n'}{measurement}"
    namespace = f"/bench{os.getpid()}{tag}"
    run_log = directory / f"runs-{tag}.jsonl"
    mission_engine = start([sys.executable, "-m", "qai_mission.node"], "mission_engine", namespace,
                           {"data_dir": str(directory / f"data-{tag}"), "journal_durable": durable,
                            "state_period": 0.2, "max_tasks_per_engine": args.per_engine}, directory)
    engine = start([sys.executable, str(ROOT / "test" / "task_engine.py")], "test_engine", namespace,
                   {"run_log": str(run_log)}, directory)
    try:
        with MissionClient(namespace=namespace) as client:
            wait_until_served(client, "echo")
            if measurement == "latency":
                latencies = []
                for i in range(args.latency_samples):
                    sent = time.time()
                    client.wait(client.submit({"id": f"lat{i}", "tasks": [{"id": f"l{i}", "kind": "echo"}]}), 30)
                    started = next(r["t"] for r in map(json.loads, run_log.read_text().splitlines())
                                   if r["task"] == f"l{i}" and r["event"] == "start")
                    latencies.append((started - sent) * 1000)
                return latencies
            if measurement in ("beside", "alone"):
                return big_beside_running(client, run_log, args.big if measurement == "beside" else 0)
            dependent = measurement == "chain"
            count = args.chain if dependent else args.tasks
            tasks = [{"id": f"t{i}", "kind": "echo", **({"depends_on": [f"t{i - 1}"]} if dependent and i else {})}
                     for i in range(count)]
            began = time.perf_counter()
            result = client.run({"tasks": tasks}, timeout=600)
            elapsed = time.perf_counter() - began
            assert result.outcome is MissionOutcome.SUCCEEDED, result.message
            return count, elapsed
    finally:
        stop(mission_engine, engine)


def dispatch_gaps(run_log: Path, mission_id: str) -> list[float]:
    """Return the ms from each task of a chain ending to the next one starting, from the engine's run log."""
    events = [r for r in map(json.loads, run_log.read_text().splitlines()) if r["mission"] == mission_id]
    ends = {r["task"]: r["t"] for r in events if r["event"] == "end"}
    starts = {r["task"]: r["t"] for r in events if r["event"] == "start"}
    return [(starts[f"s{i}"] - ends[f"s{i - 1}"]) * 1000 for i in range(1, len(starts)) if f"s{i}" in starts]


def big_beside_running(client, run_log: Path, big: int):
    """Run a chain of short tasks; meanwhile (big > 0) submit a mission of `big` independent tasks."""
    from qai_mission.client import MissionOutcome

    steady = client.submit({"tasks": [{"id": f"s{i}", "kind": "sleep", "parameters": {"seconds": 0.05},
                                       **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(60)]})
    time.sleep(0.5)
    accept = run = None
    if big:
        began = time.perf_counter()
        mission = client.submit({"tasks": [{"id": f"t{i}", "kind": "echo", "parameters": {"i": i}}
                                           for i in range(big)]}, timeout=120)
        accept = time.perf_counter() - began
        result = client.wait(mission, 900)
        run = time.perf_counter() - began
        assert result.outcome is MissionOutcome.SUCCEEDED, result.message
    assert client.wait(steady, 900).outcome is MissionOutcome.SUCCEEDED
    return accept, run, dispatch_gaps(run_log, steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--big", type=int, default=5000, help="tasks of the mission submitted beside a running one")
    parser.add_argument("--per-engine", type=int, default=16, help="the mission engine's max_tasks_per_engine")
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    args = parser.parse_args()
    figures = FigureLog(args.json, "mission engine")
    environment = isolate("qai-edge-bench-ros-log-")
    print(f"mission engine over ROS (ROS_DOMAIN_ID={environment['ROS_DOMAIN_ID']}, LOCALHOST discovery), "
          f"mission_engine and test engine in their own processes")
    with tempfile.TemporaryDirectory(prefix="qai-edge-bench-") as directory:
        results = {durable: {m: run_stack(Path(directory), durable, m, args)
                             for m in ("latency", "independent", "chain")}
                   for durable in (True, False)}
        beside = run_stack(Path(directory), True, "beside", args)
        alone = run_stack(Path(directory), True, "alone", args)
    latencies = results[True]["latency"]
    print(f"  submit -> engine start, {len(latencies)} single-task missions (durable journal): "
          f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
          f"max {max(latencies):.1f} ms (target p99 < 20 ms)")
    nofsync = results[False]["latency"]
    print(f"  the same without fsync: p50 {statistics.median(nofsync):.1f} ms, "
          f"p99 {percentile(nofsync, 0.99):.1f} ms")
    for share in (0.5, 0.99):
        ours, fast = percentile(latencies, share), percentile(nofsync, share)
        figures.add(f"submit -> engine start p{share * 100:.0f}, durable vs no fsync", ours, "ms", baseline=fast,
                    ratio=ours / fast, **({"target": "< 20 ms", "met": ours < 20} if share == 0.99 else {}))
    for label in ("independent", "chain"):
        durable_count, durable_time = results[True][label]
        _, fast_time = results[False][label]
        print(f"  {durable_count} {label} trivial tasks: {durable_count / durable_time:.0f} tasks/s durable, "
              f"{durable_count / fast_time:.0f} tasks/s without fsync "
              f"(durability costs {durable_time / fast_time:.2f}x)"
              f"{' (target >= 200 tasks/s)' if label == 'independent' else ''}")
        rate = durable_count / durable_time
        figures.add(f"{durable_count} {label} trivial tasks, durable vs no fsync", rate, "tasks/s",
                    baseline=durable_count / fast_time, ratio=fast_time / durable_time,
                    **({"target": ">= 200 tasks/s", "met": rate >= 200} if label == "independent" else {}))
    accept, run, gaps = beside
    _, _, quiet = alone
    print(f"  a {args.big}-task mission beside a running one (durable journal): accepted in {accept:.2f} s, ran in "
          f"{run:.1f} s ({args.big / run:.0f} tasks/s)")
    print(f"  the running mission's dispatch latency meanwhile: p50 {statistics.median(gaps):.1f} ms, p99 "
          f"{percentile(gaps, 0.99):.1f} ms, max {max(gaps):.1f} ms; with nothing beside it: p50 "
          f"{statistics.median(quiet):.1f} ms, p99 {percentile(quiet, 0.99):.1f} ms "
          f"(p99 ratio {percentile(gaps, 0.99) / percentile(quiet, 0.99):.1f}x)")
    figures.add(f"{args.big}-task mission beside a running one: accepted in", accept, "s")
    figures.add(f"{args.big}-task mission beside a running one: ran at", args.big / run, "tasks/s")
    figures.add(f"running mission's dispatch p99 beside the {args.big}-task one vs alone", percentile(gaps, 0.99),
                "ms", baseline=percentile(quiet, 0.99), ratio=percentile(gaps, 0.99) / percentile(quiet, 0.99))


if __name__ == "__main__":
    main()
