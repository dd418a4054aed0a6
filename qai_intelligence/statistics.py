"""Intervals for the intelligence engine's held-out comparisons. No rclpy import, no torch.

- `paired_difference`: the mean of per-unit differences (model minus baseline, one unit = one flight or one
  course run, the independent draws) with a percentile bootstrap 95 % interval, resampling units;
- `mean_interval`: a mean with the same bootstrap interval;
- `wilson`: a proportion (completion, recall, precision) with its Wilson score 95 % interval;
- `poisson_upper`: the one-sided 95 % upper bound of an event rate (false alarms an hour) from a count over
  an exposure, exact (the Poisson distribution's, found by bisection).
Resampling is seeded: the same inputs give the same intervals.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 %
BOOTSTRAP = 10_000


def mean_interval(values: Sequence[float], resamples: int = BOOTSTRAP, seed: int = 0) -> dict[str, float]:
    """Return {mean, low, high, n}: the mean and its percentile bootstrap 95 % interval (NaN when empty)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(x.mean()), "low": float(low), "high": float(high), "n": int(len(x))}


def paired_difference(model: Sequence[float], baseline: Sequence[float], resamples: int = BOOTSTRAP,
                      seed: int = 0) -> dict[str, float]:
    """Return the mean of model - baseline over units where both are finite, with its bootstrap 95 % interval.

    `excludes_zero` says whether the interval lies wholly on one side of 0 (the difference is real at 95 %).
    """
    a, b = np.asarray(model, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired: {a.shape} values against {b.shape}")
    both = np.isfinite(a) & np.isfinite(b)
    result = mean_interval(a[both] - b[both], resamples, seed)
    result["excludes_zero"] = bool(result["n"] and (result["low"] > 0 or result["high"] < 0))
    return result


def wilson(successes: int, n: int) -> dict[str, float]:
    """Return {share, low, high, successes, n}: a proportion with its Wilson score 95 % interval."""
    if not 0 <= successes <= n:
        raise ValueError(f"wilson: {successes} successes of {n}")
    if n == 0:
        return {"share": math.nan, "low": math.nan, "high": math.nan, "successes": 0, "n": 0}
    p = successes / n
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / (1 + Z95 ** 2 / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return {"share": p, "low": low, "high": high, "successes": successes, "n": n}


def _poisson_cdf(count: int, mean: float) -> float:
    term = total = math.exp(-mean)
    for k in range(1, count + 1):
        term *= mean / k
        total += term
    return total


def poisson_upper(count: int, exposure: float) -> float:
    """Return the one-sided 95 % upper bound of a rate seen `count` times over `exposure` (e.g. hours)."""
    if count < 0 or not exposure > 0:
        raise ValueError(f"poisson_upper: {count} events over {exposure}")
    low, high = 0.0, count + 10.0 + 10.0 * math.sqrt(count + 1)
    for _ in range(200):  # P(X <= count | mean) = 0.05, decreasing in the mean
        middle = (low + high) / 2
        if _poisson_cdf(count, middle) > 0.05:
            low = middle
        else:
            high = middle
    return high / exposure
