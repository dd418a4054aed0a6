"""Qubit technology profiles (config/quantum_profiles.yaml): coupling, native gates, noise. No rclpy import.

Used to transpile circuits and simulate them on qiskit-aer with that technology's errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from qai_edge.paths import share_file

_KEYS = {"description", "coupling", "basis_gates", "error_1q", "error_2q", "readout_error", "t1_us", "t2_us",
         "gate_time_1q_ns", "gate_time_2q_ns"}
TWO_QUBIT_GATES = {"cx", "cz", "ecr", "rxx", "rzz", "ryy", "swap", "iswap", "ms"}


@dataclass(frozen=True)
class TechnologyProfile:
    name: str
    description: str
    coupling: str  # heavy_hex or all_to_all
    basis_gates: tuple[str, ...]
    error_1q: float
    error_2q: float
    readout_error: float
    t1_us: float
    t2_us: float
    gate_time_1q_ns: float
    gate_time_2q_ns: float

    def coupling_map(self, num_qubits: int):
        """None for all-to-all; else the smallest heavy-hex lattice with at least num_qubits qubits."""
        from qiskit.transpiler import CouplingMap

        if self.coupling == "all_to_all":
            return None
        distance = 3
        while (5 * distance * distance - 2 * distance - 1) // 2 < num_qubits:
            distance += 2
        return CouplingMap.from_heavy_hex(distance)

    def noise_model(self):
        from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error, thermal_relaxation_error

        model = NoiseModel(basis_gates=list(self.basis_gates))
        t1, t2 = self.t1_us * 1e3, min(self.t2_us, 2 * self.t1_us) * 1e3  # ns; physical: T2 <= 2 T1
        one = [g for g in self.basis_gates if g not in TWO_QUBIT_GATES and g != "rz"]  # rz is virtual
        two = [g for g in self.basis_gates if g in TWO_QUBIT_GATES]
        relax_1q = thermal_relaxation_error(t1, t2, self.gate_time_1q_ns)
        relax_2q = thermal_relaxation_error(t1, t2, self.gate_time_2q_ns)
        if one:
            model.add_all_qubit_quantum_error(depolarizing_error(self.error_1q, 1).compose(relax_1q), one)
        if two:
            model.add_all_qubit_quantum_error(depolarizing_error(self.error_2q, 2).compose(relax_2q.expand(relax_2q)),
                                              two)
        p = self.readout_error
        model.add_all_qubit_readout_error(ReadoutError([[1 - p, p], [p, 1 - p]]))
        return model


def load_profiles(path: str | Path | None = None) -> dict[str, TechnologyProfile]:
    path = Path(path) if path else share_file("config", "quantum_profiles.yaml")
    document = yaml.safe_load(path.read_text()) or {}
    profiles = {}
    for name, entry in (document.get("profiles") or {}).items():
        unknown = set(entry) - _KEYS
        missing = _KEYS - set(entry) - {"description"}
        if unknown or missing:
            problems = ([f"unknown keys {sorted(unknown)}"] if unknown else []) + (
                [f"missing {sorted(missing)}"] if missing else [])
            raise ValueError(f"{path}: profiles.{name}: " + "; ".join(problems))
        if entry["coupling"] not in ("heavy_hex", "all_to_all"):
            raise ValueError(f"{path}: profiles.{name}.coupling: expected heavy_hex or all_to_all")
        profiles[name] = TechnologyProfile(name=name, description=entry.get("description", ""),
                                           coupling=entry["coupling"], basis_gates=tuple(entry["basis_gates"]),
                                           **{k: float(entry[k]) for k in _KEYS - {"description", "coupling",
                                                                                   "basis_gates"}})
    return profiles
