"""mission_engine: runs missions, graphs of tasks, across the engines.

ROS interface (names relative to the robot's namespace):
- action `execute_mission` (qai_interfaces/ExecuteMission): run a mission; feedback with the tasks that
  changed (and, while it waits for its engines, what it waits for); the result has every task;
- services `add_tasks`, `cancel_task`, `get_mission_state`; topic `mission_states` (reliable, transient local);
- subscribes `engine_capabilities` (which engine serves which kind), `/diagnostics` (their heartbeats),
  `events` (event rules start missions; it says `return_home_failed` there); sends RunTask goals; serves `wait`.

A shell: decisions are in qai_mission.scheduler (what runs when), .admission, .registry (which engines are up),
.event_rules, .publication and .journal (what survives a crash); goals in qai_edge.task_client. Changes are
journaled, on the writer thread, before anything acts on them; a journal that fails stops dispatch (ERROR).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.task import Future

from qai_edge.convert import kind_from_msg
from qai_edge.engine_node import CAPABILITIES_TOPIC, DIAGNOSTICS_TOPIC, EngineNode, spin_node
from qai_edge.polled import Polled
from qai_edge.qos import ACTION_QOS_ARGUMENTS, CAPABILITIES_QOS, MISSION_STATES_QOS
from qai_edge.task_client import TaskClient
from qai_edge.tasks import ServedKind
from qai_edge.workers import InOrder, in_worker
from qai_interfaces.action import ExecuteMission, RunTask
from qai_interfaces.msg import EngineCapabilities, Event, MissionState
from qai_interfaces.srv import AddTasks, CancelTask, GetMissionState
from qai_mission import services
from qai_mission.admission import Accept, Reject, Wait
from qai_mission.codec import load_mission_file
from qai_mission.engine_core import MissionEngineCore, open_journal
from qai_mission.event_rules import EventRules, config_path
from qai_mission.messages import (execute_mission_feedback, execute_mission_result, mission_from_msg,
                                  mission_state_msg, stranded_event, task_to_msg)
from qai_mission.parameters import PARAMETERS, limits_from
from qai_mission.scheduler import Cancel, Dispatch, Reattach
from qai_mission.wait_kind import WAIT_KIND, run_wait


class MissionEngine(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("mission_engine", PARAMETERS, **kwargs)
        p = self.param
        self.limits = limits_from(p)
        journal, problem = open_journal(f"{p('data_dir')}/{self.robot_id}/missions.db", p("journal_durable"),
                                        self.get_logger())
        self._admission_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admission")
        self.core = MissionEngineCore.from_parameters(p, self._ros_now, self._steady_now, journal, problem,
                                                      self.get_logger())
        self.event_rules = EventRules.parse(p("event_missions"), config_path,
                                            lambda path: load_mission_file(path, self.limits))
        self._group = ReentrantCallbackGroup()
        self._in_order = InOrder(self)  # journal commits come back in the order they were made
        self.tasks = TaskClient(self, self._group, self._on_accepted, self._on_task_feedback, self._on_outcome)
        self._states_pub = self.create_publisher(MissionState, "mission_states", MISSION_STATES_QOS)
        self.create_subscription(EngineCapabilities, CAPABILITIES_TOPIC, self._on_capabilities, CAPABILITIES_QOS)
        self._heartbeats = Polled(self)  # read with the 10 Hz engine check, not one wake-up per message
        self._heartbeats.subscribe(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 50)
        self.create_subscription(Event, "events", self._on_event, 50)
        self._events_pub = self.create_publisher(Event, "events", 10)
        self._missions = ActionServer(self, ExecuteMission, "execute_mission", execute_callback=self._execute,
                                      goal_callback=lambda goal: GoalResponse.ACCEPT,
                                      cancel_callback=self._on_cancel_request, callback_group=self._group,
                                      result_timeout=300, **ACTION_QOS_ARGUMENTS)
        self.create_service(AddTasks, "add_tasks", lambda rq, rs: services.add_tasks(self, rq, rs))
        self.create_service(CancelTask, "cancel_task", lambda rq, rs: services.cancel_task(self, rq, rs))
        self.create_service(GetMissionState, "get_mission_state",
                            lambda rq, rs: services.get_mission_state(self, rq, rs))
        self._tick_timer = self.create_timer(p("tick_period"), self._on_tick)  # the ROS clock: sim time too
        self._ticks = 0
        self.create_timer(0.1, self._on_steady_tick, clock=self._steady_clock)
        self.create_timer(60.0, self.core.prune, clock=self._steady_clock)
        for name in MissionEngineCore.PARAMETERS:
            self.on_parameter(name, lambda value, name=name: self.core.set_parameter(name, value))
        self.on_parameter("tick_period", lambda period: setattr(self._tick_timer, "timer_period_ns", int(period * 1e9)))
        self.serve([ServedKind(WAIT_KIND, run_wait)])
        self.start()
        self.flush()

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    _steady_now = staticmethod(time.monotonic)

    # -- Journal first, then act ------------------------------------------------------------------

    def flush(self) -> None:
        if self._tick_timer.is_canceled() and not self.core.scheduler.idle():
            self._tick_timer.reset()  # something to time again: the tick wakes up
        self.core.flush(lambda commands, error: self._in_order.call(self._act, commands, error))

    def _act(self, commands: list, error: str) -> None:
        for command in commands:
            if isinstance(command, Cancel):
                self.tasks.cancel(command.task.goal_id)
            elif error:
                continue  # not written: not done
            elif isinstance(command, Dispatch):
                goal = RunTask.Goal(mission_id=command.task.mission.id, attempt=command.attempt,
                                    task=task_to_msg(command.task.spec, command.parameters, command.timeout))
                self.tasks.send(command.route.engine, command.task.goal_id, goal, (command.task, command.attempt))
            elif isinstance(command, Reattach):
                self.get_logger().info(f"reattaching to {command.task.mission.id}/{command.task.id}")
                self.tasks.reattach(command.task.engine, command.goal_id, (command.task, command.attempt),
                                    command.cancel)
        self._publish()
        for stranded in self.core.take_stranded():  # a return_home or land failed for good: say so, act on it
            event = stranded_event(self.get_fully_qualified_name(), stranded, self.get_clock().now().to_msg())
            self._events_pub.publish(event)
            self._on_event(event)

    def _publish(self) -> None:
        now = self._ros_now()
        for update in self.core.due_states():
            mission = update.mission
            self._states_pub.publish(mission_state_msg(mission, now, tasks=update.tasks))
            waiter = self.core.waiters.get(mission.id)
            if waiter is not None and not mission.status.terminal:
                waiter[0].publish_feedback(execute_mission_feedback(mission, update.tasks))
            if mission.status.terminal and waiter is not None:
                del self.core.waiters[mission.id]
                self.executor.create_task(waiter[1].set_result, mission)

    def _on_tick(self) -> None:
        self.core.scheduler.tick()
        self.flush()
        if self.core.scheduler.idle():
            self._tick_timer.cancel()  # no wake-ups for nothing: the next flush (a change) starts it again

    def _on_steady_tick(self) -> None:
        self._heartbeats.drain()
        for transition in self.core.check_engines(self.tasks.reachable):
            if transition.kind == "gone":
                self.tasks.engine_down(transition.engine)
        self.tasks.poll(lambda engine: engine in self.core.registry.up())
        self._ticks += 1
        if self._ticks % 10 == 0:
            self.core.wake()  # missions waiting for their kinds look again, once a second
        self.flush()

    # -- Engines ----------------------------------------------------------------------------------

    def _on_capabilities(self, msg: EngineCapabilities) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.tasks.connect(msg.engine, msg.task_action)
        if self.core.announce(msg.engine, msg.task_action, [kind_from_msg(k) for k in msg.kinds], stamp):
            self.tasks.engine_down(msg.engine)  # it restarted: its goals are gone
        self._on_steady_tick()

    def _on_diagnostics(self, array: DiagnosticArray, age: float) -> None:
        for status in array.status:
            self.core.registry.heartbeat(status.name, self._steady_now() - age)

    def _on_accepted(self, token) -> None:
        self.core.scheduler.task_started(*token)
        self.flush()

    def _on_task_feedback(self, token, progress: float, status: str) -> None:
        self.core.scheduler.task_feedback(*token, progress, status)
        self.flush()

    def _on_outcome(self, token, outcome) -> None:
        self.core.attempt_ended(*token, outcome)
        self.flush()

    # -- Missions ---------------------------------------------------------------------------------

    async def _execute(self, goal_handle):
        request, goal_id = goal_handle.request.mission, bytes(goal_handle.goal_id.uuid).hex()
        ok, spec = await in_worker(self, self._admission_pool, mission_from_msg, request, self.limits)
        if not ok:  # MissionFormatError names the field; anything else is a bug, said as such
            return self._reject(goal_handle, request.id, str(spec) if isinstance(spec, ValueError) else repr(spec))
        until = None
        while True:  # decided off the executor: a 5,000-task mission must not hold up heartbeats
            ok, decision = await in_worker(self, self._admission_pool, self.core.decide, spec, until)
            if not ok:
                return self._reject(goal_handle, spec.id, repr(decision))
            if not isinstance(decision, Wait):
                break
            if until is None:
                self.get_logger().info(f"mission {spec.id or '(no id)'} waits for {decision.why}")
            until = decision.until
            goal_handle.publish_feedback(ExecuteMission.Feedback(mission_id=spec.id,
                                                                 message=f"waiting for {decision.why}"))
            woken = Future()
            self.core.on_wake(lambda: woken.done() or woken.set_result(None))
            await woken
        if isinstance(decision, Accept):
            decision = self.core.accept(decision, goal_id)
        if isinstance(decision, Reject):
            return self._reject(goal_handle, spec.id, decision.message)
        done = Future()
        self.core.waiters[decision.spec.id] = (goal_handle, done)
        self.flush()
        mission = await done
        result = execute_mission_result(mission)
        if goal_handle.is_cancel_requested and mission.status.name == "CANCELED":
            goal_handle.canceled()
        elif mission.status.name == "SUCCEEDED":
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def _reject(self, goal_handle, mission_id: str, message: str):
        self.get_logger().warning(f"mission {mission_id or '(no id)'} rejected: {message}")
        goal_handle.abort()
        return ExecuteMission.Result(mission_id=mission_id, state=MissionState.REJECTED, message=message)

    def _on_cancel_request(self, goal_handle) -> CancelResponse:
        mission_id = self.core.mission_of_goal(bytes(goal_handle.goal_id.uuid).hex())
        if mission_id is None or not self.core.cancel(mission_id, "", "the ExecuteMission goal was canceled"):
            return CancelResponse.REJECT
        self.flush()
        return CancelResponse.ACCEPT

    def _on_event(self, event: Event) -> None:
        decision = self.core.on_event(self.event_rules, event.code)
        if isinstance(decision, Accept):
            self.get_logger().warning(f"event {event.code} from {event.source} ({event.message}): "
                                      f"started mission {decision.spec.id}")
            self.flush()
        elif isinstance(decision, Reject):
            self.get_logger().error(f"event {event.code} from {event.source}: cannot start its mission: "
                                    f"{decision.message}")

    def health(self):
        return self.core.health()

    def destroy_node(self):
        self.tasks.destroy()
        self._admission_pool.shutdown(wait=False, cancel_futures=True)
        self.core.close()
        return super().destroy_node()


def main(args=None):
    return spin_node(MissionEngine, args)


if __name__ == "__main__":
    sys.exit(main())
