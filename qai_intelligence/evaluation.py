"""The promotion gate's held-out evaluation: one score per checkpoint, lower is better. No rclpy import.

Each task is scored on flights no training run uses (the "gate" seed block, training conditions), the same
flights for the candidate and the active model:
  endurance  MAE of the time left, seconds
  anomaly    1 - F1 of fault detection, at the model's own threshold
  policy     the mean episode cost (time against nominal, cross-track error, failures); the io_engine's tuned
             PID flies the same episodes, and its cost is the bar a candidate must beat too
The data is made once per process and kept.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from qai_intelligence import checkpoint
from qai_intelligence import data as datagen
from qai_intelligence.features import ANOMALY, ENDURANCE, POLICY

GATE_SEED = 7919
FEATURES = {"endurance": ENDURANCE, "anomaly": ANOMALY, "policy": POLICY}
GATE_SIZES = {"endurance": 16, "anomaly": 27, "policy": 8}


@functools.lru_cache(maxsize=None)
def _gate_data(task: str, size: int):
    if task == "endurance":
        return datagen.endurance_flights(GATE_SEED, "gate", size)
    if task == "anomaly":
        return datagen.anomaly_flights(GATE_SEED, "gate", size, faults=True, clean_share=1 / 3)
    from qai_intelligence.policy import scenarios

    return scenarios(GATE_SEED, "gate", size)


def evaluate_checkpoint(task: str, directory: Path, size: int | None = None) -> tuple[float, dict[str, Any]]:
    """Load a checkpoint (refusing a bad one with CheckpointError) and score it on the gate's held-out data."""
    model, _ = checkpoint.load(directory, task=task, inputs=FEATURES[task].features)
    held_out = _gate_data(task, size or GATE_SIZES[task])
    if task == "endurance":
        from qai_intelligence.training import evaluate_endurance

        errors = evaluate_endurance(model, held_out)["model"]
        return errors["mae_s"], {"mae_s": round(errors["mae_s"], 2), "flights": len(held_out)}
    if task == "anomaly":
        from qai_intelligence.training import evaluate_anomaly

        result = evaluate_anomaly(model, held_out)["model"]
        return 1.0 - result["f1"], {"f1": round(result["f1"], 3), "precision": round(result["precision"], 3),
                                    "recall": round(result["recall"], 3), "flights": len(held_out)}
    from qai_intelligence.policy import policy_cost

    cost = policy_cost(model, held_out)
    return cost, {"cost": round(cost, 4), "episodes": len(held_out),
                  "bar": {"name": "tuned PID", "score": _pid_cost(size or GATE_SIZES[task])}}


@functools.lru_cache(maxsize=None)
def _pid_cost(size: int) -> float:
    from qai_intelligence.policy import policy_cost_pid

    return policy_cost_pid(_gate_data("policy", size))
