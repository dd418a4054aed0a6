"""quantum_bridge: solves route and assignment problems on qiskit-aer, a cloud QPU or classically.

The ROS shell around qai_quantum_bridge.bridge (which solver answers, within the deadline, checked
classically) and qai_quantum_bridge.circuits (circuit jobs). It serves
- the Optimize action `optimize` (feedback per QAOA evaluation: solver, evaluations, best cost);
- the task kinds plan_route, assign_tasks, solve_qubo and run_circuit for the mission engine; a
  plan_route result's `waypoints` is the visiting order a following navigate task can take as is.
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup

from qai_edge.convert import duration_from_seconds
from qai_edge.engine_node import EngineNode, spin_node
from qai_edge.health import Level
from qai_edge.qos import ACTION_QOS_ARGUMENTS
from qai_edge.tasks import ServedKind, TaskCanceled, TaskFailed, TaskKindSpec
from qai_edge.workers import InOrder, in_worker
from qai_interfaces.action import Optimize
from qai_quantum_bridge.backends import BackendUnavailable, available_memory, max_qubits
from qai_quantum_bridge.bridge import BACKENDS, PREFERENCES, QpuSettings, QuantumBridge, SolveRequest
from qai_quantum_bridge.circuits import FORMATS, CircuitError, CircuitJob, parse_circuit, run_circuit
from qai_quantum_bridge.messages import (problem_from_msg, request_from_goal, request_from_parameters,
                                         result_summary, result_to_msg)
from qai_quantum_bridge.parameters import PARAMETERS
from qai_quantum_bridge.problems import AssignmentProblem, IsingProblem, ProblemError, QuboProblem, RouteProblem
from qai_quantum_bridge.profiles import load_profiles

NUMBER = {"type": "number"}
SOLVER_OPTIONS = {
    "solver": {"enum": list(PREFERENCES)}, "backend": {"enum": list(BACKENDS)},
    "technology_profile": {"type": "string"}, "deadline": {"type": "number", "exclusiveMinimum": 0},
    "shots": {"type": "integer", "minimum": 1, "maximum": 1000000},
    "qaoa_layers": {"type": "integer", "minimum": 1, "maximum": 20}, "seed": {"type": "integer", "minimum": 0},
}
SUMMARY_KEYS = ("cost", "solver", "verified", "fallback", "fallback_reason", "backend", "technology_profile",
                "reference_cost", "solve_time", "total_time", "metadata")


def _schema(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": {**properties, **SOLVER_OPTIONS}, "required": required,
            "additionalProperties": False}


PLAN_ROUTE = TaskKindSpec(
    "plan_route", "Order waypoints for the shortest route from a fixed start (optionally back to it).",
    _schema({"waypoints": {"type": "array", "minItems": 2,
                           "items": {"type": "array", "minItems": 2, "maxItems": 3, "items": NUMBER}},
             "start_index": {"type": "integer", "minimum": 0}, "return_to_start": {"type": "boolean"}},
            ["waypoints"]),
    result_keys=("order", "waypoints", *SUMMARY_KEYS), default_timeout=120.0)
ASSIGN_TASKS = TaskKindSpec(
    "assign_tasks", "Assign tasks to agents (robots) at least total cost, within each agent's capacity.",
    _schema({"costs": {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": NUMBER}},
             "capacities": {"type": "array", "items": {"type": "integer", "minimum": 0}}}, ["costs"]),
    result_keys=("assignment", *SUMMARY_KEYS), default_timeout=120.0)
SOLVE_QUBO = TaskKindSpec(
    "solve_qubo", "Minimise a QUBO (x' Q x + offset over bits), or an Ising model when ising is true.",
    _schema({"num_variables": {"type": "integer", "minimum": 1, "maximum": 64},
             "linear": {"type": "array", "items": NUMBER},
             "quadratic": {"type": "array", "items": {"type": "array", "minItems": 3, "maxItems": 3, "items": NUMBER}},
             "offset": NUMBER, "ising": {"type": "boolean"}}, ["num_variables"]),
    result_keys=("bits", "spins", *SUMMARY_KEYS), default_timeout=120.0)
RUN_CIRCUIT = TaskKindSpec(
    "run_circuit", "Run a circuit (OpenQASM 2/3 text or a JSON gate list): counts, statevector, expectations.",
    {"type": "object", "required": ["format", "circuit"], "additionalProperties": False, "properties": {
        "format": {"enum": list(FORMATS)}, "circuit": {"type": ["string", "object"]},
        "shots": {"type": "integer", "minimum": 1, "maximum": 1000000}, "statevector": {"type": "boolean"},
        "observables": {"type": "array", "items": {"type": "string", "pattern": "^[IXYZ]+$"}},
        "backend": {"enum": list(BACKENDS)}, "technology_profile": {"type": "string"},
        "seed": {"type": "integer", "minimum": 0}}},
    result_keys=("counts", "statevector", "expectation_values", "timings", "metadata"), default_timeout=300.0)


class QuantumBridgeNode(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("quantum_bridge", PARAMETERS, **kwargs)
        p = self.param
        self.bridge = QuantumBridge(
            load_profiles(p("profiles_file") or None),
            QpuSettings(backend=p("qpu_backend"), fake=p("qpu_fake"), channel=p("qpu_channel"),
                        instance=p("qpu_instance"), token_file=p("qpu_token_file"), timeout=p("qpu_timeout")))
        self.defaults = self._solve_defaults()
        self.defaults.check(self.bridge.profiles)  # a bad default stops the node with the reason
        for name in ("default_solver", "default_backend", "default_profile", "default_deadline", "shots",
                     "qaoa_layers", "qaoa_maxiter", "cvar_alpha"):
            self.on_parameter(name, lambda value: setattr(self, "defaults", self._solve_defaults()))
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="optimize")
        self._feedback_in_order = InOrder(self)
        self._optimize = ActionServer(self, Optimize, "optimize", execute_callback=self._execute_optimize,
                                      goal_callback=lambda goal: GoalResponse.ACCEPT,
                                      cancel_callback=lambda goal: CancelResponse.ACCEPT,
                                      callback_group=ReentrantCallbackGroup(), **ACTION_QOS_ARGUMENTS)
        self.serve([ServedKind(PLAN_ROUTE, self.plan_route), ServedKind(ASSIGN_TASKS, self.assign_tasks),
                    ServedKind(SOLVE_QUBO, self.solve_qubo), ServedKind(RUN_CIRCUIT, self.run_circuit)])
        self.start()

    def _solve_defaults(self) -> SolveRequest:
        p = self.param
        return SolveRequest(preference=p("default_solver"), backend=p("default_backend"),
                            profile=p("default_profile"), deadline=p("default_deadline"), shots=p("shots"),
                            reps=p("qaoa_layers"), maxiter=p("qaoa_maxiter"),
                            cvar_alpha=None if p("cvar_alpha") >= 1.0 else p("cvar_alpha"))

    # -- The Optimize action ------------------------------------------------------------------------

    async def _execute_optimize(self, goal_handle):
        goal = goal_handle.request
        began = time.monotonic()
        try:
            problem = problem_from_msg(goal.problem)
            request = request_from_goal(goal, self.defaults)
        except (ProblemError, ValueError) as error:
            return self._optimize_refused(goal_handle, str(error))

        def progress(update: dict) -> None:
            if goal_handle.is_cancel_requested:
                raise TaskCanceled()
            feedback = Optimize.Feedback(solver=update["solver"], iteration=update["iteration"],
                                         evaluations=update["evaluations"],
                                         best_cost=float(update["best_cost"]) if math.isfinite(update["best_cost"])
                                         else math.nan, elapsed=duration_from_seconds(time.monotonic() - began))
            self._feedback_in_order.call(self._publish_optimize_feedback, goal_handle, feedback)

        ok, value = await in_worker(self, self._pool, self._solve, problem, request, progress)
        if not ok:
            if isinstance(value, TaskCanceled):
                goal_handle.canceled()
                return Optimize.Result(message="canceled")
            return self._optimize_refused(goal_handle, f"{type(value).__name__}: {value}" if not isinstance(
                value, (ProblemError, ValueError)) else str(value))
        goal_handle.succeed()
        return result_to_msg(value)

    @staticmethod
    def _publish_optimize_feedback(goal_handle, feedback) -> None:
        if goal_handle.is_active:
            goal_handle.publish_feedback(feedback)

    def _optimize_refused(self, goal_handle, message: str):
        self.get_logger().warning(f"optimize refused: {message}")
        goal_handle.abort()
        return Optimize.Result(message=message, reference_cost=math.nan)

    def _solve(self, problem, request, progress):
        return self.bridge.solve(problem, request, progress)

    # -- Task kinds --------------------------------------------------------------------------------

    def _request(self, parameters) -> SolveRequest:
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
        problem, result = self._task_solve(lambda: RouteProblem(
            points=[list(p) + [0.0] * (3 - len(p)) for p in points], start=parameters.get("start_index", 0),
            return_to_start=parameters.get("return_to_start", False)), parameters, context)
        order = result.solution.route
        return {"order": order, "waypoints": [list(points[i]) for i in order], **result_summary(result)}

    def assign_tasks(self, request, context):
        parameters = request.parameters
        _, result = self._task_solve(lambda: AssignmentProblem(parameters["costs"], parameters.get("capacities")),
                                     parameters, context)
        return {"assignment": result.solution.assignment, **result_summary(result)}

    def solve_qubo(self, request, context):
        parameters = request.parameters
        n = parameters["num_variables"]
        quadratic = {}
        for index, term in enumerate(parameters.get("quadratic", [])):
            i, j, value = term
            if not (float(i).is_integer() and float(j).is_integer()):
                raise TaskFailed(f"parameters.quadratic[{index}]: indices must be integers, got {term}",
                                 retryable=False)
            quadratic[(int(i), int(j))] = quadratic.get((int(i), int(j)), 0.0) + float(value)
        kind = IsingProblem if parameters.get("ising", False) else QuboProblem
        _, result = self._task_solve(lambda: kind(n, parameters.get("linear", []), quadratic,
                                                  parameters.get("offset", 0.0)), parameters, context)
        spins = [1 - 2 * b for b in result.solution.bits] if kind is IsingProblem else None
        return {"bits": list(result.solution.bits), "spins": spins, **result_summary(result)}

    def run_circuit(self, request, context):
        parameters = request.parameters
        try:
            circuit = parse_circuit(parameters["format"], parameters["circuit"])
            backend = self.bridge.backend(parameters.get("backend", self.defaults.backend),
                                          parameters.get("technology_profile", self.defaults.profile),
                                          parameters.get("seed"))
            result = run_circuit(CircuitJob(circuit, shots=parameters.get("shots", self.defaults.shots),
                                            statevector=parameters.get("statevector", False),
                                            observables=parameters.get("observables", []),
                                            seed=parameters.get("seed")), backend)
        except CircuitError as error:
            raise TaskFailed(f"parameters.{error}", retryable=False) from None
        except BackendUnavailable as error:
            raise TaskFailed(str(error), retryable=False) from None
        return {"counts": result.counts, "statevector": result.statevector,
                "expectation_values": result.expectation_values,
                "timings": {k: round(v, 6) for k, v in result.timings.items()}, "metadata": result.metadata}

    # -- Health ------------------------------------------------------------------------------------

    def health(self):
        free = available_memory()
        counts = self.bridge.counts
        qpu = self.bridge.qpu
        values = {"jobs": counts["jobs"], "quantum_answers": counts["quantum"], "fallbacks": counts["fallbacks"],
                  "last_solve_s": f"{self.bridge.last_solve_seconds:.4f}",
                  "memory_free_gib": f"{free / 2**30:.1f}",
                  "statevector_max_qubits": max_qubits("statevector", free),
                  "qpu": qpu.backend or (f"{qpu.fake} (fake)" if qpu.fake else "not configured"),
                  "profiles": ",".join(sorted(self.bridge.profiles))}
        return Level.OK, "running", values

    def destroy_node(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._optimize.destroy()
        return super().destroy_node()


def main(args=None):
    return spin_node(QuantumBridgeNode, args)


if __name__ == "__main__":
    sys.exit(main())
