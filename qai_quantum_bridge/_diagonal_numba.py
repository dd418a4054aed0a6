"""numba kernels of the diagonal-QAOA backend (qai_quantum_bridge.diagonal says what they compute).

Imported only when the compiled kernel is used; compiled at first call and cached on disk (next to this
file, or numba's user cache directory when that is not writable). No rclpy import.

The Walsh-Hadamard stages run on the real and the imaginary part separately; the lowest three bits as
8-point transforms held in registers, the others two at a time (radix 4) with the innermost loop over
contiguous amplitudes so that it vectorises (measured: 0.6 ns an amplitude for 10 stages, against 2.8
scalar).
"""

import numpy as np
from numba import njit, prange

OPTIONS = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False)


@njit(inline="always", **OPTIONS)
def _radix8(a, j, h):
    h2 = 2 * h
    h3 = 3 * h
    h4 = 4 * h
    x0 = a[j]
    x1 = a[j + h]
    x2 = a[j + h2]
    x3 = a[j + h3]
    x4 = a[j + h4]
    x5 = a[j + h4 + h]
    x6 = a[j + h4 + h2]
    x7 = a[j + h4 + h3]
    y0 = x0 + x1
    y1 = x0 - x1
    y2 = x2 + x3
    y3 = x2 - x3
    y4 = x4 + x5
    y5 = x4 - x5
    y6 = x6 + x7
    y7 = x6 - x7
    z0 = y0 + y2
    z2 = y0 - y2
    z1 = y1 + y3
    z3 = y1 - y3
    z4 = y4 + y6
    z6 = y4 - y6
    z5 = y5 + y7
    z7 = y5 - y7
    a[j] = z0 + z4
    a[j + h4] = z0 - z4
    a[j + h] = z1 + z5
    a[j + h4 + h] = z1 - z5
    a[j + h2] = z2 + z6
    a[j + h4 + h2] = z2 - z6
    a[j + h3] = z3 + z7
    a[j + h4 + h3] = z3 - z7


@njit(**OPTIONS)
def wht_bits(a, lo, hi):
    """Unnormalised Walsh-Hadamard transform over index bits lo..hi-1 of `a` (2^hi long, contiguous).

    Radix 4 over views: the innermost loop reads and writes four disjoint runs of h contiguous values,
    which LLVM vectorises (radix 8 needs more runtime alias checks than it makes, and runs scalar).
    """
    size = a.shape[0]
    bit = lo
    while bit + 2 <= hi:
        h = 1 << bit
        for i in range(0, size, 4 * h):
            x0 = a[i:i + h]
            x1 = a[i + h:i + 2 * h]
            x2 = a[i + 2 * h:i + 3 * h]
            x3 = a[i + 3 * h:i + 4 * h]
            for j in range(h):
                p0 = x0[j]
                p1 = x1[j]
                p2 = x2[j]
                p3 = x3[j]
                y0 = p0 + p1
                y1 = p0 - p1
                y2 = p2 + p3
                y3 = p2 - p3
                x0[j] = y0 + y2
                x2[j] = y0 - y2
                x1[j] = y1 + y3
                x3[j] = y1 - y3
        bit += 2
    if bit < hi:
        h = 1 << bit
        for i in range(0, size, 2 * h):
            x = a[i:i + h]
            y = a[i + h:i + 2 * h]
            for j in range(h):
                p = x[j]
                q = y[j]
                x[j] = p + q
                y[j] = p - q


@njit(**OPTIONS)
def wht(a, bits):
    """Apply the full transform to a contiguous block of 2^bits.

    The lowest three bits as 8-point transforms of neighbours, the rest with a contiguous innermost loop.
    """
    if bits >= 3:
        for i in range(0, a.shape[0], 8):
            _radix8(a, i, 1)
        wht_bits(a, 3, bits)
    else:
        wht_bits(a, 0, bits)


@njit(inline="always", **OPTIONS)
def popcount(value, table):
    count = 0
    while value:
        count += table[value & 0xFFFF]
        value >>= 16
    return count


@njit(parallel=True, **OPTIONS)
def low_pass(re, im, low, codes, threads, amplitude, pl_re, pl_im, ph_re, ph_im, w_re, w_im, d_re, d_im, table):
    size = 1 << low
    blocks = re.shape[0] >> low
    chunks = min(blocks, 4 * threads)
    for chunk in prange(chunks):
        t_re = np.empty(size, dtype=np.float64)
        t_im = np.empty(size, dtype=np.float64)
        for block in range(chunk * blocks // chunks, (chunk + 1) * blocks // chunks):
            start = block << low
            r = re[start:start + size]
            m = im[start:start + size]
            for c in range(codes.shape[0]):
                code = codes[c, 0]
                layer = codes[c, 1]
                if code == 0:  # OP_INIT
                    r[:] = amplitude
                    m[:] = 0.0
                elif code == 1:  # OP_H
                    wht(r, low)
                    wht(m, low)
                elif code == 2:  # OP_PHASE: exp(-i g E), built by doubling within the block
                    t_re[0] = ph_re[layer, block]
                    t_im[0] = ph_im[layer, block]
                    h = 1
                    for bit in range(low):
                        wr = w_re[layer, block, bit]
                        wi = w_im[layer, block, bit]
                        low_re = t_re[:h]  # views: the loop reads one half and writes the other, vectorised
                        low_im = t_im[:h]
                        high_re = t_re[h:2 * h]
                        high_im = t_im[h:2 * h]
                        for j in range(h):
                            high_re[j] = low_re[j] * wr - low_im[j] * wi
                            high_im[j] = low_re[j] * wi + low_im[j] * wr
                        h *= 2
                    lr = pl_re[layer]
                    li = pl_im[layer]
                    for j in range(size):  # two loops of few arrays each: both vectorise
                        pr = t_re[j] * lr[j] - t_im[j] * li[j]
                        t_im[j] = t_re[j] * li[j] + t_im[j] * lr[j]
                        t_re[j] = pr
                    for j in range(size):
                        a = r[j]
                        b = m[j]
                        r[j] = a * t_re[j] - b * t_im[j]
                        m[j] = a * t_im[j] + b * t_re[j]
                elif code == 3:  # OP_MIXER: exp(-i beta (n - 2 popcount)) / 2^n
                    base = popcount(block, table)
                    for j in range(size):
                        k = base + table[j]
                        a = r[j]
                        b = m[j]
                        r[j] = a * d_re[layer, k] - b * d_im[layer, k]
                        m[j] = a * d_im[layer, k] + b * d_re[layer, k]


@njit(parallel=True, **OPTIONS)
def group_pass(re, im, n, first, bits, column_bits, codes, threads, d_re, d_im, table):
    rows = 1 << bits
    columns = 1 << column_bits
    column_chunks = (1 << first) // columns
    outer = 1 << (n - first - bits)
    tiles = column_chunks * outer
    chunks = min(tiles, 4 * threads)
    for chunk in prange(chunks):
        t_re = np.empty(rows * columns, dtype=re.dtype)
        t_im = np.empty(rows * columns, dtype=re.dtype)
        for tile in range(chunk * tiles // chunks, (chunk + 1) * tiles // chunks):
            base = ((tile // column_chunks) << (first + bits)) | ((tile % column_chunks) * columns)
            for row in range(rows):  # slice copies: vectorised moves (an index loop ran 3x slower)
                source = base + (row << first)
                t_re[row * columns:(row + 1) * columns] = re[source:source + columns]
                t_im[row * columns:(row + 1) * columns] = im[source:source + columns]
            for op in range(codes.shape[0]):
                if codes[op, 0] == 1:  # OP_H over this group's bits: the tile's rows
                    wht_bits(t_re, column_bits, column_bits + bits)
                    wht_bits(t_im, column_bits, column_bits + bits)
                else:  # OP_MIXER
                    layer = codes[op, 1]
                    for row in range(rows):
                        base_count = popcount(base + (row << first), table)
                        for c in range(columns):
                            k = base_count + table[c]
                            x = row * columns + c
                            a = t_re[x]
                            b = t_im[x]
                            t_re[x] = a * d_re[layer, k] - b * d_im[layer, k]
                            t_im[x] = a * d_im[layer, k] + b * d_re[layer, k]
            for row in range(rows):
                target = base + (row << first)
                re[target:target + columns] = t_re[row * columns:(row + 1) * columns]
                im[target:target + columns] = t_im[row * columns:(row + 1) * columns]


@njit(parallel=True, **OPTIONS)
def final_pass(re, im, threads, low, sub_bits, e_lo, e_hi, u, lowest, inverse, bins):
    size = 1 << low
    sub = 1 << sub_bits
    blocks = re.shape[0] >> low
    chunks = min(blocks, 4 * threads)
    block_mass = np.zeros(re.shape[0] >> sub_bits)  # per sampling block of 2^sub_bits amplitudes
    histograms = np.zeros((chunks, 2, bins))
    weighted = np.zeros(chunks)
    for chunk in prange(chunks):
        energies = np.empty(size)
        probabilities = np.empty(size)
        masses = np.zeros(bins)
        sums = np.zeros(bins)
        for block in range(chunk * blocks // chunks, (chunk + 1) * blocks // chunks):
            start = block << low
            r = re[start:start + size]
            m = im[start:start + size]
            energies[0] = e_hi[block]
            h = 1
            for bit in range(low):
                below = energies[:h]
                above = energies[h:2 * h]
                step = u[block, bit]
                for j in range(h):
                    above[j] = below[j] + step
                h *= 2
            for j in range(size):  # vectorised; the reductions and the histogram follow
                a = np.float64(r[j])
                b = np.float64(m[j])
                probabilities[j] = a * a + b * b
                energies[j] += e_lo[j]
            total = 0.0
            for first in range(0, size, sub):
                mass = 0.0
                for j in range(first, first + sub):
                    p = probabilities[j]
                    energy = energies[j]
                    mass += p
                    total += p * energy
                    k = min(max(int((energy - lowest) * inverse), 0), bins - 1)
                    masses[k] += p
                    sums[k] += p * energy
                block_mass[(start + first) >> sub_bits] = mass
            weighted[chunk] += total
        histograms[chunk, 0] = masses
        histograms[chunk, 1] = sums
    return block_mass, histograms.sum(axis=0), weighted.sum()


@njit(parallel=True, **OPTIONS)
def energy_range(e_lo, e_hi, u, low):
    size = 1 << low
    blocks = e_hi.shape[0]
    lowest = np.full(blocks, np.inf)
    highest = np.full(blocks, -np.inf)
    for block in prange(blocks):
        energies = np.empty(size)
        energies[0] = e_hi[block]
        h = 1
        for bit in range(low):
            for j in range(h):
                energies[h + j] = energies[j] + u[block, bit]
            h *= 2
        for j in range(size):
            energy = energies[j] + e_lo[j]
            lowest[block] = min(lowest[block], energy)
            highest[block] = max(highest[block], energy)
    return np.array([lowest.min(), highest.max()])


@njit(**OPTIONS)
def sample_within(re, im, sub_bits, blocks, offsets):
    """Return the outcome of each sample: `blocks` (sorted) and the mass `offsets` left within each block."""
    size = 1 << sub_bits
    outcomes = np.empty(blocks.shape[0], dtype=np.int64)
    i = 0
    while i < blocks.shape[0]:
        block = blocks[i]
        start = block << sub_bits
        accumulated = 0.0
        j = 0
        while i < blocks.shape[0] and blocks[i] == block:  # offsets rise within a block: one scan serves all
            target = offsets[i]
            while j < size - 1:
                a = np.float64(re[start + j])
                b = np.float64(im[start + j])
                p = a * a + b * b
                if accumulated + p > target:
                    break
                accumulated += p
                j += 1
            outcomes[i] = start + j
            i += 1
    return outcomes
