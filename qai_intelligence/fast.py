"""One tick of a model in service, in numpy: the running engine's inference without torch's per-call overhead.

No rclpy import, and no torch import of its own (it reads the weights of a model torch built). A CfC
`SequenceModel` (ncps's wired CfC: the NCP wiring's layers of CfC cells, default mode, no backbone, no mixed
memory) steps here from its weights, the sparsity masks applied once and each layer's four linear maps
stacked into one matrix, in float32 as torch computes it: the same outputs to float32 rounding
(test_intelligence_models compares them with torch on the shipped models). A torch call of the same step
costs several times more, mostly in Python around tiny tensors (py-spy: a quarter of the idle engine's
samples; docs/performance.md). Any other model (LTC, GRU, another CfC mode) steps through torch.

`stepper(model)` returns `step(x, state, timespan) -> (outputs, state)`: x a (1, features) float32 array of
raw inputs, outputs (1, outputs) raw, the state whatever the previous call returned (None: a fresh start).
`LoadedModel` is a CfC checkpoint as qai_intelligence.checkpoint.load_for_inference reads it without torch (the
intelligence engine then never imports torch unless a model change is gated); `cfc_shapes` says what its
weights must be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from qai_intelligence.model_config import ModelConfig, decode_outputs

Step = Callable[[np.ndarray, Any, float], "tuple[np.ndarray, Any]"]


def stepper(model) -> Step:
    """Return the fastest exact step of `model` (a `LoadedModel`, or a qai_intelligence.models.SequenceModel)."""
    if isinstance(model, LoadedModel):
        return model.step
    if model.config.cell == "cfc" and _plain_cfc(model):
        return CfcStep(model.config, {key: _numpy(value) for key, value in model.state_dict().items()})
    return TorchStep(model)


class TorchStep:
    """The model's own `step`, in torch (its state a tensor)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x: np.ndarray, state, timespan: float = 1.0):
        import torch

        y, state = self.model.step(torch.from_numpy(x), state, timespan)
        return y.numpy(), state


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def _plain_cfc(model) -> bool:
    """Whether `model`'s network is the wired CfC this module steps: default mode, no backbone or mixed memory."""
    rnn = model.rnn
    layers = getattr(getattr(rnn, "rnn_cell", None), "_layers", None)
    return (not getattr(rnn, "use_mixed", True) and type(getattr(rnn, "fc", None)).__name__ == "Identity"
            and layers is not None and all(layer.mode == "default" and layer.backbone_layers == 0
                                           for layer in layers))


def cfc_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Return the state dict (names and shapes) of a CfC SequenceModel built from `config`, without torch."""
    from ncps.wirings import AutoNCP

    n_in, n_out = len(config.inputs), len(config.outputs)
    wiring = AutoNCP(config.units, config.motor, seed=config.seed)
    wiring.build(n_in)
    shapes = {"input_mean": (n_in,), "input_std": (n_in,), "output_mean": (n_out,), "output_std": (n_out,)}
    if config.extra.get("masked_inputs"):
        shapes["input_mask"] = (n_in,)
    features = n_in
    for layer in range(wiring.num_layers):
        hidden = len(wiring.get_neurons_of_layer(layer))
        prefix = f"rnn.rnn_cell.layer_{layer}."
        shapes[prefix + "sparsity_mask"] = (hidden, features + hidden)
        for name in ("ff1", "ff2", "time_a", "time_b"):
            shapes[f"{prefix}{name}.weight"], shapes[f"{prefix}{name}.bias"] = (hidden, features + hidden), (hidden,)
        features = hidden
    shapes["head.weight"], shapes["head.bias"] = (n_out, config.motor), (n_out,)
    return shapes


class CfcStep:
    """A wired CfC SequenceModel's step in numpy, from its state dict (its state a (1, units) float32 array)."""

    def __init__(self, config: ModelConfig, arrays: Mapping[str, np.ndarray]):
        self.config = config
        self.layers = []
        layer = 0
        while f"rnn.rnn_cell.layer_{layer}.ff1.weight" in arrays:
            prefix = f"rnn.rnn_cell.layer_{layer}."
            mask = arrays[prefix + "sparsity_mask"]
            weight = np.concatenate([arrays[prefix + "ff1.weight"] * mask, arrays[prefix + "ff2.weight"] * mask,
                                     arrays[prefix + "time_a.weight"], arrays[prefix + "time_b.weight"]])
            bias = np.concatenate([arrays[prefix + name + ".bias"] for name in ("ff1", "ff2", "time_a", "time_b")])
            self.layers.append((np.ascontiguousarray(weight.T, np.float32), bias.astype(np.float32), len(mask)))
            layer += 1
        self.units = sum(size for _, _, size in self.layers)
        self.input_mean, self.input_std = arrays["input_mean"], arrays["input_std"]
        self.input_mask = arrays.get("input_mask")
        self.head_weight, self.head_bias = np.ascontiguousarray(arrays["head.weight"].T), arrays["head.bias"]
        self.output_mean, self.output_std = arrays["output_mean"], arrays["output_std"]

    def __call__(self, x: np.ndarray, state, timespan: float = 1.0):
        x = np.asarray(x, dtype=np.float32)
        z = (x - self.input_mean) / self.input_std
        if self.input_mask is not None:
            z = z * self.input_mask
        h = np.zeros((x.shape[0], self.units), np.float32) if state is None else state
        span = np.float32(timespan)
        new, start, inputs = [], 0, z
        for weight, bias, size in self.layers:
            v = np.concatenate([inputs, h[:, start:start + size]], 1) @ weight + bias
            ff1, ff2 = np.tanh(v[:, :size]), np.tanh(v[:, size:2 * size])
            gate = 0.5 + 0.5 * np.tanh(0.5 * (v[:, 2 * size:3 * size] * span + v[:, 3 * size:]))  # sigmoid, no overflow
            inputs = ff1 * (1.0 - gate) + gate * ff2
            new.append(inputs)
            start += size
        y = (inputs @ self.head_weight + self.head_bias) * self.output_std + self.output_mean
        return decode_outputs(self.config, y, x).astype(np.float32), np.concatenate(new, 1)


@dataclass
class LoadedModel:
    """A checkpoint's CfC model as the running engine needs it, without torch: its config and its numpy step."""

    config: ModelConfig
    step: CfcStep

    @property
    def output_std(self) -> np.ndarray:
        return self.step.output_std


def output_std(model) -> np.ndarray:
    """Return the output scale of a LoadedModel or a SequenceModel, as numpy."""
    std = model.output_std
    return std if isinstance(std, np.ndarray) else _numpy(std)
