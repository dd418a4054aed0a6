"""Circuit jobs: OpenQASM 2/3 text, a JSON gate list or a QuantumCircuit run to counts. No rclpy import.

On request also the statevector and expectation values, with timings and metadata.

Every bound is checked before anything is built (CircuitLimits): the text's size, the qubits and bits
the source declares (read from the QASM declarations or the JSON's num_qubits before a QuantumCircuit
exists), the gate count (a QASM gate definition counted expanded, loops by their length); circuits that
would not fit in the backend's memory are refused before it allocates. QASM may include only the
standard qelib1.inc (OpenQASM 2) or stdgates.inc (OpenQASM 3): no file is ever read. Error messages show
values shortened.

JSON gate list: {"num_qubits": 2, "gates": [{"type": "H", "qubits": [0]},
                                            {"type": "RX", "qubits": [1], "params": [0.5]},
                                            {"type": "CX", "qubits": [0, 1]}]}
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from qai_edge.text import shorten
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
GATE_NAMES = {method for method, _, _ in GATES.values()} | {
    "u1", "u2", "u3", "cu1", "cu3", "rccx", "rc3x", "c3x", "c3sqrtx", "c4x", "id", "u0", "sxdg", "cs", "csdg",
    "crx", "cry", "crz", "cu", "ecr", "iswap", "dcx", "ryy", "rzx", "r"}


STANDARD_INCLUDES = {"qasm2": "qelib1.inc", "qasm3": "stdgates.inc"}
MESSAGE_WIDTH = 200  # characters of a parser's message kept in an error


class CircuitError(ValueError):
    """A circuit that cannot run: the message says where and why."""


@dataclass(frozen=True)
class CircuitLimits:
    """Bounds on a circuit job (the quantum bridge's max_circuit_* parameters)."""

    max_qubits: int = 64
    max_gates: int = 100_000
    max_text: int = 1 << 20  # characters of QASM, or of a JSON gate list given as text


def declared_qubits(circuit_format: str, source: Any, limits: CircuitLimits = CircuitLimits()) -> int:
    """Return the qubits a source declares, read before anything is parsed or built.

    Refuses (CircuitError) a source beyond the limits: too long, too many qubits or bits, a non-standard
    include.
    """
    if circuit_format == "json":
        if isinstance(source, str):
            _check_length(source, limits)
            try:
                source = json.loads(source)
            except ValueError as error:
                raise CircuitError(f"circuit: not valid JSON ({shorten(str(error), MESSAGE_WIDTH)})") from None
        if not isinstance(source, dict):
            raise CircuitError("circuit: expected {\"num_qubits\": n, \"gates\": [...]}")
        n = source.get("num_qubits")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise CircuitError(f"circuit.num_qubits: expected a positive integer, got {shorten(n)}")
        if n > limits.max_qubits:
            raise CircuitError(f"circuit.num_qubits: {shorten(n)} is more than the limit of {limits.max_qubits} "
                               f"qubits (max_circuit_qubits)")
        gates = source.get("gates")
        if isinstance(gates, list) and len(gates) > limits.max_gates:
            raise CircuitError(f"circuit.gates: {len(gates)} gates are more than the limit of {limits.max_gates} "
                               f"(max_circuit_gates)")
        return n
    if circuit_format not in STANDARD_INCLUDES:
        raise CircuitError(f"format: expected one of {', '.join(FORMATS)}, got {shorten(circuit_format)}")
    text = _text(source)
    _check_length(text, limits)
    _check_includes(circuit_format, text)
    qubits, bits = _declared_registers(circuit_format, text, limits)
    if qubits > limits.max_qubits:
        raise CircuitError(f"circuit: declares {qubits} qubits, more than the limit of {limits.max_qubits} "
                           f"(max_circuit_qubits)")
    if bits > 2 * limits.max_qubits:
        raise CircuitError(f"circuit: declares {bits} classical bits, more than the limit of "
                           f"{2 * limits.max_qubits} (twice max_circuit_qubits)")
    statements = text.count(";")
    if statements > 2 * limits.max_gates + 1000:
        raise CircuitError(f"circuit: {statements} statements, more than the gate limit of {limits.max_gates} "
                           f"allows (max_circuit_gates)")
    return qubits


def _check_length(text: str, limits: CircuitLimits) -> None:
    if len(text) > limits.max_text:
        raise CircuitError(f"circuit: {len(text)} characters, more than the limit of {limits.max_text} "
                           f"(max_circuit_text)")


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def _check_includes(circuit_format: str, text: str) -> None:
    """Allow only the standard include: nothing else is read, so no local file's content can come back."""
    allowed = STANDARD_INCLUDES[circuit_format]
    code = _COMMENTS.sub(" ", text)
    for match in re.finditer(r"\binclude\b", code):
        name = re.match(r'\s*"([^"\n]*)"\s*;', code[match.end():])
        if name is None or name.group(1) != allowed:
            shown = name.group(1) if name else code[match.start():match.start() + 40]
            raise CircuitError(f"circuit: include {shorten(shown, 60)} is not allowed; only \"{allowed}\" "
                               f"(no file is read)")


_REGISTER = {
    "qasm2": re.compile(r"\b(qreg|creg)\s+[A-Za-z_][\w]*\s*\[\s*([^\]]*)\]"),
    "qasm3": re.compile(r"\b(qubit|bit|qreg|creg)\s*(?:\[\s*([^\]]*)\]\s*)?[A-Za-z_][\w]*\s*(?:;|=|\[)"),
}


def _declared_registers(circuit_format: str, text: str, limits: CircuitLimits) -> tuple[int, int]:
    code = _COMMENTS.sub(" ", text)
    qubits = bits = 0
    for match in _REGISTER[circuit_format].finditer(code):
        kind, size = match.group(1), match.group(2)
        if circuit_format == "qasm3" and kind in ("qreg", "creg"):
            size = size or "1"
        if size is None:
            count = 1  # OpenQASM 3 scalar: `qubit q;`
        else:
            size = size.strip()
            if not size.isdigit():
                raise CircuitError(f"circuit: register size {shorten(size, 40)} must be an integer literal")
            count = int(size) if len(size) <= 9 else 10 ** 9  # a huge literal is simply over the limit
        if kind in ("qreg", "qubit"):
            qubits += count
        else:
            bits += count
        if qubits > limits.max_qubits or bits > 2 * limits.max_qubits:
            break
    return qubits, bits


def check_gates(circuit, limits: CircuitLimits = CircuitLimits()) -> int:
    """Return the operation count with gate definitions expanded and loops counted by their length.

    CircuitError beyond max_gates: an exponentially nested definition is refused before it is unrolled.
    """
    memo: dict[str, int] = {}  # by gate name: a definition's size does not depend on its parameters

    def size(instructions, budget: int) -> int:
        total = 0
        for instruction in instructions:
            operation = instruction.operation
            name = operation.name
            if name == "while_loop":
                raise CircuitError("circuit: while loops are not accepted (their length is unknown)")
            if name == "for_loop":
                indexset, _, body = operation.params
                total += len(indexset) * size(body.data, budget - total)
            elif hasattr(operation, "blocks") and operation.blocks:
                total += sum(size(block.data, budget - total) for block in operation.blocks)
            elif name in memo:
                total += memo[name]
            elif name not in GATE_NAMES and getattr(operation, "definition", None) is not None:
                memo[name] = size(operation.definition.data, budget - total)
                total += memo[name]
            else:
                total += 1
            if total > budget:
                raise CircuitError(f"circuit: more than {limits.max_gates} gates (max_circuit_gates) once its "
                                   f"gate definitions and loops are expanded")
        return total

    return size(circuit.data, limits.max_gates)


def parse_circuit(circuit_format: str, source: Any, limits: CircuitLimits = CircuitLimits()):
    """Build a QuantumCircuit from OpenQASM 2/3 text or a JSON gate list (dict or JSON text), within limits."""
    declared_qubits(circuit_format, source, limits)
    if circuit_format == "qasm2":
        from qiskit import qasm2

        try:
            circuit = qasm2.loads(source, include_path=(), custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        except qasm2.QASM2ParseError as error:
            raise CircuitError(f"circuit (OpenQASM 2): {_message(error)}") from None
    elif circuit_format == "qasm3":
        import contextlib
        import io

        from qiskit import qasm3

        parser_output = io.StringIO()  # the ANTLR parser prints its syntax errors instead of raising them
        try:
            with contextlib.redirect_stderr(parser_output):
                circuit = qasm3.loads(source)
        except Exception as error:  # the importer raises several types, all meaning "does not parse"
            raise CircuitError(f"circuit (OpenQASM 3): {type(error).__name__}: "
                               f"{_message(error, parser_output.getvalue())}") from None
    else:
        circuit = circuit_from_gates(source, limits)
    check_gates(circuit, limits)
    return circuit


def _message(error: BaseException, printed: str = "") -> str:
    """Return a parser's message, shortened and never empty (OpenQASM 3 syntax errors are printed instead)."""
    text = str(error).strip()
    if text in ("", "None"):
        text = " ".join(printed.split())
        if not text:
            text = ("the source does not parse (check the OPENQASM version line, the include, and that every "
                    "gate and register is declared)")
    return text if len(text) <= MESSAGE_WIDTH else f"{text[:MESSAGE_WIDTH]}... ({len(text)} characters)"


def _text(source: Any) -> str:
    if not isinstance(source, str):
        raise CircuitError(f"circuit: expected OpenQASM text, got {type(source).__name__}")
    return source


def circuit_from_gates(source: Any, limits: CircuitLimits = CircuitLimits()):
    from qiskit import QuantumCircuit

    n = declared_qubits("json", source, limits)  # before QuantumCircuit(n) allocates anything
    if isinstance(source, str):
        source = json.loads(source)
    gates = source.get("gates")
    if not isinstance(gates, list):
        raise CircuitError("circuit.gates: expected a list of gates")
    measures = any(isinstance(g, dict) and str(g.get("type", "")).upper() == "MEASURE" for g in gates)
    circuit = QuantumCircuit(n, n) if measures else QuantumCircuit(n)
    for index, gate in enumerate(gates):
        where = f"circuit.gates[{index}]"
        if not isinstance(gate, dict):
            raise CircuitError(f"{where}: expected {{\"type\": ..., \"qubits\": [...]}}")
        kind = gate.get("type", "")
        name = kind.upper() if isinstance(kind, str) else ""
        if name not in GATES:
            raise CircuitError(f"{where}.type: unknown gate {shorten(kind, 40)} (known: {', '.join(sorted(GATES))})")
        method, arity, num_params = GATES[name]
        qubits = gate.get("qubits", [])
        if (not isinstance(qubits, list) or len(qubits) > max(arity, n)
                or not all(isinstance(q, int) and not isinstance(q, bool) for q in qubits)):
            raise CircuitError(f"{where}.qubits: expected a list of at most {max(arity, n)} qubit indices")
        if arity > 0 and len(qubits) != arity:
            raise CircuitError(f"{where}.qubits: {name} acts on {arity} qubit(s), got {len(qubits)}")
        for q in qubits:
            if not 0 <= q < n:
                raise CircuitError(f"{where}.qubits: qubit {q} is out of range for {n} qubits")
        if len(set(qubits)) != len(qubits):
            raise CircuitError(f"{where}.qubits: a qubit appears twice")
        params = gate.get("params", [])
        if not isinstance(params, list) or len(params) != num_params:
            raise CircuitError(f"{where}.params: {name} takes {num_params} parameter(s), got {shorten(params, 60)}")
        for p in params:
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
                raise CircuitError(f"{where}.params: {shorten(p, 40)} is not a finite number")
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


def run_circuit(job: CircuitJob, backend, max_shots: int = 1_000_000) -> CircuitResult:
    """Run on an AerBackend (ideal or with a profile's noise) or a QpuBackend (counts only)."""
    from qiskit.quantum_info import SparsePauliOp

    began = time.perf_counter()
    circuit = job.circuit
    n = circuit.num_qubits
    if not 1 <= job.shots <= max_shots:
        raise CircuitError(f"shots: must be between 1 and {max_shots} (max_shots), got {shorten(job.shots)}")
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
    """Return the exact final state: a Statevector when ideal, a DensityMatrix with the profile's noise."""
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


__all__ = ["BackendUnavailable", "CircuitError", "CircuitJob", "CircuitLimits", "CircuitResult", "FORMATS",
           "check_gates", "circuit_from_gates", "declared_qubits", "parse_circuit", "run_circuit"]
