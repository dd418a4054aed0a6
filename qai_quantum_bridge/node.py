"""quantum_bridge: route, assignment and QUBO problems on a QAOA kernel, qiskit-aer, a QPU or classically.

The ROS shell around qai_quantum_bridge.kinds.QuantumService (the jobs, their bounds and results) and
qai_quantum_bridge.bridge (which solver answers, within the deadline, checked classically). It serves
- the Optimize action `optimize` (feedback per QAOA evaluation: solver, evaluations, best cost);
- the task kinds plan_route, assign_tasks, solve_qubo and run_circuit at `~/run_task` for the mission
  engine; a plan_route result's `waypoints` is the visiting order a following navigate task can take as is;
- /diagnostics: jobs, quantum answers, fallbacks, memory headroom, the compiled kernel's state.
Both actions share one worker pool (`worker_threads`) and the same machinery (qai_edge.workers): ordered
feedback, cancel that completes once the job stopped. Parameters: read-only ones are read at start;
solver defaults can change at run time (validated, refused with the reason).
"""

from __future__ import annotations

import math
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from rcl_interfaces.msg import SetParametersResult

from qai_edge.convert import duration_from_seconds
from qai_edge.engine_node import EngineNode, spin_node
from qai_edge.health import Level
from qai_edge.params import by_name
from qai_edge.task_server import TaskServer
from qai_edge.workers import WorkerActionServer
from qai_interfaces.action import Optimize
from qai_quantum_bridge import diagonal
from qai_quantum_bridge.backends import available_memory, max_qubits
from qai_quantum_bridge.bridge import QpuSettings, QuantumBridge, SolveRequest
from qai_quantum_bridge.kinds import QuantumService
from qai_quantum_bridge.limits import Limits
from qai_quantum_bridge.parameters import PARAMETERS, SOLVER_PARAMETERS
from qai_quantum_bridge.profiles import load_profiles

SPECS = by_name(PARAMETERS)
RUNTIME = {spec.name for spec in SOLVER_PARAMETERS}


def solve_defaults(value) -> SolveRequest:
    """Return the solver defaults from parameter values (`value(name)`)."""
    return SolveRequest(preference=value("default_solver"), backend=value("default_backend"),
                        profile=value("default_profile"), deadline=value("default_deadline"), shots=value("shots"),
                        reps=value("qaoa_layers"), maxiter=value("qaoa_maxiter"),
                        cvar_alpha=None if value("cvar_alpha") >= 1.0 else value("cvar_alpha"),
                        precision=value("qaoa_precision"))


class OptimizeServer(WorkerActionServer):
    """The Optimize action on the shared worker machinery; every QAOA evaluation's feedback is sent."""

    def __init__(self, node, service: QuantumService, pool):
        super().__init__(node, Optimize, "optimize", pool, feedback_interval=0.0,
                         result_retention=node.param("task_result_retention"))
        self._service = service

    def prepare(self, goal_handle):
        goal = goal_handle.request
        return None, lambda context: self._service.optimize(goal, context)

    def feedback_message(self, progress, status, values):
        best = values.get("best_cost", math.nan)
        return Optimize.Feedback(solver=values.get("solver", status), iteration=values.get("iteration", 0),
                                 evaluations=values.get("evaluations", 0),
                                 best_cost=best if math.isfinite(best) else math.nan,
                                 elapsed=duration_from_seconds(values.get("elapsed", 0.0)))

    def succeeded(self, goal_handle, value):
        return value

    def failed(self, goal_handle, message, retryable):
        return Optimize.Result(message=message, reference_cost=math.nan)

    def canceled(self, goal_handle):
        return Optimize.Result(message="canceled", reference_cost=math.nan)

    def log_failure(self, goal_handle, message):
        self._node.get_logger().warning(f"optimize refused: {message}")


class QuantumBridgeNode(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("quantum_bridge", PARAMETERS, **kwargs)
        p = self.param
        bridge = QuantumBridge(
            load_profiles(p("profiles_file") or None),
            QpuSettings(backend=p("qpu_backend"), fake=p("qpu_fake"), channel=p("qpu_channel"),
                        instance=p("qpu_instance"), token_file=p("qpu_token_file"), timeout=p("qpu_timeout")))
        # A bad default (an unknown technology profile) stops the node with the reason.
        self.service = QuantumService(bridge, solve_defaults(p), Limits.from_parameters(p))
        self._pool = ThreadPoolExecutor(max_workers=p("worker_threads"), thread_name_prefix="quantum")
        self._optimize = OptimizeServer(self, self.service, self._pool)
        self._kernel_state = "not needed" if not diagonal.compiled_available() else "warming up"
        # Its kinds are announced ready once the compiled kernel is warm (or known not to be coming).
        self.task_server = TaskServer(self, self.service.served(self._kernel_not_ready), pool=self._pool,
                                      result_retention=p("task_result_retention"))
        self.add_on_set_parameters_callback(self._check_solver_defaults)
        for name in RUNTIME:
            self.on_parameter(name, self._apply_solver_defaults)
        if diagonal.compiled_available():  # compiled, or loaded from numba's cache, beside the executor and pool
            threading.Thread(target=self._warm_kernel, name="qaoa-kernel-warm-up", daemon=True).start()
        self.start()

    def _kernel_not_ready(self) -> str:
        return "the QAOA kernel is warming up" if self._kernel_state == "warming up" else ""

    def _warm_kernel(self) -> None:
        try:
            self._kernel_state = f"ready ({diagonal.warm_up():.1f} s to warm)"
        except Exception as error:  # the numpy algebra still answers
            self._kernel_state = f"unavailable: {type(error).__name__}: {error}"
            self.get_logger().error(f"the compiled QAOA kernel did not build: {error}")

    # -- Parameters that may change at run time ---------------------------------------------------

    def _check_solver_defaults(self, parameters) -> SetParametersResult:
        """Refuse, with the reason, solver defaults that are invalid together (an unknown technology profile).

        Each value's type, range and choices are checked by EngineNode against its spec.
        """
        proposed = {parameter.name: parameter.value for parameter in parameters}
        if RUNTIME & set(proposed):
            try:
                for name in RUNTIME & set(proposed):
                    SPECS[name].check(proposed[name])
                self.service.validated(solve_defaults(lambda name: proposed.get(name, self.param(name))))
            except ValueError as error:
                return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_solver_defaults(self, value) -> None:
        self.service.configure(solve_defaults(self.param))
        self.get_logger().info(f"solver defaults now {self.service.defaults}")

    # -- Health ----------------------------------------------------------------------------------

    def health(self):
        free = available_memory()
        bridge = self.service.bridge
        counts = bridge.counts
        qpu = bridge.qpu
        values = {"jobs": counts["jobs"], "quantum_answers": counts["quantum"], "fallbacks": counts["fallbacks"],
                  "last_solve_s": f"{bridge.last_solve_seconds:.4f}", "memory_free_gib": f"{free / 2**30:.1f}",
                  "statevector_max_qubits": max_qubits("statevector", free), "qaoa_kernel": self._kernel_state,
                  "optimize_running": self._optimize.running,
                  "qpu": qpu.backend or (f"{qpu.fake} (fake)" if qpu.fake else "not configured"),
                  "profiles": ",".join(sorted(bridge.profiles))}
        return Level.OK, "running", values

    def destroy_node(self):
        self._optimize.destroy()
        self._pool.shutdown(wait=False, cancel_futures=True)
        return super().destroy_node()


def main(args=None):
    return spin_node(QuantumBridgeNode, args)


if __name__ == "__main__":
    sys.exit(main())
