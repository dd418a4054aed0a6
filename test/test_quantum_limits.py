"""Every input of the quantum bridge has a bound, checked before anything is built.

Errors name the field, the limit and the value (shortened); QASM reads no file; memory limits of the process
count.
"""

import json
import re
import subprocess
import sys

import pytest

from qai_edge.profile import ProfileError, parse_profile
from qai_edge.task_server import parameter_errors
from qai_edge.tasks import TaskContext, TaskFailed, TaskRequest
from qai_quantum_bridge.bridge import QuantumBridge, SolveRequest
from qai_quantum_bridge.circuits import CircuitError, CircuitLimits, parse_circuit
from qai_quantum_bridge.kinds import QuantumService
from qai_quantum_bridge.limits import Limits
from qai_quantum_bridge.profiles import load_profiles

LIMITS = Limits()
QASM2_HEAD = 'OPENQASM 2.0; include "qelib1.inc"; '
QASM3_HEAD = 'OPENQASM 3.0; include "stdgates.inc"; '
# 40 gate definitions, each calling the previous twice: 2^40 gates once unrolled.
NESTED_GATES = QASM2_HEAD + "qreg q[1]; gate g1 a { x a; x a; } " + "".join(
    f"gate g{i + 1} a {{ g{i} a; g{i} a; }} " for i in range(1, 40)) + "g40 q[0];"


@pytest.fixture(scope="module")
def service():
    return QuantumService(QuantumBridge(load_profiles()), SolveRequest(), LIMITS)


def run(service, kind, parameters):
    """Run a job as the node runs it: the kind's schema first (as the task server checks it), then its handler."""
    errors = parameter_errors(service.kinds[kind], parameters)
    if errors:
        raise TaskFailed("; ".join(errors), retryable=False)
    handler = {"plan_route": service.plan_route, "assign_tasks": service.assign_tasks,
               "solve_qubo": service.solve_qubo, "run_circuit": service.run_circuit}[kind]
    return handler(TaskRequest("m", "t", kind, 1, parameters), TaskContext())


OVERSIZED = [
    ("plan_route", {"waypoints": [[i, 0] for i in range(65)]}, "parameters.waypoints: 65 items, more than the "
     "limit of 64 (max_waypoints)"),
    ("assign_tasks", {"costs": [[1.0] * 2] * 4097}, "parameters.costs: 4097 items, more than the limit of 4096 "
     "(max_assignment_cells)"),
    ("assign_tasks", {"costs": [[1.0] * 100] * 41}, "costs: 4100 cells (tasks x agents), more than the limit of 4096 "
     "(max_assignment_cells)"),
    ("solve_qubo", {"num_variables": 65}, "parameters.num_variables: 65 is more than the limit of 64 "
     "(max_qubo_variables)"),
    ("solve_qubo", {"num_variables": 4, "quadratic": [[0, 1, 1.0]] * 10001}, "parameters.quadratic: 10001 items, "
     "more than the limit of 10000 (max_quadratic_terms)"),
    ("assign_tasks", {"costs": [[1, 2]], "shots": 100001}, "parameters.shots: 100001 is more than the limit of "
     "100000 (max_shots)"),
    ("run_circuit", {"format": "json", "circuit": {"num_qubits": 10 ** 9, "gates": []}},
     "circuit.num_qubits: 1000000000 is more than the limit of 64 qubits (max_circuit_qubits)"),
    ("run_circuit", {"format": "qasm2", "circuit": QASM2_HEAD + "qreg q[1000000000]; h q[0];"},
     "circuit: declares 1000000000 qubits, more than the limit of 64 (max_circuit_qubits)"),
    ("run_circuit", {"format": "qasm3", "circuit": QASM3_HEAD + "qubit[99999999999999999999] q; h q[0];"},
     "circuit: declares 1000000000 qubits, more than the limit of 64 (max_circuit_qubits)"),
    ("run_circuit", {"format": "json",
                     "circuit": {"num_qubits": 1, "gates": [{"type": "H", "qubits": [0]}] * 100001}},
     "circuit.gates: 100001 gates are more than the limit of 100000 (max_circuit_gates)"),
    ("run_circuit", {"format": "qasm2", "circuit": QASM2_HEAD + "qreg q[1]; " + "h q[0]; " * 140000},
     f"parameters.circuit: {len(QASM2_HEAD) + 11 + 8 * 140000} characters, more than the limit of 1048576 "
     "(max_circuit_text)"),
    ("run_circuit", {"format": "qasm2", "circuit": NESTED_GATES},
     "circuit: more than 100000 gates (max_circuit_gates) once its gate definitions and loops are expanded"),
    ("run_circuit", {"format": "json", "circuit": {"num_qubits": 31, "gates": [{"type": "H", "qubits": [0]}]}},
     "31 qubits need 32.0 GiB"),
]


@pytest.mark.parametrize("kind, parameters, message", OVERSIZED,
                         ids=[f"{case[0]}-{i}" for i, case in enumerate(OVERSIZED)])
def test_oversized_input_is_refused_naming_the_field_and_the_limit(service, kind, parameters, message):
    with pytest.raises(TaskFailed) as failure:
        run(service, kind, parameters)
    assert message in failure.value.message and not failure.value.retryable, failure.value.message
    assert len(failure.value.message) < 400  # never the value whole


def test_a_huge_json_circuit_is_refused_before_a_quantum_circuit_exists(monkeypatch):
    import qiskit

    built = []
    original = qiskit.QuantumCircuit.__init__
    monkeypatch.setattr(qiskit.QuantumCircuit, "__init__", lambda self, *a, **k: built.append(a) or original(
        self, *a, **k))
    with pytest.raises(CircuitError, match="max_circuit_qubits"):
        parse_circuit("json", json.dumps({"num_qubits": 10 ** 12, "gates": []}))
    assert built == []


@pytest.mark.parametrize("circuit_format, head", [("qasm2", "OPENQASM 2.0; "), ("qasm3", "OPENQASM 3.0; ")])
def test_qasm_include_reads_no_local_file_and_echoes_nothing(tmp_path, circuit_format, head):
    secret = tmp_path / "secret.inc"
    secret.write_text("gate leak a { x a; } // TOP-SECRET-CONTENT\n")
    for source in (f'{head}include "{secret}"; qreg q[1];', f"{head}include\n'{secret}'; qubit q;",
                   f'{head}include "../../etc/hostname"; qubit q;'):
        with pytest.raises(CircuitError) as error:
            parse_circuit(circuit_format, source)
        assert "is not allowed" in str(error.value) and "TOP-SECRET" not in str(error.value)


def test_the_standard_includes_still_work():
    assert parse_circuit("qasm2", QASM2_HEAD + "qreg q[2]; cx q[0], q[1];").num_qubits == 2
    assert parse_circuit("qasm3", QASM3_HEAD + "qubit[2] q; cx q[0], q[1];").num_qubits == 2


def test_a_qasm3_syntax_error_has_a_useful_message():
    with pytest.raises(CircuitError) as error:
        parse_circuit("qasm3", "OPENQASM 3.0; qubit[2] q; h q[0] garbage here;")
    message = str(error.value)
    assert message.startswith("circuit (OpenQASM 3): QASM3ParsingError: ") and len(message) > 45, message
    assert "None" not in message


def test_a_megabyte_field_is_never_echoed_whole(service):
    blob = "x" * (1 << 20)
    for kind, parameters in (("run_circuit", {"format": "qasm2", "circuit": blob[:-100]}),
                             ("run_circuit", {"format": "json", "circuit": {"num_qubits": 1, "gates": [
                                 {"type": blob, "qubits": [0]}]}}),
                             ("plan_route", {"waypoints": [[0, 0], [1, 1]], "technology_profile": blob}),
                             ("assign_tasks", {"costs": [[1, 2]], "solver": blob})):
        with pytest.raises(TaskFailed) as failure:
            run(service, kind, parameters)
        assert len(failure.value.message) < 600, (kind, len(failure.value.message))


def test_the_limits_are_parameters():
    limits = CircuitLimits(max_qubits=3, max_gates=2, max_text=100)
    with pytest.raises(CircuitError, match="limit of 3"):
        parse_circuit("json", {"num_qubits": 4, "gates": []}, limits)
    with pytest.raises(CircuitError, match="more than 2 gates"):
        parse_circuit("qasm2", QASM2_HEAD + "qreg q[1]; h q[0]; h q[0]; h q[0];", limits)


@pytest.mark.parametrize("parameter, value", [("default_solver", "fastest"), ("default_backend", "aer_gpu")])
def test_the_profile_check_refuses_a_bad_choice_before_anything_starts(parameter, value):
    with pytest.raises(ProfileError, match=re.escape(parameter)):
        parse_profile({"nodes": {"quantum_bridge": {"parameters": {parameter: value}}}}, source="inline")
    parse_profile({"nodes": {"quantum_bridge": {"parameters": {"default_backend": "aer_mps"}}}}, source="inline")


ADDRESS_SPACE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from qai_quantum_bridge.backends import available_memory, check_fits, BackendUnavailable
print(available_memory())
try:
    check_fits("statevector", 28)
    print("fits")
except BackendUnavailable as error:
    print(error)
"""


def test_the_memory_check_counts_the_address_space_limit():
    out = subprocess.run([sys.executable, "-c", ADDRESS_SPACE], capture_output=True, text=True, check=True)
    available, verdict = out.stdout.strip().splitlines()
    assert int(available) < 3 << 30
    assert verdict.startswith("28 qubits need 4.0 GiB") and "enough for" in verdict
