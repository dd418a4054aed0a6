"""Telling this process's own stall from others' silence. No rclpy import.

A process that judges other parts by how long it last heard from them (an engine's heartbeats, a sensor's
readings) is wrong about them whenever it did not run itself: a loaded CPU, a SIGSTOP, a slow first model
call. Its periodic check then runs late, and the messages that arrived meanwhile are still queued behind it,
so every stream looks silent at once. `StallHold` notices the late check and asks for silence not to be
judged for a while, until the queued messages have been read.
"""

from __future__ import annotations


class StallHold:
    """Call `step(now)` from one periodic callback; `holding(now)` is True for `hold` s after a stall.

    A stall is a gap of more than `gap` seconds between two steps (choose a few periods of the callback).
    """

    def __init__(self, gap: float, hold: float):
        self.gap, self.hold = gap, hold
        self.stalls = 0  # stalls seen so far
        self._last_step: float | None = None
        self._until = float("-inf")

    def step(self, now: float) -> bool:
        """Note a step at `now`; return whether this process was stalled just before it."""
        stalled = self._last_step is not None and now - self._last_step > self.gap
        if stalled:
            self.stalls += 1
            self._until = now + self.hold
        self._last_step = now
        return stalled

    def holding(self, now: float) -> bool:
        """Whether silence must not be judged at `now` (within `hold` s of the end of a stall)."""
        return now < self._until
