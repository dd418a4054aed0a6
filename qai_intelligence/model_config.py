"""What a model is, and how its outputs are encoded, without torch: what the running engine needs of a model.

No rclpy import, no torch import. `ModelConfig` is what a checkpoint must match; `encode_targets` and
`decode_outputs` turn raw targets into what a network learns and back (numpy arrays or torch tensors, as
given); `predicted_spread` splits an anomaly model's outputs into predictions and their spreads.
qai_intelligence.models builds the torch networks from a config; qai_intelligence.fast steps a CfC in numpy.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

CELLS = ("cfc", "ltc", "gru")
ANCHOR_OFFSET = 10.0  # s: keeps the log ratio finite near zero
TASKS = ("endurance", "anomaly", "policy")


@dataclass(frozen=True)
class ModelConfig:
    """What a checkpoint must match: the task it serves, its cell, its named inputs and outputs, its size."""

    task: str
    cell: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    units: int = 16  # neurons (CfC/LTC: of the NCP wiring) or hidden units (GRU)
    motor: int = 4  # the NCP's motor neurons, read out by a linear layer to the outputs
    seed: int = 0  # the wiring's seed (AutoNCP draws its synapses)
    extra: Mapping[str, Any] = field(default_factory=dict)  # task-specific settings (e.g. the anomaly threshold)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {self.task!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell: expected one of {', '.join(CELLS)}, got {self.cell!r}")
        if not self.inputs or not self.outputs:
            raise ValueError("inputs and outputs must not be empty")
        if self.cell != "gru" and not 0 < self.motor <= self.units - 2:
            raise ValueError(f"motor: expected 1..units-2 ({self.units - 2}), got {self.motor}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"], data["outputs"], data["extra"] = list(self.inputs), list(self.outputs), dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        known = {"task", "cell", "inputs", "outputs", "units", "motor", "seed", "extra"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config: unknown field(s) {', '.join(sorted(unknown))}")
        missing = {"task", "cell", "inputs", "outputs"} - set(data)
        if missing:
            raise ValueError(f"config: missing field(s) {', '.join(sorted(missing))}")
        return cls(task=data["task"], cell=data["cell"], inputs=tuple(data["inputs"]), outputs=tuple(data["outputs"]),
                   units=int(data.get("units", 16)), motor=int(data.get("motor", 4)), seed=int(data.get("seed", 0)),
                   extra=dict(data.get("extra", {})))


# A model may learn its outputs relative to one of its inputs (extra["anchor"]): the log of their ratio.
# The endurance model learns how far the time left differs from the charge left over the present current,
# which carries over to batteries and loads it never saw far better than the time itself.

# A policy may learn a residual over a pursuit law (extra["prior"]: gains): the law steers toward the
# target in proportion to the distance; the network learns what it misses (braking, wind, climb).

def _is_numpy(value) -> bool:
    return isinstance(value, (np.ndarray, np.generic, float, int))


def prior(config: ModelConfig, inputs):
    """Return the pursuit law's command for raw policy inputs (numpy or torch)."""
    gains = config.extra["prior"]
    horizontal = inputs[..., 0:2] * gains["horizontal"]
    if _is_numpy(inputs):
        norm = np.sqrt((horizontal ** 2).sum(-1, keepdims=True))
        scale = np.clip(gains["max_speed"] / np.clip(norm, 1e-6, None), None, 1.0)
        vertical = np.clip(inputs[..., 2:3] * gains["vertical"], -gains["max_climb"], gains["max_climb"])
        return np.concatenate([horizontal * scale, vertical], -1)
    torch = sys.modules["torch"]
    norm = torch.sqrt((horizontal ** 2).sum(-1, keepdim=True))
    scale = torch.clamp(gains["max_speed"] / torch.clamp(norm, min=1e-6), max=1.0)
    vertical = torch.clip(inputs[..., 2:3] * gains["vertical"], -gains["max_climb"], gains["max_climb"])
    return torch.cat([horizontal * scale, vertical], -1)


def _lib(value):
    return np if _is_numpy(value) else sys.modules["torch"]


def encode_targets(config: ModelConfig, targets, inputs):
    """Targets as the network learns them, from raw targets and inputs (numpy or torch, same shapes)."""
    if "prior" in config.extra:
        return targets - prior(config, inputs)
    anchor = config.extra.get("anchor")
    if anchor is None:
        return targets
    base = inputs[..., config.inputs.index(anchor):][..., :1]
    lib = _lib(targets)
    return lib.log((lib.clip(targets, 0, None) + ANCHOR_OFFSET) / (base + ANCHOR_OFFSET))


def decode_outputs(config: ModelConfig, outputs, inputs):
    """Raw outputs from what the network gives (denormalised) and its raw inputs."""
    if "prior" in config.extra:
        return outputs + prior(config, inputs)
    anchor = config.extra.get("anchor")
    if anchor is None:
        return outputs
    base = inputs[..., config.inputs.index(anchor):][..., :1]
    return (base + ANCHOR_OFFSET) * _lib(outputs).exp(outputs) - ANCHOR_OFFSET


def predicted_spread(output_std, outputs, targets: int):
    """Split an anomaly model's raw outputs into the `targets` predicted readings and their standard deviations.

    `output_std` is the model's output scale (numpy or torch, as `outputs`).
    """
    if _is_numpy(outputs):
        return outputs[..., :targets], np.exp(0.5 * outputs[..., targets:].clip(-12.0, 8.0)) * output_std[:targets]
    torch = sys.modules["torch"]
    return outputs[..., :targets], torch.exp(0.5 * outputs[..., targets:].clamp(-12.0, 8.0)) * output_std[:targets]
