"""The ROS shell every engine shares.

Parameters declared from their specs, a heartbeat on /diagnostics, and the capability announcement the
mission engine routes tasks by.
"""

from __future__ import annotations

import array
import os
import signal
import sys
import time
from typing import Any, Callable, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from qai_edge.convert import time_from_seconds
from qai_edge.health import Level
from qai_edge.params import COMMON_PARAMETERS, ParamSpec
from qai_edge.qos import CAPABILITIES_QOS
from qai_edge.task_server import TaskServer
from qai_edge.tasks import ServedKind
from qai_interfaces.msg import EngineCapabilities, TaskKind

CAPABILITIES_TOPIC = "engine_capabilities"
DIAGNOSTICS_TOPIC = "/diagnostics"

_INT64_MAX = 2**63 - 1
# A node's first seconds: a heartbeat every 0.25 s. The first ones go out before discovery has matched the
# supervisor's (or a monitor's) reader and are lost; at 1 Hz the supervisor then heard of a node up to a second
# late, most of the time from `qai-edge up` to every node OK. After the window, `heartbeat_period`.
STARTUP_WINDOW = 6.0
STARTUP_HEARTBEAT_PERIOD = 0.25
RCLError = _rclpy.RCLError


_ARRAY_TYPES = {float: Parameter.Type.DOUBLE_ARRAY, str: Parameter.Type.STRING_ARRAY}


def parameter_descriptor(spec: ParamSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only)
    if spec.choices is not None:
        descriptor.additional_constraints = f"one of: {', '.join(map(str, spec.choices))}"
    if spec.is_array:
        descriptor.type = _ARRAY_TYPES[spec.item_type].value
    elif spec.min is not None or spec.max is not None:
        if spec.type is float:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(spec.min if spec.min is not None else -sys.float_info.max),
                to_value=float(spec.max if spec.max is not None else sys.float_info.max))]
        elif spec.type is int:
            descriptor.integer_range = [IntegerRange(
                from_value=int(spec.min if spec.min is not None else -_INT64_MAX),
                to_value=int(spec.max if spec.max is not None else _INT64_MAX), step=1)]
    return descriptor


class EngineNode(Node):
    """Base of the engine nodes. Subclasses override health() and task_kinds().

    Parameters mean what they say: one read once at start is declared read-only (ROS refuses to set it);
    every other one is checked against its spec when set (type, range, choices; refused with the reason)
    and takes effect through the callback the node registered with `on_parameter` (or is read live
    through `param()` each time it is used, registered with `on_parameter(name)`). start() refuses to run
    a node that left a writable parameter without either.
    """

    def __init__(self, node_name: str, parameters: Sequence[ParamSpec] = (), **kwargs):
        super().__init__(node_name, **kwargs)
        self.task_server: TaskServer | None = None
        self._announced_readiness: dict[str, str] = {}
        self._specs = {spec.name: spec for spec in (*COMMON_PARAMETERS, *parameters)}
        self._appliers: dict[str, Callable[[Any], None] | None] = {}
        for spec in self._specs.values():
            # An empty list has no ROS type: declare the array's type; an unset array reads as [].
            default = _ARRAY_TYPES[spec.item_type] if spec.is_array and not spec.default else spec.default
            self.declare_parameter(spec.name, default, parameter_descriptor(spec))
            given = self.param(spec.name)
            try:  # a value from the command line or a params file skipped the profile check: check it here
                spec.check(given)
            except ValueError as error:
                raise ValueError(f"parameter {spec.name}: {error}") from None
        self.robot_id = (self.get_parameter("robot_id").value
                         or self.get_namespace().strip("/").replace("/", "_") or "robot")
        self._started_at = time.monotonic()
        self._started_stamp = time_from_seconds(time.time())  # identifies this run in announcements

        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._capabilities_pub = self.create_publisher(EngineCapabilities, CAPABILITIES_TOPIC, CAPABILITIES_QOS)
        # Steady time: heartbeats go on when use_sim_time is set and /clock is silent.
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._heartbeat_timer = self._announce_timer = None
        self._start_heartbeat()
        self._start_announcing()
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.on_parameter("heartbeat_period", lambda value: self._start_heartbeat())
        self.on_parameter("announce_period", lambda value: self._start_announcing())

    def param(self, name: str):
        """Return a parameter's value; an array parameter left unset reads as []."""
        try:
            value = self.get_parameter(name).value
        except ParameterUninitializedException:
            return []
        return list(value) if isinstance(value, (list, tuple, array.array)) else value

    def on_parameter(self, name: str, apply: Callable[[Any], None] | None = None) -> None:
        """Say how a run-time change of the writable parameter `name` takes effect.

        `apply(value)` runs once it is set; without `apply` the node reads it live through `param()` wherever
        it is used.
        """
        spec = self._specs.get(name)
        if spec is None or spec.read_only:
            raise ValueError(f"{name}: not a writable parameter of {self.get_name()}")
        self._appliers[name] = apply

    def serve(self, kinds: Sequence[ServedKind], max_workers: int = 8) -> None:
        """Serve these task kinds through RunTask at <node>/run_task (announced by start())."""
        self.task_server = TaskServer(self, kinds, max_workers=max_workers,
                                      result_retention=self.param("task_result_retention"))

    def start(self) -> "EngineNode":
        """Announce and send the first heartbeat; called once the subclass is fully built."""
        unhandled = [name for name, spec in self._specs.items() if not spec.read_only and name not in self._appliers]
        if unhandled:
            raise RuntimeError(f"{self.get_name()}: writable parameters with no on_parameter() handling: "
                               f"{', '.join(unhandled)} (declare them read_only, or say how a change applies)")
        self.announce_capabilities()
        self.publish_heartbeat()
        self.get_logger().info(f"{self.get_fully_qualified_name()} up (robot_id={self.robot_id}, "
                               f"kinds: {', '.join(k.name for k in self.task_kinds()) or 'none'})")
        return self

    # What subclasses say about themselves.

    def health(self) -> tuple[Level, str, dict[str, str]]:
        """Level, one-line message and values for the heartbeat."""
        return Level.OK, "running", {}

    def extra_statuses(self) -> list[tuple[str, Level, str, dict[str, str]]]:
        """Further statuses for the heartbeat, named '<node>: <name>' (e.g. one per sensor stream)."""
        return []

    def task_kinds(self) -> list[TaskKind]:
        """Return the task kinds this engine serves right now, each with its readiness."""
        return self.task_server.kind_messages() if self.task_server else []

    def task_action_name(self) -> str:
        """Fully qualified name of this engine's RunTask action server, or '' when it serves none."""
        return self.task_server.action_name if self.task_server else ""

    # Heartbeat and announcement.

    def announce_capabilities(self) -> None:
        self._announced_readiness = self.task_server.readiness() if self.task_server else {}
        message = EngineCapabilities()
        message.header.stamp = self._started_stamp
        message.engine = self.get_fully_qualified_name()
        message.task_action = self.task_action_name()
        message.kinds = self.task_kinds()
        self._capabilities_pub.publish(message)

    def publish_heartbeat(self) -> None:
        readiness = self.task_server.readiness() if self.task_server is not None else {}
        refused = self.task_server is not None and self.task_server.refused_not_ready
        if readiness != self._announced_readiness or refused:
            # A kind became ready, or stopped being; or a task was refused as not ready, and its sender
            # waits for an announcement that it is (a blip between two heartbeats changes no readiness here).
            if refused:
                self.task_server.refused_not_ready = False
            self.announce_capabilities()
        level, text, values = self.health()
        status = DiagnosticStatus(name=self.get_fully_qualified_name(), hardware_id=self.robot_id,
                                  message=text)
        status.level = bytes([int(level)])
        common = {"pid": str(os.getpid()), "uptime_s": f"{time.monotonic() - self._started_at:.1f}",
                  "kinds": ",".join(readiness)}
        not_ready = "; ".join(f"{kind}: {why}" for kind, why in readiness.items() if why)
        if not_ready:
            common["kinds_not_ready"] = not_ready
        if self.task_server is not None:
            common["tasks_running"] = str(self.task_server.running)
            common.update({f"tasks_{outcome}": str(n) for outcome, n in self.task_server.counts.items()})
        status.values = [KeyValue(key=key, value=str(value)) for key, value in {**common, **values}.items()]
        array = DiagnosticArray(status=[status])
        for name, extra_level, extra_text, extra_values in self.extra_statuses():
            extra = DiagnosticStatus(name=f"{status.name}: {name}", hardware_id=self.robot_id, message=extra_text,
                                     values=[KeyValue(key=k, value=str(v)) for k, v in extra_values.items()])
            extra.level = bytes([int(extra_level)])
            array.status.append(extra)
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)
        if self._heartbeat_timer is not None:
            self._settle_heartbeat()

    def _start_heartbeat(self) -> None:
        if self._heartbeat_timer is not None:
            self.destroy_timer(self._heartbeat_timer)
        period = self.get_parameter("heartbeat_period").value
        if time.monotonic() - self._started_at < STARTUP_WINDOW:
            period = min(period, STARTUP_HEARTBEAT_PERIOD)
        self._heartbeat_timer = self.create_timer(period, self.publish_heartbeat, clock=self._steady_clock)

    def _settle_heartbeat(self) -> None:
        """After the start-up window, go from the quick heartbeats to `heartbeat_period`."""
        period_ns = int(self.get_parameter("heartbeat_period").value * 1e9)
        if self._heartbeat_timer.timer_period_ns != period_ns and \
                time.monotonic() - self._started_at >= STARTUP_WINDOW:
            self._heartbeat_timer.timer_period_ns = period_ns

    def _start_announcing(self) -> None:
        if self._announce_timer is not None:
            self.destroy_timer(self._announce_timer)
        self._announce_timer = self.create_timer(self.get_parameter("announce_period").value,
                                                 self.announce_capabilities, clock=self._steady_clock)

    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse, with the reason, a value its spec does not allow.

        Ranges are also in the descriptor; choices and list items are checked only here.
        """
        for parameter in parameters:
            spec = self._specs.get(parameter.name)
            if spec is None:
                continue  # rclpy's own (use_sim_time)
            value = parameter.value
            if isinstance(value, (tuple, array.array)):
                value = list(value)
            try:
                spec.check(value)
            except ValueError as error:
                return SetParametersResult(successful=False, reason=f"{parameter.name}: {error}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        for parameter in parameters:
            apply = self._appliers.get(parameter.name)
            if apply is not None:
                apply(self.param(parameter.name))


def spin_node(make_node: Callable[[], Node], args=None) -> int:
    """Entry point body shared by the engine executables: init, spin until SIGINT/SIGTERM, shut down.

    The executor exists before the node, so a signal that lands while the node is being built (its
    context already shut down) ends the process as cleanly as one that lands while it spins.
    """
    # SIGINT stops the node through rclpy's handler alone (it shuts the context down, and spinning ends at the
    # next wait), not as a KeyboardInterrupt raised wherever Python happens to be: one that landed inside
    # rclpy's Task constructor left a half-made Task whose __del__ printed a traceback at exit.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    rclpy.init(args=args)
    executor = SingleThreadedExecutor()
    node = None
    try:
        node = make_node()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # Otherwise a signal shut the context down while the node was being built: a clean stop.
    finally:
        # Stopping now: a second SIGINT or SIGTERM (ros2 launch forwards one while the terminal's process
        # group gets the other) must not interrupt the clean-up; a hung clean-up still ends by SIGKILL.
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, signal.SIG_IGN)
        executor.shutdown()
        if node is not None:
            if getattr(node, "task_server", None) is not None:
                node.task_server.destroy()
            node.destroy_node()
        try:
            rclpy.try_shutdown()
        except RCLError:  # rclpy's own signal handler shut the context down meanwhile: stopped all the same
            pass
    return 0
