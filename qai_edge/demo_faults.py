"""Faults for `qai-edge demo --faults`, injected as an operator would on a real robot stack.

The simulated vehicle's fault parameters are set over ROS (`ros2 param set`), and an engine process is
killed with SIGKILL. The hub side of the demo stays ROS-free; this is the environment's side.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil


class FaultInjector:
    """Sets parameters of running nodes through their set_parameters services (one rclpy context)."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("qai_demo_faults", context=self.context, start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def set_parameters(self, node: str, timeout: float = 10.0, **values: Any) -> str:
        """Set parameters of `node` (its full name); '' when accepted, else why not."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, f"{node}/set_parameters")
        try:
            deadline = time.monotonic() + timeout
            while not client.service_is_ready():
                if time.monotonic() > deadline:
                    return f"{node}/set_parameters did not appear within {timeout:g} s"
                self.executor.spin_once(timeout_sec=0.05)
            future = client.call_async(SetParameters.Request(
                parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]))
            while not future.done():
                if time.monotonic() > deadline:
                    return f"{node}/set_parameters did not answer within {timeout:g} s"
                self.executor.spin_once(timeout_sec=0.05)
            refused = [result.reason for result in future.result().results if not result.successful]
            return "; ".join(refused)
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def node_process(supervisor_pid: int, executable: str) -> psutil.Process | None:
    """Return the running process of `executable` among the children of a `qai-edge up` supervisor."""
    try:
        children = psutil.Process(supervisor_pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if any(os.path.basename(part) == executable for part in child.cmdline()[:2]):
                return child
        except psutil.Error:
            continue
    return None


def kill_node(supervisor_pid: int, executable: str) -> int | None:
    """SIGKILL the process of `executable` under that supervisor; its pid, or None when there is none."""
    process = node_process(supervisor_pid, executable)
    if process is None:
        return None
    os.kill(process.pid, signal.SIGKILL)
    return process.pid
