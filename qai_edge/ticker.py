"""Fixed-rate ticks on a thread of their own, beside a node's executor. No rclpy import.

An rclpy timer wakes the node's executor, which rebuilds its whole wait set in Python at every wake (every
service, parameter service, action server and timer of the node: 0.5-1 ms here, docs/performance.md). A node
whose work is a fast periodic computation on polled inputs (qai_edge.polled) pays that at each tick for
nothing; a Ticker calls it from its own thread instead and the executor sleeps until something arrives.

The schedule is by the monotonic clock: tick k of a period p is due at start + k * p, a late tick runs at
once, and ticks missed by more than one period are skipped (not run in a burst), as an rclpy timer does. Given
a `lock`, every tick holds it: what else touches the ticks' state (the executor's callbacks, a model swap, the
health report) takes the same lock. A tick that raises is reported to `on_error` and the ticks go on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Sequence


class Ticker:
    def __init__(self, schedule: Sequence[tuple[float, Callable[[], None]]], lock: threading.Lock | None,
                 on_error: Callable[[Callable, BaseException], None], name: str = "ticks"):
        for period, _ in schedule:
            if not period > 0:
                raise ValueError(f"period: expected > 0 s, got {period!r}")
        self.schedule = list(schedule)
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.on_error = on_error
        self.ticks = [0] * len(self.schedule)
        self.skipped = [0] * len(self.schedule)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop ticking and wait (at most `timeout` s) for a tick under way to end."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        began = time.monotonic()
        due = [began + period for period, _ in self.schedule]
        while not self._stop.is_set():
            now = time.monotonic()
            which = min(range(len(due)), key=due.__getitem__)
            if due[which] > now:
                if self._stop.wait(due[which] - now):
                    return
                continue
            period, tick = self.schedule[which]
            with self.lock:
                if self._stop.is_set():
                    return
                try:
                    tick()
                except Exception as error:  # reported; the next tick runs
                    self.on_error(tick, error)
            self.ticks[which] += 1
            late = int((time.monotonic() - due[which]) // period)
            self.skipped[which] += late
            due[which] += (late + 1) * period
