"""The quantum bridge's bounds on every input, and parsing within them. No rclpy import.

Limits come from the max_* parameters (config/edge.yaml documents the defaults). Every size is checked
here before a problem, a QUBO or a circuit exists; an error names the field, the limit and the parameter.
Task parameters (qai_quantum_bridge.kinds) and Optimize goals (qai_quantum_bridge.messages) both parse
through these functions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from qai_edge.text import shorten
from qai_quantum_bridge.circuits import CircuitLimits
from qai_quantum_bridge.problems import AssignmentProblem, IsingProblem, ProblemError, QuboProblem, RouteProblem


@dataclass(frozen=True)
class Limits:
    """Bounds on every input (the max_* parameters; config/edge.yaml documents the defaults)."""

    max_circuit_qubits: int = 64
    max_circuit_gates: int = 100_000
    max_circuit_text: int = 1 << 20
    max_shots: int = 100_000
    max_qubo_variables: int = 64
    max_quadratic_terms: int = 10_000
    max_waypoints: int = 64
    max_assignment_cells: int = 4096

    @classmethod
    def from_parameters(cls, value: Callable[[str], Any]) -> "Limits":
        return cls(**{f.name: int(value(f.name)) for f in fields(cls)})

    @property
    def circuit(self) -> CircuitLimits:
        return CircuitLimits(self.max_circuit_qubits, self.max_circuit_gates, self.max_circuit_text)


def over(field: str, what: str, count: int, limit: int, parameter: str) -> ProblemError:
    return ProblemError(f"{field}: {count} {what}, more than the limit of {limit} ({parameter})")


def route_problem(parameters: Mapping[str, Any], limits: Limits) -> RouteProblem:
    points = parameters["waypoints"]
    if len(points) > limits.max_waypoints:
        raise over("waypoints", "waypoints", len(points), limits.max_waypoints, "max_waypoints")
    return RouteProblem(points=[list(p) + [0.0] * (3 - len(p)) for p in points],
                        start=parameters.get("start_index", 0),
                        return_to_start=parameters.get("return_to_start", False))


def assignment_problem(costs: Any, capacities: Any, limits: Limits) -> AssignmentProblem:
    rows = len(costs)
    width = max((len(row) for row in costs if isinstance(row, (list, tuple))), default=0)
    if rows * width > limits.max_assignment_cells:
        raise over("costs", "cells (tasks x agents)", rows * width, limits.max_assignment_cells,
                   "max_assignment_cells")
    if capacities is not None and len(capacities) > limits.max_assignment_cells:
        raise over("capacities", "values", len(capacities), limits.max_assignment_cells, "max_assignment_cells")
    return AssignmentProblem(costs, capacities or None)


def qubo_problem(num_variables: int, linear: Any, terms, count: int, offset: float, ising: bool,
                 limits: Limits):
    """Build a QUBO or Ising problem within the limits; `terms` yields (index, i, j, value), `count` of them."""
    if num_variables > limits.max_qubo_variables:
        raise over("num_variables", "variables", num_variables, limits.max_qubo_variables, "max_qubo_variables")
    if len(linear) > limits.max_qubo_variables:
        raise over("linear", "values", len(linear), limits.max_qubo_variables, "max_qubo_variables")
    if count > limits.max_quadratic_terms:
        raise over("quadratic", "terms", count, limits.max_quadratic_terms, "max_quadratic_terms")
    quadratic: dict[tuple[int, int], float] = {}
    for index, i, j, value in terms:
        if not (float(i).is_integer() and float(j).is_integer()):
            raise ProblemError(f"quadratic[{index}]: indices must be integers, got {shorten([i, j, value])}")
        if not (0 <= i < num_variables and 0 <= j < num_variables):
            raise ProblemError(f"quadratic[{index}]: index ({shorten(i)}, {shorten(j)}) is out of range for "
                               f"{num_variables} variables")
        key = (int(i), int(j))
        quadratic[key] = quadratic.get(key, 0.0) + float(value)
    kind = IsingProblem if ising else QuboProblem
    return kind(num_variables, list(linear), quadratic, offset)


def check_shots(shots: Any, limits: Limits, field: str = "shots") -> None:
    if isinstance(shots, int) and shots > limits.max_shots:
        raise over(field, "shots", shots, limits.max_shots, "max_shots")
