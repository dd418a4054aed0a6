"""QAOA on a problem's QUBO. No rclpy import.

On the diagonal kernel (backend statevector_diagonal, qai_quantum_bridge.diagonal) each evaluation is
exact: the objective comes from the probabilities and the samples are drawn from them. On Aer or a QPU
the circuit is built and transpiled once, then re-bound for every evaluation, and the objective is taken
over the samples. COBYLA tunes the angles on the CVaR (or mean) of the energies, from a linear-ramp
schedule or a warm start; every sample seen is kept (at most MAX_DISTINCT_SAMPLES, the lowest energies),
and the answer is the best *feasible* one, found with one vectorised pass and read back in the problem's
terms.

Deadlines hold: before each evaluation the solver checks that one more (at the measured rate) still fits,
and the final sampling with the best angles runs only when it fits too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from qai_quantum_bridge.backends import Compiled
from qai_quantum_bridge.problems import Solution
from qai_quantum_bridge.qubo import Encoding


MAX_DISTINCT_SAMPLES = 1 << 18  # kept for the final scan; beyond this the higher-energy half is dropped


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
    evaluation_seconds: list[float] = field(default_factory=list)  # each evaluation's wall time
    setup_seconds: float = 0.0  # circuit build and transpile, or the kernel's set-up


def bits_of(outcomes, n: int) -> np.ndarray:
    """Outcome integers (bit i is qubit i) -> a (k, n) array of bits."""
    values = np.asarray(list(outcomes), dtype=np.int64)
    return ((values[:, None] >> np.arange(n)) & 1).astype(np.int8)


class QaoaSolver:
    def __init__(self, encoding: Encoding, backend, settings: QaoaSettings = QaoaSettings()):
        began = time.monotonic()
        self.encoding = encoding
        self.backend = backend
        self.settings = settings
        operator, _ = encoding.ising()
        # Scaled so the angles live in the usual ranges whatever the problem's units.
        self.scale = float(np.max(np.abs(operator.coeffs))) if len(operator) else 1.0
        self.kernel = None
        self.circuit = None
        self.compiled: Compiled | None = None
        if getattr(backend, "diagonal", False):
            self.kernel = backend.prepare(encoding.form, self.scale, settings.reps)
            self.num_parameters = 2 * settings.reps
            self._rng = np.random.default_rng(settings.seed)
        else:
            from qiskit.circuit.library import qaoa_ansatz

            circuit = qaoa_ansatz((operator / self.scale).simplify(), reps=settings.reps)
            circuit.measure_all()
            self.circuit = circuit
            self.compiled = backend.compile(circuit)
            self.num_parameters = circuit.num_parameters
        self._seen: dict[int, int] = {}  # every distinct sample (outcome integer) -> times seen
        self.evaluations = 0
        self.evaluation_seconds: list[float] = []
        self.setup_seconds = time.monotonic() - began

    def initial_point(self) -> np.ndarray:
        """Return a linear ramp (annealing-like) schedule unless warm-started; betas, then gammas."""
        if self.settings.initial_point is not None and len(self.settings.initial_point) == self.num_parameters:
            return np.asarray(self.settings.initial_point, dtype=float)
        p = self.settings.reps
        steps = [(k + 0.5) / p for k in range(p)]
        return np.asarray([0.8 * (1 - s) for s in steps] + [0.8 * s for s in steps])

    @property
    def warm_started(self) -> bool:
        return self.settings.initial_point is not None and len(self.settings.initial_point) == self.num_parameters

    def _record(self, counts: dict) -> None:
        for key, count in counts.items():
            self._seen[key] = self._seen.get(key, 0) + count
        if len(self._seen) > MAX_DISTINCT_SAMPLES:  # bounded: keep the lower-energy half
            keys = np.fromiter(self._seen, dtype=np.int64, count=len(self._seen))
            energies = self.encoding.form.energies(bits_of(keys, self.encoding.num_qubits))
            keep = keys[np.argsort(energies, kind="stable")[:MAX_DISTINCT_SAMPLES // 2]]
            self._seen = {int(k): self._seen[int(k)] for k in keep}

    def _objective(self, counts: dict) -> float:
        keys = list(counts)
        weights = np.asarray([counts[k] for k in keys], dtype=float)
        energies = self.encoding.form.energies(bits_of(keys, self.encoding.num_qubits))
        self._record(counts)
        alpha = self.settings.cvar_alpha
        if alpha is None:
            return float(energies @ weights / weights.sum())
        order = np.argsort(energies)
        keep = alpha * weights.sum()
        cumulative = np.cumsum(weights[order])
        taken = np.minimum(weights[order], np.maximum(keep - (cumulative - weights[order]), 0.0))
        return float(taken @ energies[order] / keep)  # mean of the best alpha share of the samples (CVaR)

    def evaluate(self, parameter_sets: Sequence[Sequence[float]]) -> list[float]:
        began = time.monotonic()
        if self.kernel is not None:
            values = []
            for x in parameter_sets:
                value, samples, _ = self.kernel.evaluate(x, self.settings.shots, self._rng, self.settings.cvar_alpha)
                self._record(samples)
                values.append(value)
        else:
            counts = self.backend.run(self.compiled, parameter_sets, self.settings.shots)
            values = [self._objective(c) for c in counts]
        self.evaluations += len(parameter_sets)
        self.evaluation_seconds.append((time.monotonic() - began) / max(1, len(parameter_sets)))
        return values

    def seconds_per_evaluation(self) -> float | None:
        """Return the steady cost of one evaluation so far (median after the first, which pays start-up)."""
        measured = self.evaluation_seconds[1:] or self.evaluation_seconds
        return float(np.median(measured)) if measured else None

    def solve(self, deadline: float | None = None,
              on_evaluation: Callable[[int, float, float], None] = lambda *a: None) -> QaoaOutcome:
        """Optimise, then sample with the best angles.

        `deadline` is a time.monotonic() instant: no evaluation starts that would not end before it (the
        samples so far still count), and the final sampling runs only if it fits.
        on_evaluation(n, value, best QUBO energy).
        """
        from scipy.optimize import minimize

        began = time.monotonic()
        best = {"value": math.inf, "x": self.initial_point()}
        stopped = ""

        def fits(margin: float = 1.0) -> bool:
            if deadline is None:
                return True
            per_evaluation = self.seconds_per_evaluation() or 0.0
            return time.monotonic() + margin * per_evaluation < deadline

        def objective(x):
            if not fits():
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
        if not stopped and fits(1.5):
            self.evaluate([best["x"]])  # the final sampling with the best angles
        solution, feasible = self.best_feasible()
        metadata = {**(self.compiled.metadata() if self.compiled is not None else self.kernel_metadata()),
                    "shots": self.settings.shots, "reps": self.settings.reps, "evaluations": self.evaluations,
                    "cvar_alpha": self.settings.cvar_alpha, "distinct_samples": len(self._seen),
                    "warm_start": self.warm_started}
        return QaoaOutcome(solution, self.best_energy(), self.evaluations, sum(self._seen.values()), feasible,
                           [float(v) for v in best["x"]], time.monotonic() - began, metadata, stopped,
                           list(self.evaluation_seconds), self.setup_seconds)

    def kernel_metadata(self) -> dict:
        kernel = self.kernel
        return {"qubits": kernel.n, "kernel": "numba" if kernel.compiled else "numpy",
                "precision": kernel.precision, "state_passes": len(kernel.layout.passes),
                "cost_terms": int(np.count_nonzero(kernel.linear) + np.count_nonzero(kernel.quadratic)),
                "objective": "exact (from the probabilities)"}

    def best_energy(self) -> float:
        if not self._seen:
            return math.inf
        return float(self.encoding.form.energies(bits_of(self._seen, self.encoding.num_qubits)).min())

    def best_feasible(self) -> tuple[Solution | None, int]:
        """Return the best feasible sample (decoded) and how many samples were feasible.

        One vectorised pass over every distinct sample; only the few best candidates are decoded.
        """
        keys = list(self._seen)
        if not keys:
            return None, 0
        bits = bits_of(keys, self.encoding.num_qubits)
        counts = np.asarray([self._seen[k] for k in keys])
        checked = self.encoding.feasible_costs(bits)
        if checked is None:  # a program this does not read: decode in energy order, bounded
            energies = self.encoding.form.energies(bits)
            best, feasible = None, 0
            for i in np.argsort(energies)[:4096]:
                solution = self.encoding.decode(bits[i].tolist())
                if solution.feasible:
                    feasible += int(counts[i])
                    if best is None or solution.cost < best.cost:
                        best = solution
            return best, feasible
        ok, costs = checked
        feasible = int(counts[ok].sum())
        if not ok.any():
            return None, 0
        candidates = np.nonzero(ok)[0][np.argsort(costs[ok], kind="stable")[:4]]
        decoded = [self.encoding.decode(bits[i].tolist()) for i in candidates]
        decoded = [solution for solution in decoded if solution.feasible]
        return (min(decoded, key=lambda solution: solution.cost) if decoded else None), feasible
