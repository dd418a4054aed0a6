"""qai_interfaces messages <-> mission core types, for the node and the client. No rclpy import."""

from __future__ import annotations

import math
from typing import Any, Mapping

from qai_edge.bounded import InputRejected, load_json
from qai_edge.convert import (duration_from_seconds, key_values, optional_seconds_from_duration,
                              optional_seconds_from_time, seconds_from_duration, time_from_seconds)
from qai_interfaces.action import ExecuteMission
from qai_interfaces.msg import Mission as MissionMsg
from qai_interfaces.msg import MissionState, RetryPolicy as RetryPolicyMsg
from qai_interfaces.msg import Task as TaskMsg
from qai_interfaces.msg import TaskState
from qai_mission.codec import MissionFormatError, task_from_dict
from qai_mission.model import DEFAULT_LIMITS, MissionLimits, MissionSpec, TaskSpec


def task_from_msg(msg: TaskMsg, where: str, limits: MissionLimits = DEFAULT_LIMITS) -> TaskSpec:
    """Read a task from its message, within `limits` (parameter texts measured before they are decoded)."""
    name = f"{where} ({msg.id[:64]})" if msg.id else where
    size = sum(len(pair.key) + len(pair.value) for pair in msg.parameters)
    if size > limits.max_task_parameter_bytes:
        raise MissionFormatError(f"{name}.parameters: {size} bytes, the limit (max_task_parameter_bytes) is "
                                 f"{limits.max_task_parameter_bytes}")
    parameters = {}
    for pair in msg.parameters:
        try:
            parameters[pair.key] = load_json(pair.value, f"{name}.parameters.{pair.key[:64]}", limits.parameters())
        except InputRejected as error:
            raise MissionFormatError(str(error)) from None
    document = {"id": msg.id, "kind": msg.kind, "priority": msg.priority, "depends_on": list(msg.depends_on),
                "resources": list(msg.resources), "optional": msg.optional, "parameters": parameters,
                "retry": {"max_retries": msg.retry.max_retries,
                          "initial_backoff": seconds_from_duration(msg.retry.initial_backoff),
                          "backoff_multiplier": msg.retry.backoff_multiplier,
                          "max_backoff": seconds_from_duration(msg.retry.max_backoff)}}
    for field, value in (("deadline", optional_seconds_from_time(msg.deadline)),
                         ("deadline_in", optional_seconds_from_duration(msg.deadline_in)),
                         ("timeout", optional_seconds_from_duration(msg.timeout))):
        if value is not None:
            document[field] = value
    return task_from_dict(document, where, limits)


def task_to_msg(spec: TaskSpec, parameters: Mapping[str, Any] | None = None, timeout: float | None = None) -> TaskMsg:
    """`parameters` and `timeout` replace the spec's (resolved references, what is left of a timeout)."""
    return TaskMsg(
        id=spec.id, kind=spec.kind, priority=spec.priority, depends_on=list(spec.depends_on),
        deadline=time_from_seconds(spec.deadline), deadline_in=duration_from_seconds(spec.deadline_in),
        timeout=duration_from_seconds(timeout if timeout is not None else spec.timeout),
        retry=RetryPolicyMsg(max_retries=spec.retry.max_retries,
                             initial_backoff=duration_from_seconds(spec.retry.initial_backoff),
                             backoff_multiplier=float(spec.retry.backoff_multiplier),
                             max_backoff=duration_from_seconds(spec.retry.max_backoff)),
        resources=sorted(spec.resources), optional=spec.optional,
        parameters=key_values(spec.parameters if parameters is None else parameters))


def mission_from_msg(msg: MissionMsg, limits: MissionLimits = DEFAULT_LIMITS) -> MissionSpec:
    """Read a mission from its message, within `limits`: its task count before any task is read."""
    if len(msg.tasks) > limits.max_tasks:
        raise MissionFormatError(f"tasks: {len(msg.tasks)} tasks, the limit (max_tasks_per_mission) is "
                                 f"{limits.max_tasks}")
    for field, value in (("id", msg.id), ("name", msg.name)):
        if len(value) > limits.max_name_length:
            raise MissionFormatError(f"{field}: {len(value)} characters, the limit is {limits.max_name_length}")
    return MissionSpec(id=msg.id, name=msg.name,
                       tasks=tuple(task_from_msg(t, f"tasks[{i}]", limits) for i, t in enumerate(msg.tasks)))


def mission_to_msg(spec: MissionSpec) -> MissionMsg:
    return MissionMsg(id=spec.id, name=spec.name, tasks=[task_to_msg(t) for t in spec.tasks])


def task_state_msg(task) -> TaskState:
    """Return a scheduler Task (or a journal TaskRecord) as a TaskState message."""
    progress = task.progress if hasattr(task, "progress") else math.nan
    return TaskState(task_id=task.spec.id, kind=task.spec.kind, depends_on=list(task.spec.depends_on),
                     state=int(task.status), attempt=task.attempt,
                     preemptions=task.preemptions, engine=task.engine,
                     progress=float(progress) if progress is not None else math.nan, message=task.message,
                     started=time_from_seconds(task.started_at), finished=time_from_seconds(task.finished_at),
                     result=key_values(task.result or {}))


def mission_state_msg(mission, stamp_seconds: float, tasks=None) -> MissionState:
    """Return a scheduler Mission (or a journal MissionRecord) as a MissionState message."""
    all_tasks = list(mission.tasks.values()) if isinstance(mission.tasks, dict) else list(mission.tasks)
    counts = {"succeeded": 0, "failed": 0, "running": 0}
    for task in all_tasks:
        name = task.status.name.lower()
        if name in counts:
            counts[name] += 1
    state = MissionState(mission_id=mission.id, name=mission.name, state=int(mission.status), message=mission.message,
                         tasks_total=len(all_tasks),
                         tasks_succeeded=counts["succeeded"], tasks_failed=counts["failed"],
                         tasks_running=counts["running"],
                         tasks=[task_state_msg(t) for t in (all_tasks if tasks is None else tasks)])
    state.header.stamp = time_from_seconds(stamp_seconds)
    return state


def execute_mission_feedback(mission, tasks) -> ExecuteMission.Feedback:
    """Return an ExecuteMission feedback: the mission's counts and the tasks that changed."""
    counts = mission_state_msg(mission, 0.0, tasks=[])
    return ExecuteMission.Feedback(mission_id=mission.id, state=int(mission.status), tasks_total=counts.tasks_total,
                                   tasks_succeeded=counts.tasks_succeeded, tasks_failed=counts.tasks_failed,
                                   tasks_running=counts.tasks_running, updated_tasks=[task_state_msg(t) for t in tasks])


def execute_mission_result(mission) -> ExecuteMission.Result:
    return ExecuteMission.Result(mission_id=mission.id, state=int(mission.status), message=mission.message,
                                 tasks=[task_state_msg(t) for t in mission.tasks.values()])


def stranded_event(source: str, stranded, stamp):
    """Return the event that says a fail-safe task failed for good (qai_mission.engine_core.Stranded)."""
    from qai_interfaces.msg import Event as EventMsg
    from qai_mission.engine_core import RETURN_HOME_FAILED

    event = EventMsg(source=source, code=RETURN_HOME_FAILED, severity=EventMsg.ERROR, message=stranded.text)
    event.header.stamp = stamp
    return event
