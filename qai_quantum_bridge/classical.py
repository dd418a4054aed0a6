"""Classical solvers: exact where that is cheap, a heuristic where it is not. No rclpy import.

They answer the bridge's problems in well under a millisecond at robot sizes, check every quantum
answer, and take over when the quantum path cannot.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from qai_quantum_bridge.problems import (AssignmentProblem, IsingProblem, Problem, QuboProblem, RouteProblem,
                                         Solution)
from qai_quantum_bridge.qubo import Encoding, QuboForm

HELD_KARP_MAX = 13  # waypoints: 2^12 subsets x 12^2, milliseconds
BRUTE_FORCE_MAX = 22  # variables: 4M states, about a second


@dataclass
class ClassicalAnswer:
    solution: Solution
    solver: str
    optimal: bool  # proven optimal (exact solver)
    seconds: float


def solve_classically(problem: Problem, encoding: Encoding | None = None, seed: int = 0) -> ClassicalAnswer:
    began = time.perf_counter()
    if isinstance(problem, AssignmentProblem):
        solution, solver, optimal = assign_exactly(problem), "hungarian", True
    elif isinstance(problem, RouteProblem):
        if problem.n <= HELD_KARP_MAX:
            solution, solver, optimal = problem.evaluate(held_karp(problem)), "held_karp", True
        else:
            solution, solver, optimal = problem.evaluate(two_opt(problem)), "two_opt", False
    elif isinstance(problem, (QuboProblem, IsingProblem)):
        form = (encoding or Encoding(problem)).form
        if form.n <= BRUTE_FORCE_MAX:
            bits, _ = brute_force(form)
            solver, optimal = "brute_force", True
        else:
            bits, _ = simulated_annealing(form, seed=seed)
            solver, optimal = "simulated_annealing", False
        solution = problem.decode(bits)
    else:
        raise TypeError(f"no classical solver for {type(problem).__name__}")
    return ClassicalAnswer(solution, solver, optimal, time.perf_counter() - began)


def assign_exactly(problem: AssignmentProblem) -> Solution:
    """Optimal assignment with capacities: the Hungarian method over one column per agent place."""
    from scipy.optimize import linear_sum_assignment

    slots = [r for r, cap in enumerate(problem.capacities) for _ in range(cap)]
    rows, cols = linear_sum_assignment(problem.costs[:, slots])
    assignment = [0] * problem.num_tasks
    for t, c in zip(rows, cols):
        assignment[t] = slots[c]
    return problem.evaluate(assignment)


def held_karp(problem: RouteProblem) -> list[int]:
    """Shortest route from the start through every waypoint (optionally back): exact dynamic programming."""
    d, start, others = problem.distances, problem.start, problem.others
    if not others:
        return [start]
    m = len(others)
    # best[(mask, j)] = (length, previous): visit the set `mask` of others, ending at others[j]
    best: dict[tuple[int, int], tuple[float, int]] = {(1 << j, j): (float(d[start, others[j]]), -1) for j in range(m)}
    for size in range(2, m + 1):
        for subset in itertools.combinations(range(m), size):
            mask = sum(1 << j for j in subset)
            for j in subset:
                previous_mask = mask & ~(1 << j)
                best[(mask, j)] = min((best[(previous_mask, k)][0] + float(d[others[k], others[j]]), k)
                                      for k in subset if k != j)
    full = (1 << m) - 1
    back = (lambda j: float(d[others[j], start])) if problem.return_to_start else (lambda j: 0.0)
    last = min(range(m), key=lambda j: best[(full, j)][0] + back(j))
    order, mask, j = [], full, last
    while j != -1:
        order.append(others[j])
        mask, j = mask & ~(1 << j), best[(mask, j)][1]
    return [start] + order[::-1]


def two_opt(problem: RouteProblem) -> list[int]:
    """Nearest neighbour, then 2-opt until no reversal shortens the route (large routes)."""
    d = problem.distances
    order, left = [problem.start], set(problem.others)
    while left:
        nearest = min(left, key=lambda c: d[order[-1], c])
        order.append(nearest)
        left.remove(nearest)
    improved = True
    while improved:
        improved = False
        for i in range(1, len(order) - 1):
            for j in range(i + 1, len(order)):
                candidate = order[:i] + order[i:j + 1][::-1] + order[j + 1:]
                if problem.length(candidate) < problem.length(order) - 1e-12:
                    order, improved = candidate, True
    return order


def all_bits(n: int, start: int, count: int) -> np.ndarray:
    index = np.arange(start, start + count, dtype=np.int64)
    return ((index[:, None] >> np.arange(n)) & 1).astype(np.int8)


def brute_force(form: QuboForm, chunk: int = 1 << 16) -> tuple[list[int], float]:
    """Return the exact minimum of a QUBO by enumeration (n up to about 22)."""
    total = 1 << form.n
    best_bits, best_energy = None, math.inf
    for start in range(0, total, chunk):
        bits = all_bits(form.n, start, min(chunk, total - start))
        energies = form.energies(bits)
        i = int(np.argmin(energies))
        if energies[i] < best_energy:
            best_bits, best_energy = bits[i].tolist(), float(energies[i])
    return best_bits, best_energy


def simulated_annealing(form: QuboForm, sweeps: int = 2000, restarts: int = 32, seed: int = 0,
                        t_start: float | None = None, t_end: float = 1e-3) -> tuple[list[int], float]:
    """Single-flip Metropolis annealing, all restarts at once (vectorised)."""
    rng = np.random.default_rng(seed)
    n = form.n
    symmetric = form.quadratic + form.quadratic.T
    scale = max(np.abs(form.linear).max(initial=0.0), np.abs(symmetric).max(initial=0.0), 1e-9)
    t_start = t_start or 2.0 * scale
    x = rng.integers(0, 2, size=(restarts, n)).astype(float)
    field_ = form.linear + x @ symmetric  # dE of flipping bit i: (1 - 2 x_i) * field_i
    best_x, best_e = x.copy(), form.energies(x)
    for sweep in range(sweeps):
        temperature = t_start * (t_end / t_start) ** (sweep / max(sweeps - 1, 1))
        for i in rng.permutation(n):
            delta = (1.0 - 2.0 * x[:, i]) * field_[:, i]
            accept = (delta <= 0) | (rng.random(restarts) < np.exp(-np.maximum(delta, 0) / temperature))
            if accept.any():
                change = np.where(accept, 1.0 - 2.0 * x[:, i], 0.0)
                x[:, i] += change
                field_ += change[:, None] * symmetric[i][None, :]
        energies = form.energies(x)
        improved = energies < best_e
        best_x[improved], best_e[improved] = x[improved], energies[improved]
    i = int(np.argmin(best_e))
    return best_x[i].astype(int).tolist(), float(best_e[i])
