"""A problem's QUBO, as arrays for fast energies, and its bits read back in the problem's terms. No rclpy import.

qiskit-optimization's QuadraticProgramToQubo turns the problem's program into an unconstrained one
(penalties, slack bits); QuboForm holds it as arrays, and Encoding reads QUBO bits back as a Solution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from qai_quantum_bridge.problems import Problem, Solution


@dataclass
class QuboForm:
    """min x' Q x + c' x + constant over binary x (Q strictly upper triangular)."""

    linear: np.ndarray
    quadratic: np.ndarray
    constant: float
    names: list[str]

    @property
    def n(self) -> int:
        return len(self.linear)

    @classmethod
    def from_program(cls, qp) -> "QuboForm":
        n = qp.get_num_vars()
        linear = np.asarray(qp.objective.linear.to_array(), dtype=float).reshape(n)
        full = np.asarray(qp.objective.quadratic.to_array(symmetric=False), dtype=float).reshape(n, n)
        linear = linear + np.diag(full)  # x_i^2 = x_i
        upper = np.triu(full, 1) + np.tril(full, -1).T
        return cls(linear, upper, float(qp.objective.constant), [v.name for v in qp.variables])

    def energies(self, bits: np.ndarray) -> np.ndarray:
        """Energies of many bit vectors at once: `bits` is (k, n) of 0/1."""
        x = np.asarray(bits, dtype=float)
        return self.constant + x @ self.linear + np.einsum("ki,ij,kj->k", x, self.quadratic, x)

    def energy(self, bits: Sequence[int]) -> float:
        return float(self.energies(np.asarray([bits]))[0])


class Encoding:
    """A problem with its QUBO: the bits a solver works on, read back in the problem's terms."""

    def __init__(self, problem: Problem):
        from qiskit_optimization.converters import QuadraticProgramToQubo

        self.problem = problem
        self.program = problem.quadratic_program()
        self.converter = QuadraticProgramToQubo()
        self.qubo_program = self.converter.convert(self.program)
        self.form = QuboForm.from_program(self.qubo_program)
        self._checks = None

    @property
    def num_qubits(self) -> int:
        return self.form.n

    def feasible_costs(self, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Return, for many QUBO bit vectors at once ((k, qubits) of 0/1), feasibility and cost.

        Whether each satisfies the problem's constraints, and its cost in the problem's units (its
        program's objective). None when the program is not the plain binary, linearly constrained kind
        this reads (then decode() one by one).
        """
        if self._checks is None:
            self._checks = self._constraint_arrays() or False
        if self._checks is False:
            return None
        count, a, senses, rhs, constant, linear, quadratic = self._checks
        x = np.asarray(bits, dtype=float)[:, :count]
        lhs = x @ a.T if len(rhs) else np.zeros((len(x), 0))
        tolerance = 1e-6 * np.maximum(1.0, np.abs(rhs))
        ok = np.where(senses == 0, np.abs(lhs - rhs) <= tolerance,
                      np.where(senses < 0, lhs <= rhs + tolerance, lhs >= rhs - tolerance)).all(axis=1)
        costs = constant + x @ linear + np.einsum("ki,ij,kj->k", x, quadratic, x)
        return ok, costs

    def _constraint_arrays(self):
        from qiskit_optimization.problems import Variable
        from qiskit_optimization.problems.constraint import ConstraintSense

        program = self.program
        count = program.get_num_vars()
        names = [v.name for v in program.variables]
        if (names != [v.name for v in self.qubo_program.variables[:count]] or program.quadratic_constraints
                or any(v.vartype != Variable.Type.BINARY for v in program.variables)
                or program.objective.sense != program.objective.sense.MINIMIZE):
            return None
        constraints = program.linear_constraints
        a = np.asarray([c.linear.to_array() for c in constraints], dtype=float).reshape(len(constraints), count)
        sense = {ConstraintSense.EQ: 0, ConstraintSense.LE: -1, ConstraintSense.GE: 1}
        senses = np.asarray([sense[c.sense] for c in constraints], dtype=int)
        rhs = np.asarray([c.rhs for c in constraints], dtype=float)
        objective = program.objective
        linear = np.asarray(objective.linear.to_array(), dtype=float).reshape(count)
        quadratic = np.asarray(objective.quadratic.to_array(symmetric=False), dtype=float).reshape(count, count)
        return count, a, senses, rhs, float(objective.constant), linear, quadratic

    def decode(self, bits: Sequence[int]) -> Solution:
        """QUBO bits (slack included) -> the problem's solution (feasible or not)."""
        original = self.converter.interpret(np.asarray(bits, dtype=float))
        return self.problem.decode([int(round(v)) for v in original])

    def ising(self):
        """(SparsePauliOp, offset) of the QUBO: the cost Hamiltonian of the circuits."""
        return self.qubo_program.to_ising()
