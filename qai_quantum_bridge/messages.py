"""Problems and results: qai_interfaces messages and task parameters <-> the bridge's core types.

No rclpy import.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from qai_edge.convert import duration_from_seconds, key_values, optional_seconds_from_duration
from qai_interfaces.action import Optimize
from qai_interfaces.msg import OptimizationProblem, OptimizationSolution
from qai_quantum_bridge.bridge import SolveRequest, SolveResult
from qai_quantum_bridge.limits import Limits, assignment_problem, over, qubo_problem
from qai_quantum_bridge.problems import Problem, ProblemError, RouteProblem

_PREFERENCE = {Optimize.Goal.SOLVER_AUTO: "auto", Optimize.Goal.SOLVER_CLASSICAL: "classical",
               Optimize.Goal.SOLVER_QUANTUM: "quantum"}


def problem_from_msg(msg: OptimizationProblem, limits=None) -> Problem:
    """Return the problem a message describes, within `limits`.

    Every size is checked against `limits` (qai_quantum_bridge.limits.Limits) before anything is built.
    """
    limits = limits or Limits()
    if msg.type == OptimizationProblem.ASSIGNMENT:
        cells = limits.max_assignment_cells
        if msg.num_tasks * msg.num_agents > cells or len(msg.costs) > cells:
            raise over("costs", "cells (num_tasks x num_agents)", max(msg.num_tasks * msg.num_agents,
                                                                      len(msg.costs)), cells, "max_assignment_cells")
        if msg.num_tasks * msg.num_agents != len(msg.costs):
            raise ProblemError(f"costs: expected num_tasks x num_agents = {msg.num_tasks * msg.num_agents} values, "
                               f"got {len(msg.costs)}")
        costs = [list(msg.costs[t * msg.num_agents:(t + 1) * msg.num_agents]) for t in range(msg.num_tasks)]
        return assignment_problem(costs, list(msg.capacities[:cells + 1]) or None, limits)
    if msg.type == OptimizationProblem.ROUTE:
        distances = None
        if len(msg.distances):
            if len(msg.distances) > limits.max_waypoints ** 2:
                raise over("distances", "values", len(msg.distances), limits.max_waypoints ** 2,
                           "max_waypoints squared")
            n = math.isqrt(len(msg.distances))
            if n * n != len(msg.distances):
                raise ProblemError(f"distances: {len(msg.distances)} values do not make a square matrix")
            distances = [list(msg.distances[i * n:(i + 1) * n]) for i in range(n)]
        if len(msg.waypoints) > limits.max_waypoints:
            raise over("waypoints", "waypoints", len(msg.waypoints), limits.max_waypoints, "max_waypoints")
        points = [[p.x, p.y, p.z] for p in msg.waypoints]
        return RouteProblem(points=points or None, distances=distances, start=msg.start_index,
                            return_to_start=msg.return_to_start)
    if msg.type in (OptimizationProblem.QUBO, OptimizationProblem.ISING):
        if not (len(msg.quadratic_rows) == len(msg.quadratic_cols) == len(msg.quadratic_values)):
            raise ProblemError("quadratic_rows, quadratic_cols, quadratic_values: must have the same length")
        terms = ((index, int(i), int(j), float(v)) for index, (i, j, v) in enumerate(
            zip(msg.quadratic_rows, msg.quadratic_cols, msg.quadratic_values)))
        return qubo_problem(msg.num_variables, msg.linear, terms, len(msg.quadratic_rows), msg.offset,
                            msg.type == OptimizationProblem.ISING, limits)
    raise ProblemError(f"type: {msg.type} is not ASSIGNMENT (1), ROUTE (2), QUBO (3) or ISING (4)")


def request_from_goal(goal: Optimize.Goal, defaults: SolveRequest) -> SolveRequest:
    if goal.solver_preference not in _PREFERENCE:
        raise ProblemError(f"solver_preference: {goal.solver_preference} is not AUTO, CLASSICAL or QUANTUM")
    preference = _PREFERENCE[goal.solver_preference]
    return SolveRequest(
        preference=defaults.preference if preference == "auto" else preference,
        backend=goal.backend or defaults.backend, profile=goal.technology_profile or defaults.profile,
        deadline=optional_seconds_from_duration(goal.deadline) or defaults.deadline,
        shots=goal.shots or defaults.shots, reps=goal.qaoa_layers or defaults.reps, maxiter=defaults.maxiter,
        cvar_alpha=defaults.cvar_alpha, seed=goal.seed or defaults.seed, precision=defaults.precision)


def request_from_parameters(parameters: Mapping[str, Any], defaults: SolveRequest) -> SolveRequest:
    """Return the solver options a task kind (plan_route, assign_tasks, solve_qubo) takes as parameters."""
    return SolveRequest(
        preference=parameters.get("solver", defaults.preference), backend=parameters.get("backend", defaults.backend),
        profile=parameters.get("technology_profile", defaults.profile),
        deadline=float(parameters.get("deadline", defaults.deadline)), shots=parameters.get("shots", defaults.shots),
        reps=parameters.get("qaoa_layers", defaults.reps), maxiter=defaults.maxiter, cvar_alpha=defaults.cvar_alpha,
        seed=parameters.get("seed", defaults.seed), precision=defaults.precision)


def result_to_msg(result: SolveResult) -> Optimize.Result:
    solution = result.solution
    return Optimize.Result(
        solution=OptimizationSolution(bits=list(solution.bits), route=solution.route or [],
                                      assignment=solution.assignment or [],
                                      cost=float(solution.cost) if math.isfinite(solution.cost) else math.nan,
                                      feasible=solution.feasible),
        solver=result.solver, backend=result.backend, technology_profile=result.profile, fallback=result.fallback,
        fallback_reason=result.fallback_reason, verified=result.verified, reference_cost=float(result.reference_cost),
        solve_time=duration_from_seconds(result.solve_time), total_time=duration_from_seconds(result.total_time),
        metadata=key_values(result.metadata), message=result.message)
