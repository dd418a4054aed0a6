"""Problems -> QUBO.

On random small instances the QUBO's optimum (by brute force) is the problem's optimum (by an exact classical
solver); decoding, feasibility and clear errors.
"""

import itertools
import math

import numpy as np
import pytest

from qai_quantum_bridge.classical import (assign_exactly, brute_force, held_karp, simulated_annealing,
                                          solve_classically, two_opt)
from qai_quantum_bridge.problems import (AssignmentProblem, IsingProblem, ProblemError, QuboProblem, RouteProblem)
from qai_quantum_bridge.qubo import Encoding

SEEDS = range(12)


def qubo_optimum(problem):
    encoding = Encoding(problem)
    bits, energy = brute_force(encoding.form)
    return encoding.decode(bits), energy, encoding


@pytest.mark.parametrize("seed", SEEDS)
def test_assignment_qubo_optimum_is_the_assignment_optimum(seed):
    rng = np.random.default_rng(seed)
    tasks, agents = int(rng.integers(2, 6)), int(rng.integers(2, 4))
    capacities = [int(rng.integers(1, tasks + 1)) for _ in range(agents)]
    capacities[0] = max(capacities[0], tasks - sum(capacities[1:]))
    problem = AssignmentProblem(rng.uniform(1, 10, (tasks, agents)).round(2), capacities)
    solution, energy, encoding = qubo_optimum(problem)
    if encoding.num_qubits > 20:
        pytest.skip("too many qubits to brute-force quickly")
    exact = assign_exactly(problem)
    assert solution.feasible and solution.cost == pytest.approx(exact.cost)
    assert energy == pytest.approx(exact.cost)  # penalties vanish at a feasible optimum


def test_two_agents_take_one_qubit_per_task():
    problem = AssignmentProblem(np.ones((8, 2)), [4, 4])
    assert Encoding(problem).num_qubits == 8  # equal shares: an equality, no slack bits


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("return_to_start", [False, True])
def test_route_qubo_optimum_is_the_shortest_route(seed, return_to_start):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    problem = RouteProblem(points=rng.uniform(0, 50, (n, 3)), start=int(rng.integers(0, n)),
                           return_to_start=return_to_start)
    solution, energy, _ = qubo_optimum(problem)
    best = min(problem.length([problem.start, *perm]) for perm in itertools.permutations(problem.others))
    assert solution.feasible and solution.cost == pytest.approx(best) and energy == pytest.approx(best)
    assert solution.route[0] == problem.start and sorted(solution.route) == list(range(n))


@pytest.mark.parametrize("seed", SEEDS)
def test_raw_qubo_and_ising_optima_match_direct_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = 6
    linear = rng.normal(size=n).tolist()
    couplings = {(i, j): float(rng.normal()) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.5}
    qubo, ising = QuboProblem(n, linear, couplings, 1.5), IsingProblem(n, linear, couplings, -0.5)
    for problem in (qubo, ising):
        solution, energy, _ = qubo_optimum(problem)
        direct = min(problem.decode(bits).cost for bits in itertools.product((0, 1), repeat=n))
        assert solution.cost == pytest.approx(direct) and energy == pytest.approx(direct)


def test_infeasible_bitstrings_decode_as_infeasible():
    route = RouteProblem(points=[[0, 0], [1, 0], [2, 0]])
    assert not route.decode([1, 1, 0, 0]).feasible  # two waypoints at position 1
    assignment = AssignmentProblem([[1, 2, 3], [1, 2, 3]])
    assert not assignment.decode([1, 1, 0, 0, 1, 0]).feasible  # task 0 on two agents
    capped = AssignmentProblem([[1, 9], [1, 9]], [1, 2])
    assert not capped.decode([0, 0]).feasible and capped.decode([0, 1]).cost == 10


def test_classical_solvers_are_exact_where_they_say_so():
    rng = np.random.default_rng(0)
    route = RouteProblem(points=rng.uniform(0, 100, (8, 2)), start=3, return_to_start=True)
    best = min(route.length([3, *p]) for p in itertools.permutations(route.others))
    assert route.length(held_karp(route)) == pytest.approx(best)
    assert route.length(two_opt(route)) <= best * 1.3
    answer = solve_classically(route)
    assert (answer.solver, answer.optimal) == ("held_karp", True)
    assignment = AssignmentProblem(rng.uniform(0, 10, (5, 2)), [2, 3])
    brute = min(assignment.evaluate(a).cost for a in itertools.product(range(2), repeat=5))
    assert assign_exactly(assignment).cost == pytest.approx(brute)


def test_simulated_annealing_reaches_the_exact_optimum_of_a_small_qubo():
    rng = np.random.default_rng(4)
    problem = QuboProblem(14, rng.normal(size=14), {(i, j): rng.normal() for i in range(14)
                                                    for j in range(i + 1, 14) if rng.random() < 0.3})
    form = Encoding(problem).form
    assert simulated_annealing(form, sweeps=400, seed=1)[1] == pytest.approx(brute_force(form)[1])


@pytest.mark.parametrize("build, message", [
    (lambda: AssignmentProblem([[1, math.nan]]), "costs[0][1]: nan is not a finite number"),
    (lambda: AssignmentProblem([1, 2, 3]), "costs: expected a matrix"),
    (lambda: AssignmentProblem([[1, 2], [3, 4]], [1]), "capacities: expected 2 (one per agent), got 1"),
    (lambda: AssignmentProblem([[1, 2], [3, 4], [5, 6]], [1, 1]), "capacities: 2 places in all for 3 tasks"),
    (lambda: AssignmentProblem([[1, 2]], [1, -1]), "capacities[1]: expected a non-negative integer"),
    (lambda: RouteProblem(points=[[0, 0], [1, math.inf]]), "waypoints[1][1]: inf is not a finite number"),
    (lambda: RouteProblem(points=[[0, 0]]), "waypoints: a route needs at least 2 waypoints"),
    (lambda: RouteProblem(points=[[0, 0], [1, 1]], start=5), "start_index: 5 is out of range for 2 waypoints"),
    (lambda: RouteProblem(distances=[[0, -1], [1, 0]]), "distances[0][1]: -1.0 is negative"),
    (lambda: QuboProblem(2, [1.0], {}), "linear: expected 2 values, got 1"),
    (lambda: QuboProblem(2, [], {(0, 5): 1.0}), "quadratic: index (0, 5) is out of range for 2 variables"),
    (lambda: IsingProblem(2, [], {(1, 1): 1.0}), "quadratic: (1, 1) couples a spin to itself"),
])
def test_bad_problems_name_the_field(build, message):
    with pytest.raises(ProblemError) as error:
        build()
    assert str(error.value).startswith(message), str(error.value)
