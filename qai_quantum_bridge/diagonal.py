"""The diagonal-QAOA statevector kernel (backend `statevector_diagonal`). No rclpy import.

QAOA on a QUBO needs no general simulator: the cost layer exp(-i gamma H_C) is diagonal, and the mixer
prod_q RX(2 beta) equals H^n D_beta H^n with H^n the Walsh-Hadamard transform and D_beta a diagonal that
depends only on the popcount of the basis index. One evaluation is therefore a few passes over the state:

- the state is kept as two arrays (real and imaginary parts), so every butterfly is plain SIMD arithmetic;
- the index is split into a low block of up to LOW_BITS_MAX bits (contiguous, cache resident) and the
  remaining bits in groups of up to GROUP_BITS_MAX; each pass does as many of the operations as touch
  only its own bits (the cost phase, the low block's transform; a group's transform and the mixer's
  diagonal), so p = 2 at 25 qubits is 5 passes over the state;
- the cost phase is never a sine per amplitude: within a block the energy is e_hi + e_lo + u(hi).x(lo),
  so the phase is built by doubling from a few exponentials per block (products of at most
  LOW_BITS_MAX unit complex numbers: ~1e-15 error);
- the final pass yields the exact expectation value, an energy histogram (CVaR from the probabilities:
  no sampling noise; the boundary bin counts at its mean energy, an error below 1/HISTOGRAM_BINS of the
  energy range) and per-block masses from which `shots` samples are drawn.

The compiled kernel is numba's (parallel over blocks, cached on disk, so a process pays its compile
once per installation). `numpy_probabilities` is the same algebra written plainly: the reference the
tests compare with, and the path used while numba compiles or where it is missing.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

LOW_BITS_MAX = 15  # 2^15 amplitudes (512 KiB as two float64 arrays): one block, in L2
GROUP_BITS_MAX = 10  # a strided group's tile: 2^10 rows x 32 columns x 2 arrays x 8 B = 512 KiB
COLUMN_BITS = 5  # 32 contiguous amplitudes a tile row holds (four 64-byte lines per array: prefetched)
HISTOGRAM_BINS = 1 << 12  # 64 KiB of histogram per thread: stays in L2
SAMPLE_BITS = 10  # shots are drawn by blocks of 2^10 amplitudes: a shot reads at most one such block
COMPILED_MIN_QUBITS = 12  # below this the plain numpy algebra is as fast (no block structure to exploit)

# Pass operations (code, layer).
OP_INIT, OP_H, OP_PHASE, OP_MIXER, OP_FINAL = range(5)


def energies_over_bits(linear: np.ndarray, quadratic: np.ndarray, constant: float = 0.0) -> np.ndarray:
    """Return the energy c + l.x + x'Qx (Q upper triangular) of every x in {0,1}^k (index bit i = x_i)."""
    k = len(linear)
    energies = np.full(1, float(constant))
    for bit in range(k):
        # Adding bit `bit` adds l_bit + sum_{j<bit} Q[j, bit] x_j: a linear function of the lower bits.
        coupling = np.zeros(1)
        for j in range(bit):
            coupling = np.concatenate([coupling, coupling + quadratic[j, bit]])
        energies = np.concatenate([energies, energies + linear[bit] + coupling])
    return energies


def bit_matrix(count: int, width: int) -> np.ndarray:
    """Return rows 0..count-1 as bits (column i is bit i), float64."""
    index = np.arange(count, dtype=np.int64)
    return ((index[:, None] >> np.arange(width)) & 1).astype(np.float64)


def popcounts(count: int) -> np.ndarray:
    index = np.arange(count, dtype=np.int64)
    total = np.zeros(count, dtype=np.int64)
    while index.any():
        total += index & 1
        index >>= 1
    return total


@dataclass(frozen=True)
class Layout:
    """How a state of n qubits is cut into the low block and strided groups.

    `passes` lists one evaluation's passes as (group, ops): group 0 is the low block, g >= 1 the bits
    groups[g - 1].
    """

    num_qubits: int
    low_bits: int
    groups: tuple[tuple[int, int], ...]  # (first bit, bit count) of each strided group
    passes: tuple[tuple[int, tuple[tuple[int, int], ...]], ...]

    @classmethod
    def of(cls, num_qubits: int, reps: int) -> "Layout":
        low = min(num_qubits, LOW_BITS_MAX)
        rest = num_qubits - low
        count = math.ceil(rest / GROUP_BITS_MAX) if rest else 0
        groups, first = [], low
        for g in range(count):
            size = rest // count + (1 if g < rest % count else 0)
            groups.append((first, size))
            first += size
        m = len(groups)
        sequence: list[tuple[int | None, tuple[int, int]]] = [(0, (OP_INIT, 0))]
        for layer in range(reps):
            sequence += [(0, (OP_PHASE, layer)), (0, (OP_H, 0))]
            sequence += [(g, (OP_H, g)) for g in range(1, m + 1)]
            sequence += [(None, (OP_MIXER, layer))]
            sequence += [(g, (OP_H, g)) for g in range(m, 0, -1)] + [(0, (OP_H, 0))]
        sequence += [(0, (OP_FINAL, 0))]
        passes: list[list] = []
        for group, op in sequence:
            if passes and (group is None or passes[-1][0] == group):
                passes[-1][1].append(op)
            else:
                passes.append([m if group is None else group, [op]])
        return cls(num_qubits, low, tuple(groups), tuple((g, tuple(ops)) for g, ops in passes))


class DiagonalQaoa:
    """One problem's QAOA: the cost split for the kernel once, then any number of evaluations.

    `linear`, `quadratic` (upper triangular), `constant`: the QUBO in the problem's units (energies and
    the objective are reported in them); the circuit's cost Hamiltonian is that QUBO's Ising form divided
    by `scale`, as QaoaSolver builds it (a constant only shifts the global phase). Angles are ordered as
    qiskit's qaoa_ansatz orders its parameters: betas, then gammas.
    """

    def __init__(self, linear: Sequence[float], quadratic: np.ndarray, constant: float, scale: float, reps: int,
                 precision: str = "double", compiled: bool | None = None):
        if precision not in ("double", "single"):
            raise ValueError(f"precision: expected double or single, got {precision!r}")
        self.linear = np.asarray(linear, dtype=np.float64)
        self.n = n = len(self.linear)
        self.quadratic = np.triu(np.asarray(quadratic, dtype=np.float64).reshape(n, n), 1)
        self.constant = float(constant)
        self.scale = float(scale) if scale else 1.0
        self.reps = reps
        self.precision = precision
        self.dtype = np.float64 if precision == "double" else np.float32
        self.layout = Layout.of(n, reps)
        low = self.layout.low_bits
        # E(hi, lo) = e_hi[hi] + e_lo[lo] + u[hi] . x(lo)
        self.e_lo = energies_over_bits(self.linear[:low], self.quadratic[:low, :low])
        self.e_hi = energies_over_bits(self.linear[low:], self.quadratic[low:, low:], self.constant)
        self.u = bit_matrix(len(self.e_hi), n - low) @ self.quadratic[:low, low:].T  # (2^hi, low)
        self.u = np.ascontiguousarray(self.u.reshape(len(self.e_hi), low))
        self._energy_range: tuple[float, float] | None = None
        self._buffers: tuple[np.ndarray, np.ndarray] | None = None
        self.compiled = (n >= COMPILED_MIN_QUBITS) if compiled is None else compiled

    @property
    def state_bytes(self) -> int:
        return 2 * np.dtype(self.dtype).itemsize << self.n

    # -- Parameters of one evaluation -------------------------------------------------------------

    def _angles(self, parameters: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(parameters, dtype=np.float64)
        if values.shape != (2 * self.reps,):
            raise ValueError(f"parameters: expected {2 * self.reps} angles (betas, then gammas), got {values.shape}")
        return values[:self.reps], values[self.reps:] / self.scale

    def _tables(self, parameters: Sequence[float]):
        """Return the per-layer tables as (real, imaginary) float arrays.

        The low block's phases, each block's phase and cross factors, the mixer's diagonal; cos and sin of
        real arguments (no complex temporaries).
        """
        betas, gammas = self._angles(parameters)
        shift_lo, shift_hi = self.e_lo[0], self.e_hi[0]  # global phases: keep the arguments small
        tables = []
        for values in (np.multiply.outer(gammas, self.e_lo - shift_lo), np.multiply.outer(gammas, self.e_hi - shift_hi),
                       np.multiply.outer(gammas, self.u)):
            tables += [np.cos(values), -np.sin(values)]
        counts = np.arange(self.n + 1)
        mixer = np.multiply.outer(betas, self.n - 2 * counts)
        scale = 1.0 / float(1 << self.n)
        tables += [np.cos(mixer) * scale, -np.sin(mixer) * scale]
        return tuple(np.ascontiguousarray(table) for table in tables)

    # -- Evaluation -------------------------------------------------------------------------------

    def probabilities(self, parameters: Sequence[float]) -> np.ndarray:
        """Return the final state's probabilities, qubit i = bit i of the index (qiskit's order)."""
        if not self.compiled:
            return numpy_probabilities(self, parameters)
        re, im = self._run(parameters)
        return re.astype(np.float64) ** 2 + im.astype(np.float64) ** 2

    def release(self) -> None:
        """Free the state buffers (the next evaluation allocates them again)."""
        self._buffers = None

    def evaluate(self, parameters: Sequence[float], shots: int, rng: np.random.Generator,
                 cvar_alpha: float | None) -> tuple[float, dict[int, int], dict]:
        """Return (objective, samples {outcome: count}, figures) of one evaluation.

        The objective is the exact expectation value of the energy (cvar_alpha None) or the CVaR over the
        best `cvar_alpha` of the probability mass.
        """
        low = self.layout.low_bits
        sub_bits = min(low, SAMPLE_BITS)
        if self.compiled:
            re, im = self._run(parameters)
            block_mass, histogram, expectation = self._final_statistics(re, im, sub_bits)
        else:
            probabilities = numpy_probabilities(self, parameters)
            block_mass = probabilities.reshape(-1, 1 << sub_bits).sum(axis=1)
            energies = self.energies()
            expectation = float(probabilities @ energies)
            histogram = self._histogram(energies, probabilities)
        total = float(block_mass.sum())
        objective = expectation / total if cvar_alpha is None else cvar(histogram, cvar_alpha * total) / (
            cvar_alpha * total)
        blocks, offsets = _choose_blocks(block_mass, shots, rng)
        if self.compiled:
            outcomes = _compiled_kernels()["sample_within"](re, im, sub_bits, blocks, offsets)
        else:
            unique, group = np.unique(blocks, return_inverse=True)
            within = np.cumsum(probabilities.reshape(-1, 1 << sub_bits)[unique], axis=1)
            positions = np.empty(len(blocks), dtype=np.int64)
            for g in range(len(unique)):
                rows = np.nonzero(group == g)[0]
                positions[rows] = np.searchsorted(within[g], offsets[rows], side="right")
            outcomes = (blocks << sub_bits) + np.minimum(positions, (1 << sub_bits) - 1)
        values, counts = np.unique(outcomes, return_counts=True)
        samples = dict(zip(values.tolist(), counts.tolist()))
        return float(objective), samples, {"norm": total, "expectation": expectation / total}

    def energies(self) -> np.ndarray:
        """Return the QUBO energy of every basis state (2^n values: for tests and small sizes)."""
        low = self.layout.low_bits
        x_lo = bit_matrix(1 << low, low)
        return (self.e_hi[:, None] + self.e_lo[None, :] + self.u @ x_lo.T).reshape(-1)

    def energy_range(self) -> tuple[float, float]:
        if self._energy_range is None:
            if self.compiled:
                low = _compiled_kernels()["energy_range"](self.e_lo, self.e_hi, self.u, self.layout.low_bits)
                self._energy_range = (float(low[0]), float(low[1]))
            else:
                energies = self.energies()
                self._energy_range = (float(energies.min()), float(energies.max()))
        return self._energy_range

    def _histogram_scale(self) -> tuple[float, float]:
        lowest, highest = self.energy_range()
        width = (highest - lowest) or 1.0
        return lowest, (HISTOGRAM_BINS - 1) / width

    def _histogram(self, energies: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        lowest, inverse = self._histogram_scale()
        bins = np.minimum(((energies - lowest) * inverse).astype(np.int64), HISTOGRAM_BINS - 1)
        return np.stack([np.bincount(bins, probabilities, HISTOGRAM_BINS),
                         np.bincount(bins, probabilities * energies, HISTOGRAM_BINS)])

    def _run(self, parameters: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        kernels = _compiled_kernels()
        tables = self._tables(parameters)
        if self._buffers is None:  # kept across evaluations: a fresh 2^n array costs its page faults each time
            self._buffers = (huge_page_array(1 << self.n, self.dtype), huge_page_array(1 << self.n, self.dtype))
        re, im = self._buffers
        low = self.layout.low_bits
        amplitude = 1.0 / math.sqrt(float(1 << self.n))
        threads = _threads(self.n)
        for group, ops in self.layout.passes:
            codes = np.asarray([op for op in ops if op[0] != OP_FINAL], dtype=np.int64).reshape(-1, 2)
            if not len(codes):
                continue
            if group == 0:
                kernels["low_pass"](re, im, low, codes, threads, amplitude, *tables, _POPCOUNT16)
            else:
                first, bits = self.layout.groups[group - 1]
                kernels["group_pass"](re, im, self.n, first, bits, COLUMN_BITS, codes, threads, tables[6], tables[7],
                                      _POPCOUNT16)
        return re, im

    def _final_statistics(self, re, im, sub_bits):
        lowest, inverse = self._histogram_scale()
        block_mass, histogram, weighted = _compiled_kernels()["final_pass"](
            re, im, _threads(self.n), self.layout.low_bits, sub_bits, self.e_lo, self.e_hi, self.u, lowest, inverse,
            HISTOGRAM_BINS)
        return block_mass, histogram, float(weighted)


def cvar(histogram: np.ndarray, mass: float) -> float:
    """Return the sum of p * E over the lowest-energy `mass` of the distribution (boundary bin at its mean)."""
    masses, weighted = histogram
    cumulative = np.cumsum(masses)
    boundary = int(np.searchsorted(cumulative, mass))
    if boundary >= len(masses):
        return float(weighted.sum())
    below = float(cumulative[boundary - 1]) if boundary else 0.0
    partial = mass - below
    mean = weighted[boundary] / masses[boundary] if masses[boundary] > 0 else 0.0
    return float(weighted[:boundary].sum() + partial * mean)


def _choose_blocks(block_mass: np.ndarray, shots: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw `shots` sampling blocks by their mass: (sorted blocks, the mass left within each)."""
    cumulative = np.cumsum(block_mass)
    targets = np.sort(rng.random(shots)) * cumulative[-1]
    blocks = np.minimum(np.searchsorted(cumulative, targets, side="right"), len(block_mass) - 1)
    offsets = targets - np.where(blocks > 0, cumulative[blocks - 1], 0.0)
    return blocks.astype(np.int64), offsets


HUGE_PAGE = 2 << 20


def huge_page_array(count: int, dtype) -> np.ndarray:
    """Return an uninitialised array on transparent huge pages where the kernel grants them (madvise).

    The strided passes read one 64-byte line from each of thousands of rows 64 KiB apart: on 4 KiB
    pages every row is a TLB miss (measured: the bare gather/scatter of a pass cost 11-28 ns an
    amplitude); on 2 MiB pages a tile's rows share a few hundred entries.
    """
    dtype = np.dtype(dtype)
    nbytes = count * dtype.itemsize
    if nbytes < HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty(count, dtype=dtype)
    region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = np.frombuffer(region, dtype=np.uint8)
    offset = (-raw.ctypes.data) % HUGE_PAGE
    try:
        region.madvise(mmap.MADV_HUGEPAGE, offset, nbytes - nbytes % HUGE_PAGE)
    except OSError:
        pass  # no THP here: the array still works, on small pages
    return raw[offset:offset + nbytes].view(dtype)


_POPCOUNT16 = popcounts(1 << 16).astype(np.uint8)


# -- The plain numpy algebra (reference and small sizes) ---------------------------------------

def fwht(state: np.ndarray) -> np.ndarray:
    """Apply the unnormalised Walsh-Hadamard transform along the last axis (2^n long) in place."""
    size = state.shape[-1]
    h = 1
    while h < size:
        view = state.reshape(*state.shape[:-1], -1, 2, h)
        a = view[..., 0, :].copy()
        view[..., 0, :] += view[..., 1, :]
        view[..., 1, :] = a - view[..., 1, :]
        h *= 2
    return state


def numpy_probabilities(kernel: DiagonalQaoa, parameters: Sequence[float]) -> np.ndarray:
    betas, gammas = kernel._angles(parameters)
    energies = kernel.energies()
    energies = energies - energies[0]
    n = kernel.n
    counts = popcounts(1 << n)
    state = np.full(1 << n, 1.0 / math.sqrt(float(1 << n)), dtype=np.complex128)
    for beta, gamma in zip(betas, gammas):
        state *= np.exp(-1j * gamma * energies)
        fwht(state)
        state *= np.exp(-1j * beta * (n - 2 * counts)) / float(1 << n)
        fwht(state)
    return state.real ** 2 + state.imag ** 2


# -- numba kernels (compiled on first use, cached on disk) ------------------------------------

_KERNELS: dict | None = None
_WARM = threading.Event()
_KERNELS_LOCK = threading.Lock()
COMPILE_SECONDS: dict[str, float] = {}


def compiled_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _compiled_kernels() -> dict:
    """Return the numba kernels (compiled, or loaded from numba's on-disk cache, at their first call)."""
    global _KERNELS
    if _KERNELS is None:
        with _KERNELS_LOCK:
            if _KERNELS is None:
                from qai_quantum_bridge import _diagonal_numba as compiled

                _KERNELS = {"low_pass": compiled.low_pass, "group_pass": compiled.group_pass,
                            "final_pass": compiled.final_pass, "energy_range": compiled.energy_range,
                            "sample_within": compiled.sample_within}
    return _KERNELS


def kernels_ready() -> bool:
    """Say whether warm_up finished (the first compiled evaluation will not pay for a compile)."""
    return _WARM.is_set()


def warm_up() -> float:
    """Compile or load every kernel specialisation now; return the seconds it took.

    A node calls this at start, beside its executor; the time is also kept in COMPILE_SECONDS.
    """
    began = time.perf_counter()
    for precision in ("double", "single"):
        # 15 qubits: a low block and one strided group, so every kernel is compiled.
        kernel = DiagonalQaoa(np.linspace(-1, 1, 15), np.triu(np.ones((15, 15)), 1), 0.0, 1.0, 1, precision,
                              compiled=True)
        kernel.evaluate([0.1, 0.2], 4, np.random.default_rng(0), 0.5)
    COMPILE_SECONDS.setdefault("warm_up", time.perf_counter() - began)
    _WARM.set()
    return time.perf_counter() - began


def _threads(num_qubits: int) -> int:
    """Set (for this thread) and return the numba threads the kernel uses at this size."""
    import numba

    numba.set_num_threads(max(1, min(threads_for(num_qubits), numba.config.NUMBA_NUM_THREADS)))
    return numba.get_num_threads()


def threads_for(num_qubits: int) -> int:
    """Return the threads worth using: one below 22 qubits (more only contend with the ROS stack)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if num_qubits < 22 else max(1, cores)
