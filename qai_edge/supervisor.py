"""Runs a set of node processes, restarts the ones that die, stops them all. No rclpy import.

Each child gets its own session (a Ctrl-C in the terminal reaches only the supervisor, which stops the
children in order) and is tied to the supervisor's life with PR_SET_PDEATHSIG, so even a supervisor killed
with SIGKILL leaves no node behind.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from qai_edge.processes import die_with_parent
from qai_edge.profile import RestartPolicy, StopPolicy


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    env: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Event:
    """Something that happened to a process: started, exited, restarting, gave_up, stopped."""

    kind: str
    name: str
    pid: int | None = None
    detail: str = ""


class ManagedProcess:
    def __init__(self, spec: ProcessSpec):
        self.spec = spec
        self.popen: subprocess.Popen | None = None
        self.state = "new"  # new, running, backoff, failed, stopped
        self.restart_times: deque[float] = deque()
        self.next_start_at: float | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    def __init__(self, specs: Sequence[ProcessSpec], stop: StopPolicy = StopPolicy(),
                 on_event: Callable[[Event], None] = lambda event: None, clock=time.monotonic):
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"process names must be unique, got {names}")
        self.processes = {spec.name: ManagedProcess(spec) for spec in specs}
        self.stop_policy = stop
        self._emit = on_event
        self._clock = clock

    def start_all(self) -> None:
        for process in self.processes.values():
            self._start(process)

    def _start(self, process: ManagedProcess) -> None:
        spec = process.spec
        try:
            process.popen = subprocess.Popen(list(spec.argv), env=dict(spec.env) if spec.env else None,
                                             start_new_session=True, preexec_fn=die_with_parent)
        except OSError as error:
            process.state = "failed"
            self._emit(Event("gave_up", spec.name, None, f"cannot start {spec.argv[0]}: {error}"))
            return
        process.state = "running"
        process.starts += 1
        process.next_start_at = None
        self._emit(Event("started", spec.name, process.popen.pid))

    def poll(self) -> None:
        """Reap exited processes and start the ones whose backoff is over. Call it often."""
        now = self._clock()
        for process in self.processes.values():
            if process.state == "running" and process.popen.poll() is not None:
                self._on_exit(process, now)
            elif process.state == "backoff" and now >= process.next_start_at:
                self._start(process)

    def _on_exit(self, process: ManagedProcess, now: float) -> None:
        spec = process.spec
        code = process.popen.returncode
        self._emit(Event("exited", spec.name, process.popen.pid, _describe_exit(code)))
        policy = spec.restart
        if not policy.respawn:
            process.state = "stopped"
            return
        window_start = now - policy.restart_window
        while process.restart_times and process.restart_times[0] < window_start:
            process.restart_times.popleft()
        if len(process.restart_times) >= policy.max_restarts:
            process.state = "failed"
            self._emit(Event("gave_up", spec.name, process.popen.pid,
                             f"{len(process.restart_times)} restarts in the last "
                             f"{policy.restart_window:g} s"))
            return
        delay = policy.delay(len(process.restart_times))
        process.restart_times.append(now)
        process.state = "backoff"
        process.next_start_at = now + delay
        self._emit(Event("restarting", spec.name, process.popen.pid, f"in {delay:.1f} s"))

    def running(self) -> list[ManagedProcess]:
        return [p for p in self.processes.values() if p.state == "running"]

    def failed(self) -> list[ManagedProcess]:
        return [p for p in self.processes.values() if p.state == "failed"]

    def stop_all(self) -> None:
        """SIGINT every running node, then SIGTERM, then SIGKILL the ones that outstay each timeout."""
        for process in self.processes.values():
            if process.state == "backoff":
                process.state = "stopped"
        alive = [p for p in self.running() if p.popen.poll() is None]
        for sig, timeout in ((signal.SIGINT, self.stop_policy.sigterm_timeout),
                             (signal.SIGTERM, self.stop_policy.sigkill_timeout),
                             (signal.SIGKILL, None)):
            for process in alive:
                try:
                    process.popen.send_signal(sig)
                except ProcessLookupError:
                    pass
            deadline = self._clock() + (timeout if timeout is not None else 5.0)
            while alive and self._clock() < deadline:
                alive = [p for p in alive if p.popen.poll() is None]
                if alive:
                    time.sleep(0.02)
            if not alive:
                break
        for process in self.processes.values():
            if process.state == "running":
                process.popen.wait()
                process.state = "stopped"
                self._emit(Event("stopped", process.spec.name, process.popen.pid,
                                 _describe_exit(process.popen.returncode)))
