"""The anomaly model fine-tuned on recorded flights (qai_intelligence.recordings). No rclpy import.

The base model (the shipped one, or a given checkpoint) keeps its normalisation, its output scales and its
threshold; Adam goes on from its weights on the recorded flights' next-tick predictions, with the loss it was
trained with (Gaussian NLL), keeping the weights that do best on recorded validation flights; the base itself
is one of the candidates, so the result is never worse than it there. The residual spread is then calibrated
again on those validation flights. Flights are split into training and validation by their SHA-256 (the same
split whatever order or directories they come in), and the checkpoint names every recording it used by
digest. `nll_per_flight` is the measure: the mean Gaussian NLL of a model's next-tick predictions, per
flight, as the model's own loss scores them (lower is better).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from qai_intelligence import checkpoint
from qai_intelligence.baselines import feature_scales
from qai_intelligence.features import ANOMALY
from qai_intelligence.models import ModelConfig, SequenceModel
from qai_intelligence.recordings import RecordedFlight
from qai_intelligence.training import (SMOOTHING, NoProgress, Progress, TrainResult, _fit, _next_tick_targets,
                                       _seed_everything, gaussian_nll, prediction_errors)

BURN_IN = 10  # ticks of each flight the loss leaves out (the state settles)


def _targets(features: np.ndarray) -> np.ndarray:
    next_tick = _next_tick_targets(features)
    return np.concatenate([next_tick, np.zeros_like(next_tick)], 1)


@torch.inference_mode()
def nll_per_flight(model: SequenceModel, flights: Sequence[np.ndarray]) -> list[float]:
    """Return each flight's mean Gaussian NLL of the model's next-tick predictions (lower is better)."""
    model.eval()
    scores = []
    for features in flights:
        prediction, _ = model(torch.as_tensor(features)[None])
        target = model.normalise_targets(torch.as_tensor(_targets(features))[None])
        scores.append(float(gaussian_nll(prediction[:, BURN_IN:], target[:, BURN_IN:])))
    return scores


def split(flights: Sequence[RecordedFlight], validation_share: float) -> tuple[list, list]:
    """Split flights into training and validation by digest: every k-th of them, in digest order, validates."""
    ordered = sorted(flights, key=lambda f: f.sha256)
    every = max(2, round(1 / validation_share)) if validation_share > 0 else len(ordered) + 1
    validation = [f for i, f in enumerate(ordered) if i % every == every - 1]
    if not validation and len(ordered) >= 2:
        validation = ordered[-1:]  # too few for the share: one validates all the same
    return [f for f in ordered if f not in validation], validation


def fine_tune_anomaly(base: Path, flights: Sequence[RecordedFlight], seed: int = 0, iterations: int = 300,
                      validation_share: float = 0.25, progress: Progress = NoProgress()) -> TrainResult:
    _seed_everything(seed)
    model, meta = checkpoint.load(base, "anomaly", ANOMALY.features)
    train, validation = split(flights, validation_share)
    if not train or not validation:
        raise ValueError(f"{len(flights)} recorded flights: at least 2 are needed (one to train, one to validate)")
    held = [f.features for f in validation]
    before = nll_per_flight(model, held)
    base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    training = _fit(model, [f.features for f in train], [_targets(f.features) for f in train], iterations,
                    length=100, batch=16, burn_in=BURN_IN, seed=seed, progress=progress,
                    validate=lambda: float(np.mean(nll_per_flight(model, held))), validate_every=25,
                    learning_rate=1e-3, loss_fn=gaussian_nll)
    if training["best_validation"] >= float(np.mean(before)):
        model.load_state_dict(base_state)  # no candidate did better on the validation flights: the base stays
        training["kept_base"] = True
    after = nll_per_flight(model, held)
    errors = prediction_errors(model, held)
    residual_std = np.concatenate([e[20:] for e in errors]).std(0).clip(1e-3)
    residual_std = residual_std * feature_scales([(e / residual_std) ** 2 for e in errors], SMOOTHING)
    config = model.config
    model.config = ModelConfig(**{**vars(config), "extra": {**config.extra,
                                                            "residual_std": [float(s) for s in residual_std]}})
    metrics = {"recorded_validation": {"flights": len(held), "nll_base": float(np.mean(before)),
                                       "nll_tuned": float(np.mean(after))}}
    data = {"seed": seed, "base": {"path": str(base), "sha256": meta.get("sha256", "")},
            "recordings": [{"sha256": f.sha256, "mission_id": f.mission_id, "seconds": round(f.seconds, 2),
                            "ticks": len(f.features), "split": "train" if f in train else "validation"}
                           for f in sorted(flights, key=lambda f: f.sha256)]}
    return TrainResult(model, metrics, data, training)
