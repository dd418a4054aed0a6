"""mission_engine: runs missions, graphs of tasks, across the engines.

The ROS shell around qai_mission.scheduler (what runs when), qai_mission.journal (what survives a crash)
and qai_mission.validation (what is accepted). It
- serves the ExecuteMission action (`execute_mission`) and the add_tasks, cancel_task and
  get_mission_state services; publishes `mission_states` (reliable, transient local);
- learns which engine serves which kind from `engine_capabilities`, and whether it is alive from its
  /diagnostics heartbeat;
- sends each task to its engine as a RunTask goal, follows its feedback and result, cancels it;
- journals every change before it sends a goal, a feedback, a state or a result;
- serves the built-in kind `wait`.
"""

from __future__ import annotations

import sys
import time
import uuid
from functools import partial
from pathlib import Path

from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.action.client import ClientGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.task import Future
from unique_identifier_msgs.msg import UUID

from qai_edge.convert import decoded_key_values, kind_from_msg
from qai_edge.engine_node import CAPABILITIES_TOPIC, DIAGNOSTICS_TOPIC, EngineNode, spin_node
from qai_edge.health import Level
from qai_edge.paths import share_file
from qai_edge.qos import ACTION_QOS_ARGUMENTS, CAPABILITIES_QOS, MISSION_STATES_QOS
from qai_edge.tasks import ServedKind, TaskKindSpec
from qai_interfaces.action import ExecuteMission, RunTask
from qai_interfaces.msg import EngineCapabilities, Event, MissionState
from qai_interfaces.srv import AddTasks, CancelTask, GetMissionState
from qai_mission.codec import MissionFormatError, load_mission_file
from qai_mission.journal import Journal, JournalError
from qai_mission.messages import mission_from_msg, mission_state_msg, task_from_msg, task_state_msg, task_to_msg
from qai_mission.model import TASK_ID, KindRoute, MissionSpec, MissionStatus
from qai_mission.parameters import PARAMETERS
from qai_mission.scheduler import Cancel, Dispatch, Reattach, Scheduler
from qai_mission.validation import MissionInvalid, check_tasks

GOAL_RESPONSE_TIMEOUT = 10.0  # s
# A result request (or its answer) can be lost while the engine's side of the result service is still
# matching ours; asking again is harmless, so a goal's result is asked for again at these periods.
RESULT_REQUEST_PERIOD = 10.0  # s, running goals
REATTACH_REQUEST_PERIOD = 2.0  # s, goals reattached after a restart, whose answer should be immediate

WAIT_KIND = TaskKindSpec(
    name="wait", description="Wait a number of seconds (on the ROS clock of the mission engine).",
    parameters_schema={"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0}},
                       "required": ["seconds"], "additionalProperties": False},
    result_keys=("waited",))


def run_wait(request, context):
    seconds = float(request.parameters["seconds"])
    deadline = context.now() + seconds
    while (left := deadline - context.now()) > 0:
        context.feedback(progress=1.0 - left / seconds if seconds else 1.0, status=f"{left:.1f} s to go")
        context.sleep(min(left, 0.5))
    return {"waited": seconds}


class EngineLink:
    """What the mission engine knows of one engine."""

    def __init__(self, name: str):
        self.name = name
        self.task_action = ""
        self.kinds: list[TaskKindSpec] = []
        self.stamp = None  # capabilities header stamp: a new one means the engine restarted
        self.client: ActionClient | None = None
        self.last_heartbeat: float | None = None  # monotonic
        self.up = False
        self.announced_at = 0.0
        self.unreachable_reported = False
        self.goals: dict[str, ClientGoalHandle] = {}  # goal id (hex) -> handle
        self.cancel_when_accepted: set[str] = set()


class MissionEngine(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("mission_engine", PARAMETERS, **kwargs)
        param = lambda name: self.get_parameter(name).value  # noqa: E731
        self.max_missions = param("max_concurrent_missions")
        self.engine_timeout = param("engine_timeout")
        self.state_period = param("state_period")
        self.keep_finished = param("keep_finished_missions")
        self.scheduler = Scheduler(clock=self._now)
        self.engines: dict[str, EngineLink] = {}
        self._waiters: dict[str, tuple] = {}  # mission id -> (goal handle, future)
        self._pending_feedback: dict[str, dict] = {}  # mission id -> {task id: task}
        self._last_state_sent: dict[str, float] = {}
        self._awaiting_acceptance: dict[str, tuple] = {}  # goal id -> (sent at, task, attempt, engine link)
        self._following: dict[str, tuple] = {}  # goal id -> (task, attempt, engine link, handle, reattached)
        self._result_asked_at: dict[str, float] = {}
        self._group = ReentrantCallbackGroup()

        self.journal: Journal | None = None
        self.journal_error = ""
        journal_path = f"{param('data_dir')}/{self.robot_id}/missions.db"
        try:
            self.journal = Journal(journal_path, durable=param("journal_durable"))
            self.journal.prune(self.keep_finished)
            for record in self.journal.unfinished():
                self.scheduler.restore(record)
            resumed = [m for m in self.scheduler.missions.values() if not m.status.terminal]
            if resumed:
                self.get_logger().info(f"resumed {len(resumed)} unfinished mission(s) from {journal_path}: "
                                       f"{', '.join(m.id for m in resumed)}")
        except JournalError as error:
            self.journal_error = str(error)
            self.get_logger().error(f"{error}. Missions are refused until the journal is usable.")

        self._states_pub = self.create_publisher(MissionState, "mission_states", MISSION_STATES_QOS)
        self.create_subscription(EngineCapabilities, CAPABILITIES_TOPIC, self._on_capabilities, CAPABILITIES_QOS)
        self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 50)
        self._mission_server = ActionServer(
            self, ExecuteMission, "execute_mission", execute_callback=self._execute_mission,
            goal_callback=lambda goal: GoalResponse.ACCEPT, cancel_callback=self._on_mission_cancel_request,
            callback_group=self._group, result_timeout=300, **ACTION_QOS_ARGUMENTS)
        self.create_service(AddTasks, "add_tasks", self._on_add_tasks)
        self.create_service(CancelTask, "cancel_task", self._on_cancel_task)
        self.create_service(GetMissionState, "get_mission_state", self._on_get_mission_state)
        self.event_missions = self._load_event_missions(self.param("event_missions"))
        self._event_mission_running: dict[str, str] = {}  # event code -> mission id
        self.create_subscription(Event, "events", self._on_event, 10)
        self._tick_timer = self.create_timer(param("tick_period"), self._on_tick)
        self.on_parameter("max_concurrent_missions", lambda value: setattr(self, "max_missions", value))
        self.on_parameter("engine_timeout", lambda value: setattr(self, "engine_timeout", value))
        self.on_parameter("state_period", lambda value: setattr(self, "state_period", value))
        self.on_parameter("keep_finished_missions", lambda value: setattr(self, "keep_finished", value))
        self.on_parameter("tick_period", self._restart_tick_timer)
        self.create_timer(0.2, self._check_engines, clock=self._steady_clock)
        self.serve([ServedKind(WAIT_KIND, run_wait)])
        self.start()
        self._flush()

    def _restart_tick_timer(self, period: float) -> None:
        self.destroy_timer(self._tick_timer)
        self._tick_timer = self.create_timer(period, self._on_tick)

    # -- Time ----------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- Engines -------------------------------------------------------------------------------

    def _link(self, name: str) -> EngineLink:
        link = self.engines.get(name)
        if link is None:
            link = self.engines[name] = EngineLink(name)
        return link

    def _on_capabilities(self, msg: EngineCapabilities) -> None:
        if msg.engine not in self.engines:
            self.get_logger().info(f"engine {msg.engine} announced: {', '.join(k.name for k in msg.kinds) or 'no kinds'}"
                                   f"{' at ' + msg.task_action if msg.task_action else ''}")
        link = self._link(msg.engine)
        link.announced_at = time.monotonic()
        restarted = link.stamp is not None and (msg.header.stamp.sec, msg.header.stamp.nanosec) != link.stamp
        link.stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        link.kinds = [kind_from_msg(kind) for kind in msg.kinds]
        link.last_heartbeat = time.monotonic()
        if msg.task_action != link.task_action:
            if link.client is not None:
                link.client.destroy()
            link.task_action = msg.task_action
            link.client = (ActionClient(self, RunTask, msg.task_action, callback_group=self._group,
                                        **ACTION_QOS_ARGUMENTS) if msg.task_action else None)
        if restarted and link.up:
            self.get_logger().warning(f"engine {link.name} restarted: its running tasks are lost")
            self._engine_down(link)
        self._check_engines()

    def _on_diagnostics(self, array: DiagnosticArray) -> None:
        for status in array.status:
            link = self.engines.get(status.name)
            if link is not None:
                link.last_heartbeat = time.monotonic()

    def _check_engines(self) -> None:
        """An engine is up while its heartbeat is fresh and its RunTask server is reachable."""
        now = time.monotonic()
        changed = False
        for link in self.engines.values():
            # A goal sent before the server is discovered would be lost, so "up" waits for discovery.
            alive = (link.last_heartbeat is not None and now - link.last_heartbeat < self.engine_timeout
                     and link.client is not None and link.client.server_is_ready())
            if alive and not link.up:
                link.up = True
                changed = True
                self.get_logger().info(f"engine {link.name} up: {', '.join(k.name for k in link.kinds)}")
            elif not alive and link.up:
                self.get_logger().warning(f"engine {link.name} lost (no heartbeat for "
                                          f"{now - (link.last_heartbeat or now):.1f} s)")
                self._engine_down(link)
                changed = True
            elif not alive and link.kinds and not link.unreachable_reported and now - link.announced_at > 10.0:
                link.unreachable_reported = True
                fresh = link.last_heartbeat is not None and now - link.last_heartbeat < self.engine_timeout
                found = link.client is not None and link.client.server_is_ready()
                self.get_logger().warning(
                    f"engine {link.name} announced kinds 10 s ago but is not reachable (heartbeat "
                    f"{'fresh' if fresh else 'missing'}, action server {'found' if found else 'not found'})")
        if changed:
            self._publish_routes()

    def _engine_down(self, link: EngineLink) -> None:
        link.up = False
        for goal_id in link.goals:
            self._following.pop(goal_id, None)
            self._result_asked_at.pop(goal_id, None)
        link.goals.clear()
        link.cancel_when_accepted.clear()
        self.scheduler.engine_lost(link.name)
        self._publish_routes()

    def _routes(self) -> dict[str, KindRoute]:
        """Kinds served by engines that are up. A kind belongs to one engine; a second one is ignored."""
        routes: dict[str, KindRoute] = {}
        for link in self.engines.values():
            if not link.up:
                continue
            for kind in link.kinds:
                if kind.name in routes:
                    self.get_logger().warning(f"{link.name} also serves {kind.name!r}; "
                                              f"{routes[kind.name].engine} keeps it", once=True)
                    continue
                routes[kind.name] = KindRoute(kind, link.name, link.task_action)
        return routes

    def _up_engines(self) -> set[str]:
        return {link.name for link in self.engines.values() if link.up}

    def _publish_routes(self) -> None:
        self.scheduler.set_routes(self._routes(), self._up_engines())
        self._flush()

    # -- Scheduler plumbing: journal first, then act ---------------------------------------------

    def _flush(self) -> None:
        missions, tasks = self.scheduler.take_changes()
        commands = self.scheduler.take_commands()
        if self.journal is not None and (missions or tasks):
            try:
                self.journal.record(missions, tasks)
            except JournalError as error:
                self.journal_error = str(error)
                self.get_logger().error(str(error))
        for command in commands:
            if isinstance(command, Dispatch):
                self._send_goal(command)
            elif isinstance(command, Cancel):
                self._cancel_goal(command)
            elif isinstance(command, Reattach):
                self._reattach(command)
        now = self._now()
        for task in tasks:
            self._pending_feedback.setdefault(task.mission.id, {})[task.spec.id] = task
        for mission in missions:
            self._pending_feedback.setdefault(mission.id, {})
        self._send_states(now, force={m.id for m in missions})

    def _send_states(self, now: float, force=()) -> None:
        """Mission states and ExecuteMission feedback: at once when the mission's own state changed,
        otherwise at most every state_period."""
        for mission_id in list(self._pending_feedback):
            if mission_id not in force and now - self._last_state_sent.get(mission_id, 0.0) < self.state_period:
                continue
            updated = self._pending_feedback.pop(mission_id)
            mission = self.scheduler.missions.get(mission_id)
            if mission is None:
                continue
            self._last_state_sent[mission_id] = now
            self._states_pub.publish(mission_state_msg(mission, now))
            waiter = self._waiters.get(mission_id)
            if waiter is not None and updated and not mission.status.terminal:
                goal_handle, _ = waiter
                counts = mission_state_msg(mission, now, tasks=[])
                goal_handle.publish_feedback(ExecuteMission.Feedback(
                    mission_id=mission_id, state=int(mission.status), tasks_total=counts.tasks_total,
                    tasks_succeeded=counts.tasks_succeeded, tasks_failed=counts.tasks_failed,
                    tasks_running=counts.tasks_running, updated_tasks=[task_state_msg(t) for t in updated.values()]))
            if mission.status.terminal:
                self._finish_mission(mission)

    def _finish_mission(self, mission) -> None:
        waiter = self._waiters.pop(mission.id, None)
        if waiter is not None:
            self.executor.create_task(waiter[1].set_result, mission)  # wakes the executor at once
        self._last_state_sent.pop(mission.id, None)
        finished = [m for m in self.scheduler.missions.values() if m.status.terminal]
        for old in finished[:-100]:  # the journal keeps the rest
            self.scheduler.forget(old.id)

    def _on_tick(self) -> None:
        self._expire_unanswered_goals()
        self._ask_again_for_results()
        self.scheduler.tick()
        self._flush()
        self._send_states(self._now())

    # -- RunTask goals to engines ------------------------------------------------------------------

    def _send_goal(self, dispatch: Dispatch) -> None:
        task = dispatch.task
        link = self.engines.get(dispatch.route.engine)
        if link is None or link.client is None:
            self.scheduler.task_failed(task, dispatch.attempt, f"engine {dispatch.route.engine} has no task action")
            return self._flush()
        goal = RunTask.Goal(mission_id=task.mission.id, attempt=dispatch.attempt,
                            task=task_to_msg(task.spec, dispatch.parameters, dispatch.timeout))
        goal_uuid = UUID(uuid=list(uuid.UUID(hex=task.goal_id).bytes))
        future = link.client.send_goal_async(goal, feedback_callback=partial(self._on_task_feedback, task,
                                                                                 dispatch.attempt),
                                             goal_uuid=goal_uuid)
        self._awaiting_acceptance[task.goal_id] = (time.monotonic(), task, dispatch.attempt, link)
        future.add_done_callback(partial(self._on_goal_response, task, dispatch.attempt, link, task.goal_id))

    def _on_goal_response(self, task, attempt, link: EngineLink, goal_id: str, future: Future) -> None:
        if self._awaiting_acceptance.pop(goal_id, None) is None:
            return  # given up on already
        handle = future.result()
        if not handle.accepted:
            self.scheduler.task_failed(task, attempt, f"{link.name} rejected the goal", retryable=False)
            return self._flush()
        self._follow(task, attempt, link, goal_id, handle, reattached=False)
        self.scheduler.task_started(task, attempt)
        if goal_id in link.cancel_when_accepted:
            link.cancel_when_accepted.discard(goal_id)
            handle.cancel_goal_async()
        self._flush()

    def _expire_unanswered_goals(self) -> None:
        """A goal request the engine never answered (lost, or the engine stalled) fails the attempt, so a
        task cannot hang; a retry that reaches the engine replaces the old goal if it did arrive."""
        now = time.monotonic()
        for goal_id, (sent, task, attempt, link) in list(self._awaiting_acceptance.items()):
            if now - sent > GOAL_RESPONSE_TIMEOUT:
                del self._awaiting_acceptance[goal_id]
                self.scheduler.task_failed(task, attempt, f"{link.name} did not answer the goal within "
                                                          f"{GOAL_RESPONSE_TIMEOUT:g} s")

    def _follow(self, task, attempt, link: EngineLink, goal_id: str, handle, reattached: bool) -> None:
        link.goals[goal_id] = handle
        self._following[goal_id] = (task, attempt, link, handle, reattached)
        self._request_result(goal_id)

    def _request_result(self, goal_id: str) -> None:
        task, attempt, link, handle, reattached = self._following[goal_id]
        self._result_asked_at[goal_id] = time.monotonic()
        handle.get_result_async().add_done_callback(
            partial(self._on_task_result, task, attempt, link, goal_id, reattached))

    def _ask_again_for_results(self) -> None:
        now = time.monotonic()
        for goal_id, (_, _, link, _, reattached) in list(self._following.items()):
            period = REATTACH_REQUEST_PERIOD if reattached else RESULT_REQUEST_PERIOD
            if link.up and now - self._result_asked_at.get(goal_id, now) > period:
                self._request_result(goal_id)

    def _on_task_feedback(self, task, attempt, feedback_message) -> None:
        feedback = feedback_message.feedback
        self.scheduler.task_feedback(task, attempt, feedback.progress, feedback.status)
        self._flush()

    def _on_task_result(self, task, attempt, link: EngineLink, goal_id: str, reattached: bool, future: Future) -> None:
        if self._following.pop(goal_id, None) is None:
            return  # answered already (results are asked for again until one comes)
        self._result_asked_at.pop(goal_id, None)
        link.goals.pop(goal_id, None)
        response = future.result()
        status, result = response.status, response.result
        if status == GoalStatus.STATUS_SUCCEEDED:
            try:
                self.scheduler.task_succeeded(task, attempt, decoded_key_values(result.result))
            except ValueError as error:
                self.scheduler.task_failed(task, attempt, f"result is not valid JSON: {error}", retryable=False)
        elif status == GoalStatus.STATUS_CANCELED:
            self.scheduler.task_canceled(task, attempt)
        elif status == GoalStatus.STATUS_ABORTED:
            self.scheduler.task_failed(task, attempt, result.message or "aborted by its engine", result.retryable)
        elif reattached:
            self.scheduler.attempt_lost(task, attempt)
        else:
            self.scheduler.task_failed(task, attempt, f"{link.name} lost the goal (status {status})")
        self._flush()

    def _cancel_goal(self, cancel: Cancel) -> None:
        link = self.engines.get(cancel.engine)
        if link is None or not link.up:
            return  # engine_lost settles it
        handle = link.goals.get(cancel.task.goal_id)
        if handle is not None:
            handle.cancel_goal_async()
        else:
            link.cancel_when_accepted.add(cancel.task.goal_id)

    def _reattach(self, reattach: Reattach) -> None:
        task = reattach.task
        link = self.engines.get(task.engine)
        if link is None or link.client is None:
            return
        handle = ClientGoalHandle(link.client, UUID(uuid=list(uuid.UUID(hex=reattach.goal_id).bytes)),
                                  RunTask.Impl.SendGoalService.Response(accepted=True))
        self.get_logger().info(f"reattaching to {task.mission.id}/{task.spec.id} on {link.name}")
        self._follow(task, reattach.attempt, link, reattach.goal_id, handle, reattached=True)
        if reattach.cancel:
            handle.cancel_goal_async()

    # -- ExecuteMission ---------------------------------------------------------------------------

    async def _execute_mission(self, goal_handle):
        try:
            spec = mission_from_msg(goal_handle.request.mission)
        except MissionFormatError as error:
            return self._reject(goal_handle, goal_handle.request.mission.id, str(error))
        problem = self._admission_problem(spec)
        if problem:
            return self._reject(goal_handle, spec.id, problem)
        if not spec.id:
            spec = MissionSpec(self._new_mission_id(), spec.name, spec.tasks)
        try:
            check_tasks(spec.tasks, self.scheduler.routes, self._now())
        except MissionInvalid as error:
            return self._reject(goal_handle, spec.id, str(error))
        done = Future()
        self._waiters[spec.id] = (goal_handle, done)
        self.scheduler.add_mission(spec, goal_id=bytes(goal_handle.goal_id.uuid).hex())
        self.get_logger().info(f"mission {spec.id} accepted: {len(spec.tasks)} tasks")
        self._flush()
        mission = await done
        result = ExecuteMission.Result(mission_id=mission.id, state=int(mission.status), message=mission.message,
                                       tasks=[task_state_msg(t) for t in mission.tasks.values()])
        if goal_handle.is_cancel_requested and mission.status == MissionStatus.CANCELED:
            goal_handle.canceled()
        elif mission.status == MissionStatus.SUCCEEDED:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def _admission_problem(self, spec: MissionSpec) -> str:
        if self.journal is None or self.journal_error:
            return f"the mission journal is unusable, so no mission can be accepted: {self.journal_error}"
        if spec.id and not TASK_ID.match(spec.id):
            return "id: a mission id is 1-64 letters, digits, '_' or '-'"
        if spec.id and (spec.id in self.scheduler.missions or self.journal.mission(spec.id) is not None):
            return f"id: mission {spec.id!r} already exists"
        active = sum(1 for m in self.scheduler.missions.values() if not m.status.terminal)
        if active >= self.max_missions:
            return f"{active} missions are running, the most max_concurrent_missions allows"
        return ""

    def _new_mission_id(self) -> str:
        return time.strftime("m%Y%m%d-%H%M%S-", time.gmtime(self._now())) + uuid.uuid4().hex[:4]

    def _reject(self, goal_handle, mission_id: str, message: str):
        self.get_logger().warning(f"mission {mission_id or '(no id)'} rejected: {message}")
        goal_handle.abort()
        return ExecuteMission.Result(mission_id=mission_id, state=MissionStatus.REJECTED, message=message)

    def _on_mission_cancel_request(self, goal_handle) -> CancelResponse:
        for mission_id, (handle, _) in self._waiters.items():
            if handle.goal_id == goal_handle.goal_id:
                try:
                    self.scheduler.cancel_mission(mission_id, "the ExecuteMission goal was canceled")
                except (LookupError, ValueError):
                    return CancelResponse.REJECT
                self._flush()
                return CancelResponse.ACCEPT
        return CancelResponse.REJECT

    # -- Events -----------------------------------------------------------------------------------

    @staticmethod
    def _load_event_missions(rules: list[str]) -> dict[str, MissionSpec]:
        """'code: path' rules -> mission templates; a bad rule stops the node with the reason."""
        missions = {}
        for index, rule in enumerate(rules):
            code, separator, path = (part.strip() for part in rule.partition(":"))
            if not separator or not code or not path:
                raise ValueError(f"event_missions[{index}]: expected 'code: mission file', got {rule!r}")
            file = Path(path) if Path(path).is_absolute() else share_file("config", path)
            try:
                missions[code] = load_mission_file(file, time.time())
            except MissionFormatError as error:
                raise ValueError(f"event_missions[{index}]: {error}") from None
        return missions

    def _on_event(self, event: Event) -> None:
        template = self.event_missions.get(event.code)
        if template is None:
            return
        running = self._event_mission_running.get(event.code)
        if running and running in self.scheduler.missions and not self.scheduler.missions[running].status.terminal:
            return
        mission_id = f"{event.code}-{uuid.uuid4().hex[:6]}"
        spec = MissionSpec(mission_id, template.name or event.code, template.tasks)
        problem = self._admission_problem(spec)
        if not problem:
            try:
                check_tasks(spec.tasks, self.scheduler.routes, self._now())
            except MissionInvalid as error:
                problem = str(error)
        if problem:
            self.get_logger().error(f"event {event.code} from {event.source}: cannot start its mission: {problem}")
            return
        self.get_logger().warning(f"event {event.code} from {event.source} ({event.message}): "
                                  f"starting mission {mission_id}")
        self._event_mission_running[event.code] = mission_id
        self.scheduler.add_mission(spec)
        self._flush()

    # -- Services -------------------------------------------------------------------------------

    def _on_add_tasks(self, request, response):
        mission = self.scheduler.missions.get(request.mission_id)
        try:
            if mission is None:
                raise ValueError(f"no running mission {request.mission_id!r}")
            specs = [task_from_msg(t, f"tasks[{i}]") for i, t in enumerate(request.tasks)]
            check_tasks(specs, self.scheduler.routes, self._now(),
                        existing={t.spec.id: t.spec for t in mission.tasks.values()})
            self.scheduler.add_tasks(request.mission_id, specs)
        except (ValueError, LookupError) as error:  # MissionInvalid and MissionFormatError are ValueErrors
            response.accepted, response.message = False, str(error)
            return response
        self._flush()
        response.accepted, response.message = True, f"added {len(specs)} task(s)"
        return response

    def _on_cancel_task(self, request, response):
        try:
            if request.task_id:
                self.scheduler.cancel_task(request.mission_id, request.task_id, request.reason)
            else:
                self.scheduler.cancel_mission(request.mission_id, request.reason)
        except (LookupError, ValueError) as error:
            response.accepted, response.message = False, str(error.args[0])
            return response
        self._flush()
        response.accepted, response.message = True, "cancel requested"
        return response

    def _on_get_mission_state(self, request, response):
        now = self._now()
        if request.mission_id:
            mission = self.scheduler.missions.get(request.mission_id)
            if mission is None and self.journal is not None:
                mission = self.journal.mission(request.mission_id)
            response.found = mission is not None
            response.message = "" if mission else f"no mission {request.mission_id!r}"
            response.missions = [mission_state_msg(mission, now)] if mission else []
            return response
        missions = sorted(self.scheduler.missions.values(), key=lambda m: m.seq, reverse=True)
        if self.journal is not None and request.include_finished:
            known = {m.id for m in missions}
            missions += [m for m in self.journal.recent(100) if m.id not in known]
        if not request.include_finished:
            missions = [m for m in missions if not m.status.terminal]
        response.found = bool(missions)
        response.missions = [mission_state_msg(m, now) for m in missions]
        return response

    # -- Health ---------------------------------------------------------------------------------

    def health(self):
        values = {
            "missions_active": sum(1 for m in self.scheduler.missions.values() if not m.status.terminal),
            "queue_depth": self.scheduler.queue_depth(),
            "tasks_running": self.scheduler.running_count(),
            "missed_deadlines": self.scheduler.missed_deadlines,
            "engines_up": ",".join(sorted(self._up_engines())),
            "kinds_routed": ",".join(sorted(self.scheduler.routes)),
            "journal": self.journal.path if self.journal else "",
        }
        if self.journal is not None:
            values["journal_bytes"] = self.journal.size_bytes()
            values["journal_commits"] = self.journal.commits
            values["journal_last_commit_ms"] = f"{self.journal.last_commit_seconds * 1000:.2f}"
        if self.journal_error:
            return Level.ERROR, f"journal unusable: {self.journal_error}", values
        return Level.OK, "running", values


def main(args=None):
    return spin_node(MissionEngine, args)


if __name__ == "__main__":
    sys.exit(main())
