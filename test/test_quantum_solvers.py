"""QAOA on qiskit-aer, the bridge's policy, technology profiles, the cloud QPU adapter, and circuit jobs.

The bridge's policy: deadline, fallback, verification. The cloud QPU adapter is tested against
qiskit-ibm-runtime's fake backends.
"""

import math
import time

import numpy as np
import pytest

from qai_quantum_bridge.backends import AerBackend, BackendUnavailable, DiagonalBackend, QpuBackend
from qai_quantum_bridge.bridge import QpuSettings, QuantumBridge, SolveRequest
from qai_quantum_bridge.circuits import CircuitError, CircuitJob, parse_circuit, run_circuit
from qai_quantum_bridge.classical import solve_classically
from qai_quantum_bridge.problems import AssignmentProblem, QuboProblem, RouteProblem
from qai_quantum_bridge.profiles import load_profiles
from qai_quantum_bridge.qaoa import QaoaSettings, QaoaSolver
from qai_quantum_bridge.qubo import Encoding

PROFILES = load_profiles()


def small_problems():
    rng = np.random.default_rng(11)
    return {
        "assignment 6x2": AssignmentProblem(rng.uniform(1, 10, (6, 2)).round(1), [3, 3]),
        "route 4": RouteProblem(points=rng.uniform(0, 30, (4, 2)), start=1),
        "qubo 8": QuboProblem(8, rng.normal(size=8), {(i, j): rng.normal() for i in range(8) for j in range(i + 1, 8)
                                                      if rng.random() < 0.5}),
    }


@pytest.mark.parametrize("name", list(small_problems()))
@pytest.mark.parametrize("backend", ["aer_statevector", "statevector_diagonal"])
def test_qaoa_finds_the_optimum_among_its_samples(name, backend):
    problem = small_problems()[name]
    outcome = QaoaSolver(Encoding(problem), AerBackend(seed=3) if backend == "aer_statevector" else DiagonalBackend(),
                         QaoaSettings(seed=3)).solve()
    assert outcome.solution is not None and outcome.solution.feasible
    assert outcome.solution.cost == pytest.approx(solve_classically(problem).solution.cost)
    assert outcome.evaluations > 5
    assert outcome.metadata["transpiled_depth" if backend == "aer_statevector" else "state_passes"] > 0


def test_the_circuit_is_transpiled_once_and_rebound_for_every_evaluation():
    backend = AerBackend(seed=1)
    compiles = []
    original = backend.compile
    backend.compile = lambda circuit: compiles.append(circuit) or original(circuit)
    solver = QaoaSolver(Encoding(small_problems()["assignment 6x2"]), backend, QaoaSettings(seed=1, maxiter=15))
    solver.solve()
    assert len(compiles) == 1 and solver.evaluations >= 10


def bridge(**qpu):
    return QuantumBridge(PROFILES, QpuSettings(**qpu))


def test_auto_answers_with_the_exact_classical_solver():
    result = bridge().solve(RouteProblem(points=np.random.default_rng(1).uniform(0, 40, (6, 3))))
    assert (result.solver, result.fallback, result.verified) == ("held_karp", False, True)
    assert result.total_time < 0.5


def test_quantum_answers_with_qaoa_and_says_it_was_checked():
    problem = small_problems()["assignment 6x2"]
    result = bridge().solve(problem, SolveRequest(preference="quantum", seed=2))
    assert result.solver == "qaoa" and not result.fallback and result.verified
    assert result.solution.cost == pytest.approx(result.reference_cost)
    assert result.backend == "statevector_diagonal" and result.metadata["shots"] == 1024


def test_fallback_when_the_deadline_is_too_short_for_the_quantum_path():
    route6 = RouteProblem(points=np.random.default_rng(1).uniform(0, 40, (6, 3)))  # 25 qubits
    result = bridge().solve(route6, SolveRequest(preference="quantum", deadline=2.0))
    assert result.fallback and result.solver == "held_karp"
    assert "QAOA on 25 qubits would need about" in result.fallback_reason  # refused before it started
    assert "the deadline leaves" in result.fallback_reason


def test_fallback_when_the_measured_evaluations_show_the_run_cannot_fit():
    # The estimate allows it, but noisy simulation on a routed heavy-hex layout is much slower than that.
    problem = small_problems()["assignment 6x2"]
    request = SolveRequest(preference="quantum", profile="superconducting", deadline=1.5, seed=1)
    assert QuantumBridge(PROFILES).estimate_seconds(6, request) < 1.5
    result = bridge().solve(problem, request)
    assert result.fallback and result.solver == "hungarian"
    # Measured: after one or two evaluations, the projection (or, on a loaded machine, set-up so slow that not
    # one evaluation fitted: the solver starts none that would end past the deadline).
    assert ("an evaluation, about" in result.fallback_reason and "the deadline leaves" in result.fallback_reason
            or "deadline reached after 0 evaluations" in result.fallback_reason), result.fallback_reason


def test_fallback_when_the_first_evaluation_leaves_no_time_for_a_second():
    """A first evaluation slow enough (a loaded machine) that no second fits: a fallback, not a 1-evaluation run.

    The measured-cost test above failed this way once in `make test`: its run ended "deadline reached after 1".
    """
    b = bridge()
    slowed = AerBackend(seed=1)
    calls, run = [], slowed.run

    def slow_first(*args):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.2)
        return run(*args)

    slowed.run = slow_first
    b._backends[("aer_statevector", "", 1)] = slowed
    request = SolveRequest(preference="quantum", backend="aer_statevector", deadline=1.5, seed=1)
    assert b.estimate_seconds(6, request) < 1.5
    result = b.solve(small_problems()["assignment 6x2"], request)
    assert result.fallback and result.solver == "hungarian" and len(calls) == 1
    assert "an evaluation, about" in result.fallback_reason and "the deadline leaves" in result.fallback_reason


def test_fallback_when_the_problem_needs_more_qubits_than_memory_holds():
    problem = QuboProblem(36, np.ones(36))
    result = bridge().solve(problem, SolveRequest(preference="quantum", deadline=1e9))
    assert result.fallback and "36 qubits need" in result.fallback_reason and "enough for" in result.fallback_reason
    assert result.solution.cost == pytest.approx(0.0)  # all zeros, from simulated annealing


def test_fallback_when_the_backend_fails():
    b = bridge()
    failing = AerBackend(seed=1)
    failing.run = lambda *args: (_ for _ in ()).throw(RuntimeError("simulator crashed"))
    b._backends[("aer_statevector", "", 1)] = failing
    result = b.solve(small_problems()["qubo 8"], SolveRequest(preference="quantum", backend="aer_statevector", seed=1))
    assert result.fallback and result.fallback_reason == "the quantum path failed: RuntimeError: simulator crashed"
    assert result.solver == "brute_force" and result.verified


def test_the_classical_answer_is_returned_when_it_beats_the_quantum_one():
    b = bridge()
    problem = small_problems()["route 4"]
    # One evaluation of 8 shots cannot be expected to find the best of 6 routes: the check takes over.
    request = SolveRequest(preference="quantum", shots=8, maxiter=1, seed=5)
    results = [b.solve(problem, request) for _ in range(3)]
    for result in results:
        assert result.solution.cost == pytest.approx(result.reference_cost)  # never worse than the check
        if result.fallback:
            assert result.fallback_reason.startswith(("the classical solver found a better solution",
                                                      "no feasible sample"))


def test_a_qpu_without_a_token_is_a_clear_error_and_a_fallback(monkeypatch):
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    with pytest.raises(BackendUnavailable, match="no IBM Quantum token"):
        QpuBackend(backend_name="ibm_torino")
    result = bridge(backend="ibm_torino").solve(small_problems()["qubo 8"],
                                                SolveRequest(preference="quantum", backend="qpu"))
    assert result.fallback and "no IBM Quantum token" in result.fallback_reason


def test_an_unreachable_qpu_times_out_instead_of_hanging(monkeypatch):
    import time

    monkeypatch.setenv("QISKIT_IBM_TOKEN", "not-a-token")
    monkeypatch.setattr(QpuBackend, "_service", staticmethod(lambda *a: time.sleep(60)))
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match="no answer within 1 s"):
        QpuBackend(backend_name="ibm_torino", timeout=1.0)
    assert time.monotonic() - began < 5


def test_the_qpu_path_runs_on_a_fake_backend_with_its_noise_model():
    result = bridge(fake="fake_guadalupe").solve(
        small_problems()["assignment 6x2"], SolveRequest(preference="quantum", backend="qpu", seed=4, maxiter=15,
                                                         deadline=120))
    assert result.backend == "qpu" and result.metadata.get("transpiled_depth", 0) > 0
    assert result.solution.cost == pytest.approx(result.reference_cost)


def test_technology_profiles_transpile_to_their_hardware_and_report_it():
    problem = small_problems()["assignment 6x2"]
    reports = {}
    for profile in ("superconducting", "trapped_ion"):
        result = bridge().solve(problem, SolveRequest(preference="quantum", profile=profile, seed=1, deadline=120,
                                                      maxiter=20))
        assert result.profile == profile and result.solution.cost == pytest.approx(result.reference_cost)
        reports[profile] = result.metadata
    # Heavy-hex routing costs SWAPs that an all-to-all ion chain does not need.
    assert reports["superconducting"]["two_qubit_gates"] > reports["trapped_ion"]["two_qubit_gates"]


@pytest.mark.parametrize("request_, message", [
    (SolveRequest(preference="fastest"), "solver: expected one of auto, classical, quantum"),
    (SolveRequest(backend="aer_gpu"), "backend: expected one of"),
    (SolveRequest(profile="photonic"), "technology_profile: 'photonic' is not one of superconducting, trapped_ion"),
    (SolveRequest(deadline=math.nan), "deadline: must be a positive number of seconds"),
    (SolveRequest(shots=0), "shots: must be between 1 and 1000000"),
])
def test_bad_requests_name_the_field(request_, message):
    with pytest.raises(ValueError, match=message):
        bridge().solve(small_problems()["qubo 8"], request_)


BELL_JSON = {"num_qubits": 2, "gates": [{"type": "H", "qubits": [0]}, {"type": "CX", "qubits": [0, 1]}]}
BELL_QASM2 = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
BELL_QASM3 = 'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;'


@pytest.mark.parametrize("circuit_format, source", [("json", BELL_JSON), ("qasm2", BELL_QASM2), ("qasm3", BELL_QASM3)])
def test_every_circuit_format_runs_with_counts_statevector_and_expectations(circuit_format, source):
    result = run_circuit(CircuitJob(parse_circuit(circuit_format, source), shots=4000, statevector=True,
                                    observables=["ZZ", "XX", "ZI"], seed=1), AerBackend(seed=1))
    assert set(result.counts) == {"00", "11"} and sum(result.counts.values()) == 4000
    assert abs(result.counts["00"] - 2000) < 200
    amplitude = 1 / math.sqrt(2)
    assert [a[0] for a in result.statevector] == pytest.approx([amplitude, 0, 0, amplitude])
    assert result.expectation_values == pytest.approx({"ZZ": 1.0, "XX": 1.0, "ZI": 0.0}, abs=1e-9)
    assert result.timings["total"] > 0 and result.metadata["qubits"] == 2


def test_a_qiskit_circuit_runs_as_it_is():
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(3)
    circuit.x(2)
    result = run_circuit(CircuitJob(circuit, shots=100), AerBackend(seed=1))
    assert result.counts == {"100": 100}  # qubit 0 rightmost


def test_noise_profiles_lower_expectation_values():
    ideal = run_circuit(CircuitJob(parse_circuit("json", BELL_JSON), observables=["ZZ"]), AerBackend())
    noisy = run_circuit(CircuitJob(parse_circuit("json", BELL_JSON), observables=["ZZ"]),
                        AerBackend(profile=PROFILES["superconducting"], seed=1))
    assert noisy.expectation_values["ZZ"] < ideal.expectation_values["ZZ"] - 1e-3
    assert noisy.metadata["technology_profile"] == "superconducting"


@pytest.mark.parametrize("circuit_format, source, message", [
    ("qasm2", 'OPENQASM 2.0; qreg q[2]; h q[0];', "circuit (OpenQASM 2):"),
    ("qasm2", 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; h q[0]', "circuit (OpenQASM 2):"),
    ("qasm3", 'OPENQASM 3.0; qubit q; foo q;', "circuit (OpenQASM 3): QASM3ImporterError"),
    ("json", {"num_qubits": 2, "gates": [{"type": "WARP", "qubits": [0]}]},
     "circuit.gates[0].type: unknown gate 'WARP' (known: BARRIER"),
    ("json", {"num_qubits": 2, "gates": [{"type": "CX", "qubits": [0, 2]}]},
     "circuit.gates[0].qubits: qubit 2 is out of range for 2 qubits"),
    ("json", {"num_qubits": 1, "gates": [{"type": "RX", "qubits": [0], "params": [math.nan]}]},
     "circuit.gates[0].params: nan is not a finite number"),
    ("json", {"num_qubits": 1, "gates": [{"type": "RX", "qubits": [0]}]},
     "circuit.gates[0].params: RX takes 1 parameter(s)"),
    ("json", {"gates": []}, "circuit.num_qubits: expected a positive integer"),
    ("cirq", "", "format: expected one of qasm2, qasm3, json"),
])
def test_bad_circuits_are_refused_saying_where(circuit_format, source, message):
    with pytest.raises(CircuitError) as error:
        parse_circuit(circuit_format, source)
    assert str(error.value).startswith(message), str(error.value)


def test_a_circuit_too_large_for_memory_is_refused_before_allocating():
    circuit = parse_circuit("json", {"num_qubits": 40, "gates": [{"type": "H", "qubits": [0]}]})
    with pytest.raises(BackendUnavailable, match=r"40 qubits need 16384.0 GiB .* enough for \d+ qubits"):
        run_circuit(CircuitJob(circuit), AerBackend())


def test_a_statevector_of_too_many_qubits_is_refused():
    circuit = parse_circuit("json", {"num_qubits": 14, "gates": []})
    with pytest.raises(CircuitError, match="statevector: 16384 amplitudes are too many to return; at most 12"):
        run_circuit(CircuitJob(circuit, statevector=True), AerBackend())
