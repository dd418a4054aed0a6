"""The quantum bridge's jobs, behind one QuantumService the node calls. No rclpy import.

Task kinds (schemas with size caps), parsing with bounds, result shaping, and the Optimize action's job.

Every input is bounded (Limits, from the max_* parameters) and checked before anything is built: the
schema caps sizes as the task arrives, and each handler checks the same bounds again (Optimize goals have
no schema) before a problem, a QUBO or a circuit exists; a circuit's qubits are also checked against the
memory its backend would need. Errors name the field, the limit and the value, shortened. Bad input fails
the job without a retry (TaskFailed retryable=False); the node keeps serving.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Mapping

from qai_edge.tasks import ServedKind, TaskFailed, TaskKindSpec
from qai_edge.text import shorten
from qai_quantum_bridge.backends import AER_METHODS, DIAGONAL, BackendUnavailable, check_fits
from qai_quantum_bridge.bridge import BACKENDS, PREFERENCES, QuantumBridge, SolveRequest, effective_backend
from qai_quantum_bridge.circuits import (FORMATS, STATEVECTOR_MAX_QUBITS, CircuitError, CircuitJob,
                                         declared_qubits, parse_circuit, run_circuit)
from qai_quantum_bridge.limits import Limits, assignment_problem, check_shots, qubo_problem, route_problem
from qai_quantum_bridge.messages import problem_from_msg, request_from_goal, request_from_parameters, result_to_msg
from qai_quantum_bridge.problems import ProblemError

SUMMARY_KEYS = ("cost", "solver", "verified", "fallback", "fallback_reason", "backend", "technology_profile",
                "reference_cost", "solve_time", "total_time", "metadata")


# -- Schemas -----------------------------------------------------------------------------------

NUMBER = {"type": "number"}


def _capped(schema: dict, limit: int, parameter: str, key: str = "maxItems") -> dict:
    """Return a schema with a size cap; `x-limit` names the parameter, so the refusal can say it."""
    return {**schema, key: limit, "x-limit": parameter}


def solver_options(limits: Limits) -> dict:
    return {
        "solver": {"enum": list(PREFERENCES)}, "backend": {"enum": list(BACKENDS)},
        "technology_profile": {"type": "string", "maxLength": 64},
        "deadline": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
        "shots": _capped({"type": "integer", "minimum": 1}, limits.max_shots, "max_shots", "maximum"),
        "qaoa_layers": {"type": "integer", "minimum": 1, "maximum": 20}, "seed": {"type": "integer", "minimum": 0},
    }


def _schema(properties: dict, required: list[str], limits: Limits) -> dict:
    return {"type": "object", "properties": {**properties, **solver_options(limits)}, "required": required,
            "additionalProperties": False}


def task_kinds(limits: Limits) -> dict[str, TaskKindSpec]:
    """Return the kinds the bridge serves, their schemas capped by `limits`."""
    cells = limits.max_assignment_cells
    return {spec.name: spec for spec in (
        TaskKindSpec(
            "plan_route", "Order waypoints for the shortest route from a fixed start (optionally back to it).",
            _schema({"waypoints": _capped({"type": "array", "minItems": 2, "items": {
                "type": "array", "minItems": 2, "maxItems": 3, "items": NUMBER}}, limits.max_waypoints,
                "max_waypoints"),
                "start_index": {"type": "integer", "minimum": 0}, "return_to_start": {"type": "boolean"}},
                ["waypoints"], limits),
            result_keys=("order", "waypoints", *SUMMARY_KEYS), default_timeout=120.0),
        TaskKindSpec(
            "assign_tasks", "Assign tasks to agents (robots) at least total cost, within each agent's capacity.",
            _schema({"costs": _capped({"type": "array", "minItems": 1, "items": _capped(
                {"type": "array", "minItems": 1, "items": NUMBER}, cells, "max_assignment_cells")},
                cells, "max_assignment_cells"),
                "capacities": _capped({"type": "array", "items": {"type": "integer", "minimum": 0}}, cells,
                                      "max_assignment_cells")}, ["costs"], limits),
            result_keys=("assignment", *SUMMARY_KEYS), default_timeout=120.0),
        TaskKindSpec(
            "solve_qubo", "Minimise a QUBO (x' Q x + offset over bits), or an Ising model when ising is true.",
            _schema({"num_variables": _capped({"type": "integer", "minimum": 1}, limits.max_qubo_variables,
                                              "max_qubo_variables", "maximum"),
                     "linear": _capped({"type": "array", "items": NUMBER}, limits.max_qubo_variables,
                                       "max_qubo_variables"),
                     "quadratic": _capped({"type": "array", "items": {"type": "array", "minItems": 3, "maxItems": 3,
                                                                      "items": NUMBER}},
                                          limits.max_quadratic_terms, "max_quadratic_terms"),
                     "offset": NUMBER, "ising": {"type": "boolean"}}, ["num_variables"], limits),
            result_keys=("bits", "spins", *SUMMARY_KEYS), default_timeout=120.0),
        TaskKindSpec(
            "run_circuit", "Run a circuit (OpenQASM 2/3 text or a JSON gate list): counts, statevector, "
            "expectations.",
            {"type": "object", "required": ["format", "circuit"], "additionalProperties": False, "properties": {
                "format": {"enum": list(FORMATS)},
                "circuit": {"type": ["string", "object"], "maxLength": limits.max_circuit_text,
                            "x-limit": "max_circuit_text"},
                "shots": _capped({"type": "integer", "minimum": 1}, limits.max_shots, "max_shots", "maximum"),
                "statevector": {"type": "boolean"},
                "observables": _capped({"type": "array", "items": _capped(
                    {"type": "string", "pattern": "^[IXYZ]+$"}, limits.max_circuit_qubits, "max_circuit_qubits",
                    "maxLength")}, 256, "256 observables"),
                "backend": {"enum": list(BACKENDS)}, "technology_profile": {"type": "string", "maxLength": 64},
                "seed": {"type": "integer", "minimum": 0}}},
            result_keys=("counts", "statevector", "expectation_values", "timings", "metadata"),
            default_timeout=300.0),
    )}


def result_summary(result) -> dict[str, Any]:
    """Return what every optimisation task kind returns beside its own answer."""
    return {"cost": round(result.solution.cost, 9), "solver": result.solver, "verified": result.verified,
            "fallback": result.fallback, "fallback_reason": result.fallback_reason, "backend": result.backend,
            "technology_profile": result.profile,
            "reference_cost": None if math.isnan(result.reference_cost) else round(result.reference_cost, 9),
            "solve_time": round(result.solve_time, 6), "total_time": round(result.total_time, 6),
            "metadata": result.metadata}


# -- The service -------------------------------------------------------------------------------

class QuantumService:
    """The bridge's jobs, called by the node from worker threads.

    `configure` swaps the solver defaults (validated first) while jobs run; a job uses the defaults it
    started with.
    """

    def __init__(self, bridge: QuantumBridge, defaults: SolveRequest, limits: Limits):
        self.bridge = bridge
        self.limits = limits
        self.kinds = task_kinds(limits)
        self._lock = threading.Lock()
        self.defaults = self.validated(defaults)

    def validated(self, defaults: SolveRequest) -> SolveRequest:
        """Return the defaults if they are valid (a known technology profile, ...); else raise ValueError."""
        defaults.check(self.bridge.profiles)
        return defaults

    def configure(self, defaults: SolveRequest) -> None:
        defaults = self.validated(defaults)
        with self._lock:
            self.defaults = defaults

    def served(self, readiness=None) -> list[ServedKind]:
        """Return the kinds with their handlers; `readiness` () -> '' or why not (the QAOA kernel warming up).

        run_circuit runs a caller's circuit on Aer, not the QAOA kernel: always ready.
        """
        handlers = {"plan_route": self.plan_route, "assign_tasks": self.assign_tasks, "solve_qubo": self.solve_qubo,
                    "run_circuit": self.run_circuit}
        return [ServedKind(spec, handlers[name], None if name == "run_circuit" else readiness)
                for name, spec in self.kinds.items()]

    # -- Solver jobs ------------------------------------------------------------------------

    def _request(self, parameters: Mapping[str, Any]) -> SolveRequest:
        check_shots(parameters.get("shots"), self.limits, "parameters.shots")
        request = request_from_parameters(parameters, self.defaults)
        try:
            request.check(self.bridge.profiles)
        except ValueError as error:
            raise TaskFailed(f"parameters.{error}", retryable=False) from None
        return request

    def _task_solve(self, problem_factory, parameters, context):
        try:
            problem = problem_factory()
        except ProblemError as error:
            raise TaskFailed(f"parameters.{error}", retryable=False) from None
        request = self._request(parameters)

        def progress(update: dict) -> None:
            context.check_canceled()
            context.feedback(status=f"{update['solver']}: {update['evaluations']} evaluations, best cost "
                                    f"{update['best_cost']:.6g}", evaluations=update["evaluations"])

        return problem, self.bridge.solve(problem, request, progress)

    def plan_route(self, request, context):
        parameters = request.parameters
        points = parameters["waypoints"]
        _, result = self._task_solve(lambda: route_problem(parameters, self.limits), parameters, context)
        order = result.solution.route
        return {"order": order, "waypoints": [list(points[i]) for i in order], **result_summary(result)}

    def assign_tasks(self, request, context):
        parameters = request.parameters
        _, result = self._task_solve(lambda: assignment_problem(parameters["costs"], parameters.get("capacities"),
                                                                self.limits), parameters, context)
        return {"assignment": result.solution.assignment, **result_summary(result)}

    def solve_qubo(self, request, context):
        parameters = request.parameters
        terms = parameters.get("quadratic", [])
        ising = parameters.get("ising", False)
        _, result = self._task_solve(lambda: qubo_problem(
            parameters["num_variables"], parameters.get("linear", []),
            ((index, *term) for index, term in enumerate(terms)), len(terms), parameters.get("offset", 0.0), ising,
            self.limits), parameters, context)
        spins = [1 - 2 * b for b in result.solution.bits] if ising else None
        return {"bits": list(result.solution.bits), "spins": spins, **result_summary(result)}

    def run_circuit(self, request, context):
        parameters = request.parameters
        defaults = self.defaults
        limits = self.limits
        try:
            check_shots(parameters.get("shots"), limits)
            profile = parameters.get("technology_profile", defaults.profile)
            if profile and profile not in self.bridge.profiles:
                raise CircuitError(f"technology_profile: {shorten(profile)} is not one of "
                                   f"{', '.join(sorted(self.bridge.profiles))}")
            # A circuit runs on Aer (or the QPU): the diagonal kernel does QAOA only.
            backend_name = parameters.get("backend", defaults.backend)
            backend_name = "aer_statevector" if backend_name == DIAGONAL else effective_backend(backend_name, profile)
            qubits = declared_qubits(parameters["format"], parameters["circuit"], limits.circuit)
            if parameters.get("statevector") and qubits > STATEVECTOR_MAX_QUBITS:
                raise CircuitError(f"statevector: {2 ** qubits} amplitudes are too many to return; at most "
                                   f"{STATEVECTOR_MAX_QUBITS} qubits")
            if backend_name != "qpu":  # before anything is built: the memory the backend would need
                check_fits(AER_METHODS[backend_name], qubits)
            circuit = parse_circuit(parameters["format"], parameters["circuit"], limits.circuit)
            context.check_canceled()
            backend = self.bridge.backend(backend_name, profile, parameters.get("seed"))
            result = run_circuit(CircuitJob(circuit, shots=parameters.get("shots", defaults.shots),
                                            statevector=parameters.get("statevector", False),
                                            observables=parameters.get("observables", []),
                                            seed=parameters.get("seed")), backend, max_shots=limits.max_shots)
        except CircuitError as error:
            raise TaskFailed(f"parameters.{error}", retryable=False) from None
        except BackendUnavailable as error:
            raise TaskFailed(str(error), retryable=False) from None
        return {"counts": result.counts, "statevector": result.statevector,
                "expectation_values": result.expectation_values,
                "timings": {k: round(v, 6) for k, v in result.timings.items()}, "metadata": result.metadata}

    # -- The Optimize action ------------------------------------------------------------------

    def optimize(self, goal, context):
        """Answer an Optimize goal with its Result; bad input raises TaskFailed (not retryable) naming the field."""
        began = time.monotonic()
        try:
            problem = problem_from_msg(goal.problem, self.limits)
            check_shots(goal.shots, self.limits)
            request = request_from_goal(goal, self.defaults)
            request.check(self.bridge.profiles)
        except (ProblemError, ValueError) as error:
            raise TaskFailed(str(error), retryable=False) from None

        def progress(update: dict) -> None:
            context.check_canceled()
            context.feedback(status=update["solver"], solver=update["solver"], iteration=update["iteration"],
                             evaluations=update["evaluations"], best_cost=float(update["best_cost"]),
                             elapsed=time.monotonic() - began)

        return result_to_msg(self.bridge.solve(problem, request, progress))
