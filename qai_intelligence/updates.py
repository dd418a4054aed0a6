"""Model activation and rollback for the node's services: checked, gated, prepared for the swap.

No rclpy import.

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
from qai_intelligence import checkpoint
from qai_intelligence.evaluation import FEATURES
from qai_intelligence.runtime import ModelSlot, Prepared
from qai_intelligence.store import Decision, Evaluate, ModelStore

VERSION = re.compile(r"^v[0-9]{4}$")


class ModelUpdater:
    def __init__(self, store: ModelStore, slots: Mapping[str, ModelSlot],
                 scoring: Callable[[str], ContextManager[Evaluate]], margin: Callable[[], float],
                 max_path_length: int):
        self.store = store
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
        version = version or self.store.add(task, Path(path))
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
