"""Circuit jobs: run a circuit given as OpenQASM 2 or 3 text, as a JSON gate list, or as a qiskit
QuantumCircuit; return counts, and on request the statevector and expectation values, with timings and
metadata. Circuits that would not fit in memory are refused before anything is allocated. No rclpy import.

JSON gate list: {"num_qubits": 2, "gates": [{"type": "H", "qubits": [0]},
                                            {"type": "RX", "qubits": [1], "params": [0.5]},
                                            {"type": "CX", "qubits": [0, 1]}]}
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from qai_quantum_bridge.backends import BackendUnavailable, check_fits

STATEVECTOR_MAX_QUBITS = 12  # 4096 amplitudes: more is no answer for a message
# name: (method of QuantumCircuit, qubits, parameters)
GATES: dict[str, tuple[str, int, int]] = {
    "I": ("id", 1, 0), "H": ("h", 1, 0), "X": ("x", 1, 0), "Y": ("y", 1, 0), "Z": ("z", 1, 0),
    "S": ("s", 1, 0), "SDG": ("sdg", 1, 0), "T": ("t", 1, 0), "TDG": ("tdg", 1, 0), "SX": ("sx", 1, 0),
    "RX": ("rx", 1, 1), "RY": ("ry", 1, 1), "RZ": ("rz", 1, 1), "P": ("p", 1, 1), "U": ("u", 1, 3),
    "CX": ("cx", 2, 0), "CNOT": ("cx", 2, 0), "CY": ("cy", 2, 0), "CZ": ("cz", 2, 0), "SWAP": ("swap", 2, 0),
    "CH": ("ch", 2, 0), "CP": ("cp", 2, 1), "CRX": ("crx", 2, 1), "CRY": ("cry", 2, 1), "CRZ": ("crz", 2, 1),
    "RXX": ("rxx", 2, 1), "RYY": ("ryy", 2, 1), "RZZ": ("rzz", 2, 1), "CCX": ("ccx", 3, 0),
    "TOFFOLI": ("ccx", 3, 0), "CSWAP": ("cswap", 3, 0), "MEASURE": ("measure", 1, 0), "RESET": ("reset", 1, 0),
    "BARRIER": ("barrier", -1, 0),
}
FORMATS = ("qasm2", "qasm3", "json")


class CircuitError(ValueError):
    """A circuit that cannot run: the message says where and why."""


def parse_circuit(circuit_format: str, source: Any):
    """A QuantumCircuit from OpenQASM 2/3 text or a JSON gate list (a dict, or its JSON text)."""
    if circuit_format == "qasm2":
        from qiskit import qasm2

        try:
            return qasm2.loads(_text(source), custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        except qasm2.QASM2ParseError as error:
            raise CircuitError(f"circuit (OpenQASM 2): {error}") from None
    if circuit_format == "qasm3":
        from qiskit import qasm3

        try:
            return qasm3.loads(_text(source))
        except Exception as error:  # the importer raises several types, all meaning "does not parse"
            raise CircuitError(f"circuit (OpenQASM 3): {type(error).__name__}: {error}") from None
    if circuit_format == "json":
        return circuit_from_gates(source)
    raise CircuitError(f"format: expected one of {', '.join(FORMATS)}, got {circuit_format!r}")


def _text(source: Any) -> str:
    if not isinstance(source, str):
        raise CircuitError(f"circuit: expected OpenQASM text, got {type(source).__name__}")
    return source


def circuit_from_gates(source: Any):
    from qiskit import QuantumCircuit

    if isinstance(source, str):
        import json

        try:
            source = json.loads(source)
        except ValueError as error:
            raise CircuitError(f"circuit: not valid JSON ({error})") from None
    if not isinstance(source, dict):
        raise CircuitError("circuit: expected {\"num_qubits\": n, \"gates\": [...]}")
    n = source.get("num_qubits")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CircuitError(f"circuit.num_qubits: expected a positive integer, got {n!r}")
    gates = source.get("gates")
    if not isinstance(gates, list):
        raise CircuitError("circuit.gates: expected a list of gates")
    measures = any(isinstance(g, dict) and str(g.get("type", "")).upper() == "MEASURE" for g in gates)
    circuit = QuantumCircuit(n, n) if measures else QuantumCircuit(n)
    for index, gate in enumerate(gates):
        where = f"circuit.gates[{index}]"
        if not isinstance(gate, dict):
            raise CircuitError(f"{where}: expected {{\"type\": ..., \"qubits\": [...]}}")
        name = str(gate.get("type", "")).upper()
        if name not in GATES:
            raise CircuitError(f"{where}.type: unknown gate {gate.get('type')!r} (known: {', '.join(sorted(GATES))})")
        method, arity, num_params = GATES[name]
        qubits = gate.get("qubits", [])
        if not isinstance(qubits, list) or not all(isinstance(q, int) and not isinstance(q, bool) for q in qubits):
            raise CircuitError(f"{where}.qubits: expected a list of qubit indices")
        if arity > 0 and len(qubits) != arity:
            raise CircuitError(f"{where}.qubits: {name} acts on {arity} qubit(s), got {len(qubits)}")
        for q in qubits:
            if not 0 <= q < n:
                raise CircuitError(f"{where}.qubits: qubit {q} is out of range for {n} qubits")
        if len(set(qubits)) != len(qubits):
            raise CircuitError(f"{where}.qubits: a qubit appears twice")
        params = gate.get("params", [])
        if not isinstance(params, list) or len(params) != num_params:
            raise CircuitError(f"{where}.params: {name} takes {num_params} parameter(s), got {params!r}")
        for p in params:
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
                raise CircuitError(f"{where}.params: {p!r} is not a finite number")
        if method == "measure":
            circuit.measure(qubits[0], qubits[0])
        elif method == "barrier":
            circuit.barrier(*(qubits or range(n)))
        else:
            getattr(circuit, method)(*params, *qubits)
    return circuit


@dataclass(frozen=True)
class CircuitJob:
    circuit: Any  # QuantumCircuit
    shots: int = 1024
    statevector: bool = False
    observables: Sequence[str] = ()  # Pauli labels, qubit 0 rightmost (qiskit's order), e.g. "ZZI"
    seed: int | None = None


@dataclass
class CircuitResult:
    counts: dict[str, int]
    statevector: list[list[float]] | None = None  # [re, im] per amplitude, qubit 0 least significant
    expectation_values: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_observables(labels: Sequence[str], n: int) -> None:
    for i, label in enumerate(labels):
        if len(label) != n or set(label) - set("IXYZ"):
            raise CircuitError(f"observables[{i}]: {label!r} must be {n} letters of I, X, Y, Z (qubit 0 rightmost)")


def run_circuit(job: CircuitJob, backend) -> CircuitResult:
    """Run on an AerBackend (ideal or with a profile's noise) or a QpuBackend (counts only)."""
    from qiskit.quantum_info import SparsePauliOp

    began = time.perf_counter()
    circuit = job.circuit
    n = circuit.num_qubits
    if not 1 <= job.shots <= 1_000_000:
        raise CircuitError(f"shots: must be between 1 and 1000000, got {job.shots}")
    _check_observables(job.observables, n)
    if job.statevector and n > STATEVECTOR_MAX_QUBITS:
        raise CircuitError(f"statevector: {2 ** n} amplitudes are too many to return; at most "
                           f"{STATEVECTOR_MAX_QUBITS} qubits")
    if job.statevector or job.observables:
        if getattr(backend, "name", "") == "qpu":
            raise CircuitError("statevector and observables need a simulator backend, not a QPU")
        check_fits("statevector", n)
    measured = circuit if circuit.count_ops().get("measure") else _measure_all(circuit)
    compiled = backend.compile(measured)  # refuses (BackendUnavailable) what would not fit in memory
    compiled_at = time.perf_counter()
    counts = backend.run(compiled, None, job.shots)[0]
    ran_at = time.perf_counter()
    width = measured.num_clbits
    result = CircuitResult(counts={format(k, f"0{width}b"): int(v) for k, v in sorted(counts.items())})
    if job.statevector or job.observables:
        state = _final_state(circuit, backend)
        if job.statevector:
            vector = np.asarray(state.data if hasattr(state, "data") else state)
            result.statevector = [[float(a.real), float(a.imag)] for a in vector]
        for label in job.observables:
            result.expectation_values[label] = float(np.real(state.expectation_value(SparsePauliOp(label))))
    result.timings = {"compile": compiled_at - began, "run": ran_at - compiled_at,
                      "total": time.perf_counter() - began}
    result.metadata = {**compiled.metadata(), "shots": job.shots, "backend": getattr(backend, "name", ""),
                       "technology_profile": getattr(getattr(backend, "profile", None), "name", "")}
    return result


def _measure_all(circuit):
    measured = circuit.copy()
    measured.measure_all(add_bits=True)
    return measured


def _final_state(circuit, backend):
    """The exact final state: a Statevector when ideal, a DensityMatrix with the profile's noise."""
    from qiskit.quantum_info import DensityMatrix, Statevector

    unitary_part = circuit.remove_final_measurements(inplace=False)
    if getattr(backend, "profile", None) is None:
        try:
            return Statevector(unitary_part)
        except Exception as error:
            raise CircuitError(f"statevector: the circuit is not unitary ({error})") from None
    from qiskit_aer import AerSimulator

    simulator = AerSimulator(method="density_matrix", noise_model=backend.profile.noise_model())
    compiled = backend.compile(unitary_part).circuit
    # Only the physical qubits that hold the logical ones (in logical order); Aer drops the idle rest.
    layout = compiled.layout.final_index_layout(filter_ancillas=True) if compiled.layout else list(range(
        circuit.num_qubits))
    used = {compiled.find_bit(q).index for instruction in compiled.data for q in instruction.qubits} | set(layout)
    check_fits("density_matrix", len(used))
    compiled.save_density_matrix(qubits=layout)
    data = simulator.run(compiled, shots=1).result().data(0)["density_matrix"]
    return DensityMatrix(data)


__all__ = ["BackendUnavailable", "CircuitError", "CircuitJob", "CircuitResult", "FORMATS", "parse_circuit",
           "run_circuit", "circuit_from_gates"]
