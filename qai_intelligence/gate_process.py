"""The promotion gate's scoring in a child process at low priority, never in the process that runs the ticks.

No rclpy import. A gate simulates flights with torch for a few seconds to minutes; in the engine's own process
that work would share its interpreter lock with the 20 Hz anomaly tick and the 50 Hz policy, and would leave
torch (hundreds of MiB) loaded in a process that otherwise runs without it. `scoring(task)` opens one child
(spawned, not forked: the engine's DDS threads must not be copied), lowers its priority, scores each checkpoint
it is given there (qai_intelligence.evaluation, whose held-out data the child makes once and keeps for the
candidate and the active model alike, on a gate seed drawn afresh for each decision, so no candidate can be
tuned to one fixed set of gate flights), and ends it when the gate is decided. A checkpoint the child refuses
raises the same CheckpointError here; a child that dies raises GateProcessError.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import secrets
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Iterator

from qai_edge.processes import die_with_parent

NICENESS = 10  # the gate yields the CPU to every engine at the default priority

Evaluate = Callable[[Path], tuple[float, dict[str, Any]]]


class GateProcessError(RuntimeError):
    """The gate's child process could not score (it died, or could not start)."""


def _lower_priority(niceness: int) -> None:
    die_with_parent()  # an engine killed mid-gate does not leave its scorer running
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        os.nice(niceness)
    except OSError:  # not allowed here: still scored, at the default priority
        pass


def _score(task: str, directory: str, size: int | None, seed: int) -> tuple[float, dict[str, Any]]:
    import torch

    from qai_intelligence.evaluation import evaluate_checkpoint

    torch.set_num_threads(1)
    score, details = evaluate_checkpoint(task, Path(directory), size, seed)
    return score, {**details, "scored_in_pid": os.getpid(), "niceness": os.nice(0)}


@contextlib.contextmanager
def scoring(task: str, niceness: int = NICENESS, size: int | None = None,
            seed: int | None = None) -> Iterator[Evaluate]:
    """Yield an Evaluate (checkpoint directory -> score, details) that runs in one low-priority child process.

    Every checkpoint of the decision is scored on the flights of `seed` (default: one drawn now).
    """
    from qai_intelligence.evaluation import GATE_SEED

    seed = GATE_SEED + 1 + secrets.randbelow(1_000_000) if seed is None else seed
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_lower_priority, initargs=(niceness,))

    def evaluate(directory: Path) -> tuple[float, dict[str, Any]]:
        try:
            return pool.submit(_score, task, str(directory), size, seed).result()
        except BrokenProcessPool as error:
            raise GateProcessError(f"the gate's scoring process died ({error})") from None

    try:
        yield evaluate
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
