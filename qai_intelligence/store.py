"""The versioned model store and its promotion gate: how the engine updates itself safely. No rclpy import.

Layout under the store's root, one directory per task (endurance, anomaly, policy):
  <task>/v0001/model.pt, meta.json    a checkpoint (qai_intelligence.checkpoint), never changed once added
                                      (and hub_signature.json when the hub signed it)
  <task>/active.json                  {"version": "v0003", "history": ["v0001", "v0003"]} (written atomically)
  changes.jsonl                       one line per change: added, activated, refused, rolled back, with metrics
A store starts from the checkpoints shipped with the package (qai_intelligence/models/<task>), added as v0001
and activated. A candidate becomes active only through `promote`, which scores it and the active model on
the same held-out evaluation and activates it only when it does better by `margin`; `rollback` returns to
the version active before. The store only decides and records; the node loads and swaps.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from qai_hub.model_signing import SIGNATURE_FILE
from qai_intelligence.checkpoint import META_FILE, WEIGHTS_FILE, CheckpointError, read_meta
from qai_intelligence.statistics import paired_difference

TASKS = ("endurance", "anomaly", "policy")
SHIPPED = Path(__file__).resolve().parent / "models"
ACTIVE_FILE = "active.json"
SHIPPED_NOTE = "shipped with the package"
LOG_FILE = "changes.jsonl"

# An evaluation: checkpoint directory -> (score, details); lower scores are better.
Evaluate = Callable[[Path], tuple[float, dict[str, Any]]]
# A judge of a checkpoint about to be added: (source, staged copy, task, store root) -> a note for the log.
Verify = Callable[[Path, Path, str, Path], str]


class StoreError(Exception):
    """A store operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class Decision:
    activated: bool
    message: str
    active: str
    previous: str
    metrics: dict[str, Any]


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise StoreError(f"model: expected one of {', '.join(TASKS)}, got {task!r}")


class ModelStore:
    def __init__(self, root: Path, shipped: Path = SHIPPED, clock: Callable[[], float] = time.time):
        self.root = Path(root).expanduser()
        self.shipped = Path(shipped)
        self.clock = clock
        self._lock = threading.RLock()  # add() runs inside _ensure()

    # -- Reading ------------------------------------------------------------------------------------

    def versions(self, task: str) -> list[str]:
        _check_task(task)
        directory = self.root / task
        return sorted(p.name for p in directory.glob("v[0-9][0-9][0-9][0-9]") if p.is_dir()) \
            if directory.is_dir() else []

    def path(self, task: str, version: str) -> Path:
        _check_task(task)
        if version not in self.versions(task):
            raise StoreError(f"version: {task} has no version {version!r} (it has {', '.join(self.versions(task))})")
        return self.root / task / version

    def _state(self, task: str) -> dict[str, Any]:
        try:
            return json.loads((self.root / task / ACTIVE_FILE).read_text())
        except FileNotFoundError:
            return {"version": "", "history": []}
        except (OSError, ValueError) as error:
            raise StoreError(f"{self.root / task / ACTIVE_FILE}: unreadable ({error})") from None

    def active(self, task: str) -> tuple[str, Path]:
        """Return the active version and its directory (an empty store first imports the shipped model)."""
        with self._lock:
            self._ensure(task)
            version = self._state(task)["version"]
        return version, self.root / task / version

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = (self.root / LOG_FILE).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    # -- Changing -----------------------------------------------------------------------------------

    def add(self, task: str, checkpoint: Path, note: str = "", verify: Verify | None = None) -> str:
        """Copy a checkpoint directory into the store as the next version (not activated); return it.

        `verify(source, staged copy, task, root)` judges the copy before it becomes a version: it returns a note
        for the log, or raises CheckpointError (nothing is added).
        """
        _check_task(task)
        checkpoint = Path(checkpoint).expanduser()
        meta = read_meta(checkpoint)  # raises CheckpointError
        if meta.get("config", {}).get("task") != task:
            raise CheckpointError(f"{checkpoint}: a model for task {meta.get('config', {}).get('task')!r}, "
                                  f"not {task!r}")
        if not (checkpoint / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"{checkpoint / WEIGHTS_FILE}: missing")
        with self._lock:
            if note != SHIPPED_NOTE:
                self._ensure(task)  # the shipped model first: a candidate is never active by default
            existing = self.versions(task)
            version = f"v{int(existing[-1][1:]) + 1 if existing else 1:04d}"
            target = self.root / task / version
            staging = self.root / task / f".{version}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for name in (WEIGHTS_FILE, META_FILE, SIGNATURE_FILE):
                if name != SIGNATURE_FILE or (checkpoint / name).is_file():
                    shutil.copy2(checkpoint / name, staging / name)
            try:
                trust = verify(checkpoint, staging, task, self.root) if verify is not None else ""
            except CheckpointError:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            os.replace(staging, target)
            self._log({"action": "added", "task": task, "version": version, "source": str(checkpoint),
                       "metrics": meta.get("metrics", {}), "note": note, **({"trust": trust} if trust else {})})
        return version

    def promote(self, task: str, version: str, evaluate: Evaluate, margin: float = 0.0) -> Decision:
        """Activate `version` only if it scores better than the active model by `margin` on `evaluate`.

        `margin` is a fraction of the active model's score. When both scores come with a score per flight or
        episode (`units` in their details, the same units in the same order), better means the paired
        difference's 95 % interval lies wholly below minus the margin; otherwise, the candidate's score below
        the active one's less the margin. When the candidate's details carry a `bar` ({"name", "score",
        "units"}: a policy's is the tuned PID on the same episodes), it must beat that the same way too.
        """
        candidate = self.path(task, version)
        active, active_path = self.active(task)
        if version == active:
            return Decision(False, f"{task} {version} is already active", active, active, {})
        candidate_score, candidate_details = evaluate(candidate)
        active_score, active_details = evaluate(active_path)
        metrics = {"candidate": {"version": version, "score": candidate_score, **candidate_details},
                   "active": {"version": active, "score": active_score, **active_details}}
        bar = candidate_details.get("bar")
        message = _worse(candidate_score, candidate_details, active_score, active_details, margin,
                         f"the active {active}")
        if not message and isinstance(bar, dict):
            message = _worse(candidate_score, candidate_details, bar["score"], bar, margin, f"the {bar['name']}")
        if message:
            message = f"{task} {version} refused: {message}"
            with self._lock:
                self._log({"action": "refused", "task": task, "version": version, "active": active,
                           "metrics": metrics, "reason": message})
            return Decision(False, message, active, active, metrics)
        with self._lock:
            self._activate(task, version)
            self._log({"action": "activated", "task": task, "version": version, "previous": active,
                       "metrics": metrics})
        return Decision(True, f"{task} {version} activated: {candidate_score:.4g} against {active_score:.4g} for "
                              f"{active}", version, active, metrics)

    def rollback_target(self, task: str) -> str:
        """Return the version `rollback` would return to (StoreError when there is none)."""
        with self._lock:
            self._ensure(task)
            state = self._state(task)
            if len(state["history"]) < 2:
                raise StoreError(f"{task}: nothing to roll back to ({state['version']} is the first active version)")
            return state["history"][-2]

    def rollback(self, task: str) -> Decision:
        """Return to the version that was active before the present one."""
        with self._lock:
            self._ensure(task)
            state = self._state(task)
            history = state["history"]
            if len(history) < 2:
                raise StoreError(f"{task}: nothing to roll back to ({state['version']} is the first active version)")
            current, previous = history[-1], history[-2]
            state = {"version": previous, "history": history[:-1]}
            self._write_state(task, state)
            self._log({"action": "rolled_back", "task": task, "version": previous, "from": current})
        return Decision(True, f"{task} rolled back from {current} to {previous}", previous, current, {})

    # -- Internals (called with the lock held) ------------------------------------------------------

    def _ensure(self, task: str) -> None:
        _check_task(task)
        if self._state(task)["version"]:
            return
        if not self.versions(task):
            shipped = self.shipped / task
            if not (shipped / META_FILE).is_file():
                raise StoreError(f"{task}: the store {self.root} is empty and no model ships in {shipped}")
            self.add(task, shipped, note=SHIPPED_NOTE)
        self._activate(task, self.versions(task)[-1])
        self._log({"action": "activated", "task": task, "version": self.versions(task)[-1],
                   "reason": "first use of the store"})

    def _activate(self, task: str, version: str) -> None:
        state = self._state(task)
        self._write_state(task, {"version": version, "history": [*state["history"], version][-100:]})

    def _write_state(self, task: str, state: dict[str, Any]) -> None:
        path = self.root / task / ACTIVE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state) + "\n")
        os.replace(temporary, path)

    def _log(self, entry: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())), **entry}
        with open(self.root / LOG_FILE, "a") as file:
            file.write(json.dumps(entry, default=str) + "\n")


def _worse(score: float, details: dict, other_score: float, other: dict, margin: float, name: str) -> str:
    """Say why `score` is not better than `other_score` by `margin` (a fraction of it); '' when it is."""
    units, other_units = details.get("units"), other.get("units")
    needed = margin * abs(other_score)
    if isinstance(units, list) and isinstance(other_units, list) and len(units) == len(other_units) and units:
        d = paired_difference(units, other_units)
        if d["high"] < -needed:
            return ""
        return (f"it scored {score:.4g} on the held-out evaluation, {name} {other_score:.4g} on the same "
                f"{d['n']} items: difference {d['mean']:+.4g}, 95 % interval [{d['low']:+.4g}, {d['high']:+.4g}], "
                f"not wholly below -{needed:.4g} (margin {margin:g} of its score; lower is better)")
    if score < other_score - needed:
        return ""
    return (f"it scored {score:.4g} on the held-out evaluation, {name} {other_score:.4g} "
            f"(lower is better, margin {margin:g} of its score)")
