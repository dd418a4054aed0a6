"""A problem's QUBO: qiskit-optimization's QuadraticProgramToQubo turns the problem's program into an
unconstrained one (penalties, slack bits); QuboForm holds it as arrays for fast energies, and Encoding
reads QUBO bits back as a Solution of the problem. No rclpy import."""

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

    @property
    def num_qubits(self) -> int:
        return self.form.n

    def decode(self, bits: Sequence[int]) -> Solution:
        """QUBO bits (slack included) -> the problem's solution (feasible or not)."""
        original = self.converter.interpret(np.asarray(bits, dtype=float))
        return self.problem.decode([int(round(v)) for v in original])

    def ising(self):
        """(SparsePauliOp, offset) of the QUBO: the cost Hamiltonian of the circuits."""
        return self.qubo_program.to_ising()
