"""MissionClient: run missions from a Python script.

As nav2_simple_commander's BasicNavigator runs navigation:

    from qai_mission.client import MissionClient, MissionOutcome

    client = MissionClient(namespace="drone1")
    mission_id = client.submit("config/missions/patrol.yaml")   # a file, a dict, or a MissionSpec
    while not client.is_complete(mission_id):
        progress = client.feedback(mission_id)
    result = client.wait(mission_id)
    if result.outcome is MissionOutcome.SUCCEEDED: ...
    client.close()

Every wait has a deadline (a default one too: `wait` gives up after DEFAULT_MISSION_TIMEOUT unless told
otherwise) and ends with a MissionClientError saying what did not answer. `is_complete` and `feedback`
pace themselves (a short spin, as nav2_simple_commander's isTaskComplete), so a polling loop does not
busy-spin. A mission survives a restart of the mission engine (it resumes from its journal); the client
then follows it on `mission_states` and get_mission_state instead of the lost action goal.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import rclpy
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionClient
from rclpy.executors import ShutdownException, SingleThreadedExecutor, TimeoutException
from rclpy.signals import SignalHandlerOptions

from qai_edge.convert import decoded_key_values
from qai_edge.qos import ACTION_QOS_ARGUMENTS, MISSION_STATES_QOS
from qai_interfaces.action import ExecuteMission
from qai_interfaces.msg import MissionState
from qai_interfaces.srv import AddTasks, CancelTask, GetMissionState
from qai_mission.admission import new_mission_id
from qai_mission.codec import load_mission_file, mission_from_dict, task_from_dict
from qai_mission.messages import mission_to_msg, task_to_msg
from qai_mission.model import MissionSpec, MissionStatus, TaskSpec, TaskStatus
from qai_mission.validation import MissionInvalid, check_tasks


_DRAIN_LIMIT = 1000  # callbacks taken at most per spin
POLL_SPIN = 0.1  # s is_complete() and feedback() wait for news, as isTaskComplete does
DEFAULT_TIMEOUT = 10.0  # s for an answer from the mission engine
DEFAULT_MISSION_TIMEOUT = 3600.0  # s wait() waits for a mission to end unless told otherwise


class MissionOutcome(Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    REJECTED = "rejected"


_OUTCOMES = {MissionStatus.SUCCEEDED: MissionOutcome.SUCCEEDED, MissionStatus.FAILED: MissionOutcome.FAILED,
             MissionStatus.CANCELED: MissionOutcome.CANCELED, MissionStatus.REJECTED: MissionOutcome.REJECTED}


class MissionClientError(RuntimeError):
    """The mission engine did not answer in time, or refused a request; the message says which."""


class MissionRejected(MissionClientError):
    """The mission did not validate; the message names the task and the field."""


class UnknownMission(MissionClientError, KeyError):
    """A mission id this client neither submitted nor follows."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class TaskSnapshot:
    id: str
    kind: str
    state: TaskStatus
    attempt: int
    engine: str
    progress: float | None  # 0..1, None when the engine does not say
    message: str
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MissionSnapshot:
    mission_id: str
    name: str
    state: MissionStatus
    message: str
    tasks: tuple[TaskSnapshot, ...]
    tasks_total: int = 0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    tasks_running: int = 0

    @property
    def done(self) -> bool:
        return self.state.terminal


@dataclass(frozen=True)
class MissionResult:
    mission_id: str
    outcome: MissionOutcome
    message: str
    tasks: tuple[TaskSnapshot, ...]

    def task(self, task_id: str) -> TaskSnapshot:
        """Return the task with this id; KeyError naming it and the mission's tasks when there is none."""
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(f"mission {self.mission_id} has no task {task_id!r} (its tasks: "
                       f"{', '.join(t.id for t in self.tasks) or 'none'})")


def _stamped_since(tracked: _Tracked, since: float) -> bool:
    """Whether a state of the mission stamped at or after `since` (the engine's clock, on the robot) arrived."""
    return tracked.state_stamp is not None and tracked.state_stamp[0] + tracked.state_stamp[1] * 1e-9 >= since


def _task_snapshot(msg) -> TaskSnapshot:
    try:
        result = decoded_key_values(msg.result)
    except ValueError:
        result = {pair.key: pair.value for pair in msg.result}
    return TaskSnapshot(id=msg.task_id, kind=msg.kind, state=TaskStatus(msg.state), attempt=msg.attempt,
                        engine=msg.engine, progress=None if math.isnan(msg.progress) else msg.progress,
                        message=msg.message, result=result)


def _mission_snapshot(msg: MissionState) -> MissionSnapshot:
    return MissionSnapshot(mission_id=msg.mission_id, name=msg.name, state=MissionStatus(msg.state),
                           message=msg.message, tasks=tuple(_task_snapshot(t) for t in msg.tasks),
                           tasks_total=msg.tasks_total, tasks_succeeded=msg.tasks_succeeded,
                           tasks_failed=msg.tasks_failed, tasks_running=msg.tasks_running)


class _Tracked:
    """What the client knows of one mission it follows."""

    def __init__(self, mission_id: str = ""):
        self.mission_id = mission_id
        self.goal_handle = None
        self.result_future = None
        self.snapshot: MissionSnapshot | None = None
        self.tasks: dict[str, TaskSnapshot] = {}
        self.result: MissionResult | None = None
        self.state_stamp: tuple[int, int] | None = None
        self.on_update: Callable[[MissionSnapshot, list[TaskSnapshot]], None] | None = None
        self.fed = False  # this goal's own feedback came (a mission_states message may be an older namesake's)
        self.waiting = ""  # what the mission engine says the mission waits for, before accepting it
        self.waiting_at = 0.0
        self.on_waiting: Callable[[str], None] | None = None


class MissionClient:
    def __init__(self, namespace: str = "", node=None, node_name: str = "mission_client"):
        """Use `node` (and its executor, which you spin) or, by default, a node and context of its own."""
        self._own_context = node is None
        if node is None:
            self._context = rclpy.Context()
            rclpy.init(context=self._context, signal_handler_options=SignalHandlerOptions.NO)
            node = rclpy.create_node(node_name, namespace=namespace, context=self._context,
                                     start_parameter_services=False)
            self._executor = SingleThreadedExecutor(context=self._context)
            self._executor.add_node(node)
        else:
            self._context, self._executor = node.context, None
        self.node = node
        prefix = f"{namespace.rstrip('/')}/" if namespace and namespace != "/" else ""
        if prefix and not prefix.startswith("/"):
            prefix = "/" + prefix
        self._names = {name: f"{prefix}{name}" for name in
                       ("execute_mission", "add_tasks", "cancel_task", "get_mission_state", "mission_states")}
        self._action = ActionClient(node, ExecuteMission, self._names["execute_mission"], **ACTION_QOS_ARGUMENTS)
        self._add_tasks = node.create_client(AddTasks, self._names["add_tasks"])
        self._cancel = node.create_client(CancelTask, self._names["cancel_task"])
        self._get_state = node.create_client(GetMissionState, self._names["get_mission_state"])
        self._missions: dict[str, _Tracked] = {}
        node.create_subscription(MissionState, self._names["mission_states"], self._on_state, MISSION_STATES_QOS)

    # -- Verbs -------------------------------------------------------------------------------------

    def submit(self, mission: MissionSpec | Mapping | str | Path, timeout: float = DEFAULT_TIMEOUT,
               on_update: Callable[[MissionSnapshot, list[TaskSnapshot]], None] | None = None,
               on_waiting: Callable[[str], None] | None = None) -> str:
        """Send a mission and return its id once the mission engine accepted it.

        `mission` is a MissionSpec, a mission document, or the path of a YAML mission file.
        While the mission engine says the mission waits (for the engines serving its kinds, right after a
        start), the wait goes on as long as it keeps saying so; `on_waiting(why)` hears it. Raises
        MissionFormatError (a bad document, before anything is sent), MissionRejected with the reason,
        MissionClientError when the mission engine does not answer within `timeout`.
        """
        spec = self._as_spec(mission)  # a bad document fails here, before anything is sent
        try:
            check_tasks(spec.tasks, None, None)  # the graph checks need no engine: the same as validate's
        except MissionInvalid as error:
            raise MissionRejected(str(error)) from None
        self._wait_for(lambda: self._action.server_is_ready(), timeout,
                       f"the mission engine's {self._names['execute_mission']} action")
        named_here = not spec.id
        if named_here:  # as the engine would: a fresh id, so its state can be recognised without the answer
            spec = replace(spec, id=new_mission_id(time.time()))
        tracked = _Tracked(spec.id)
        tracked.on_update = on_update
        tracked.on_waiting = on_waiting
        earlier = self._missions.get(spec.id)  # the same id again: the mission engine refuses it
        self._missions[spec.id] = tracked  # from now on its states on mission_states reach it
        try:
            return self._submit(spec, tracked, timeout, named_here)
        except BaseException:
            if earlier is None:
                del self._missions[spec.id]
            else:
                self._missions[spec.id] = earlier
            raise

    def _submit(self, spec: MissionSpec, tracked: "_Tracked", timeout: float, named_here: bool) -> str:
        sent_at = time.time()
        send = self._action.send_goal_async(ExecuteMission.Goal(mission=mission_to_msg(spec)),
                                            feedback_callback=lambda msg: self._on_feedback(tracked, msg.feedback))
        # The goal's answer can be lost while the mission was accepted: rmw_fastrtps drops a response whose
        # client it has not matched yet ("client will not receive response"; seen on a loaded machine, right
        # after start). The mission's own state on mission_states, stamped after the goal went out, says so; but
        # only for an id named here: a caller's id may be a running mission's, whose states say nothing of this.
        self._wait_for(lambda: send.done() or (named_here and _stamped_since(tracked, sent_at)), timeout,
                       "the mission engine to answer the goal")
        if not send.done():
            return tracked.mission_id  # followed through mission_states and the services, as after a restart
        tracked.goal_handle = send.result()
        if not tracked.goal_handle.accepted:
            raise MissionRejected("the mission engine refused the goal")
        tracked.result_future = tracked.goal_handle.get_result_async()
        # Accepted missions report at once (feedback); rejected ones end at once (result); waiting ones say so.
        # A state on mission_states counts only if stamped since the goal went out: the latched topic may still
        # bring the final state of an earlier mission with this id, which is not this one's acceptance.
        self._wait_for(lambda: tracked.fed or tracked.result_future.done() or _stamped_since(tracked, sent_at),
                       timeout,
                       "the mission engine to accept or reject the mission",
                       extended_until=lambda: tracked.waiting_at + timeout if tracked.waiting else None)
        if tracked.result_future.done():
            self._take_result(tracked)
            if tracked.result.outcome is MissionOutcome.REJECTED:
                raise MissionRejected(tracked.result.message)
        return tracked.mission_id

    def follow(self, mission_id: str, timeout: float = DEFAULT_TIMEOUT,
               on_update: Callable[[MissionSnapshot, list[TaskSnapshot]], None] | None = None) -> MissionSnapshot:
        """Follow a mission this client did not submit (another client, or before a restart)."""
        tracked = self._missions.setdefault(mission_id, _Tracked(mission_id))
        tracked.on_update = on_update or tracked.on_update
        (snapshot,) = self.status(mission_id, timeout=timeout)
        self._update(tracked, snapshot, list(snapshot.tasks))
        return snapshot

    def is_complete(self, mission_id: str) -> bool:
        """Whether the mission ended; waits up to POLL_SPIN for news first, so a loop over it paces itself."""
        tracked = self._tracked(mission_id)
        if tracked.result is None:
            self._spin(POLL_SPIN)
        return tracked.result is not None

    def feedback(self, mission_id: str) -> MissionSnapshot | None:
        """Return the latest known state of the mission, with its tasks (None before the first one came)."""
        tracked = self._tracked(mission_id)
        self._spin(POLL_SPIN if tracked.result is None else 0.0)
        if tracked.snapshot is None:
            return None
        return MissionSnapshot(**{**tracked.snapshot.__dict__, "tasks": tuple(tracked.tasks.values())})

    def wait(self, mission_id: str, timeout: float = DEFAULT_MISSION_TIMEOUT) -> MissionResult:
        """Return the mission's result once it ended; MissionClientError after `timeout` seconds."""
        tracked = self._tracked(mission_id)
        self._wait_for(lambda: tracked.result is not None, timeout, f"mission {mission_id} to finish")
        return tracked.result

    def run(self, mission, timeout: float = DEFAULT_MISSION_TIMEOUT, on_update=None) -> MissionResult:
        """submit, then wait."""
        return self.wait(self.submit(mission, on_update=on_update), timeout)

    def wait_until_ready(self, kinds: Iterable[str] = (), timeout: float = 60.0) -> None:
        """Wait until the mission engine runs and routes `kinds` (as BasicNavigator's waitUntilNav2Active).

        Read from its /diagnostics heartbeat; MissionClientError naming what is missing after `timeout`.
        """
        wanted = set(kinds)
        routed: set[str] = set()
        name = self._names["execute_mission"].rsplit("/", 1)[0] + "/mission_engine"

        def on_diagnostics(array):
            for status in array.status:
                if status.name == name:
                    values = {pair.key: pair.value for pair in status.values}
                    routed.clear()
                    routed.update(k for k in values.get("kinds_routed", "").split(",") if k)
                    routed.add("")  # heard from it

        subscription = self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
        try:
            self._wait_for(lambda: "" in routed and wanted <= routed and self._action.server_is_ready(), timeout,
                           lambda: f"{name} to route {', '.join(sorted(wanted - routed)) or 'its kinds'}")
        finally:
            self.node.destroy_subscription(subscription)

    def cancel(self, mission_id: str, task_id: str = "", reason: str = "", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Cancel a task of the mission, or the whole mission when task_id is empty."""
        response = self._call(self._cancel, CancelTask.Request(mission_id=mission_id, task_id=task_id,
                                                               reason=reason), timeout)
        if not response.accepted:
            raise MissionClientError(response.message)

    def add_tasks(self, mission_id: str, tasks: Iterable[TaskSpec | Mapping], timeout: float = DEFAULT_TIMEOUT) -> None:
        specs = [t if isinstance(t, TaskSpec) else task_from_dict(t, f"tasks[{i}]") for i, t in enumerate(tasks)]
        response = self._call(self._add_tasks, AddTasks.Request(mission_id=mission_id,
                                                                tasks=[task_to_msg(s) for s in specs]), timeout)
        if not response.accepted:
            raise MissionRejected(response.message)

    def status(self, mission_id: str = "", include_finished: bool = True,
               timeout: float = DEFAULT_TIMEOUT) -> list[MissionSnapshot]:
        response = self._call(self._get_state, GetMissionState.Request(mission_id=mission_id,
                                                                       include_finished=include_finished), timeout)
        if mission_id and not response.found:
            raise MissionClientError(response.message)
        return [_mission_snapshot(m) for m in response.missions]

    def close(self) -> None:
        self._action.destroy()
        if self._own_context:
            self._executor.shutdown()
            self.node.destroy_node()
            rclpy.try_shutdown(context=self._context)

    def __enter__(self) -> "MissionClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- Plumbing ----------------------------------------------------------------------------------

    @staticmethod
    def _as_spec(mission) -> MissionSpec:
        if isinstance(mission, MissionSpec):
            return mission
        if isinstance(mission, (str, Path)):
            return load_mission_file(mission)
        return mission_from_dict(dict(mission))

    def _tracked(self, mission_id: str) -> _Tracked:
        tracked = self._missions.get(mission_id)
        if tracked is None:
            raise UnknownMission(f"mission {mission_id!r} was not submitted or followed by this client "
                                 f"(known: {', '.join(self._missions) or 'none'})")
        return tracked

    def _spin(self, timeout: float) -> None:
        if self._executor is not None:
            # Wait for work, then take everything already waiting: one callback per call would fall behind
            # a busy mission and show its past.
            self._executor.spin_once(timeout_sec=timeout)
            for _ in range(_DRAIN_LIMIT):
                try:
                    handler, _, _ = self._executor.wait_for_ready_callbacks(timeout_sec=0.0)
                except (TimeoutException, ShutdownException):
                    break
                handler()
                if handler.exception() is not None:
                    raise handler.exception()
        else:
            time.sleep(timeout)  # the owner of `node` spins it
        for tracked in self._missions.values():
            if tracked.result is None and tracked.result_future is not None and tracked.result_future.done():
                self._take_result(tracked)

    def _wait_for(self, predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str],
                  extended_until: Callable[[], float | None] = lambda: None) -> None:
        """Spin until `predicate()` holds, or fail after `timeout` naming `what` (the one wait loop).

        `extended_until()` may push the deadline out while the other side says it is still working.
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            now = time.monotonic()
            if now > max(deadline, extended_until() or 0.0):
                raise MissionClientError(f"no answer after {now - deadline + timeout:.3g} s waiting for "
                                         f"{what() if callable(what) else what} (is the mission engine running, in "
                                         "this namespace and ROS_DOMAIN_ID?)")
            self._spin(0.05)

    def _call(self, client, request, timeout: float):
        self._wait_for(client.service_is_ready, timeout, f"the {client.srv_name} service")
        future = client.call_async(request)
        self._wait_for(future.done, timeout, f"an answer from {client.srv_name}")
        return future.result()

    def _on_feedback(self, tracked: _Tracked, feedback) -> None:
        if feedback.message and tracked.snapshot is None:  # not accepted yet: what it waits for
            if feedback.message != tracked.waiting and tracked.on_waiting is not None:
                tracked.on_waiting(feedback.message)
            tracked.waiting, tracked.waiting_at = feedback.message, time.monotonic()
            return
        tracked.mission_id = tracked.mission_id or feedback.mission_id
        tracked.fed = True
        updated = [_task_snapshot(t) for t in feedback.updated_tasks]
        snapshot = MissionSnapshot(feedback.mission_id, "", MissionStatus(feedback.state), "", (),
                                   feedback.tasks_total, feedback.tasks_succeeded, feedback.tasks_failed,
                                   feedback.tasks_running)
        self._update(tracked, snapshot, updated)

    def _on_state(self, msg: MissionState) -> None:
        tracked = self._missions.get(msg.mission_id)
        if tracked is None:
            return
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if tracked.state_stamp is not None and stamp < tracked.state_stamp:
            return  # an older snapshot than one already applied
        tracked.state_stamp = stamp
        snapshot = _mission_snapshot(msg)
        self._update(tracked, snapshot, list(snapshot.tasks))
        if snapshot.done and tracked.result is None and (tracked.result_future is None
                                                         or not tracked.result_future.done()):
            # The action goal may be gone (the mission engine restarted and resumed the mission).
            tracked.result = MissionResult(snapshot.mission_id, _OUTCOMES[snapshot.state], snapshot.message,
                                           snapshot.tasks)

    def _update(self, tracked: _Tracked, snapshot: MissionSnapshot, updated: list[TaskSnapshot]) -> None:
        changed = [t for t in updated if tracked.tasks.get(t.id) != t]
        for t in updated:
            tracked.tasks[t.id] = t
        previous = tracked.snapshot
        tracked.snapshot = MissionSnapshot(**{**snapshot.__dict__,
                                              "name": snapshot.name or (previous.name if previous else ""),
                                              "message": snapshot.message or (previous.message if previous else "")})
        if tracked.on_update is not None and (changed or previous is None or previous.state != snapshot.state):
            tracked.on_update(tracked.snapshot, changed)

    def _take_result(self, tracked: _Tracked) -> None:
        response = tracked.result_future.result()
        result = response.result
        if response.status == GoalStatus.STATUS_UNKNOWN or not result.mission_id and not result.message:
            return  # the goal is gone; the mission_states topic will tell the outcome
        tracked.mission_id = tracked.mission_id or result.mission_id
        tasks = tuple(_task_snapshot(t) for t in result.tasks)
        for t in tasks:
            tracked.tasks[t.id] = t
        tracked.result = MissionResult(result.mission_id, _OUTCOMES.get(MissionStatus(result.state),
                                                                        MissionOutcome.FAILED),
                                       result.message, tasks)


def progress_text(task: TaskSnapshot) -> str:
    """One line for a task: state, attempt, engine, progress, message."""
    parts = [f"{task.id:<16} {task.state.name:<10}"]
    if task.attempt > 1:
        parts.append(f"attempt {task.attempt}")
    if task.progress is not None and task.state == TaskStatus.RUNNING:
        parts.append(f"{task.progress:4.0%}")
    if task.message:
        parts.append(task.message)
    return "  ".join(parts)
