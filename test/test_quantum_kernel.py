"""The diagonal-QAOA kernel and what the bridge does with it.

The kernel against qiskit-aer (same transpiled circuit), its exact objective and sampling; the bridge's
learned estimates, deadlines that hold, warm starts, no overflow.
"""

import math
import re

import numpy as np
import pytest

from qai_quantum_bridge import diagonal
from qai_quantum_bridge.backends import AerBackend, DiagonalBackend, aer_threads
from qai_quantum_bridge.bridge import QuantumBridge, SolveRequest, seconds_text
from qai_quantum_bridge.diagonal import DiagonalQaoa, Layout, energies_over_bits
from qai_quantum_bridge.problems import AssignmentProblem, QuboProblem, RouteProblem
from qai_quantum_bridge.profiles import load_profiles
from qai_quantum_bridge.qaoa import QaoaSettings, QaoaSolver
from qai_quantum_bridge.qubo import Encoding

PROFILES = load_profiles()


def random_qubo(n, seed):
    rng = np.random.default_rng(seed)
    return QuboProblem(n, rng.normal(size=n), {(i, j): float(rng.normal()) for i in range(n)
                                               for j in range(i + 1, n) if rng.random() < 0.4})


ENCODINGS = {
    "qubo 3": lambda: random_qubo(3, 1), "qubo 8": lambda: random_qubo(8, 2), "qubo 13": lambda: random_qubo(13, 3),
    "qubo 17": lambda: random_qubo(17, 4),  # beyond the low block: a strided group pass
    "route 4 (9 qubits)": lambda: RouteProblem(points=np.random.default_rng(5).uniform(0, 30, (4, 2))),
    "route 5 (16 qubits)": lambda: RouteProblem(points=np.random.default_rng(6).uniform(0, 30, (5, 3))),
    "assignment 6x2 (12 qubits)": lambda: AssignmentProblem(np.random.default_rng(7).uniform(1, 9, (6, 2)), [4, 4]),
    "assignment 4x3 (16 qubits)": lambda: AssignmentProblem(np.random.default_rng(8).uniform(1, 9, (4, 3)),
                                                            [2, 2, 1]),
}


def aer_probabilities(encoding, scale, angles):
    """Aer statevector of the QAOA circuit, transpiled as the Aer backend transpiles it."""
    from qiskit.circuit.library import qaoa_ansatz

    operator, _ = encoding.ising()
    backend = AerBackend(seed=1)
    circuit = backend._pass_manager(encoding.num_qubits).run(qaoa_ansatz((operator / scale).simplify(), reps=2))
    bound = circuit.assign_parameters(angles)
    bound.save_statevector()
    state = np.asarray(backend.simulator.run(bound).result().get_statevector())
    return np.abs(state) ** 2


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_kernel_probabilities_match_aer_statevector_to_1e_10(name):
    encoding = Encoding(ENCODINGS[name]())
    operator, _ = encoding.ising()
    scale = float(np.max(np.abs(operator.coeffs)))
    form = encoding.form
    compiled = DiagonalQaoa(form.linear, form.quadratic, form.constant, scale, 2, compiled=True)
    plain = DiagonalQaoa(form.linear, form.quadratic, form.constant, scale, 2, compiled=False)
    for angles in np.random.default_rng(len(name)).uniform(-1.5, 1.5, (2, 4)):
        expected = aer_probabilities(encoding, scale, angles)
        assert np.abs(compiled.probabilities(angles) - expected).max() < 1e-10
        assert np.abs(plain.probabilities(angles) - expected).max() < 1e-10


def test_every_pass_kind_is_exercised_at_small_sizes(monkeypatch):
    """Shrunk blocks: a 12-qubit state cut into a 6-bit block and two 3-bit strided groups."""
    monkeypatch.setattr(diagonal, "LOW_BITS_MAX", 6)
    monkeypatch.setattr(diagonal, "GROUP_BITS_MAX", 3)
    form = Encoding(random_qubo(12, 9)).form
    kernel = DiagonalQaoa(form.linear, form.quadratic, form.constant, 2.0, 2, compiled=True)
    assert kernel.layout.groups == ((6, 3), (9, 3)) and len(kernel.layout.passes) == 9
    angles = [0.3, -0.7, 0.9, 0.2]
    assert np.abs(kernel.probabilities(angles) - diagonal.numpy_probabilities(kernel, angles)).max() < 1e-12


def test_single_precision_is_said_and_close():
    form = Encoding(random_qubo(16, 10)).form
    double = DiagonalQaoa(form.linear, form.quadratic, form.constant, 3.0, 2)
    single = DiagonalQaoa(form.linear, form.quadratic, form.constant, 3.0, 2, precision="single")
    angles = [0.4, 0.1, 0.5, 0.8]
    assert single.state_bytes == double.state_bytes // 2
    assert np.abs(single.probabilities(angles) - double.probabilities(angles)).max() < 1e-6
    result = QuantumBridge(PROFILES).solve(random_qubo(12, 10), SolveRequest(preference="quantum", precision="single",
                                                                             seed=1, deadline=60))
    assert result.solver == "qaoa" and result.metadata["precision"] == "single"


def test_energies_by_doubling_are_the_qubo_energies():
    form = Encoding(random_qubo(10, 11)).form
    bits = ((np.arange(1 << 10)[:, None] >> np.arange(10)) & 1)
    assert np.allclose(energies_over_bits(form.linear, form.quadratic, form.constant), form.energies(bits))
    kernel = DiagonalQaoa(form.linear, form.quadratic, form.constant, 1.0, 1)
    assert np.allclose(kernel.energies(), form.energies(bits))


@pytest.mark.parametrize("compiled", [True, False])
def test_the_objective_is_exact_from_the_probabilities(compiled):
    form = Encoding(random_qubo(14, 12)).form
    kernel = DiagonalQaoa(form.linear, form.quadratic, form.constant, 2.0, 2, compiled=compiled)
    angles = [0.5, 0.2, 0.3, 0.9]
    probabilities, energies = kernel.probabilities(angles), kernel.energies()
    mean, _, figures = kernel.evaluate(angles, 16, np.random.default_rng(0), None)
    assert mean == pytest.approx(float(probabilities @ energies), rel=1e-9)
    value, _, _ = kernel.evaluate(angles, 16, np.random.default_rng(0), 0.25)
    order = np.argsort(energies)
    mass = np.cumsum(probabilities[order])
    taken = np.minimum(probabilities[order], np.maximum(0.25 - (mass - probabilities[order]), 0))
    exact = float(taken @ energies[order] / 0.25)
    assert value == pytest.approx(exact, abs=(energies.max() - energies.min()) / diagonal.HISTOGRAM_BINS)
    assert figures["norm"] == pytest.approx(1.0, abs=1e-9)


def test_samples_are_drawn_from_the_probabilities():
    form = Encoding(random_qubo(4, 13)).form
    kernel = DiagonalQaoa(form.linear, form.quadratic, form.constant, 1.0, 2)
    angles = [0.6, 0.3, 0.4, 0.7]
    _, samples, _ = kernel.evaluate(angles, 40000, np.random.default_rng(1), 0.5)
    frequencies = np.zeros(16)
    for outcome, count in samples.items():
        frequencies[outcome] = count / 40000
    assert np.abs(frequencies - kernel.probabilities(angles)).max() < 0.02


def test_the_layout_plans_five_passes_for_p2_at_25_qubits():
    layout = Layout.of(25, 2)
    assert layout.low_bits == 15 and layout.groups == ((15, 10),) and len(layout.passes) == 5


def test_the_best_feasible_scan_agrees_with_decoding_each_state():
    for problem in (RouteProblem(points=np.random.default_rng(0).random((4, 2)), return_to_start=True),
                    AssignmentProblem(np.random.default_rng(1).random((4, 3)), [2, 2, 1])):
        encoding = Encoding(problem)
        bits = ((np.arange(1 << encoding.num_qubits)[:, None] >> np.arange(encoding.num_qubits)) & 1).astype(np.int8)
        feasible, costs = encoding.feasible_costs(bits)
        for i in range(len(bits)):
            solution = encoding.decode(bits[i].tolist())
            assert solution.feasible == feasible[i]
            if solution.feasible:
                assert solution.cost == pytest.approx(costs[i])


def test_the_estimate_learns_the_kernels_rate_from_its_runs():
    bridge = QuantumBridge(PROFILES)
    request = SolveRequest(preference="quantum", seed=1, deadline=120)
    before = {key: list(values) for key, values in bridge.costs.figures.items()}
    result = bridge.solve(random_qubo(14, 14), request)
    assert result.solver == "qaoa" and result.metadata["kernel"] in ("numba", "numpy")
    assert bridge.costs.runs == 1 and bridge.costs.figures != before
    assert result.metadata["estimated_seconds"] > 0


def test_estimates_never_overflow_and_say_sizes_in_words():
    bridge = QuantumBridge(PROFILES)
    for qubits in (20, 361, 1024, 10 ** 6):
        for backend in ("statevector_diagonal", "aer_statevector", "aer_density_matrix"):
            estimate = bridge.estimate_seconds(qubits, SolveRequest(backend=backend))
            assert estimate > 0 and not math.isnan(estimate)
    assert seconds_text(1e300) == "more than 10^6 s" and seconds_text(math.inf) == "more than 10^6 s"


@pytest.mark.parametrize("waypoints", [20, 33, 40])
def test_large_routes_fall_back_with_a_short_reason_instead_of_overflowing(waypoints):
    points = np.random.default_rng(waypoints).uniform(0, 100, (waypoints, 2))
    for preference in ("auto", "quantum"):
        request = SolveRequest(preference=preference, deadline=5.0)
        result = QuantumBridge(PROFILES).solve(RouteProblem(points=points), request)
        assert result.solver == "two_opt" and sorted(result.solution.route) == list(range(waypoints))
        reason = result.fallback_reason or result.message
        assert "qubits" in reason and not re.search(r"\d{13}", reason), reason


def test_a_forced_quantum_route_keeps_its_deadline():
    """Keep the deadline of a forced quantum route: every stage counts.

    A 16-qubit route with a 2 s deadline ends near it, with QAOA's answer or the classical one (measured
    outside the project before: 10 s deadlines ended at 10.5-13 s).
    """
    problem = RouteProblem(points=np.random.default_rng(3).uniform(0, 40, (5, 3)))
    for backend in ("statevector_diagonal", "aer_statevector"):
        result = QuantumBridge(PROFILES).solve(problem, SolveRequest(preference="quantum", backend=backend,
                                                                     deadline=2.0, seed=1))
        assert result.total_time < 2.0 + 1.5, (backend, result.total_time, result.metadata)
        assert result.solution.cost == pytest.approx(result.reference_cost)


def test_the_next_run_of_the_same_kind_and_size_starts_from_the_last_angles():
    bridge = QuantumBridge(PROFILES)
    request = SolveRequest(preference="quantum", seed=2, deadline=60)
    first = bridge.solve(random_qubo(8, 15), request)
    second = bridge.solve(random_qubo(8, 16), request)
    assert first.metadata["warm_start"] is False and second.metadata["warm_start"] is True


def test_a_technology_profile_takes_aer_even_when_the_kernel_is_the_default():
    result = QuantumBridge(PROFILES).solve(AssignmentProblem([[1, 5], [5, 1], [2, 3]], [2, 2]), SolveRequest(
        preference="quantum", profile="trapped_ion", seed=1, deadline=120, maxiter=10))
    assert result.backend == "aer_statevector" and result.metadata["two_qubit_gates"] >= 0


def test_aer_runs_one_thread_below_twenty_qubits():
    assert aer_threads(16) == 1 and aer_threads(24) == 0


def test_the_kernel_backend_refuses_what_memory_cannot_hold():
    from qai_quantum_bridge.backends import BackendUnavailable

    with pytest.raises(BackendUnavailable, match=r"40 qubits need .* enough for \d+ qubits"):
        QaoaSolver(Encoding(QuboProblem(40, np.ones(40))), DiagonalBackend(), QaoaSettings())
