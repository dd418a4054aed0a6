"""Checkpoints: a model's weights with its config, written beside a metadata file, and loaded only when they fit.

No rclpy import. A checkpoint is a directory holding `model.pt` (torch.save of {format, config, state_dict})
and `meta.json` (the config again, the SHA-256 of model.pt, the data seed, the metrics on held-out data, the
library versions and where it was made: git commit, Python, CPU). `load` refuses, with a `CheckpointError`
that names what is wrong:
  - a missing or unreadable file, a file whose SHA-256 differs from meta.json's (corrupt or truncated);
  - a model for another task, or whose inputs are not the features the caller feeds (names and order);
  - weights that do not fit the config (another cell: CfC and LTC weights are not interchangeable; another
    size or wiring), checked by loading them strictly into a model built from the config.
It loads with `weights_only=True`: a checkpoint cannot run code.

`load_for_inference` is what the running engine uses: a CfC checkpoint is read without torch
(qai_intelligence.weights: the same checks, its weights checked against the shapes the config implies) into
a `LoadedModel` that steps in numpy; any other cell loads through `load`. torch is imported only by `save`,
`load` and what calls them (training, the promotion gate).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from qai_edge.text import shorten
from qai_intelligence.model_config import ModelConfig

FORMAT = "qai-intelligence-checkpoint/1"
WEIGHTS_FILE = "model.pt"
META_FILE = "meta.json"
MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024  # a bound on what is read: our models are kilobytes


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance() -> dict[str, Any]:
    """Return where a model is made: the git commit of this code, Python, the CPU and OS.

    The commit carries `-dirty` when tracked files differ from it, and is "unknown" outside a git work tree.
    Training is bit-for-bit repeatable only on the same code, libraries and CPU (floating-point kernels
    differ between instruction sets).
    """
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        commit += "-dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"git_commit": commit, "python": f"{platform.python_implementation()} {platform.python_version()}",
            "cpu": cpu, "machine": platform.machine(), "system": platform.platform()}


def save(model, directory: Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write model.pt and meta.json into `directory` (created); return the directory."""
    import torch

    from qai_intelligence.models import library_versions

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    torch.save({"format": FORMAT, "config": model.config.to_dict(),
                "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}, weights)
    meta = {"format": FORMAT, "config": model.config.to_dict(), "sha256": sha256(weights),
            "bytes": weights.stat().st_size, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "libraries": library_versions(), "made_on": provenance(), **dict(metadata or {})}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format: expected {FORMAT!r}, got "
                              f"{shorten(meta.get('format') if isinstance(meta, dict) else meta)}")
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: config: expected a mapping, got {shorten(meta.get('config'))}")
    return meta


def _weights_file(directory: Path, meta: Mapping[str, Any]) -> Path:
    """model.pt, once it exists, is not too large and has the SHA-256 meta.json gives."""
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    size = weights.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{weights}: {size} bytes, more than the {MAX_CHECKPOINT_BYTES} allowed")
    digest = sha256(weights)
    if digest != meta.get("sha256"):
        raise CheckpointError(f"{weights}: corrupt: its SHA-256 is {digest[:16]}..., meta.json says "
                              f"{str(meta.get('sha256'))[:16]}...")
    return weights


def _config(payload, meta: Mapping[str, Any], directory: Path, weights: Path, task: str | None,
            inputs: Sequence[str] | None) -> tuple[ModelConfig, dict]:
    """Return the checkpoint's config and state dict, once the payload is ours and fits the caller."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: not a {FORMAT} checkpoint")
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{weights}: config: {error}") from None
    try:
        described = ModelConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / META_FILE}: config: {error}") from None
    if config.to_dict() != described.to_dict():
        raise CheckpointError(f"{directory}: model.pt and meta.json describe different models")
    if task is not None and config.task != task:
        raise CheckpointError(f"{directory}: a model for task {config.task!r}, not {task!r}")
    if inputs is not None and tuple(config.inputs) != tuple(inputs):
        raise CheckpointError(f"{directory}: its inputs {shorten(list(config.inputs), 120)} are not the features "
                              f"this engine feeds {shorten(list(inputs), 120)}")
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights}: no state_dict")
    return config, state


def _check_state(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], config: ModelConfig,
                 weights: Path, is_array, is_finite) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{weights}: the weights are not a {config.cell} model's: missing "
                              f"{shorten(missing, 100)}, unexpected {shorten(unexpected, 100)}")
    for key, tensor in state.items():
        if not is_array(tensor) or tuple(tensor.shape) != tuple(expected[key]):
            shape = tuple(tensor.shape) if is_array(tensor) else type(tensor).__name__
            raise CheckpointError(f"{weights}: {key}: shape {shape}, the config needs {tuple(expected[key])}")
        if not is_finite(tensor):
            raise CheckpointError(f"{weights}: {key}: holds NaN or infinite values")


def load(directory: Path, task: str | None = None, inputs: Sequence[str] | None = None):
    """Load and check a checkpoint; return the model (a torch SequenceModel, in eval mode) and its metadata."""
    import torch

    from qai_intelligence.models import build

    directory = Path(directory)
    meta = read_meta(directory)
    weights = _weights_file(directory, meta)
    try:
        payload = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds on a damaged file
        raise CheckpointError(f"{weights}: unreadable ({type(error).__name__}: {shorten(str(error))})") from None
    config, state = _config(payload, meta, directory, weights, task, inputs)
    model = build(config)
    _check_state(state, {key: tuple(value.shape) for key, value in model.state_dict().items()}, config, weights,
                 lambda value: isinstance(value, torch.Tensor), lambda value: bool(torch.isfinite(value).all()))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta


def load_for_inference(directory: Path, task: str | None = None, inputs: Sequence[str] | None = None):
    """Load and check a checkpoint for the running engine: a CfC as a LoadedModel (no torch), else as `load`."""
    from qai_intelligence import weights as weights_reader
    from qai_intelligence.fast import CfcStep, LoadedModel, cfc_shapes

    directory = Path(directory)
    meta = read_meta(directory)
    if meta["config"].get("cell") != "cfc":
        return load(directory, task, inputs)
    weights = _weights_file(directory, meta)
    try:
        payload = weights_reader.read(weights)
    except weights_reader.WeightsError as error:
        raise CheckpointError(f"{weights}: unreadable ({shorten(str(error))})") from None
    config, state = _config(payload, meta, directory, weights, task, inputs)
    if config.cell != "cfc":
        return load(directory, task, inputs)
    _check_state(state, cfc_shapes(config), config, weights,
                 lambda value: isinstance(value, np.ndarray) and value.dtype == np.float32,
                 lambda value: bool(np.isfinite(value).all()))
    return LoadedModel(config, CfcStep(config, state)), meta
