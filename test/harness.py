"""Helpers for tests that cross processes: start real node processes, watch them over real DDS."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from qai_edge.paths import installed_executable
from qai_edge.processes import die_with_parent


def tool(name: str) -> str:
    """Return a console script beside this Python (a venv), else on PATH (ROS 2 installs: /opt/ros/*/bin)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or str(beside))


def installed(executable: str) -> Path:
    """Return an installed executable of qai_edge (colcon: <prefix>/lib/qai_edge; pip: the venv's scripts dir)."""
    found = installed_executable(executable)
    assert found is not None, f"{executable} is not installed"
    return found


def unique_namespace() -> str:
    """Return a namespace no other test uses, so a test sees only its own nodes."""
    return f"/t{uuid.uuid4().hex[:8]}"


class ManagedChild:
    def __init__(self, name: str, argv: list[str], log_path: Path, env: Mapping[str, str] | None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True, preexec_fn=die_with_parent)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def describe(self) -> str:
        """Return 'running (state S)' or 'exited with N', for failure messages."""
        code = self.popen.poll()
        if code is not None:
            return f"exited with {code}"
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            state = "?"
        return f"running (state {state})"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen.poll() is None:
            for sig in (signal.SIGINT, signal.SIGKILL):
                try:
                    os.killpg(self.popen.pid, sig)  # the child's session: its own children too
                except ProcessLookupError:
                    pass
                if self.wait(timeout) is not None:
                    break
        self._log.close()


class ProcessGroup:
    def __init__(self, directory: Path):
        self.directory = directory
        self.children: list[ManagedChild] = []

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> ManagedChild:
        child = ManagedChild(name, argv, self.directory / f"{name}-{len(self.children)}.log",
                             {**os.environ, **env} if env else None)
        self.children.append(child)
        return child

    def start_node(self, executable: str, name: str | None = None, namespace: str = "/",
                   parameters: Mapping[str, Any] | None = None) -> ManagedChild:
        """Start an installed node executable with its name, namespace and parameters.

        A node that keeps files (data_dir) keeps them in the test's directory unless the test names another:
        never in the user's ~/.ros.
        """
        from qai_edge.nodes import NODE_TYPES

        parameters = dict(parameters or {})
        if executable in NODE_TYPES and "data_dir" in NODE_TYPES[executable].parameter_specs():
            parameters.setdefault("data_dir", str(self.directory / "data"))
        return self._start_ros([str(installed(executable))], name or executable, namespace, parameters)

    def start_test_engine(self, name: str = "test_engine", namespace: str = "/",
                          parameters: Mapping[str, Any] | None = None) -> ManagedChild:
        """Start test/task_engine.py, the test-only engine (sleep, move, fail, echo, once kinds)."""
        return self._start_ros([sys.executable, str(Path(__file__).with_name("task_engine.py"))], name, namespace,
                               parameters)

    def _start_ros(self, command: list[str], name: str, namespace: str, parameters) -> ManagedChild:
        params_file = self.directory / f"{name}-params-{len(self.children)}.yaml"
        fqn = f"{namespace.rstrip('/')}/{name}"
        params_file.write_text(yaml.safe_dump({fqn: {"ros__parameters": dict(parameters or {})}}))
        argv = [*command, "--ros-args", "-r", f"__node:={name}", "-r", f"__ns:={namespace}",
                "--params-file", str(params_file)]
        return self.start(name, argv)

    def start_cli(self, name: str, *args: str) -> ManagedChild:
        return self.start(name, [str(installed("qai-edge")), *args])

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()


def pid_alive(pid: int) -> bool:
    """Return True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _failure(timeout: float, what: str | Callable[[], str]) -> AssertionError:
    """Return the error for a wait that timed out.

    `what` may be a callable, so details such as process logs are read when the wait fails.
    """
    return AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str],
             interval: float = 0.05, step: Callable[[], Any] | None = None) -> Any:
    """Until predicate() is true (returning it), calling step() (default: sleep `interval`) between tries."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _failure(timeout, what)
        step() if step is not None else time.sleep(interval)


class RosProbe:
    """A node in the test process with its own rclpy context (one DDS participant), for watching topics."""

    def __init__(self, name: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.diagnostics: dict[str, list] = {}  # status name -> statuses received, oldest first
        self._diagnostics_subscription = None

    def watch_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        def on_array(array):
            for status in array.status:
                self.diagnostics.setdefault(status.name, []).append(status)

        self._diagnostics_subscription = self.node.create_subscription(
            DiagnosticArray, "/diagnostics", on_array, 50)

    def latest_status(self, name: str):
        statuses = self.diagnostics.get(name)
        return statuses[-1] if statuses else None

    def spin_until(self, predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> Any:
        return wait_for(predicate, timeout, what, step=lambda: self.executor.spin_once(timeout_sec=0.05))

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def status_values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def status_level(status) -> int:
    return status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
