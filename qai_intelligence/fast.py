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
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

Step = Callable[[np.ndarray, Any, float], "tuple[np.ndarray, Any]"]


def stepper(model) -> Step:
    """Return the fastest exact step of `model` (a qai_intelligence.models.SequenceModel)."""
    if model.config.cell == "cfc":
        layers = _cfc_layers(model)
        if layers is not None:
            return CfcStep(model, layers)
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


def _cfc_layers(model) -> list[tuple[np.ndarray, np.ndarray, int]] | None:
    """Each layer's stacked weights (ff1, ff2, time_a, time_b), bias and size; None if not a plain wired CfC."""
    rnn = model.rnn
    cell = getattr(rnn, "rnn_cell", None)
    if getattr(rnn, "use_mixed", True) or type(getattr(rnn, "fc", None)).__name__ != "Identity" \
            or not hasattr(cell, "_layers"):
        return None
    layers = []
    for layer in cell._layers:
        if layer.mode != "default" or layer.backbone_layers != 0:
            return None
        mask = _numpy(layer.sparsity_mask) if layer.sparsity_mask is not None else 1.0
        weight = np.concatenate([_numpy(layer.ff1.weight) * mask, _numpy(layer.ff2.weight) * mask,
                                 _numpy(layer.time_a.weight), _numpy(layer.time_b.weight)])
        bias = np.concatenate([_numpy(layer.ff1.bias), _numpy(layer.ff2.bias), _numpy(layer.time_a.bias),
                               _numpy(layer.time_b.bias)])
        layers.append((np.ascontiguousarray(weight.T), bias, layer.hidden_size))
    return layers


class CfcStep:
    """A wired CfC SequenceModel's step in numpy (its state a (1, units) float32 array)."""

    def __init__(self, model, layers: list[tuple[np.ndarray, np.ndarray, int]]):
        self.model = model
        self.layers = layers
        self.units = sum(size for _, _, size in layers)
        self.input_mean, self.input_std = _numpy(model.input_mean), _numpy(model.input_std)
        self.input_mask = _numpy(model.input_mask) if model.input_mask is not None else None
        self.head_weight, self.head_bias = np.ascontiguousarray(_numpy(model.head.weight).T), _numpy(model.head.bias)
        self.output_mean, self.output_std = _numpy(model.output_mean), _numpy(model.output_std)

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
        return self.model.decode_outputs(y, x).astype(np.float32), np.concatenate(new, 1)
