"""The quantum bridge's policy: which solver answers, within the deadline, and how honestly it says so.
No rclpy import.

- The classical solver runs first, always: it is exact at robot sizes (well under a millisecond), it checks
  every quantum answer, and it is the fallback.
- classical: the classical answer. quantum: QAOA on the chosen backend, unless it cannot meet the
  deadline (estimated before running, checked after the first evaluation), does not fit, fails or finds
  no feasible sample; then the classical answer, with fallback and the reason.
- auto: the quantum path only where the classical solver is not exact (a heuristic answered) and QAOA
  is estimated to fit the deadline; otherwise the classical answer.
- A quantum answer is compared with the classical one; where the classical one is better it is returned
  instead (fallback, with both costs). The result always names the solver that produced it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from qai_quantum_bridge.backends import AER_METHODS, AerBackend, BackendUnavailable, QpuBackend
from qai_quantum_bridge.classical import ClassicalAnswer, solve_classically
from qai_quantum_bridge.problems import Problem, Solution
from qai_quantum_bridge.profiles import TechnologyProfile
from qai_quantum_bridge.qaoa import QaoaSettings, QaoaSolver
from qai_quantum_bridge.qubo import Encoding

PREFERENCES = ("auto", "classical", "quantum")
BACKENDS = (*AER_METHODS, "qpu")
# Seconds per QAOA evaluation on 2 CPU cores (statevector, p=2, 1024 shots), about 1.5e-7 * 2^n above
# 16 qubits (stack-notes, and bench/quantum_qaoa.py); small circuits cost their overhead.
SECONDS_PER_AMPLITUDE = 1.5e-7
EVALUATION_OVERHEAD = 0.01


@dataclass(frozen=True)
class SolveRequest:
    preference: str = "auto"
    backend: str = "aer_statevector"
    profile: str = ""
    deadline: float = 10.0  # seconds from the request
    shots: int = 1024
    reps: int = 2
    maxiter: int = 60
    cvar_alpha: float | None = 0.25
    seed: int | None = None

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


class QuantumBridge:
    def __init__(self, profiles: dict[str, TechnologyProfile], qpu: QpuSettings = QpuSettings()):
        self.profiles = profiles
        self.qpu = qpu
        self._backends: dict[tuple, object] = {}
        self.counts = {"jobs": 0, "quantum": 0, "fallbacks": 0}
        self.last_solve_seconds = 0.0

    def backend(self, name: str, profile: str, seed: int | None):
        key = (name, profile, seed)
        if key not in self._backends:
            if name == "qpu":
                self._backends[key] = QpuBackend(self.qpu.backend, self.qpu.fake, self.qpu.channel,
                                                 self.qpu.instance, self.qpu.token_file, self.qpu.timeout, seed)
            else:
                self._backends[key] = AerBackend(name, self.profiles[profile] if profile else None, seed=seed)
        return self._backends[key]

    @staticmethod
    def estimate_seconds(num_qubits: int, request: SolveRequest) -> float:
        """A rough QAOA run time, before running (the first evaluation then tells the truth)."""
        amplitudes = 4 ** num_qubits if request.backend == "aer_density_matrix" else 2 ** num_qubits
        noise = 4.0 if request.profile and request.backend != "aer_density_matrix" else 1.0
        per_evaluation = EVALUATION_OVERHEAD + SECONDS_PER_AMPLITUDE * amplitudes * noise * request.shots / 1024
        return per_evaluation * (request.maxiter + 1)

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
        encoding = Encoding(problem)  # the QUBO, only when the quantum path may run
        if request.preference == "auto":
            estimate = self.estimate_seconds(encoding.num_qubits, request)
            if estimate > deadline - time.monotonic():
                return self._classical(classical, began, encoding, f"auto: QAOA on {encoding.num_qubits} qubits "
                                       f"would need about {estimate:.1f} s")

        try:
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
                    outcome.solution, "qaoa", request.backend, request.profile, verified=True,
                    reference_cost=classical.solution.cost, solve_time=outcome.seconds,
                    metadata={**metadata, "classical_solver": classical.solver},
                    message=f"QAOA's best feasible sample, no worse than {classical.solver}"
                            + (f"; {outcome.stopped_early}" if outcome.stopped_early else "")), began, encoding)
            self.counts["fallbacks"] += 1
            return self._finish(SolveResult(classical.solution, classical.solver, request.backend, request.profile,
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
        estimate = self.estimate_seconds(encoding.num_qubits, request)
        if request.backend != "qpu" and estimate > deadline - time.monotonic():
            raise BackendUnavailable(f"QAOA on {encoding.num_qubits} qubits would need about {estimate:.1f} s; "
                                     f"the deadline leaves {max(0.0, deadline - time.monotonic()):.1f} s")
        backend = self.backend(request.backend, request.profile, request.seed)
        solver = QaoaSolver(encoding, backend, QaoaSettings(reps=request.reps, shots=request.shots,
                                                            maxiter=request.maxiter, cvar_alpha=request.cvar_alpha,
                                                            seed=request.seed))
        marks: list[float] = []

        def on_evaluation(evaluations: int, value: float, best_energy: float) -> None:
            on_progress({"solver": "qaoa", "iteration": evaluations, "evaluations": evaluations,
                         "best_cost": best_energy})
            now = time.monotonic()
            marks.append(now)
            if evaluations == 2:  # the second evaluation shows the steady cost (the first pays start-up)
                per_evaluation = marks[1] - marks[0]
                projected = per_evaluation * (request.maxiter - 1)
                if now + projected > deadline and request.backend != "qpu":
                    raise BackendUnavailable(f"QAOA on {encoding.num_qubits} qubits takes {per_evaluation:.2f} s "
                                             f"an evaluation, about {projected:.1f} s more; the deadline leaves "
                                             f"{max(0.0, deadline - now):.1f} s")

        return solver.solve(deadline=deadline, on_evaluation=on_evaluation)

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


def _finite(solution: Solution | None) -> float | None:
    return None if solution is None or not math.isfinite(solution.cost) else solution.cost
