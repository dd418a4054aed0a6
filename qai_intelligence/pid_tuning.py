"""The I/O engine's PID with its gains tuned by CMA-ES on the training conditions: the bar a learned policy must beat.

`qai-train pid` runs `tune_pid` and writes the gains the I/O engine ships with (qai_io/pid_gains.json, read by
qai_io.parameters as the `pid_*` parameters' defaults). No rclpy import.

The PID flies its own path (qai_intelligence.policy.ExternalPathEnv, controller "pid") on random motion tasks in
the training weather, scored by the same episode cost the learned policy is trained on (time against the nominal
time, cross-track error, a penalty for not finishing). CMA-ES (the `cma` library) searches the gains in a box
scaled to [0, 1], starting at the hand-set defaults; every candidate of a generation flies the same fresh
episodes (common random numbers), so a generation ranks gains, not luck. At the end the search's mean and the
defaults fly the same validation episodes (never used by the search): the tuned gains are kept only when the
paired difference's 95 % interval lies below zero; otherwise the defaults stay and the result says so.
"""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from qai_intelligence import data as datagen
from qai_intelligence.statistics import paired_difference
from qai_intelligence.training import NoProgress, Progress
from qai_io.motion import PositionController

with warnings.catch_warnings():  # cma warns that matplotlib (for its plots) is missing
    warnings.simplefilter("ignore")
    import cma

# The gains searched, with the box they are searched in. max_climb_rate stops at the vehicle's own limit.
BOUNDS: dict[str, tuple[float, float]] = {
    "kp": (0.3, 4.0),
    "ki": (0.0, 2.0),
    "deceleration": (0.5, 4.0),
    "wind_filter_time": (0.2, 5.0),
    "integral_zone": (0.5, 5.0),
    "integral_limit": (0.5, 8.0),
    "max_climb_rate": (0.5, 3.0),
}


@dataclass(frozen=True)
class TuningSizes:
    generations: int = 30
    population: int = 10
    episodes: int = 32  # per generation, flown by every candidate (common random numbers)
    validation_episodes: int = 300
    sigma: float = 0.15  # in the [0, 1] box


def default_gains() -> dict[str, float]:
    """Return the PositionController's hand-set gains (the tuning's starting point)."""
    defaults = {f.name: f.default for f in fields(PositionController)}
    return {name: float(defaults[name]) for name in BOUNDS}


def encode(gains: dict[str, float]) -> np.ndarray:
    return np.array([(gains[name] - low) / (high - low) for name, (low, high) in BOUNDS.items()])


def decode(vector) -> dict[str, float]:
    return {name: float(low + (high - low) * min(1.0, max(0.0, v)))
            for v, (name, (low, high)) in zip(vector, BOUNDS.items())}


def episode_costs(gains: dict[str, float], scenario_list, seed: int = 0) -> list[float]:
    from qai_intelligence.policy import run_episodes

    return run_episodes(None, scenario_list, "pid", seed=seed, gains=gains)[0]


def tune_pid(seed: int = 0, sizes: TuningSizes = TuningSizes(), progress: Progress = NoProgress()) -> dict[str, Any]:
    """Search the gains; return {gains, tuned, validation, search, seconds} (see the module docstring)."""
    from qai_intelligence.policy import random_scenario, scenarios

    started = time.perf_counter()
    start = encode(default_gains())
    strategy = cma.CMAEvolutionStrategy(start, sizes.sigma, {"popsize": sizes.population, "seed": seed + 1,
                                                             "bounds": [0.0, 1.0], "verbose": -9})
    rng = random.Random(datagen.seed_block(seed, "train", 555))
    history = []
    progress.stage("CMA-ES over the PID's gains", sizes.generations)
    for generation in range(sizes.generations):
        episodes = [random_scenario(rng) for _ in range(sizes.episodes)]
        candidates = strategy.ask()
        costs = [float(np.mean(episode_costs(decode(c), episodes, seed=generation))) for c in candidates]
        strategy.tell(candidates, costs)
        history.append({"generation": generation, "best": min(costs), "median": float(np.median(costs))})
        progress.advance()
    tuned = {name: round(value, 3) for name, value in decode(strategy.result.xfavorite).items()}
    progress.stage("the tuned gains and the defaults on validation episodes", 2)
    validation = scenarios(seed, "validation", sizes.validation_episodes)
    default_costs = episode_costs(default_gains(), validation)
    progress.advance()
    tuned_costs = episode_costs(tuned, validation)
    progress.advance()
    difference = paired_difference(tuned_costs, default_costs)
    better = difference["excludes_zero"] and difference["mean"] < 0
    return {"gains": tuned if better else default_gains(), "tuned": better, "searched": tuned,
            "validation": {"episodes": len(validation), "default_cost": float(np.mean(default_costs)),
                           "tuned_cost": float(np.mean(tuned_costs)), "tuned_minus_default": difference},
            "search": {"generations": sizes.generations, "population": sizes.population,
                       "episodes_per_generation": sizes.episodes, "sigma": sizes.sigma, "bounds": BOUNDS,
                       "history": history},
            "seed": seed, "seconds": round(time.perf_counter() - started, 1)}
