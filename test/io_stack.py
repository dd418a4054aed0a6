"""sim_vehicle and io_engine in their own processes, and helpers to drive them.

Send them RunTask goals, watch their topics and change their parameters while they run.
"""

from __future__ import annotations

import json
import math
import time
import uuid

from harness import ProcessGroup, RosProbe, status_level, status_values, unique_namespace

STARTUP_TIMEOUT = 30.0
ODOMETRY_DEPTH = 100  # the probe's odometry queue: 2 s at 50 Hz


class TaskOutcome:
    def __init__(self, status: int, result, feedback: list):
        from action_msgs.msg import GoalStatus

        self.status = status
        self.succeeded = status == GoalStatus.STATUS_SUCCEEDED
        self.aborted = status == GoalStatus.STATUS_ABORTED
        self.canceled = status == GoalStatus.STATUS_CANCELED
        self.message = result.message
        self.retryable = result.retryable
        self.result = {pair.key: json.loads(pair.value) for pair in result.result}
        self.feedback = feedback


class IoStack:
    def __init__(self, processes: ProcessGroup, probe: RosProbe, sim_parameters=None, io_parameters=None,
                 start_io: bool = True):
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry
        from rclpy.action import ActionClient

        from qai_edge.qos import ACTION_QOS_ARGUMENTS
        from qai_interfaces.action import RunTask
        from qai_interfaces.msg import Event

        self.processes, self.probe = processes, probe
        self.namespace = unique_namespace()
        self.sim = processes.start_node("sim_vehicle", namespace=self.namespace,
                                        parameters={"heartbeat_period": 0.2, **(sim_parameters or {})})
        self.io = (processes.start_node("io_engine", namespace=self.namespace,
                                        parameters={"heartbeat_period": 0.2, **(io_parameters or {})})
                   if start_io else None)
        self.odometry: list = []
        self.commands: list = []  # (receive time, Twist)
        self.events: list = []
        self.event_times: list[float] = []  # when each of `events` came (monotonic)
        node = probe.node
        node.create_subscription(Odometry, f"{self.namespace}/odom", self.odometry.append, ODOMETRY_DEPTH)
        node.create_subscription(Twist, f"{self.namespace}/cmd_vel",
                                 lambda msg: self.commands.append((time.monotonic(), msg)), 50)
        node.create_subscription(Event, f"{self.namespace}/events", self._on_event, 10)
        probe.watch_diagnostics()
        self.client = ActionClient(node, RunTask, f"{self.namespace}/io_engine/run_task", **ACTION_QOS_ARGUMENTS)
        if start_io:
            probe.spin_until(lambda: self.client.server_is_ready() and self.io_status() is not None
                             and status_level(self.io_status()) == 0, STARTUP_TIMEOUT,
                             lambda: f"io_engine up and OK\n{self.logs()}")

    def _on_event(self, event) -> None:
        self.events.append(event)
        self.event_times.append(time.monotonic())

    def events_of(self, code: str, since: float = 0.0) -> list:
        """Events with this code received at or after `since` (monotonic)."""
        return [e for e, at in zip(self.events, self.event_times) if e.code == code and at >= since]

    @property
    def io_name(self) -> str:
        return f"{self.namespace}/io_engine"

    def io_status(self, stream: str = ""):
        return self.probe.latest_status(f"{self.io_name}: {stream}" if stream else self.io_name)

    def first_odometry(self) -> None:
        """Wait for the probe's first odometry: the engines may be up (and a mission admitted) before it."""
        if not self.odometry:
            self.probe.spin_until(lambda: self.odometry, 30.0, lambda: f"the first odometry\n{self.logs()}")

    def position(self) -> tuple[float, float, float]:
        self.first_odometry()
        p = self.odometry[-1].pose.pose.position
        return p.x, p.y, p.z

    def current_position(self, timeout: float = 10.0) -> tuple[float, float, float]:
        """Return the position from odometry published after this call.

        Not the probe's last message after a fixed spin: while a test waits on something else, the probe's
        queue keeps up to ODOMETRY_DEPTH messages (2 s), and a loaded machine may not read them all in a short
        spin (a landed vehicle was once seen at 2.1 m: its position 2 s before). Once more messages than the
        queue holds have been read since the call, the last was published after it. (Not by stamp: the
        simulator's clock falls behind the wall clock on a loaded machine.)
        """
        self.first_odometry()
        count = len(self.odometry)
        self.probe.spin_until(lambda: len(self.odometry) > count + ODOMETRY_DEPTH, timeout,
                              lambda: f"odometry published after now\n{self.logs()}")
        return self.position()

    def speed(self) -> float:
        self.first_odometry()
        v = self.odometry[-1].twist.twist.linear
        return math.sqrt(v.x ** 2 + v.y ** 2 + v.z ** 2)

    def send(self, kind: str, parameters: dict | None = None, raw_parameters: dict | None = None,
             task_id: str = ""):
        """Send a RunTask goal; `raw_parameters` carries JSON texts as they are (to test bad input)."""
        from diagnostic_msgs.msg import KeyValue

        from qai_interfaces.action import RunTask
        from qai_interfaces.msg import Task

        pairs = [KeyValue(key=k, value=json.dumps(v)) for k, v in (parameters or {}).items()]
        pairs += [KeyValue(key=k, value=v) for k, v in (raw_parameters or {}).items()]
        goal = RunTask.Goal(mission_id="test", attempt=1,
                            task=Task(id=task_id or uuid.uuid4().hex[:8], kind=kind, parameters=pairs))
        feedback: list = []
        send = self.client.send_goal_async(goal, feedback_callback=lambda msg: feedback.append(msg.feedback))
        self.probe.spin_until(send.done, STARTUP_TIMEOUT, "the goal to be accepted")
        handle = send.result()
        return handle, handle.get_result_async(), feedback

    def wait(self, sent, timeout: float = 60.0) -> TaskOutcome:
        handle, result_future, feedback = sent
        self.probe.spin_until(result_future.done, timeout, lambda: f"the task to end\n{self.logs()}")
        response = result_future.result()
        return TaskOutcome(response.status, response.result, feedback)

    def run(self, kind: str, parameters: dict | None = None, timeout: float = 60.0, **kwargs) -> TaskOutcome:
        return self.wait(self.send(kind, parameters, **kwargs), timeout)

    def cancel(self, sent) -> None:
        handle = sent[0]
        future = handle.cancel_goal_async()
        self.probe.spin_until(future.done, STARTUP_TIMEOUT, "the cancel to be accepted")

    def set_parameters(self, node: str, **values) -> None:
        """Change parameters of a running node (e.g. fault injection on sim_vehicle)."""
        set_parameters(self.probe, f"{self.namespace}/{node}", **values)

    def clear_battery_reserve(self):
        """Ask the io_engine to clear its battery reserve (std_srvs/Trigger); return the response."""
        from std_srvs.srv import Trigger

        return call_service(self.probe, Trigger, f"{self.io_name}/clear_battery_reserve", Trigger.Request())

    def stream_status(self, stream: str):
        status = self.io_status(stream)
        return (status_level(status), status.message, status_values(status)) if status else None

    def logs(self) -> str:
        return "\n".join(f"--- {c.name} ({c.describe()})\n{c.log()[-3000:]}" for c in self.processes.children)


def call_service(probe, service_type, name: str, request):
    client = probe.node.create_client(service_type, name)
    try:
        probe.spin_until(client.service_is_ready, STARTUP_TIMEOUT, name)
        future = client.call_async(request)
        probe.spin_until(future.done, STARTUP_TIMEOUT, f"{name} to answer")
        return future.result()
    finally:
        probe.node.destroy_client(client)


def set_parameters(probe, node: str, **values) -> None:
    """Change parameters of the running node `node` (its full name); each must be accepted."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    response = call_service(probe, SetParameters, f"{node}/set_parameters", SetParameters.Request(
        parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]))
    for result in response.results:
        assert result.successful, result.reason


def save_bad_endurance_model(directory) -> None:
    """Save an endurance checkpoint far worse than the shipped one, so a gate decision between them is never close.

    An untrained CfC (seed 0) with its output's bias moved by 5: its error is thousands of seconds where the
    shipped model's is tens, on any gate seed (an untrained one alone was sometimes as good as the shipped one
    on the gate's 16 flights, and a test that needed the gate to prefer the shipped one failed).
    """
    import torch

    from qai_intelligence import checkpoint
    from qai_intelligence.features import ENDURANCE
    from qai_intelligence.models import ModelConfig, build

    torch.manual_seed(0)
    model = build(ModelConfig("endurance", "cfc", ENDURANCE.features, ("remaining_s",), units=16, motor=4,
                              extra={"anchor": "charge_time"}))
    with torch.no_grad():
        model.head.bias.add_(5.0)
    checkpoint.save(model, directory)
