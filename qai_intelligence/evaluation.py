"""The promotion gate's held-out evaluation: one score per checkpoint, lower is better. No rclpy import.

Each task is scored on flights no training run uses (the "gate" seed block; half in the training conditions,
half outside them), the same flights for the candidate and the active model, with a score per flight or
episode (`units`) so the store can decide on the paired difference:
  endurance  MAE of the time left, seconds (per flight)
  anomaly    1 - F1 of fault detection, at the model's own threshold (per flight: a missed fault counts 1,
             each false alarm 1)
  policy     the mean episode cost (time against nominal, cross-track error, failures); the io_engine's tuned
             PID flies the same episodes, and its cost is the bar a candidate must beat too
The gate's seed rotates (qai_intelligence.gate_process draws one per decision); the data is made once per
process and seed and kept.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from qai_intelligence import checkpoint
from qai_intelligence import data as datagen
from qai_intelligence.features import ANOMALY, ENDURANCE, POLICY

GATE_SEED = 7919
FEATURES = {"endurance": ENDURANCE, "anomaly": ANOMALY, "policy": POLICY}
GATE_SIZES = {"endurance": 16, "anomaly": 27, "policy": 16}


@functools.lru_cache(maxsize=None)
def _gate_data(task: str, size: int, seed: int = GATE_SEED) -> list:
    halves = ((datagen.TRAINING, size - size // 2), (datagen.OUTSIDE, size // 2))
    if task == "endurance":
        return [f for conditions, n in halves for f in datagen.endurance_flights(seed, "gate", n, conditions)]
    if task == "anomaly":
        return [f for conditions, n in halves
                for f in datagen.anomaly_flights(seed, "gate", n, conditions, faults=True, clean_share=1 / 3)]
    from qai_intelligence.policy import scenarios

    return [s for conditions, n in halves for s in scenarios(seed, "gate", n, conditions)]


def evaluate_checkpoint(task: str, directory: Path, size: int | None = None,
                        seed: int = GATE_SEED) -> tuple[float, dict[str, Any]]:
    """Load a checkpoint (refusing a bad one with CheckpointError) and score it on the gate's held-out data."""
    model, _ = checkpoint.load(directory, task=task, inputs=FEATURES[task].features)
    size = size or GATE_SIZES[task]
    held_out = _gate_data(task, size, seed)
    if task == "endurance":
        from qai_intelligence.training import rollout

        predicted = [np.maximum(0.0, p[:, 0]) for p in rollout(model, [f.features for f in held_out])]
        units = [float(np.mean(np.abs(p - f.remaining))) for p, f in zip(predicted, held_out)]
        score = float(np.mean(units))
        return score, {"mae_s": round(score, 2), "flights": len(held_out), "units": units, "gate_seed": seed}
    if task == "anomaly":
        from qai_intelligence.metrics import detection_metrics
        from qai_intelligence.training import _labels, anomaly_scores

        extra = model.config.extra
        scores = anomaly_scores(model, [f.features for f in held_out], np.array(extra["residual_std"]),
                                extra["smoothing"])
        labels = _labels(held_out)
        result = detection_metrics(scores, labels, extra["threshold"], datagen.ANOMALY_TICK)
        units = []
        for flight_scores, label in zip(scores, labels):
            one = detection_metrics([flight_scores], [label], extra["threshold"], datagen.ANOMALY_TICK)
            units.append(float((label.fault is not None and not one["detected"]) + one["false_alarms"]))
        return 1.0 - result["f1"], {"f1": round(result["f1"], 3), "precision": round(result["precision"], 3),
                                    "recall": round(result["recall"], 3), "flights": len(held_out), "units": units,
                                    "gate_seed": seed}
    from qai_intelligence.policy import policy_path, run_episodes

    units = [float(c) for c in run_episodes(model, held_out, policy_path(model))[0]]
    cost = float(np.mean(units))
    pid = _pid_costs(size, seed)
    return cost, {"cost": round(cost, 4), "episodes": len(held_out), "units": units, "gate_seed": seed,
                  "bar": {"name": "tuned PID", "score": float(np.mean(pid)), "units": list(pid)}}


@functools.lru_cache(maxsize=None)
def _pid_costs(size: int, seed: int) -> tuple[float, ...]:
    from qai_intelligence.policy import run_episodes

    return tuple(float(c) for c in run_episodes(None, _gate_data("policy", size, seed), "pid")[0])
