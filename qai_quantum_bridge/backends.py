"""Where QAOA and circuits run. No rclpy import.

- statevector_diagonal: the diagonal-QAOA kernel (qai_quantum_bridge.diagonal), noiseless QAOA only;
- qiskit-aer simulators (statevector, matrix product state, density matrix; ideal or with a technology
  profile's noise), for circuits, noise and everything the kernel does not do;
- IBM Quantum QPUs through qiskit-ibm-runtime (or, offline, its fake backends with their noise models,
  through the same code path).

An Aer or QPU backend compiles a parametric circuit once (a pass manager built once per backend) and then
runs it for many parameter sets in one job, so no evaluation pays for a transpile. Memory is checked
before anything is allocated, against the least of MemAvailable, the cgroup's memory limit and the
process's address-space limit (RLIMIT_AS).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from qai_quantum_bridge.profiles import TWO_QUBIT_GATES, TechnologyProfile

AER_METHODS = {"aer_statevector": "statevector", "aer_mps": "matrix_product_state",
               "aer_density_matrix": "density_matrix"}
DIAGONAL = "statevector_diagonal"
AER_SINGLE_THREAD_BELOW = 20  # qubits: below this one Aer thread beats two on cores shared with the ROS stack


class BackendUnavailable(RuntimeError):
    """The backend cannot run this (no token, unreachable, too large, timed out): the bridge falls back."""


def _capture(fn) -> tuple[bool, object]:
    try:
        return True, fn()
    except Exception as error:
        return False, error


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), or limit - usage (v1); None: no limit."""
    try:
        entries = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for entry in entries:
        parts = entry.split(":", 2)
        if len(parts) != 3:
            continue
        relative = parts[2].lstrip("/")
        if parts[0] == "0" and parts[1] == "":  # v2
            base = Path("/sys/fs/cgroup") / relative
            limit, usage = base / "memory.max", base / "memory.current"
        elif "memory" in parts[1].split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / relative
            limit, usage = base / "memory.limit_in_bytes", base / "memory.usage_in_bytes"
        else:
            continue
        try:
            text = limit.read_text().strip()
            if text == "max" or int(text) >= 1 << 60:
                return None
            return max(0, int(text) - int(usage.read_text().strip()))
        except (OSError, ValueError):
            return None
    return None


def _address_space_headroom() -> int | None:
    """RLIMIT_AS minus the address space already mapped (VmSize); None: unlimited."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return soft


def available_memory() -> int:
    """Return the bytes this process may still allocate.

    The least of MemAvailable, the cgroup's memory headroom and the address-space limit's headroom
    (RLIMIT_AS).
    """
    candidates = [value for value in (_meminfo_available(), _cgroup_headroom(), _address_space_headroom())
                  if value is not None]
    return min(candidates) if candidates else 8 << 30


MAX_SIMULATED_QUBITS = 200  # no method's memory estimate is computed beyond this (2^200 is no answer)


def simulation_bytes(method: str, num_qubits: int, precision: str = "double") -> int:
    """Memory a simulation of `num_qubits` needs (matrix product state: small, bounded by entanglement)."""
    amplitude = 16 if precision == "double" else 8
    num_qubits = min(num_qubits, MAX_SIMULATED_QUBITS)
    if method == "density_matrix":
        return amplitude * 4 ** num_qubits
    if method == "matrix_product_state":
        return (1 << 20) * max(1, num_qubits)
    if method == DIAGONAL:  # the state, and per-block tables (a few percent)
        return amplitude * 2 ** num_qubits * 9 // 8
    return amplitude * 2 ** num_qubits


def max_qubits(method: str, memory: int, precision: str = "double") -> int:
    n = 0
    while simulation_bytes(method, n + 1, precision) * 1.25 <= memory:
        n += 1
        if n >= 64:
            break
    return n


def check_fits(method: str, num_qubits: int, precision: str = "double") -> None:
    """Refuse, before anything is allocated, a simulation that would not fit in memory."""
    need, free = simulation_bytes(method, num_qubits, precision), available_memory()
    if need * 1.25 > free:
        size = f"{need / 2**30:.1f} GiB" if num_qubits < MAX_SIMULATED_QUBITS else f"more than 2^{num_qubits} bytes"
        raise BackendUnavailable(
            f"{num_qubits} qubits need {size} for a {precision}-precision {method} simulation; "
            f"{free / 2**30:.1f} GiB are free, enough for {max_qubits(method, free, precision)} qubits")


@dataclass
class Compiled:
    circuit: object  # transpiled QuantumCircuit
    depth: int
    two_qubit_gates: int
    num_qubits: int  # of the logical circuit

    def metadata(self) -> dict:
        return {"transpiled_depth": self.depth, "two_qubit_gates": self.two_qubit_gates, "qubits": self.num_qubits}


def _stats(circuit, logical_qubits: int) -> Compiled:
    ops = circuit.count_ops()
    return Compiled(circuit, circuit.depth(), int(sum(v for k, v in ops.items() if k in TWO_QUBIT_GATES)),
                    logical_qubits)


class AerBackend:
    def __init__(self, name: str = "aer_statevector", profile: TechnologyProfile | None = None,
                 precision: str = "double", seed: int | None = None):
        from qiskit_aer import AerSimulator

        if name not in AER_METHODS:
            raise ValueError(f"backend: {name!r} is not one of {', '.join(AER_METHODS)}, qpu")
        self.name = name
        self.method = AER_METHODS[name]
        self.profile = profile
        self.precision = precision
        self.seed = seed
        # With noise, let Aer choose: a density matrix for small circuits beats a thousand noisy trajectories.
        options = {"method": "automatic" if profile is not None and name == "aer_statevector" else self.method,
                   "precision": precision}
        if profile is not None:
            options["noise_model"] = profile.noise_model()
        if seed is not None:
            options["seed_simulator"] = seed
        self.simulator = AerSimulator(**options)
        self._pass_managers: dict[int, object] = {}

    def _pass_manager(self, num_qubits: int):
        from qiskit.transpiler import generate_preset_pass_manager

        key = num_qubits if self.profile is not None and self.profile.coupling != "all_to_all" else 0
        if key not in self._pass_managers:
            if self.profile is None:
                pm = generate_preset_pass_manager(optimization_level=1, backend=self.simulator,
                                                  seed_transpiler=self.seed or 0)
            else:
                pm = generate_preset_pass_manager(optimization_level=1, basis_gates=list(self.profile.basis_gates),
                                                  coupling_map=self.profile.coupling_map(num_qubits),
                                                  seed_transpiler=self.seed or 0)
            self._pass_managers[key] = pm
        return self._pass_managers[key]

    def compile(self, circuit) -> Compiled:
        check_fits(self.method, circuit.num_qubits, self.precision)
        return _stats(self._pass_manager(circuit.num_qubits).run(circuit), circuit.num_qubits)

    def run(self, compiled: Compiled, parameter_sets: Sequence[Sequence[float]] | None, shots: int) -> list[dict]:
        """Return counts for each parameter set, keyed by outcome integer (bit i is qubit i's value)."""
        circuit = compiled.circuit
        if circuit.num_parameters:
            binds = {p: [float(ps[i]) for ps in parameter_sets] for i, p in enumerate(circuit.parameters)}
            # Many small circuits: one per core at once (Aer's default runs them one after another).
            options = {"max_parallel_experiments": 0} if len(parameter_sets) > 1 else {}
            options["max_parallel_threads"] = aer_threads(compiled.num_qubits)
            result = self.simulator.run([circuit], parameter_binds=[binds], shots=shots, **options).result()
            count = len(parameter_sets)
        else:
            result = self.simulator.run([circuit], shots=shots,
                                        max_parallel_threads=aer_threads(compiled.num_qubits)).result()
            count = 1
        if not result.success:
            raise RuntimeError(f"{self.name}: {result.status}")
        # Read the raw hexadecimal counts: formatting every key as a bitstring costs more than simulating.
        return [{int(key, 16): value for key, value in result.results[i].data.counts.items()} for i in range(count)]


def aer_threads(num_qubits: int) -> int:
    """Aer's thread count for a circuit of this size: one below AER_SINGLE_THREAD_BELOW qubits, else all (0)."""
    return 1 if num_qubits < AER_SINGLE_THREAD_BELOW else 0


class DiagonalBackend:
    """The diagonal-QAOA kernel as a backend: it prepares a problem's kernel (no circuit, no transpile)."""

    diagonal = True
    profile = None

    def __init__(self, precision: str = "double"):
        self.name = DIAGONAL
        self.precision = precision

    def prepare(self, form, scale: float, reps: int):
        from qai_quantum_bridge.diagonal import COMPILED_MIN_QUBITS, DiagonalQaoa, kernels_ready

        check_fits(DIAGONAL, form.n, self.precision)
        # The compiled kernel once it is warm (a node warms it at start); until then, the numpy algebra.
        compiled = form.n >= COMPILED_MIN_QUBITS and kernels_ready()
        return DiagonalQaoa(form.linear, form.quadratic, form.constant, scale, reps, self.precision, compiled)


class QpuBackend:
    """IBM Quantum through qiskit-ibm-runtime's client-side Sampler.

    executor_sampler: the server-side SamplerV2 is deprecated since 0.50. `fake` names a local fake backend
    of that library (e.g. fake_manila), run through the same code path; otherwise the service is reached
    with a token (QISKIT_IBM_TOKEN, or the file at `token_file`), every call under `timeout` seconds.
    """

    def __init__(self, backend_name: str = "", fake: str = "", channel: str = "ibm_quantum_platform",
                 instance: str = "", token_file: str = "", timeout: float = 30.0, seed: int | None = None):
        self.name = "qpu"
        self.timeout = timeout
        self.seed = seed
        self.profile = None
        self._pass_manager = None
        if fake:
            self.backend = self._fake_backend(fake)
        else:
            token = os.environ.get("QISKIT_IBM_TOKEN", "")
            if not token and token_file:
                try:
                    token = Path(token_file).expanduser().read_text().strip()
                except OSError as error:
                    raise BackendUnavailable(f"qpu_token_file {token_file}: {error.strerror or error}") from None
            if not token:
                raise BackendUnavailable("no IBM Quantum token: set QISKIT_IBM_TOKEN or the qpu_token_file parameter")
            if not backend_name:
                raise BackendUnavailable("no QPU named: set the qpu_backend parameter")
            self.backend = self._call(lambda: self._service(channel, token, instance).backend(backend_name),
                                      f"reaching {backend_name} on {channel}")
        self.backend_name = self.backend.name

    @staticmethod
    def _fake_backend(name: str):
        from qiskit_ibm_runtime import fake_provider

        class_name = "".join(part.capitalize() for part in name.split("_"))
        for candidate in (class_name, class_name + "V2"):
            if hasattr(fake_provider, candidate):
                return getattr(fake_provider, candidate)()
        raise BackendUnavailable(f"qiskit-ibm-runtime has no fake backend {name!r} (e.g. fake_manila, fake_sherbrooke)")

    @staticmethod
    def _service(channel: str, token: str, instance: str):
        from qiskit_ibm_runtime import QiskitRuntimeService

        return QiskitRuntimeService(channel=channel, token=token, instance=instance or None)

    def _call(self, fn, what: str):
        """Run a (possibly remote) call with a deadline: an unreachable service is an error, never a hang.

        The call runs in a daemon thread, so one that never returns cannot hold up the node's exit.
        """
        outcome: list = []
        worker = threading.Thread(target=lambda: outcome.append(_capture(fn)), daemon=True, name="qpu-call")
        worker.start()
        worker.join(self.timeout)
        if not outcome:
            raise BackendUnavailable(f"{what}: no answer within {self.timeout:g} s")
        ok, value = outcome[0]
        if ok:
            return value
        if isinstance(value, BackendUnavailable):
            raise value
        # The service's errors are many; all mean "this path cannot answer".
        raise BackendUnavailable(f"{what}: {type(value).__name__}: {value}") from None

    def compile(self, circuit) -> Compiled:
        from qiskit.transpiler import generate_preset_pass_manager

        if circuit.num_qubits > self.backend.num_qubits:
            raise BackendUnavailable(f"{circuit.num_qubits} qubits do not fit on {self.backend_name} "
                                     f"({self.backend.num_qubits} qubits)")
        if self._pass_manager is None:
            self._pass_manager = generate_preset_pass_manager(optimization_level=1, backend=self.backend,
                                                              seed_transpiler=self.seed or 0)
        return _stats(self._pass_manager.run(circuit), circuit.num_qubits)

    def run(self, compiled: Compiled, parameter_sets, shots: int) -> list[dict]:
        from qiskit_ibm_runtime.executor_sampler import Sampler

        def job():
            sampler = Sampler(mode=self.backend)
            if self.seed is not None:
                sampler.options.simulator.seed_simulator = self.seed  # fake backends (local simulation)
            values = np.asarray(parameter_sets, dtype=float) if compiled.circuit.num_parameters else None
            pub = (compiled.circuit, values) if values is not None else (compiled.circuit,)
            data = sampler.run([pub], shots=shots).result()[0].data  # _call bounds the wait
            register = next(iter(data.keys()))
            counts = getattr(data, register)
            return ([counts.get_int_counts(i) for i in range(len(values))] if values is not None
                    else [counts.get_int_counts()])

        return self._call(job, f"running on {self.backend_name}")
