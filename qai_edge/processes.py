"""Child processes: tie one to its parent, stop one by PID with signals in turn. No rclpy import.

The supervisor, the local broker, the demo and the dashboard launcher all start and stop processes this way.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from typing import Sequence

_PR_SET_PDEATHSIG = 1


def stop_process(process: subprocess.Popen, timeout: float = 5.0, signals: Sequence[int] = (signal.SIGTERM,
                 signal.SIGKILL), group: bool = False) -> None:
    """Send each signal in turn until `process` has exited, waiting `timeout` after each; by PID (or group)."""
    for sig in signals:
        if process.poll() is not None:
            return
        try:
            (os.killpg if group else os.kill)(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Tie the child to its parent and restore the stop signals (a preexec_fn).

    The child gets SIGTERM when the thread that started it ends (Linux's PR_SET_PDEATHSIG follows the
    thread, not the process: start long-lived children from a thread that lives as long as they must; a
    broker restarted from a short-lived thread died with it in bench/chaos.py), and takes the stop signals with their
    default action even where the supervisor's own start ignored them (a shell starting `qai-edge up &`
    without job control ignores SIGINT, and an ignored signal survives exec).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        libc.signal(stop_signal, None)  # SIG_DFL; Python's signal.signal is not safe here (maybe not main thread)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The parent may have died before prctl took effect.
    if os.getppid() == 1:
        os._exit(1)
