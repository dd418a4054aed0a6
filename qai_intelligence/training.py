"""Training and held-out evaluation of the endurance predictor and the anomaly detector. No rclpy import.

Each trainer generates its data from the simulator's model (qai_intelligence.data) with a seed, trains on CPU
(Adam, truncated backpropagation through time on chunks of flights), keeps the weights that did best on
validation flights, and scores the model beside its classical baseline on two held-out sets: new flights in
the training conditions, and flights outside them (qai_intelligence.data.OUTSIDE). The same seed gives the
same data and the same model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from qai_intelligence import data as datagen
from qai_intelligence.baselines import EnduranceBaseline, ZScoreDetector, feature_scales, smoothed_max
from qai_intelligence.features import ANOMALY, ANOMALY_TARGETS, ENDURANCE
from qai_intelligence.fast import output_std
from qai_intelligence.metrics import FlightLabel, choose_threshold, detection_metrics, endurance_errors
from qai_intelligence.model_config import predicted_spread as spread_of
from qai_intelligence.models import ModelConfig, SequenceModel, build, trainable_parameters

HELD_OUT = ("training", "outside")  # the two held-out sets, by their conditions' names


class Progress(Protocol):
    def stage(self, description: str, total: int) -> None: ...

    def advance(self, steps: int = 1) -> None: ...


class NoProgress:
    def stage(self, description: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass


@dataclass
class TrainResult:
    model: SequenceModel
    metrics: dict[str, Any]
    data: dict[str, Any]  # seed and what was generated
    training: dict[str, Any] = field(default_factory=dict)  # iterations, losses, seconds


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _chunks(sequences: Sequence[np.ndarray], targets: Sequence[np.ndarray], length: int, batch: int,
            rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a batch of random windows of `length` ticks (shorter flights whole, padded by repetition)."""
    xs, ys = [], []
    for _ in range(batch):
        i = int(rng.integers(len(sequences)))
        x, y = sequences[i], targets[i]
        if len(x) <= length:
            pad = length - len(x)
            x = np.concatenate([x, np.repeat(x[-1:], pad, 0)])
            y = np.concatenate([y, np.repeat(y[-1:], pad, 0)])
            start = 0
        else:
            start = int(rng.integers(len(x) - length + 1))
        xs.append(x[start:start + length])
        ys.append(y[start:start + length])
    return torch.as_tensor(np.stack(xs)), torch.as_tensor(np.stack(ys))


def gaussian_nll(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of targets under the predicted means (first half) and log variances (second)."""
    n = prediction.shape[-1] // 2
    mean, log_var = prediction[..., :n], prediction[..., n:].clamp(-12.0, 8.0)
    return 0.5 * (log_var + (target[..., :n] - mean) ** 2 * torch.exp(-log_var)).mean()


def _fit(model: SequenceModel, sequences, targets, iterations: int, length: int, batch: int, burn_in: int,
         seed: int, progress: Progress, validate: Callable[[], float], validate_every: int = 50,
         learning_rate: float = 5e-3, loss_fn: Callable | None = None) -> dict[str, Any]:
    """Adam on normalised targets; keeps the weights with the best validation score (lower is better)."""
    loss_fn = loss_fn or torch.nn.functional.smooth_l1_loss
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations)
    losses, best, best_state, history = [], float("inf"), None, []
    started = time.perf_counter()
    progress.stage(f"training {model.config.task} ({model.config.cell})", iterations)
    for iteration in range(1, iterations + 1):
        model.train()
        x, y = _chunks(sequences, targets, length, batch, rng)
        prediction, _ = model(x)
        loss = loss_fn(prediction[:, burn_in:], model.normalise_targets(y)[:, burn_in:])
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        progress.advance()
        if iteration % validate_every == 0 or iteration == iterations:
            model.eval()
            score = validate()
            history.append((iteration, float(np.mean(losses[-validate_every:])), score))
            if score < best:
                best, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"iterations": iterations, "first_loss": float(np.mean(losses[:10])),
            "last_loss": float(np.mean(losses[-10:])),
            "best_validation": best, "history": history, "seconds": round(time.perf_counter() - started, 1),
            "trainable_parameters": trainable_parameters(model)}


@torch.inference_mode()
def rollout(model: SequenceModel, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the model over whole flights with its state carried from the first tick, as the node runs it."""
    model.eval()
    length = max(len(s) for s in sequences)
    padded = np.stack([np.concatenate([s, np.repeat(s[-1:], length - len(s), 0)]) for s in sequences])
    x = torch.as_tensor(padded)
    y, _ = model(x)
    y = model.decode_outputs(model.denormalise(y), x).numpy()
    return [y[i, :len(s)] for i, s in enumerate(sequences)]


# -- Endurance ------------------------------------------------------------------------------------

ENDURANCE_OUTPUTS = ("remaining_s",)


@dataclass(frozen=True)
class EnduranceSizes:
    train: int = 160
    validation: int = 24
    test: int = 40
    iterations: int = 300
    chunk: int = 128
    batch: int = 32
    units: int = 16
    motor: int = 4


def endurance_baseline(train_flights: Sequence[datagen.EnduranceFlight]) -> EnduranceBaseline:
    baseline = EnduranceBaseline()
    baseline.fit([(f.features, f.remaining) for f in train_flights], datagen.ENDURANCE_TICK)
    return baseline


def evaluate_endurance(model: SequenceModel, flights: Sequence[datagen.EnduranceFlight],
                       baseline: EnduranceBaseline | None = None) -> dict[str, Any]:
    predicted = [np.maximum(0.0, p[:, 0]) for p in rollout(model, [f.features for f in flights])]
    truth = [f.remaining for f in flights]
    result = {"model": endurance_errors(predicted, truth)}
    if baseline is not None:
        result["baseline"] = endurance_errors([baseline.flight(f.features, datagen.ENDURANCE_TICK) for f in flights],
                                              truth)
    return result


def train_endurance(seed: int = 0, cell: str = "cfc", sizes: EnduranceSizes = EnduranceSizes(),
                    progress: Progress = NoProgress()) -> TrainResult:
    _seed_everything(seed)
    sets = {"train": (sizes.train, datagen.TRAINING), "validation": (sizes.validation, datagen.TRAINING)}
    flights: dict[str, list] = {}
    progress.stage("simulating endurance flights", sizes.train + sizes.validation + 2 * sizes.test)
    for split, (count, conditions) in sets.items():
        flights[split] = datagen.endurance_flights(seed, split, count, conditions, progress.advance)
    for name in HELD_OUT:
        flights[f"test_{name}"] = datagen.endurance_flights(seed, "test", sizes.test, datagen.CONDITIONS[name],
                                                            progress.advance)
    config = ModelConfig("endurance", cell, ENDURANCE.features, ENDURANCE_OUTPUTS, units=sizes.units,
                         motor=sizes.motor, seed=seed, extra={"anchor": "charge_time"})
    model = build(config)
    train = flights["train"]
    targets = [model.encode_targets(f.remaining[:, None], f.features) for f in train]
    model.set_normalisation(np.concatenate([f.features for f in train]), np.concatenate(targets))
    training = _fit(model, [f.features for f in train], targets, sizes.iterations, sizes.chunk, sizes.batch,
                    burn_in=16, seed=seed, progress=progress,
                    validate=lambda: evaluate_endurance(model, flights["validation"])["model"]["mae_s"])
    baseline = endurance_baseline(train)
    metrics = {f"held_out_{name}": evaluate_endurance(model, flights[f"test_{name}"], baseline) for name in HELD_OUT}
    metrics["baseline"] = {"scale": baseline.scale, "offset": baseline.offset}
    return TrainResult(model, metrics, {"seed": seed, "train_flights": sizes.train, "validation_flights":
                                        sizes.validation, "test_flights_per_set": sizes.test,
                                        "conditions": {n: vars(datagen.CONDITIONS[n]) for n in HELD_OUT}}, training)


# -- Anomaly --------------------------------------------------------------------------------------

SMOOTHING = 0.3  # EWMA weight of the newest squared error, model and baseline alike


@dataclass(frozen=True)
class AnomalySizes:
    train: int = 100
    validation: int = 36
    test: int = 45
    iterations: int = 250
    chunk: int = 100
    batch: int = 32
    units: int = 32
    motor: int = 8


def _next_tick_targets(features: np.ndarray) -> np.ndarray:
    """Return what the model should predict at each tick: the next tick's readings (the last repeats)."""
    idx = [ANOMALY.features.index(name) for name in ANOMALY_TARGETS]
    nxt = np.concatenate([features[1:], features[-1:]])
    return nxt[:, idx]


def predicted_spread(model, outputs):
    """Split an anomaly model's raw outputs into predicted readings and their predicted standard deviations."""
    scale = output_std(model) if isinstance(outputs, np.ndarray) else model.output_std
    return spread_of(scale, outputs, len(ANOMALY_TARGETS))


def prediction_errors(model: SequenceModel, flights: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Return, per tick and target feature, the error of the prediction made the tick before.

    The error is in units of the spread the model predicted for it (zero at the first tick).
    """
    predicted = rollout(model, flights)
    errors = []
    for p, f in zip(predicted, flights):
        mean, spread = predicted_spread(model, p)
        actual = _next_tick_targets(f)
        e = np.zeros_like(actual)
        e[1:] = (actual[:-1] - mean[:-1]) / spread[:-1]
        errors.append(e)
    return errors


def anomaly_scores(model: SequenceModel, flights: Sequence[np.ndarray], residual_std: np.ndarray,
                   alpha: float = SMOOTHING) -> list[np.ndarray]:
    return [smoothed_max((e / residual_std) ** 2, alpha) for e in prediction_errors(model, flights)]


def _labels(flights: Sequence[datagen.AnomalyFlight]) -> list[FlightLabel]:
    return [FlightLabel(f.fault, f.onset) for f in flights]


def evaluate_anomaly(model: SequenceModel, flights: Sequence[datagen.AnomalyFlight],
                     baseline: ZScoreDetector | None = None, baseline_threshold: float | None = None
                     ) -> dict[str, Any]:
    extra = model.config.extra
    scores = anomaly_scores(model, [f.features for f in flights], np.array(extra["residual_std"]), extra["smoothing"])
    result = {"model": detection_metrics(scores, _labels(flights), extra["threshold"], datagen.ANOMALY_TICK)}
    if baseline is not None:
        result["baseline"] = detection_metrics([baseline.scores(f.features) for f in flights], _labels(flights),
                                               baseline_threshold, datagen.ANOMALY_TICK)
    return result


def train_anomaly(seed: int = 0, cell: str = "cfc", sizes: AnomalySizes = AnomalySizes(),
                  progress: Progress = NoProgress()) -> TrainResult:
    _seed_everything(seed)
    progress.stage("simulating anomaly flights", sizes.train + 2 * sizes.validation + 2 * sizes.test)
    train = datagen.anomaly_flights(seed, "train", sizes.train, datagen.TRAINING, faults=False,
                                    progress=progress.advance)
    validation = datagen.anomaly_flights(seed, "validation", 2 * sizes.validation, datagen.TRAINING, faults=True,
                                         clean_share=0.5, progress=progress.advance)
    tests = {name: datagen.anomaly_flights(seed, "test", sizes.test, datagen.CONDITIONS[name], faults=True,
                                           clean_share=0.25, progress=progress.advance) for name in HELD_OUT}
    # The model predicts each reading and how uncertain it is (a log variance), so its score adapts to how
    # gusty the flight is: calm, a stuck position stands out; in gusts, noise does not raise alarms.
    outputs = ANOMALY_TARGETS + tuple(f"log_var_{name}" for name in ANOMALY_TARGETS)
    config = ModelConfig("anomaly", cell, ANOMALY.features, outputs, units=sizes.units, motor=sizes.motor,
                         seed=seed, extra={"masked_inputs": ["moved_x", "moved_y", "moved_z"]})
    model = build(config)
    sequences = [f.features for f in train]
    targets = [np.concatenate([t, np.zeros_like(t)], 1) for t in (_next_tick_targets(s) for s in sequences)]
    model.set_normalisation(np.concatenate(sequences), np.concatenate(targets))
    n = len(ANOMALY_TARGETS)
    model.output_mean[n:] = 0.0
    model.output_std[n:] = 1.0
    clean_validation = [f.features for f in validation if f.fault is None]

    def validation_loss() -> float:
        x = [torch.as_tensor(f) for f in clean_validation]
        with torch.inference_mode():
            y, _ = model(torch.stack(x))
            target = model.normalise_targets(torch.as_tensor(np.stack([
                np.concatenate([t, np.zeros_like(t)], 1) for t in map(_next_tick_targets, clean_validation)])))
            return float(gaussian_nll(y[:, 10:], target[:, 10:]))

    training = _fit(model, sequences, targets, sizes.iterations, sizes.chunk, sizes.batch, burn_in=10, seed=seed,
                    progress=progress, validate=validation_loss, loss_fn=gaussian_nll)
    # Calibrate on validation flights: the residual spread when all is well, then the threshold with the best F1.
    # Each feature's spread is scaled by its own clean 99.9th percentile score, so a heavy-tailed feature (the
    # accelerometer in gusts) does not set everyone's threshold.
    clean_errors = prediction_errors(model, clean_validation)
    residual_std = np.concatenate([e[20:] for e in clean_errors]).std(0).clip(1e-3)
    residual_std = residual_std * feature_scales([(e / residual_std) ** 2 for e in clean_errors], SMOOTHING)
    scores = anomaly_scores(model, [f.features for f in validation], residual_std)
    threshold = choose_threshold(scores, _labels(validation), datagen.ANOMALY_TICK)
    calibrated = ModelConfig(**{**vars(config), "extra": {**config.extra,
                                                          "residual_std": [float(s) for s in residual_std],
                                                          "threshold": threshold, "smoothing": SMOOTHING,
                                                          "tick": datagen.ANOMALY_TICK}})
    model.config = calibrated
    baseline = ZScoreDetector.fit(sequences, SMOOTHING)
    baseline.calibrate(clean_validation)
    baseline_threshold = choose_threshold([baseline.scores(f.features) for f in validation], _labels(validation),
                                          datagen.ANOMALY_TICK)
    metrics = {f"held_out_{name}": evaluate_anomaly(model, tests[name], baseline, baseline_threshold)
               for name in HELD_OUT}
    metrics["validation_threshold"] = {"model": threshold, "baseline": baseline_threshold}
    return TrainResult(model, metrics, {"seed": seed, "train_flights": sizes.train,
                                        "validation_flights": 2 * sizes.validation, "test_flights_per_set": sizes.test,
                                        "fault_kinds": list(datagen.FAULT_KINDS),
                                        "conditions": {n: vars(datagen.CONDITIONS[n]) for n in HELD_OUT}}, training)
