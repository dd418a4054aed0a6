"""QAOA on a problem's QUBO: the circuit is built and transpiled once, then re-bound for every evaluation;
COBYLA tunes the angles on the CVaR (or mean) of the sampled energies; every sample seen is kept, and
the answer is the best *feasible* one, read back in the problem's terms. No rclpy import."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from qai_quantum_bridge.backends import Compiled
from qai_quantum_bridge.problems import Solution
from qai_quantum_bridge.qubo import Encoding


class DeadlineReached(Exception):
    pass


@dataclass(frozen=True)
class QaoaSettings:
    reps: int = 2
    shots: int = 1024
    maxiter: int = 60
    cvar_alpha: float | None = 0.25  # None: mean energy (the textbook expectation value)
    seed: int | None = None
    initial_point: tuple[float, ...] | None = None  # warm start: [betas..., gammas...] as qiskit orders them


@dataclass
class QaoaOutcome:
    solution: Solution | None  # best feasible sample, or None
    best_energy: float  # of the QUBO, best sample seen
    evaluations: int
    samples: int
    feasible_samples: int
    parameters: list[float]
    seconds: float
    metadata: dict = field(default_factory=dict)
    stopped_early: str = ""  # why optimisation stopped before converging (deadline)


def bits_of(outcomes, n: int) -> np.ndarray:
    """Outcome integers (bit i is qubit i) -> a (k, n) array of bits."""
    values = np.asarray(list(outcomes), dtype=np.int64)
    return ((values[:, None] >> np.arange(n)) & 1).astype(np.int8)


class QaoaSolver:
    def __init__(self, encoding: Encoding, backend, settings: QaoaSettings = QaoaSettings()):
        from qiskit.circuit.library import qaoa_ansatz

        self.encoding = encoding
        self.backend = backend
        self.settings = settings
        operator, _ = encoding.ising()
        # Scaled so the angles live in the usual ranges whatever the problem's units.
        self.scale = float(np.max(np.abs(operator.coeffs))) if len(operator) else 1.0
        circuit = qaoa_ansatz((operator / self.scale).simplify(), reps=settings.reps)
        circuit.measure_all()
        self.circuit = circuit
        self.compiled: Compiled = backend.compile(circuit)
        self.num_parameters = circuit.num_parameters
        self._seen: dict[int, int] = {}  # every distinct sample (outcome integer) -> times seen
        self.evaluations = 0

    def initial_point(self) -> np.ndarray:
        """A linear ramp (annealing-like) schedule unless warm-started; qiskit orders betas, then gammas."""
        if self.settings.initial_point is not None and len(self.settings.initial_point) == self.num_parameters:
            return np.asarray(self.settings.initial_point, dtype=float)
        p = self.settings.reps
        steps = [(k + 0.5) / p for k in range(p)]
        return np.asarray([0.8 * (1 - s) for s in steps] + [0.8 * s for s in steps])

    def _objective(self, counts: dict) -> float:
        keys = list(counts)
        weights = np.asarray([counts[k] for k in keys], dtype=float)
        energies = self.encoding.form.energies(bits_of(keys, self.encoding.num_qubits))
        for key, count in counts.items():
            self._seen[key] = self._seen.get(key, 0) + count
        alpha = self.settings.cvar_alpha
        if alpha is None:
            return float(energies @ weights / weights.sum())
        order = np.argsort(energies)
        keep, total, value = alpha * weights.sum(), 0.0, 0.0
        for i in order:  # mean of the best alpha share of the samples (CVaR)
            take = min(weights[i], keep - total)
            value += take * energies[i]
            total += take
            if total >= keep:
                break
        return value / total

    def evaluate(self, parameter_sets: Sequence[Sequence[float]]) -> list[float]:
        counts = self.backend.run(self.compiled, parameter_sets, self.settings.shots)
        self.evaluations += len(parameter_sets)
        return [self._objective(c) for c in counts]

    def solve(self, deadline: float | None = None,
              on_evaluation: Callable[[int, float, float], None] = lambda *a: None) -> QaoaOutcome:
        """Optimise, then sample with the best angles. `deadline` is a time.monotonic() instant; reaching it
        stops the optimiser (the samples so far still count). on_evaluation(n, value, best QUBO energy)."""
        from scipy.optimize import minimize

        began = time.monotonic()
        best = {"value": math.inf, "x": self.initial_point()}
        stopped = ""

        def objective(x):
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineReached()
            value = self.evaluate([x])[0]
            if value < best["value"]:
                best["value"], best["x"] = value, np.array(x)
            on_evaluation(self.evaluations, value, self.best_energy())
            return value

        try:
            minimize(objective, self.initial_point(), method="COBYLA",  # COBYLA needs parameters + 2 steps
                     options={"maxiter": max(self.settings.maxiter, self.num_parameters + 2), "rhobeg": 0.4})
        except DeadlineReached:
            stopped = f"deadline reached after {self.evaluations} evaluations"
        if not stopped and (deadline is None or time.monotonic() < deadline):
            self.evaluate([best["x"]])  # the final sampling with the best angles
        solution, feasible = self.best_feasible()
        metadata = {**self.compiled.metadata(), "shots": self.settings.shots, "reps": self.settings.reps,
                    "evaluations": self.evaluations, "cvar_alpha": self.settings.cvar_alpha,
                    "distinct_samples": len(self._seen)}
        return QaoaOutcome(solution, self.best_energy(), self.evaluations, sum(self._seen.values()), feasible,
                           [float(v) for v in best["x"]], time.monotonic() - began, metadata, stopped)

    def best_energy(self) -> float:
        if not self._seen:
            return math.inf
        return float(self.encoding.form.energies(bits_of(self._seen, self.encoding.num_qubits)).min())

    def best_feasible(self) -> tuple[Solution | None, int]:
        """The best feasible sample (decoded, in energy order), and how many samples were feasible."""
        keys = list(self._seen)
        if not keys:
            return None, 0
        bits = bits_of(keys, self.encoding.num_qubits)
        energies = self.encoding.form.energies(bits)
        best, feasible = None, 0
        for i in np.argsort(energies):
            solution = self.encoding.decode(bits[i].tolist())
            if solution.feasible:
                feasible += self._seen[keys[i]]
                if best is None or solution.cost < best.cost:
                    best = solution
        return best, feasible
