"""Model activation and rollback for the node's services: checked, gated, prepared for the swap.

No rclpy import.

Which checkpoints activate_model takes (ModelTrust): one in the robot's own store, or one that carries a
valid hub signature (qai_hub.model_signing: hub_signature.json, as `qai-hub deploy-model` sends it), checked
on the store's own copy before it becomes a version (so what was checked is what is loaded); with
`unsigned_checkpoints` any. A ROS peer that can call the service can therefore offer only models the hub
signed, and the gate still decides whether they fly.

`check` runs on the executor thread and refuses a bad request at once (unknown model, malformed version, an
overlong path, a change already in progress). `promote` and `rollback` run in a worker thread: they score
(through `scoring`: the node's scores in a low-priority child process, qai_intelligence.gate_process), decide,
load (torch-free for a CfC) and warm the new model, and return what the node swaps in between two ticks. A
checkpoint that fails to load, or a candidate the gate refuses, leaves the active model in service.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, ContextManager, Mapping

from qai_edge.text import shorten
from qai_hub import model_signing
from qai_hub.protocol import Keyring
from qai_intelligence import checkpoint
from qai_intelligence.evaluation import FEATURES
from qai_intelligence.runtime import ModelSlot, Prepared
from qai_intelligence.store import Decision, Evaluate, ModelStore

VERSION = re.compile(r"^v[0-9]{4}$")


class ModelTrust:
    """Which checkpoint directories activate_model takes, and why (a note for the store's log)."""

    def __init__(self, key_paths: list[str], unsigned: bool = False):
        self.key_paths = list(key_paths)
        self.unsigned = unsigned

    def __call__(self, source: Path, staged: Path, task: str, store_root: Path) -> str:
        """Return why the staged copy of `source` may be added; CheckpointError says why not."""
        if source.resolve().is_relative_to(store_root.resolve()):
            return "from the robot's store"
        if self.unsigned:
            return "unsigned (unsigned_checkpoints is true)"
        keyring, errors, missing = Keyring.from_files(self.key_paths)  # read at each use: keys can be rotated
        if not keyring.keys:
            problems = [*errors, *(f"{path}: no such file" for path in missing)] or ["model_keys is empty"]
            raise checkpoint.CheckpointError(f"{source}: no hub key to check its signature with "
                                             f"({'; '.join(problems)})")
        try:
            signed_by = model_signing.verify_directory(staged, keyring, task)
        except model_signing.ModelRejected as error:
            raise checkpoint.CheckpointError(f"{source}: refused: {error}") from None
        return f"signed by the hub (key {', '.join(signed_by)})"


class ModelUpdater:
    def __init__(self, store: ModelStore, slots: Mapping[str, ModelSlot],
                 scoring: Callable[[str], ContextManager[Evaluate]], margin: Callable[[], float],
                 max_path_length: int, trust: ModelTrust):
        self.store = store
        self.trust = trust
        self.slots = slots
        self.scoring = scoring  # task -> a context giving the gate's Evaluate for the span of one decision
        self.margin = margin
        self.max_path_length = max_path_length
        self.busy = False

    def check(self, task: str, version: str = "", path: str | None = "") -> str:
        """Why the request cannot be served ('' when it can). `path=None`: a rollback (no version either)."""
        if task not in self.slots:
            return f"model: expected one of {', '.join(self.slots)}, got {shorten(task)}"
        if path is not None:
            if version and not VERSION.match(version):
                return f"version: expected v0001 ... v9999, got {shorten(version)}"
            if len(path) > self.max_path_length:
                return f"checkpoint: {len(path)} characters, more than max_path_length {self.max_path_length}"
            if bool(version) == bool(path):
                return "give exactly one of version and checkpoint"
        return "another model change is in progress" if self.busy else ""

    def promote(self, task: str, version: str, path: str) -> tuple[Decision, Prepared | None]:
        version = version or self.store.add(task, Path(path), verify=self.trust)
        with self.scoring(task) as evaluate:
            decision = self.store.promote(task, version, evaluate, self.margin())
        return decision, self._prepare(task, decision.active) if decision.activated else None

    def rollback(self, task: str) -> tuple[Decision, Prepared]:
        previous = self.store.rollback_target(task)
        prepared = self._prepare(task, previous)  # loaded before the store changes: a bad one changes nothing
        return self.store.rollback(task), prepared

    def _prepare(self, task: str, version: str) -> Prepared:
        model, meta = checkpoint.load_for_inference(self.store.path(task, version), task, FEATURES[task].features)
        return self.slots[task].prepare(model, version, meta)
