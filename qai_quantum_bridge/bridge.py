"""The quantum bridge's policy: which solver answers, within the deadline, and how honestly. No rclpy import.

- The classical solver runs first, always: it is exact at robot sizes (well under a millisecond), it checks
  every quantum answer, and it is the fallback.
- classical: the classical answer. quantum: QAOA on the chosen backend, unless it cannot meet the
  deadline (estimated before running, checked after the first evaluation), does not fit, fails or finds
  no feasible sample; then the classical answer, with fallback and the reason.
- auto: the quantum path only where the classical solver is not exact (a heuristic answered) and QAOA
  is estimated to fit the deadline; otherwise the classical answer.
- A quantum answer is compared with the classical one; where the classical one is better it is returned
  instead (fallback, with both costs). The result always names the solver that produced it.
- Every stage counts against the deadline: the classical solve, the QUBO encoding, the kernel's set-up or
  the circuit's transpile, each evaluation, the final sampling and the scan for the best feasible sample.
  The estimate is per backend and circuit (CostModel), learned from the runs it sees; it is computed in
  a way that cannot overflow, and what does not fit falls back with the reason.
- Warm start: the angles of the last QAOA run on a problem of the same kind and size start the next one
  (QAOA angles transfer between similar instances).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from collections import OrderedDict

from qai_quantum_bridge.backends import (AER_METHODS, DIAGONAL, MAX_SIMULATED_QUBITS, AerBackend, BackendUnavailable,
                                         DiagonalBackend, QpuBackend, check_fits)
from qai_quantum_bridge.classical import ClassicalAnswer, solve_classically
from qai_quantum_bridge.problems import Problem, Solution
from qai_quantum_bridge.profiles import TechnologyProfile
from qai_quantum_bridge.qaoa import QaoaSettings, QaoaSolver
from qai_quantum_bridge.qubo import Encoding

PREFERENCES = ("auto", "classical", "quantum")
BACKENDS = (DIAGONAL, *AER_METHODS, "qpu")
WARM_STARTS_KEPT = 64


def seconds_text(seconds: float) -> str:
    """Return a duration for a message: never hundreds of digits."""
    if not math.isfinite(seconds) or seconds >= 1e6:
        return "more than 10^6 s"
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


class CostModel:
    """Seconds a QAOA run takes, per backend and circuit, learned from the runs it sees. No rclpy import.

    One evaluation costs overhead + rate * work, where work is amplitudes times what touches each one:
    the state passes of the diagonal kernel (compiled), the transform stages of its numpy algebra, or the
    gates of the circuit on Aer (amplitudes: 2^n, 4^n for a density matrix; noise on a statevector counts
    4x). Aer also pays a transpile (per gate). Work is computed with the qubit count capped at
    MAX_SIMULATED_QUBITS, so no size overflows; such sizes simply never fit. The starting rates were
    measured on a 2-core machine (bench/quantum_qaoa.py); every run then moves its backend's figures
    halfway to what it measured.
    """

    def __init__(self):
        # (rate s per unit of work, overhead s per evaluation)
        self.figures: dict[str, list[float]] = {
            "diagonal/numba": [2.5e-9, 2e-3], "diagonal/numpy": [1e-8, 1e-3], "aer": [6e-10, 5e-3],
            "aer/transpile": [3e-4, 0.05]}
        self.runs = 0

    @staticmethod
    def key(backend: str, compiled: bool = True) -> str:
        if backend == DIAGONAL:
            return "diagonal/numba" if compiled else "diagonal/numpy"
        return "aer"

    @staticmethod
    def circuit_gates(num_qubits: int, reps: int, cost_terms: int) -> int:
        """Return the gates of the logical QAOA circuit.

        Hadamards, per layer the cost terms (a ZZ term is 3 gates) and the mixer, and the measurements.
        """
        return 2 * num_qubits + reps * (num_qubits + 3 * cost_terms)

    @staticmethod
    def work(key: str, num_qubits: int, reps: int, cost_terms: int, backend: str = "", noisy: bool = False) -> float:
        from qai_quantum_bridge.diagonal import Layout

        n = min(num_qubits, MAX_SIMULATED_QUBITS)
        if key == "diagonal/numba":
            return math.ldexp(len(Layout.of(n, reps).passes) + 1, n)
        if key == "diagonal/numpy":
            return math.ldexp(reps * (2 * n + 6) + 4, n)
        amplitudes = math.ldexp(1.0, 2 * n) if backend == "aer_density_matrix" else math.ldexp(1.0, n)
        return amplitudes * CostModel.circuit_gates(n, reps, cost_terms) * (4.0 if noisy else 1.0)

    def evaluation_seconds(self, key: str, work: float) -> float:
        rate, overhead = self.figures[key]
        return overhead + rate * work

    def transpile_seconds(self, gates: int) -> float:
        rate, overhead = self.figures["aer/transpile"]
        return overhead + rate * gates

    def learn(self, key: str, work: float, seconds: float) -> None:
        """Move the backend's figures halfway to a measured evaluation (rate where the work dominates)."""
        if not (math.isfinite(seconds) and seconds > 0 and work > 0):
            return
        figures = self.figures[key]
        rate, overhead = figures
        if rate * work >= overhead:
            figures[0] = 0.5 * rate + 0.5 * max(seconds - overhead, 0.1 * seconds) / work
        else:
            figures[1] = 0.5 * overhead + 0.5 * seconds
        self.runs += 1

    def learn_transpile(self, gates: int, seconds: float) -> None:
        figures = self.figures["aer/transpile"]
        if math.isfinite(seconds) and seconds > 0 and gates > 0:
            figures[0] = 0.5 * figures[0] + 0.5 * max(seconds - figures[1], 0.0) / gates


@dataclass(frozen=True)
class SolveRequest:
    preference: str = "auto"
    backend: str = DIAGONAL
    profile: str = ""
    deadline: float = 10.0  # seconds from the request
    shots: int = 1024
    reps: int = 2
    maxiter: int = 60
    cvar_alpha: float | None = 0.25
    seed: int | None = None
    precision: str = "double"  # of the diagonal kernel's state: double (complex128) or single (complex64)

    def check(self, profiles: dict) -> None:
        if self.preference not in PREFERENCES:
            raise ValueError(f"solver: expected one of {', '.join(PREFERENCES)}, got {self.preference!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.profile and self.profile not in profiles:
            raise ValueError(f"technology_profile: {self.profile!r} is not one of {', '.join(sorted(profiles))}")
        if not (math.isfinite(self.deadline) and self.deadline > 0):
            raise ValueError(f"deadline: must be a positive number of seconds, got {self.deadline}")
        if not 1 <= self.shots <= 1_000_000:
            raise ValueError(f"shots: must be between 1 and 1000000, got {self.shots}")
        if not 1 <= self.reps <= 20:
            raise ValueError(f"qaoa_layers: must be between 1 and 20, got {self.reps}")
        if self.precision not in ("double", "single"):
            raise ValueError(f"qaoa_precision: expected double or single, got {self.precision!r}")


@dataclass
class SolveResult:
    solution: Solution
    solver: str  # which solver produced `solution`
    backend: str = ""  # where the quantum path ran; '' when it did not
    profile: str = ""
    fallback: bool = False
    fallback_reason: str = ""
    verified: bool = False  # a classical check ran and found nothing better (or the answer is exact)
    reference_cost: float = math.nan  # the classical check's cost
    solve_time: float = 0.0  # seconds spent by the solver that answered
    total_time: float = 0.0
    metadata: dict = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class QpuSettings:
    backend: str = ""
    fake: str = ""  # a qiskit-ibm-runtime fake backend (offline, same code path)
    channel: str = "ibm_quantum_platform"
    instance: str = ""
    token_file: str = ""
    timeout: float = 30.0


def effective_backend(backend: str, profile: str) -> str:
    """Return the backend a job runs on: the kernel is noiseless, so a technology profile takes Aer."""
    return "aer_statevector" if backend == DIAGONAL and profile else backend


class QuantumBridge:
    def __init__(self, profiles: dict[str, TechnologyProfile], qpu: QpuSettings = QpuSettings()):
        self.profiles = profiles
        self.qpu = qpu
        self._backends: dict[tuple, object] = {}
        self.counts = {"jobs": 0, "quantum": 0, "fallbacks": 0}
        self.last_solve_seconds = 0.0
        self.costs = CostModel()
        self._warm_starts: OrderedDict[tuple, tuple[float, ...]] = OrderedDict()

    def backend(self, name: str, profile: str, seed: int | None, precision: str = "double"):
        name = effective_backend(name, profile)
        key = (name, profile, seed) if name != DIAGONAL else (name, precision)
        if key not in self._backends:
            if name == "qpu":
                self._backends[key] = QpuBackend(self.qpu.backend, self.qpu.fake, self.qpu.channel,
                                                 self.qpu.instance, self.qpu.token_file, self.qpu.timeout, seed)
            elif name == DIAGONAL:
                self._backends[key] = DiagonalBackend(precision)
            else:
                self._backends[key] = AerBackend(name, self.profiles[profile] if profile else None, seed=seed)
        return self._backends[key]

    def estimate_seconds(self, num_qubits: int, request: SolveRequest, cost_terms: int | None = None) -> float:
        """Estimate the whole QAOA run's time before running: set-up and maxiter + 1 evaluations.

        Per backend and circuit; `cost_terms` unknown: a dense QUBO is assumed. Finite or inf, never an
        error.
        """
        from qai_quantum_bridge.diagonal import COMPILED_MIN_QUBITS, kernels_ready

        backend = effective_backend(request.backend, request.profile)
        if backend == "qpu":
            return 0.0  # remote: bounded by qpu_timeout per call, and checked after the first evaluations
        n = min(num_qubits, MAX_SIMULATED_QUBITS)
        terms = n * (n + 1) // 2 if cost_terms is None else cost_terms
        compiled = n >= COMPILED_MIN_QUBITS and kernels_ready()
        key = self.costs.key(backend, compiled)
        work = self.costs.work(key, n, request.reps, terms, backend, noisy=bool(request.profile))
        total = self.costs.evaluation_seconds(key, work) * (request.maxiter + 1)
        if backend != DIAGONAL:
            total += self.costs.transpile_seconds(self.costs.circuit_gates(n, request.reps, terms))
        return total if math.isfinite(total) else math.inf

    def solve(self, problem: Problem, request: SolveRequest = SolveRequest(),
              on_progress: Callable[[dict], None] = lambda progress: None) -> SolveResult:
        began = time.monotonic()
        deadline = began + request.deadline
        request.check(self.profiles)
        self.counts["jobs"] += 1
        classical = solve_classically(problem, seed=request.seed or 0)
        on_progress({"solver": classical.solver, "iteration": 0, "evaluations": 0,
                     "best_cost": classical.solution.cost})

        reason = ""
        if request.preference == "classical":
            return self._classical(classical, began, None, "classical solver requested")
        if request.preference == "auto" and classical.optimal:
            return self._classical(classical, began, None,
                                   f"auto: {classical.solver} is exact here ({classical.seconds * 1e3:.2f} ms)")
        # At least one qubit per variable of the problem: sizes that cannot run are turned away before the
        # QUBO is even built (encoding 1,000 variables takes longer than the answer is worth).
        at_least = problem.num_variables
        encoding = None
        if request.preference == "auto":
            estimate = self.estimate_seconds(at_least, request)
            if estimate > deadline - time.monotonic():
                return self._classical(classical, began, None, f"auto: QAOA on at least {at_least} qubits "
                                       f"would need about {seconds_text(estimate)}")
        try:
            backend = effective_backend(request.backend, request.profile)
            if backend != "qpu":
                check_fits(AER_METHODS.get(backend, backend), at_least,
                           request.precision if backend == DIAGONAL else "double")
            encoding = Encoding(problem)  # the QUBO, only when the quantum path may run
            if request.preference == "auto":
                estimate = self.estimate_seconds(encoding.num_qubits, request, _cost_terms(encoding))
                if estimate > deadline - time.monotonic():
                    return self._classical(classical, began, encoding, f"auto: QAOA on {encoding.num_qubits} "
                                           f"qubits would need about {seconds_text(estimate)}")
            outcome = self._run_qaoa(encoding, request, deadline, on_progress)
        except BackendUnavailable as error:
            reason = str(error)
        except Exception as error:  # a failing backend must not fail the job: the classical answer stands
            reason = f"the quantum path failed: {type(error).__name__}: {error}"
        else:
            metadata = {**outcome.metadata, "feasible_samples": outcome.feasible_samples,
                        "samples": outcome.samples, "qaoa_seconds": round(outcome.seconds, 4)}
            if outcome.solution is None:
                reason = f"no feasible sample among {outcome.samples}" + (
                    f" ({outcome.stopped_early})" if outcome.stopped_early else "")
            elif outcome.solution.cost > classical.solution.cost + 1e-9 * max(1.0, abs(classical.solution.cost)):
                reason = (f"the classical solver found a better solution ({classical.solution.cost:.6g} < "
                          f"{outcome.solution.cost:.6g}, QAOA's best feasible sample)")
            else:
                self.counts["quantum"] += 1
                return self._finish(SolveResult(
                    outcome.solution, "qaoa", outcome.metadata.get("backend", request.backend), request.profile,
                    verified=True,
                    reference_cost=classical.solution.cost, solve_time=outcome.seconds,
                    metadata={**metadata, "classical_solver": classical.solver},
                    message=f"QAOA's best feasible sample, no worse than {classical.solver}"
                            + (f"; {outcome.stopped_early}" if outcome.stopped_early else "")), began, encoding)
            self.counts["fallbacks"] += 1
            return self._finish(SolveResult(classical.solution, classical.solver, outcome.metadata.get(
                                                "backend", request.backend), request.profile,
                                            fallback=True, fallback_reason=reason, verified=classical.optimal,
                                            reference_cost=classical.solution.cost, solve_time=classical.seconds,
                                            metadata={**metadata, "qaoa_best_cost": _finite(outcome.solution)}),
                                began, encoding)
        self.counts["fallbacks"] += 1
        return self._finish(SolveResult(classical.solution, classical.solver, "", request.profile, fallback=True,
                                        fallback_reason=reason, verified=classical.optimal,
                                        reference_cost=classical.solution.cost, solve_time=classical.seconds),
                            began, encoding)

    def _run_qaoa(self, encoding: Encoding, request: SolveRequest, deadline: float, on_progress):
        n = encoding.num_qubits
        terms = _cost_terms(encoding)
        backend_name = effective_backend(request.backend, request.profile)
        estimate = self.estimate_seconds(n, request, terms)
        if backend_name != "qpu" and estimate > deadline - time.monotonic():
            raise BackendUnavailable(f"QAOA on {n} qubits would need about {seconds_text(estimate)}; "
                                     f"the deadline leaves {seconds_text(max(0.0, deadline - time.monotonic()))}")
        backend = self.backend(request.backend, request.profile, request.seed, request.precision)
        warm_key = (type(encoding.problem).__name__, n, request.reps)
        warm = self._warm_starts.get(warm_key)
        solver = QaoaSolver(encoding, backend, QaoaSettings(reps=request.reps, shots=request.shots,
                                                            maxiter=request.maxiter, cvar_alpha=request.cvar_alpha,
                                                            seed=request.seed, initial_point=warm))
        compiled = bool(getattr(solver.kernel, "compiled", True))
        key = self.costs.key(backend_name, compiled)
        work = self.costs.work(key, n, request.reps, terms, backend_name, noisy=bool(request.profile))
        if solver.compiled is not None and backend_name != "qpu":
            self.costs.learn_transpile(self.costs.circuit_gates(n, request.reps, terms), solver.setup_seconds)

        def on_evaluation(evaluations: int, value: float, best_energy: float) -> None:
            on_progress({"solver": "qaoa", "iteration": evaluations, "evaluations": evaluations,
                         "best_cost": best_energy})
            now = time.monotonic()
            if backend_name == "qpu" or request.maxiter <= 1 or evaluations > 2:
                return
            # After the second, the steady cost (the first pays start-up) projects the rest of the run. After
            # the first, a deadline that leaves no time for one more evaluation at the first's cost ends the
            # run there too: it could neither measure the steady cost nor optimise.
            per_evaluation = solver.seconds_per_evaluation()
            projected = per_evaluation * (request.maxiter - evaluations + 1)
            if now + (per_evaluation if evaluations == 1 else projected) > deadline:
                raise BackendUnavailable(f"QAOA on {n} qubits takes {seconds_text(per_evaluation)} an evaluation, "
                                         f"about {seconds_text(projected)} more; the deadline leaves "
                                         f"{seconds_text(max(0.0, deadline - now))}")

        try:
            outcome = solver.solve(deadline=deadline, on_evaluation=on_evaluation)
        finally:
            per_evaluation = solver.seconds_per_evaluation()
            if per_evaluation is not None and backend_name != "qpu":
                self.costs.learn(key, work, per_evaluation)
            if solver.kernel is not None:
                solver.kernel.release()
        if outcome.solution is not None:
            self._warm_starts[warm_key] = tuple(outcome.parameters)
            self._warm_starts.move_to_end(warm_key)
            while len(self._warm_starts) > WARM_STARTS_KEPT:
                self._warm_starts.popitem(last=False)
        outcome.metadata.update({"backend": backend_name, "estimated_seconds": round(estimate, 4),
                                 "setup_seconds": round(outcome.setup_seconds, 4)})
        return outcome

    def _classical(self, classical: ClassicalAnswer, began: float, encoding: Encoding | None,
                   message: str) -> SolveResult:
        return self._finish(SolveResult(classical.solution, classical.solver, verified=classical.optimal,
                                        reference_cost=classical.solution.cost, solve_time=classical.seconds,
                                        message=message), began, encoding)

    def _finish(self, result: SolveResult, began: float, encoding: Encoding | None) -> SolveResult:
        result.total_time = time.monotonic() - began
        if encoding is not None:
            result.metadata.setdefault("qubits", encoding.num_qubits)
        self.last_solve_seconds = result.total_time
        return result


def _cost_terms(encoding: Encoding) -> int:
    form = encoding.form
    return int((form.linear != 0).sum() + (form.quadratic != 0).sum())


def _finite(solution: Solution | None) -> float | None:
    return None if solution is None or not math.isfinite(solution.cost) else solution.cost
