"""The quantum_bridge node in its own process: the Optimize action and the task kinds over real DDS."""

import json
import math
import sys
import time

import pytest

from harness import installed, status_values, unique_namespace
from qai_edge.qos import ACTION_QOS_ARGUMENTS

TIMEOUT = 60.0


class Bridge:
    def __init__(self, processes, probe, parameters=None, address_space=None, ready=True):
        from rclpy.action import ActionClient

        from qai_interfaces.action import Optimize, RunTask

        self.probe = probe
        self.namespace = unique_namespace()
        parameters = {"heartbeat_period": 0.2, **(parameters or {})}
        if address_space is None:
            self.process = processes.start_node("quantum_bridge", namespace=self.namespace, parameters=parameters)
        else:  # RLIMIT_AS set in the child, then the node executable exec'd in its place
            self.process = processes._start_ros([sys.executable, "-c", LIMITED.format(address_space),
                                                 str(installed("quantum_bridge"))], "quantum_bridge", self.namespace,
                                                parameters)
        self.optimize = ActionClient(probe.node, Optimize, f"{self.namespace}/optimize", **ACTION_QOS_ARGUMENTS)
        self.tasks = ActionClient(probe.node, RunTask, f"{self.namespace}/quantum_bridge/run_task",
                                  **ACTION_QOS_ARGUMENTS)
        probe.watch_diagnostics()
        probe.spin_until(lambda: self.optimize.server_is_ready() and self.tasks.server_is_ready(), TIMEOUT,
                         lambda: f"the bridge's actions\n{self.process.log()}")
        if ready:  # its QAOA kinds refuse work (not ready) until the kernel is warm, as the mission engine knows
            probe.spin_until(lambda: "kinds_not_ready" not in self.values(), TIMEOUT,
                             lambda: f"the bridge's kinds ready ({self.values()})\n{self.process.log()}")

    def values(self) -> dict:
        status = self.probe.latest_status(f"{self.namespace}/quantum_bridge")
        return status_values(status) if status else {"kinds_not_ready": "no heartbeat yet"}

    def send(self, client, goal, feedback=None):
        sent = client.send_goal_async(goal, feedback_callback=(lambda m: feedback.append(m.feedback))
                                      if feedback is not None else None)
        self.probe.spin_until(sent.done, TIMEOUT, "the goal to be accepted")
        return sent.result()

    def result(self, handle, timeout=TIMEOUT):
        future = handle.get_result_async()
        self.probe.spin_until(future.done, timeout, lambda: f"a result\n{self.process.log()}")
        return future.result()

    def task(self, kind, parameters):
        from diagnostic_msgs.msg import KeyValue

        from qai_interfaces.action import RunTask
        from qai_interfaces.msg import Task

        goal = RunTask.Goal(mission_id="test", attempt=1, task=Task(id=kind, kind=kind, parameters=[
            KeyValue(key=k, value=json.dumps(v)) for k, v in parameters.items()]))
        response = self.result(self.send(self.tasks, goal))
        return response.status, {kv.key: json.loads(kv.value) for kv in response.result.result}, response.result


@pytest.fixture
def bridge(processes, ros_probe):
    return Bridge(processes, ros_probe)


def route_goal(points, preference, seed=0, deadline=0.0, backend=""):
    from geometry_msgs.msg import Point

    from qai_edge.convert import duration_from_seconds
    from qai_interfaces.action import Optimize
    from qai_interfaces.msg import OptimizationProblem

    problem = OptimizationProblem(type=OptimizationProblem.ROUTE,
                                  waypoints=[Point(x=float(x), y=float(y), z=0.0) for x, y in points])
    return Optimize.Goal(problem=problem, solver_preference=preference, seed=seed, backend=backend,
                         deadline=duration_from_seconds(deadline) if deadline else duration_from_seconds(None))


def test_optimize_answers_a_route_classically_by_default(bridge):
    from action_msgs.msg import GoalStatus

    from qai_interfaces.action import Optimize

    response = bridge.result(bridge.send(bridge.optimize, route_goal([(0, 0), (10, 0), (5, 5), (0, 10)],
                                                                     Optimize.Goal.SOLVER_AUTO)))
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    result = response.result
    assert result.solver == "held_karp" and result.verified and not result.fallback
    assert list(result.solution.route)[0] == 0 and sorted(result.solution.route) == [0, 1, 2, 3]
    assert result.solution.feasible and result.solution.cost == pytest.approx(result.reference_cost)


@pytest.mark.parametrize("backend", ["", "aer_statevector"])
def test_optimize_on_the_quantum_path_reports_every_iteration(bridge, backend):
    from qai_interfaces.action import Optimize

    feedback = []
    response = bridge.result(bridge.send(bridge.optimize, route_goal([(0, 0), (10, 0), (5, 5), (0, 10)],
                                                                     Optimize.Goal.SOLVER_QUANTUM, seed=3,
                                                                     deadline=300, backend=backend), feedback))
    result = response.result
    assert result.solver == "qaoa" and result.verified and result.backend == (backend or "statevector_diagonal")
    metadata = {kv.key: json.loads(kv.value) for kv in result.metadata}
    assert metadata["qubits"] == 9 and metadata["evaluations"] > 5
    assert metadata["transpiled_depth" if backend else "state_passes"] > 0
    qaoa = [f for f in feedback if f.solver == "qaoa"]
    assert len(qaoa) >= 5 and [f.evaluations for f in qaoa] == sorted(f.evaluations for f in qaoa)
    assert math.isfinite(qaoa[-1].best_cost)


def test_optimize_refuses_a_nan_cost_naming_it(bridge):
    from action_msgs.msg import GoalStatus

    from qai_interfaces.action import Optimize
    from qai_interfaces.msg import OptimizationProblem

    problem = OptimizationProblem(type=OptimizationProblem.ASSIGNMENT, num_tasks=2, num_agents=2,
                                  costs=[1.0, math.nan, 2.0, 3.0])
    response = bridge.result(bridge.send(bridge.optimize, Optimize.Goal(problem=problem)))
    assert response.status == GoalStatus.STATUS_ABORTED
    assert response.result.message == "costs[0][1]: nan is not a finite number"


def test_canceling_optimize_stops_qaoa(bridge):
    from action_msgs.msg import GoalStatus

    from qai_interfaces.action import Optimize

    feedback = []
    points = [(0, 0), (10, 0), (5, 5), (0, 10), (7, 7)]  # 16 qubits: seconds of QAOA
    handle = bridge.send(bridge.optimize, route_goal(points, Optimize.Goal.SOLVER_QUANTUM, deadline=600), feedback)
    bridge.probe.spin_until(lambda: any(f.solver == "qaoa" for f in feedback), TIMEOUT, "QAOA to start")
    began = time.monotonic()
    cancel = handle.cancel_goal_async()
    bridge.probe.spin_until(cancel.done, TIMEOUT, "the cancel to be accepted")
    assert bridge.result(handle).status == GoalStatus.STATUS_CANCELED
    assert time.monotonic() - began < 5.0


def test_plan_route_returns_an_order_and_the_waypoints_in_it(bridge):
    from action_msgs.msg import GoalStatus

    status, result, _ = bridge.task("plan_route", {"waypoints": [[0, 0, 4], [12, 10, 4], [2, 12, 5], [14, 0, 4]]})
    assert status == GoalStatus.STATUS_SUCCEEDED
    assert result["order"] == [0, 2, 1, 3] and result["waypoints"][1] == [2, 12, 5]
    assert result["solver"] == "held_karp" and result["verified"]


def test_assign_tasks_and_solve_qubo(bridge):
    status, result, _ = bridge.task("assign_tasks", {"costs": [[1, 5], [5, 1], [1, 5], [5, 1]],
                                                     "capacities": [2, 2], "solver": "quantum", "seed": 1})
    assert result["assignment"] == [0, 1, 0, 1] and result["cost"] == 4 and result["solver"] == "qaoa"
    status, result, _ = bridge.task("solve_qubo", {"num_variables": 2, "linear": [1.0, 1.0],
                                                   "quadratic": [[0, 1, -1.0]], "ising": True})
    assert result["spins"] == [-1, -1] and result["cost"] == pytest.approx(-3.0)


def test_run_circuit_returns_counts_and_expectations(bridge):
    status, result, _ = bridge.task("run_circuit", {
        "format": "qasm2", "shots": 500, "observables": ["ZZ"],
        "circuit": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; '
                   'measure q -> c;'})
    assert set(result["counts"]) == {"00", "11"} and sum(result["counts"].values()) == 500
    assert result["expectation_values"]["ZZ"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind, parameters, message", [
    ("run_circuit", {"format": "json", "circuit": {"num_qubits": 1, "gates": [{"type": "WARP", "qubits": [0]}]}},
     "parameters.circuit.gates[0].type: unknown gate 'WARP'"),
    ("run_circuit", {"format": "json", "circuit": {"num_qubits": 40, "gates": []}}, "40 qubits need"),
    ("plan_route", {"waypoints": [[0, 0], [1, 1]], "start_index": 7},
     "parameters.start_index: 7 is out of range for 2 waypoints"),
    ("assign_tasks", {"costs": [[1, 2]], "technology_profile": "photonic"},
     "parameters.technology_profile: 'photonic' is not one of"),
])
def test_bad_task_input_fails_without_retry(bridge, kind, parameters, message):
    from action_msgs.msg import GoalStatus

    status, _, result = bridge.task(kind, parameters)
    assert status == GoalStatus.STATUS_ABORTED and not result.retryable
    assert message in result.message, result.message


def test_diagnostics_report_jobs_fallbacks_and_memory_headroom(bridge):
    bridge.task("assign_tasks", {"costs": [[1, 2], [2, 1]]})
    name = f"{bridge.namespace}/quantum_bridge"
    bridge.probe.spin_until(lambda: bridge.probe.latest_status(name) and
                            status_values(bridge.probe.latest_status(name))["jobs"] == "1", TIMEOUT, "jobs=1")
    values = status_values(bridge.probe.latest_status(name))
    assert float(values["memory_free_gib"]) > 0 and int(values["statevector_max_qubits"]) >= 20
    assert values["fallbacks"] == "0" and values["qpu"] == "not configured"
    assert values["profiles"] == "superconducting,trapped_ion"


ADDRESS_SPACE_LIMIT = 3 << 30  # the idle node maps ~1 GiB (rclpy, qiskit, Aer, numba): 2 GiB of headroom
LIMITED = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({0}, {0})); "
           "os.execv(sys.argv[1], sys.argv[1:])")


def qubo_goal(num_variables, terms=0):
    from qai_interfaces.action import Optimize
    from qai_interfaces.msg import OptimizationProblem

    return Optimize.Goal(problem=OptimizationProblem(
        type=OptimizationProblem.QUBO, num_variables=num_variables, quadratic_rows=[0] * terms,
        quadratic_cols=[1] * terms, quadratic_values=[1.0] * terms))


def test_under_a_memory_limit_oversized_jobs_are_refused_and_the_node_stays_up(processes, ros_probe):
    """Refuse oversized jobs under a memory limit and keep the node up.

    The real node with RLIMIT_AS set in its process: jobs of every kind beyond the bounds (or beyond the
    memory the limit leaves) are refused, not retryable, naming the field; a normal job still runs after.
    """
    from action_msgs.msg import GoalStatus
    from geometry_msgs.msg import Point

    from qai_interfaces.action import Optimize
    from qai_interfaces.msg import OptimizationProblem

    bridge = Bridge(processes, ros_probe, address_space=ADDRESS_SPACE_LIMIT)
    pid = bridge.process.pid
    name = f"{bridge.namespace}/quantum_bridge"
    bridge.probe.spin_until(lambda: bridge.probe.latest_status(name), TIMEOUT, "a heartbeat")
    assert float(status_values(bridge.probe.latest_status(name))["memory_free_gib"]) < 3.0  # the limit counts
    huge_qasm2 = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1000000000]; h q[0];'
    cases = [
        ("run_circuit", {"format": "json", "circuit": {"num_qubits": 10 ** 9, "gates": []}}, "max_circuit_qubits"),
        ("run_circuit", {"format": "json", "circuit": {"num_qubits": 30, "gates": [{"type": "H", "qubits": [0]}]}},
         "30 qubits need 16.0 GiB"),  # within the bound, beyond what RLIMIT_AS leaves
        ("run_circuit", {"format": "qasm2", "circuit": huge_qasm2}, "max_circuit_qubits"),
        ("run_circuit", {"format": "qasm3", "circuit": "OPENQASM 3.0; qubit[1000000000] q;"}, "max_circuit_qubits"),
        ("run_circuit", {"format": "qasm2", "circuit": "x" * (2 << 20)}, "max_circuit_text"),
        ("solve_qubo", {"num_variables": 1000}, "max_qubo_variables"),
        ("solve_qubo", {"num_variables": 4, "quadratic": [[0, 1, 1.0]] * 20000}, "max_quadratic_terms"),
        ("plan_route", {"waypoints": [[i, i] for i in range(500)]}, "max_waypoints"),
        ("assign_tasks", {"costs": [[1.0] * 64] * 100}, "max_assignment_cells"),
    ]
    for kind, parameters, named in cases:
        status, _, result = bridge.task(kind, parameters)
        assert status == GoalStatus.STATUS_ABORTED and not result.retryable, (kind, result.message)
        assert named in result.message and len(result.message) < 400, result.message
    from diagnostic_msgs.msg import KeyValue

    from qai_interfaces.action import RunTask
    from qai_interfaces.msg import Task

    not_json = RunTask.Goal(mission_id="test", attempt=1, task=Task(id="raw", kind="plan_route", parameters=[
        KeyValue(key="waypoints", value="x" * (1 << 20))]))  # a megabyte that is not JSON
    deep = RunTask.Goal(mission_id="test", attempt=1, task=Task(id="deep", kind="plan_route", parameters=[
        KeyValue(key="waypoints", value="[" * 100000 + "]" * 100000)]))
    for goal, expected in ((not_json, "parameters.waypoints: not valid JSON"), (deep, "nested too deeply")):
        response = bridge.result(bridge.send(bridge.tasks, goal))
        assert response.status == GoalStatus.STATUS_ABORTED and not response.result.retryable
        assert expected in response.result.message and len(response.result.message) < 600, response.result.message
    route = OptimizationProblem(type=OptimizationProblem.ROUTE,
                                waypoints=[Point(x=float(i), y=0.0, z=0.0) for i in range(500)])
    for goal, named in ((Optimize.Goal(problem=route), "max_waypoints"), (qubo_goal(10 ** 6), "max_qubo_variables"),
                        (qubo_goal(8, terms=20000), "max_quadratic_terms")):
        response = bridge.result(bridge.send(bridge.optimize, goal))
        assert response.status == GoalStatus.STATUS_ABORTED and named in response.result.message
    assert bridge.process.popen.poll() is None and bridge.process.pid == pid
    status, result, _ = bridge.task("assign_tasks", {"costs": [[1, 5], [5, 1]], "solver": "quantum", "seed": 1})
    assert status == GoalStatus.STATUS_SUCCEEDED and result["assignment"] == [0, 1]


def set_parameters(bridge, **values):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = bridge.probe.node.create_client(SetParameters, f"{bridge.namespace}/quantum_bridge/set_parameters")
    try:
        bridge.probe.spin_until(client.service_is_ready, TIMEOUT, "set_parameters")
        future = client.call_async(SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]))
        bridge.probe.spin_until(future.done, TIMEOUT, "set_parameters to answer")
        return future.result().results
    finally:
        bridge.probe.node.destroy_client(client)


def test_solver_defaults_change_at_run_time_and_bad_values_are_refused_with_the_reason(bridge):
    (result,) = set_parameters(bridge, default_solver="fastest")
    assert not result.successful and "one of: auto, classical, quantum" in result.reason
    (result,) = set_parameters(bridge, default_profile="photonic")
    assert not result.successful and "technology_profile: 'photonic' is not one of" in result.reason
    (result,) = set_parameters(bridge, qpu_backend="ibm_torino")
    assert not result.successful  # read once at start
    (result,) = set_parameters(bridge, default_solver="quantum", default_backend="aer_statevector")[:1]
    assert result.successful
    _, answer, _ = bridge.task("assign_tasks", {"costs": [[1, 5], [5, 1], [2, 2]], "seed": 1})
    assert answer["solver"] == "qaoa" and answer["backend"] == "aer_statevector"
