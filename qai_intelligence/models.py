"""The networks: ncps CfC and LTC (liquid networks, NCP wiring) and a GRU of the same size, behind one interface.

No rclpy import. Imports torch and ncps (about 2.5 s together): import this module only where a model runs.

A `SequenceModel` takes raw features (it normalises them with statistics stored in its own buffers, so a
checkpoint carries them) and returns raw outputs, with its hidden state passed in and out: `forward` for a
sequence (training), `step` for one tick (the node). CfC and LTC take the time since the previous tick
(`timespans`, in ticks), so an irregular tick is integrated as what it is; the GRU cannot and ignores it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch
from ncps.torch import CfC, LTC
from ncps.wirings import AutoNCP
from torch import nn

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


class SequenceModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        n_in, n_out = len(config.inputs), len(config.outputs)
        self.register_buffer("input_mean", torch.zeros(n_in))
        self.register_buffer("input_std", torch.ones(n_in))
        self.register_buffer("output_mean", torch.zeros(n_out))
        self.register_buffer("output_std", torch.ones(n_out))
        # Inputs a model predicts but must not see (extra["masked_inputs"]): the anomaly model predicts how the
        # position moved from the reported velocity, so a position stuck while the velocity is not stands out.
        masked = set(config.extra.get("masked_inputs", ()))
        if masked:
            self.register_buffer("input_mask", torch.tensor([0.0 if n in masked else 1.0 for n in config.inputs]))
        else:
            self.input_mask = None
        if config.cell == "gru":
            self.rnn = nn.GRU(n_in, config.units, batch_first=True)
            readout = config.units
        else:
            wiring = AutoNCP(config.units, config.motor, seed=config.seed)
            self.rnn = CfC(n_in, wiring, batch_first=True) if config.cell == "cfc" else \
                LTC(n_in, wiring, batch_first=True)
            readout = config.motor
        self.head = nn.Linear(readout, n_out)

    @property
    def state_size(self) -> int:
        return self.config.units

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.config.units)

    def set_normalisation(self, inputs, outputs) -> None:
        """Set the input and output statistics from training data ((N, features) and (N, outputs) arrays)."""
        for name, data in (("input", inputs), ("output", outputs)):
            values = torch.as_tensor(data, dtype=torch.float32)
            getattr(self, f"{name}_mean").copy_(values.mean(0))
            getattr(self, f"{name}_std").copy_(values.std(0).clamp_min(1e-3))

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None, timespans: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw inputs (batch, time, features) -> normalised outputs (batch, time, outputs), final state."""
        z = (x - self.input_mean) / self.input_std
        if self.input_mask is not None:
            z = z * self.input_mask
        if self.config.cell == "gru":
            y, h = self.rnn(z, None if h is None else h.unsqueeze(0))
            h = h.squeeze(0)
        else:
            y, h = self.rnn(z, h, timespans=timespans)
        return self.head(y), h

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.output_std + self.output_mean

    def normalise_targets(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.output_mean) / self.output_std

    # A model may learn its outputs relative to one of its inputs (extra["anchor"]): the log of their ratio.
    # The endurance model learns how far the time left differs from the charge left over the present current,
    # which carries over to batteries and loads it never saw far better than the time itself.

    # A policy may learn a residual over a pursuit law (extra["prior"]: gains): the law steers toward the
    # target in proportion to the distance; the network learns what it misses (braking, wind, climb).

    def _prior(self, inputs):
        gains = self.config.extra["prior"]
        lib = torch if isinstance(inputs, torch.Tensor) else __import__("numpy")
        horizontal = inputs[..., 0:2] * gains["horizontal"]
        norm = lib.sqrt((horizontal ** 2).sum(-1, keepdims=True) if lib is not torch else
                        (horizontal ** 2).sum(-1, keepdim=True))
        scale = lib.clip(gains["max_speed"] / lib.clip(norm, 1e-6, None), None, 1.0) if lib is not torch else \
            torch.clamp(gains["max_speed"] / torch.clamp(norm, min=1e-6), max=1.0)
        vertical = lib.clip(inputs[..., 2:3] * gains["vertical"], -gains["max_climb"], gains["max_climb"])
        return lib.concatenate([horizontal * scale, vertical], -1) if lib is not torch else \
            torch.cat([horizontal * scale, vertical], -1)

    def encode_targets(self, targets, inputs):
        """Targets as the network learns them, from raw targets and inputs (numpy or torch, same shapes)."""
        if "prior" in self.config.extra:
            return targets - self._prior(inputs)
        anchor = self.config.extra.get("anchor")
        if anchor is None:
            return targets
        base = inputs[..., self.config.inputs.index(anchor):][..., :1]
        lib = torch if isinstance(targets, torch.Tensor) else __import__("numpy")
        return lib.log((lib.clip(targets, 0, None) + ANCHOR_OFFSET) / (base + ANCHOR_OFFSET))

    def decode_outputs(self, outputs, inputs):
        """Raw outputs from what the network gives (denormalised) and its raw inputs."""
        if "prior" in self.config.extra:
            return outputs + self._prior(inputs)
        anchor = self.config.extra.get("anchor")
        if anchor is None:
            return outputs
        base = inputs[..., self.config.inputs.index(anchor):][..., :1]
        lib = torch if isinstance(outputs, torch.Tensor) else __import__("numpy")
        return (base + ANCHOR_OFFSET) * lib.exp(outputs) - ANCHOR_OFFSET

    @torch.inference_mode()
    def step(self, x: torch.Tensor, h: torch.Tensor | None, timespan: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick: raw inputs (batch, features) -> raw outputs (batch, outputs), the new state.

        `timespan` (ticks since the previous one) reaches CfC and LTC for a batch of one (ncps broadcasts a
        per-sample timespan only then); batches step one nominal tick.
        """
        spans = None
        if self.config.cell != "gru" and x.shape[0] == 1 and timespan != 1.0:
            spans = torch.full((1, 1, 1), float(timespan))
        y, h = self.forward(x.unsqueeze(1), h, spans)
        return self.decode_outputs(self.denormalise(y[:, 0]), x), h


def build(config: ModelConfig) -> SequenceModel:
    torch.manual_seed(config.seed)
    return SequenceModel(config)


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"torch": torch.__version__}
    for name in ("ncps", "numpy", "cma", "gymnasium"):
        try:
            versions[name] = version(name)  # ncps.__version__ is stale ("0.0.2")
        except PackageNotFoundError:
            pass
    return versions
