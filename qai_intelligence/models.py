"""The networks: ncps CfC and LTC (liquid networks, NCP wiring) and a GRU of the same size, behind one interface.

No rclpy import. Imports torch and ncps (about 2.5 s together): import this module only where a model runs.

A `SequenceModel` takes raw features (it normalises them with statistics stored in its own buffers, so a
checkpoint carries them) and returns raw outputs, with its hidden state passed in and out: `forward` for a
sequence (training), `step` for one tick (the node). CfC and LTC take the time since the previous tick
(`timespans`, in ticks), so an irregular tick is integrated as what it is; the GRU cannot and ignores it.
"""

from __future__ import annotations

import torch
from ncps.torch import CfC, LTC
from ncps.wirings import AutoNCP
from torch import nn

from qai_intelligence.model_config import (ANCHOR_OFFSET, CELLS, TASKS, ModelConfig,  # noqa: F401 - re-exported
                                           decode_outputs, encode_targets)


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

    def encode_targets(self, targets, inputs):
        """Targets as the network learns them (qai_intelligence.model_config.encode_targets)."""
        return encode_targets(self.config, targets, inputs)

    def decode_outputs(self, outputs, inputs):
        """Raw outputs from what the network gives (qai_intelligence.model_config.decode_outputs)."""
        return decode_outputs(self.config, outputs, inputs)

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
