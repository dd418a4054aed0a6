"""A residual flight policy: the io_engine's tuned PID flies, a CfC adds a bounded correction. No rclpy import.

The io_engine's `controller: residual` (qai_io.motion.ResidualController) flies its own PID and adds the latest
correction published on control/residual, at most RESIDUAL_LIMIT m/s a component; a correction that stops
coming counts as zero, so a silent policy leaves the PID flying. The policy sees what the full-command policy
sees (qai_intelligence.features.POLICY) and outputs the correction (body frame, m/s).

It starts exactly at the PID: the network's output layer is zero, so its first correction is zero everywhere.
Training is CMA-ES (the `cma` library, diagonal covariance) over the CfC's weights; every candidate of a
generation flies the same fresh training episodes (common random numbers, `episodes` of them, >= 16), scored by
the episode cost the PID was tuned on (time against the nominal time, cross-track error, failure) plus energy
against the nominal hover energy. Every `validate_every` generations the search's mean flies the selection
episodes and the best mean seen is kept; at the end it and the zero correction (the tuned PID alone) fly a
second, separate set of validation episodes, and the paired difference with its 95 % interval says whether
the policy is better. Why not stable-baselines3: its policies cannot carry a CfC's state through a flight
(sb3-contrib's RecurrentPPO is LSTM-only).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from qai_intelligence import data as datagen
from qai_intelligence.features import POLICY, POLICY_OUTPUTS
from qai_intelligence.models import ModelConfig, SequenceModel, build, trainable_parameters
from qai_intelligence.policy import (RESIDUAL_LIMIT, Scenario, WeightVector, cma_generation, diagonal_cma,
                                     evaluate_course, random_scenario, run_episodes)
from qai_intelligence.statistics import paired_difference
from qai_intelligence.training import NoProgress, Progress, TrainResult

ENERGY_WEIGHT = 0.5  # the cost's energy term: energy over the hover energy of the nominal time, times this


@dataclass(frozen=True)
class ResidualSizes:
    generations: int = 40
    population: int = 12
    episodes: int = 16  # per generation, flown by every candidate
    sigma: float = 0.1
    units: int = 16
    motor: int = 4
    normalisation_episodes: int = 40
    selection_episodes: int = 64
    validation_episodes: int = 200
    validate_every: int = 5
    course_runs: int = 3


def episode_costs(model: SequenceModel | None, scenario_list: Sequence[Scenario], seed: int = 0) -> np.ndarray:
    """Return each episode's cost with the correction of `model` (None: the PID alone), energy included."""
    costs, summaries = run_episodes(model, scenario_list, "residual", seed)
    hover = np.array([s.config.hover_power_w * s.nominal_duration / 3600.0 for s in scenario_list])
    energy = np.array([summary["energy_wh"] for summary in summaries])
    return np.asarray(costs) + ENERGY_WEIGHT * energy / hover


def build_residual(seed: int, sizes: ResidualSizes, observations: np.ndarray) -> SequenceModel:
    """Return a residual CfC whose correction is zero everywhere (its output layer zeroed)."""
    config = ModelConfig("policy", "cfc", POLICY.features, POLICY_OUTPUTS, units=sizes.units, motor=sizes.motor,
                         seed=seed, extra={"residual": True, "residual_limit": RESIDUAL_LIMIT})
    model = build(config)
    model.set_normalisation(observations, np.zeros((len(observations), len(POLICY_OUTPUTS))))
    model.output_std.fill_(1.0)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    model.eval()
    return model


@torch.inference_mode()
def _observations(seed: int, count: int) -> np.ndarray:
    """Fly the PID alone and return what the policy would have seen (for the input normalisation)."""
    from qai_intelligence.policy import ExternalPathEnv

    rng = random.Random(datagen.seed_block(seed, "train", 777))
    seen = []
    for index in range(count):
        env = ExternalPathEnv(random_scenario(rng), controller="residual")
        observation, _ = env.reset(seed=index)
        done = truncated = False
        while not (done or truncated):
            seen.append(observation)
            observation, _, done, truncated, _ = env.step(np.zeros(3))
    return np.array(seen, np.float32)


def train_residual(seed: int = 0, sizes: ResidualSizes = ResidualSizes(),
                   progress: Progress = NoProgress()) -> TrainResult:
    torch.manual_seed(seed)
    started = time.perf_counter()
    progress.stage("flying the PID for the input statistics", 1)
    model = build_residual(seed, sizes, _observations(seed, sizes.normalisation_episodes))
    progress.advance()
    rng = random.Random(datagen.seed_block(seed, "validation", 11))
    selection = [random_scenario(rng) for _ in range(sizes.selection_episodes)]
    rng = random.Random(datagen.seed_block(seed, "validation", 12))
    validation = [random_scenario(rng) for _ in range(sizes.validation_episodes)]
    weights = WeightVector(model)
    start = weights.get()
    strategy = diagonal_cma(start, sizes.sigma, sizes.population, seed + 1)
    pid_selection = float(np.mean(episode_costs(None, selection)))
    best_vector, best_cost, history = start, pid_selection, []
    progress.stage("CMA-ES over the residual CfC's weights", sizes.generations)
    train_rng = random.Random(datagen.seed_block(seed, "train", 888))
    for generation in range(sizes.generations):
        episodes = [random_scenario(train_rng) for _ in range(sizes.episodes)]
        costs = cma_generation(strategy, weights, lambda: np.mean(episode_costs(model, episodes, seed=generation)))
        entry = {"generation": generation, "best": min(costs), "median": float(np.median(costs))}
        if (generation + 1) % sizes.validate_every == 0 or generation == sizes.generations - 1:
            weights.set(strategy.result.xfavorite)
            entry["selection_cost"] = float(np.mean(episode_costs(model, selection)))
            if entry["selection_cost"] < best_cost:
                best_vector, best_cost = strategy.result.xfavorite.copy(), entry["selection_cost"]
        history.append(entry)
        progress.advance()
    weights.set(best_vector)
    progress.stage("the policy and the PID alone on validation episodes, then the course", 3)
    policy_costs, pid_costs = episode_costs(model, validation), episode_costs(None, validation)
    progress.advance()
    metrics: dict[str, Any] = {"validation_cost": {
        "episodes": len(validation), "policy": float(np.mean(policy_costs)), "pid": float(np.mean(pid_costs)),
        "policy_minus_pid": paired_difference(policy_costs, pid_costs),
        "selection": {"episodes": len(selection), "pid": pid_selection, "best": best_cost}}}
    for name in ("training", "outside"):
        metrics[f"held_out_{name}"] = evaluate_course(model, datagen.CONDITIONS[name], sizes.course_runs, seed,
                                                      controller="residual")
        progress.advance()
    training = {"cma_es": {"generations": sizes.generations, "population": sizes.population,
                           "episodes_per_candidate": sizes.episodes, "dimensions": len(weights), "history": history},
                "seconds": round(time.perf_counter() - started, 1), "trainable_parameters": trainable_parameters(model)}
    return TrainResult(model, metrics, {"seed": seed, "algorithm": "residual over the tuned PID, CMA-ES (cma, "
                                        "diagonal, common random numbers)", "energy_weight": ENERGY_WEIGHT}, training)
