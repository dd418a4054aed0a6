"""Quantum bridge figures.

- Statevector QAOA, p=2, 1024 shots, one evaluation (bind, simulate, sample) at 10, 16, 20, 24, 25, 26
  qubits, each size in its own process for its peak memory; beside the seed document's table (Qiskit Aer
  CPU: 20 q 5.1 s, 25 q 42 s; its best GPU: 20 q 0.82 s, 25 q 7.2 s).
- Small-circuit throughput: 10 qubits, p=2, 1024 shots, distinct parameters, one transpile, one job
  (target >= 500 circuits/s).
- End to end over the real Optimize action (goal sent -> verified result): 8-task/2-robot assignments
  and 6-waypoint routes, p50/p99, and the share of answers that are optimal (target 100%).

    .venv/bin/python bench/quantum_qaoa.py [--sizes 10,16,20,24,25,26] [--instances 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

SEED_TABLE = {20: (5.1, 0.82), 25: (42.0, 7.2)}  # qubits: (Aer CPU s, best GPU s) from the seed document


def qaoa_template(n: int, reps: int = 2, seed: int = 0):
    """A QAOA circuit for a random sparse QUBO on n variables (about 3 couplings per variable)."""
    from qiskit.circuit.library import qaoa_ansatz

    from qai_quantum_bridge.problems import QuboProblem
    from qai_quantum_bridge.qubo import Encoding

    rng = np.random.default_rng(seed)
    couplings = {}
    for i in range(n):
        for j in rng.choice([k for k in range(n) if k != i], size=min(3, n - 1), replace=False):
            couplings[(min(i, int(j)), max(i, int(j)))] = float(rng.normal())
    operator, _ = Encoding(QuboProblem(n, rng.normal(size=n), couplings)).ising()
    circuit = qaoa_ansatz(operator.simplify(), reps=reps)
    circuit.measure_all()
    return circuit


def one_size(n: int, evaluations: int) -> dict:
    """Child process: time QAOA evaluations at n qubits; report its own peak memory."""
    from qai_quantum_bridge.backends import AerBackend

    backend = AerBackend("aer_statevector", seed=1)
    compiled = backend.compile(qaoa_template(n))
    rng = np.random.default_rng(1)
    times = []
    for _ in range(evaluations):
        began = time.perf_counter()
        backend.run(compiled, [rng.uniform(0, 1, compiled.circuit.num_parameters)], 1024)
        times.append(time.perf_counter() - began)
    return {"qubits": n, "seconds": statistics.median(times), "evaluations": evaluations,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "depth": compiled.depth}


def throughput(count: int = 2000) -> float:
    from qai_quantum_bridge.backends import AerBackend

    backend = AerBackend("aer_statevector", seed=1)
    compiled = backend.compile(qaoa_template(10))
    parameters = np.random.default_rng(2).uniform(0, 1, (count, compiled.circuit.num_parameters))
    backend.run(compiled, parameters[:50], 1024)  # warm
    began = time.perf_counter()
    counts = backend.run(compiled, parameters, 1024)
    elapsed = time.perf_counter() - began
    assert len(counts) == count
    return count / elapsed


def end_to_end(instances: int) -> list[str]:
    import rclpy
    from geometry_msgs.msg import Point
    from rclpy.action import ActionClient

    from qai_edge.isolation import isolate
    from qai_edge.paths import installed_executable
    from qai_edge.qos import ACTION_QOS_ARGUMENTS
    from qai_interfaces.action import Optimize
    from qai_interfaces.msg import OptimizationProblem
    from qai_quantum_bridge.classical import assign_exactly, held_karp
    from qai_quantum_bridge.problems import AssignmentProblem, RouteProblem

    isolate("qai-edge-bench-ros-log-")
    bridge = subprocess.Popen([str(installed_executable("quantum_bridge")), "--ros-args", "-r", "__ns:=/benchq"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    node = rclpy.create_node("bench_quantum")
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    client = ActionClient(node, Optimize, "/benchq/optimize", **ACTION_QOS_ARGUMENTS)

    def wait(predicate, timeout=120):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError
            executor.spin_once(timeout_sec=0.01)

    def solve(goal):
        began = time.perf_counter()
        sent = client.send_goal_async(goal)
        wait(sent.done)
        result = sent.result().get_result_async()
        wait(result.done)
        return time.perf_counter() - began, result.result().result

    lines = []
    try:
        wait(client.server_is_ready)
        rng = np.random.default_rng(0)
        cases = []
        for _ in range(instances):
            costs = rng.uniform(1, 10, (8, 2)).round(2)
            cases.append(("8-task/2-robot assignment", OptimizationProblem(
                type=OptimizationProblem.ASSIGNMENT, num_tasks=8, num_agents=2, costs=costs.ravel().tolist(),
                capacities=[4, 4]), assign_exactly(AssignmentProblem(costs, [4, 4])).cost))
            points = rng.uniform(0, 50, (6, 3))
            route = RouteProblem(points=points)
            cases.append(("6-waypoint route", OptimizationProblem(
                type=OptimizationProblem.ROUTE, waypoints=[Point(x=p[0], y=p[1], z=p[2]) for p in points]),
                route.length(held_karp(route))))
        solve(Optimize.Goal(problem=cases[0][1]))  # warm the node's imports
        for preference, label in ((Optimize.Goal.SOLVER_AUTO, "auto"), (Optimize.Goal.SOLVER_QUANTUM, "quantum")):
            for name in ("8-task/2-robot assignment", "6-waypoint route"):
                times, optimal, solvers = [], 0, set()
                for case_name, problem, best in cases:
                    if case_name != name:
                        continue
                    seconds, result = solve(Optimize.Goal(problem=problem, solver_preference=preference, seed=1))
                    times.append(seconds * 1000)
                    optimal += abs(result.solution.cost - best) <= 1e-6 * max(1.0, best)
                    solvers.add(result.solver + (" (fallback)" if result.fallback else ""))
                times.sort()
                lines.append(f"  {name}, solver {label}: p50 {statistics.median(times):.1f} ms, "
                             f"p99 {times[min(len(times) - 1, int(0.99 * (len(times) - 1)))]:.1f} ms, optimal "
                             f"{optimal}/{len(times)} ({100 * optimal / len(times):.0f}%), answered by "
                             f"{', '.join(sorted(solvers))}")
    finally:
        bridge.terminate()
        bridge.wait(10)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,16,20,24,25,26")
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--evaluations", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.evaluations)))
        return

    print("QAOA p=2, 1024 shots, statevector (qiskit-aer, double precision), one evaluation, 2 CPU cores")
    print("  qubits   ours        peak memory   seed doc: Aer CPU   best GPU")
    for n in (int(s) for s in args.sizes.split(",")):
        evaluations = 5 if n <= 20 else (3 if n <= 24 else 2)
        output = subprocess.run([sys.executable, __file__, "--one", str(n), "--evaluations", str(evaluations)],
                                capture_output=True, text=True, check=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        cpu, gpu = SEED_TABLE.get(n, (None, None))
        print(f"  {n:>6}   {row['seconds']:8.3f} s  {row['peak_mib']:8.0f} MiB    "
              f"{f'{cpu:.1f} s' if cpu else '':>10}   {f'{gpu:.2f} s' if gpu else '':>8}")
    print(f"  small circuits (10 q, p=2, 1024 shots, distinct parameters, one job): {throughput():.0f} circuits/s "
          f"(target >= 500)")
    print(f"  end to end over the Optimize action, {args.instances} instances each:")
    for line in end_to_end(args.instances):
        print(line)


if __name__ == "__main__":
    main()
