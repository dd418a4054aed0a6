"""intelligence_engine: liquid neural networks (ncps CfC) that predict endurance, detect anomalies and fly.

ROS interface (names relative to the robot's namespace):
  subscribes  odom (nav_msgs/Odometry), imu/data (sensor_msgs/Imu), battery_state (sensor_msgs/BatteryState),
              navsat/fix (sensor_msgs/NavSatFix), cmd_vel (geometry_msgs/Twist: what the io_engine commands), all
              read at each tick (qai_edge.polled); control/target (geometry_msgs/PointStamped: the io_engine's
              target under `controller: external` or `residual`)
  publishes   predictions/endurance, predictions/anomaly (qai_interfaces/EndurancePrediction, AnomalyScore),
              control/cmd_vel or, for a residual policy, control/residual (geometry_msgs/Twist, body frame),
              events (qai_interfaces/Event: endurance_low, anomaly), /diagnostics (model versions, inference
              latency, input health)
  services    ~/activate_model (qai_interfaces/ActivateModel: through the promotion gate), ~/rollback_model
              (qai_interfaces/RollbackModel); both hot-swap the model between two ticks
  task kinds  check_endurance, watch_anomalies
The models load at start (a CfC in numpy, without torch); kinds are announced and OK reported once they are.
Inference runs in the ticks, on a thread of their own (qai_edge.ticker; /diagnostics: p50/p99 of each step and
whole tick); a new model is scored by the gate in a low-priority child process (qai_intelligence.gate_process:
torch is imported there), then loaded and warmed in a worker thread. The logic: qai_intelligence.engine, .runtime.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from geometry_msgs.msg import PointStamped, Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState, Imu, NavSatFix, NavSatStatus

from qai_edge.convert import key_values
from qai_edge.engine_node import EngineNode, spin_node
from qai_edge.health import Level
from qai_edge.polled import Polled
from qai_edge.tasks import ServedKind
from qai_edge.text import shorten
from qai_edge.ticker import Ticker
from qai_edge.workers import in_worker
from qai_interfaces.msg import AnomalyScore, EndurancePrediction, Event
from qai_interfaces.srv import ActivateModel, RollbackModel
from qai_intelligence import checkpoint, gate_process
from qai_intelligence.checkpoint import CheckpointError
from qai_intelligence.engine import CHECK_ENDURANCE, WATCH_ANOMALIES, IntelligenceCore
from qai_intelligence.evaluation import FEATURES
from qai_intelligence.messages import battery_reading, command_reading, gps_reading, imu_reading, odom_reading
from qai_intelligence.parameters import APPLIED_PARAMETERS, PARAMETERS
from qai_intelligence.runtime import ModelSlot, ReturnPlan
from qai_intelligence.store import TASKS, ModelStore, StoreError
from qai_intelligence.updates import ModelTrust, ModelUpdater


class IntelligenceEngine(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("intelligence_engine", PARAMETERS, **kwargs)
        p = self.param
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # torch, if a model of another cell needs it: one thread
        self.store = ModelStore(Path(p("model_store")).expanduser() / self.robot_id)
        self.periods = {"endurance": p("endurance_period"), "anomaly": p("anomaly_period"), "policy": 0.02}
        self.load_errors: dict[str, str] = {}
        slots = {}
        for task in TASKS:
            if task == "policy" and not p("policy_enabled"):
                continue
            try:
                version, path = self.store.active(task)
                model, meta = checkpoint.load_for_inference(path, task=task, inputs=FEATURES[task].features)
            except (StoreError, CheckpointError) as error:
                self.load_errors[task] = str(error)
                self.get_logger().error(f"{task} model not loaded: {error}")
                continue
            gap = max(p("state_reset_gap"), 5 * self.periods[task]) if task == "endurance" else p("state_reset_gap")
            slots[task] = ModelSlot(task, FEATURES[task], model, version, meta, self.periods[task], gap)
        plan = ReturnPlan(p("return_speed"), p("climb_rate"), p("landing_speed"), p("return_altitude"),
                          p("endurance_margin"), p("endurance_margin_fraction"))
        self.core = IntelligenceCore(slots, plan, lambda: self.param("payload"), p("home") or None,
                                     p("battery_timeout"), lambda: self.param("anomaly_threshold"),
                                     p("anomaly_refractory"), p("max_policy_speed"), p("landed_altitude"))
        for name in ("payload", "anomaly_threshold", "gate_margin"):
            self.on_parameter(name)  # read live where used
        for name, (owner, attribute) in APPLIED_PARAMETERS.items():
            target = self.core.return_plan if owner == "plan" else self.core
            self.on_parameter(name, lambda value, target=target, attribute=attribute: setattr(target, attribute, value))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="models")
        self.lock = threading.Lock()  # the ticks' thread holds it; so do the executor's uses of the core
        self.updater = ModelUpdater(self.store, self.core.slots, gate_process.scoring, lambda: p("gate_margin"),
                                    p("max_path_length"), ModelTrust(p("model_keys"), p("unsigned_checkpoints")))
        self._gps_origin = None

        self.endurance_pub = self.create_publisher(EndurancePrediction, "predictions/endurance", 10)
        self.anomaly_pub = self.create_publisher(AnomalyScore, "predictions/anomaly", 10)
        self.command_pubs = {t: self.create_publisher(Twist, t, 10) for t in ("control/cmd_vel", "control/residual")}
        self.events_pub = self.create_publisher(Event, "events", 10)
        self.inputs = Polled(self)  # read at each tick, not per message; the core keeps only the latest: depth 1
        for stream, kind, topic, reading in (("odom", Odometry, "odom", odom_reading), ("cmd", Twist, "cmd_vel",
                                             command_reading), ("imu", Imu, "imu/data", imu_reading),
                                             ("battery", BatteryState, "battery_state", battery_reading)):
            self.inputs.subscribe(kind, topic, lambda m, age, s=stream, r=reading: self._offer(s, r(m), age), 1)
        self.inputs.subscribe(NavSatFix, "navsat/fix", self._on_gps, 1)
        self.create_subscription(PointStamped, "control/target", self._on_target, 10)
        self.create_service(ActivateModel, "~/activate_model", self._on_activate)
        self.create_service(RollbackModel, "~/rollback_model", self._on_rollback)
        self.ticker = Ticker([(self.periods["endurance"], self._endurance_tick),  # a thread: no executor wakes
                              (self.periods["anomaly"], self._anomaly_tick)], self.lock, self._tick_failed)
        kinds = [ServedKind(CHECK_ENDURANCE, self.core.check_endurance, self.core.endurance_not_ready)
                 ] if "endurance" in slots else []
        kinds += [ServedKind(WATCH_ANOMALIES, self.core.watch_anomalies, self.core.anomalies_not_ready)
                  ] if "anomaly" in slots else []
        self.serve(kinds)
        self.start()
        self.ticker.start()

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _offer(self, stream: str, values: dict, age: float) -> None:
        self.core.offer(stream, values, self._ros_now() - age)  # heard `age` s ago, as it arrived

    def _on_gps(self, msg: NavSatFix, age: float) -> None:
        if msg.status.status >= NavSatStatus.STATUS_FIX and self._gps_origin is None and \
                all(map(math.isfinite, (msg.latitude, msg.longitude, msg.altitude))):
            self._gps_origin = (msg.latitude, msg.longitude, msg.altitude)
        reading = gps_reading(msg, self._gps_origin)
        if reading is not None:
            self._offer("gps", reading, age)

    def _tick_failed(self, tick, error: BaseException) -> None:
        if self.context.ok():  # not the publishers of a node shutting down
            self.get_logger().error(f"{tick.__name__}: {type(error).__name__}: {shorten(str(error), 200)}",
                                    throttle_duration_sec=5.0)

    def _on_target(self, msg: PointStamped) -> None:
        with self.lock:
            command = self.core.policy_command((msg.point.x, msg.point.y, msg.point.z), self._ros_now())
            topic = self.core.policy_topic()
        if command is not None:
            twist = Twist()
            twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z = command
            self.command_pubs[topic].publish(twist)

    def _endurance_tick(self) -> None:
        self.inputs.drain()
        output = self.core.endurance_tick(self._ros_now())
        if output is None:
            return
        slot = self.core.slots["endurance"]
        message = EndurancePrediction(remaining=output.remaining, baseline=output.baseline,
                                      return_needed=output.needed, low=output.low, model_version=slot.version,
                                      model_cell=slot.model.config.cell)
        message.header.stamp = self.get_clock().now().to_msg()
        self.endurance_pub.publish(message)
        if output.event:
            text = (f"predicted endurance {output.remaining:.0f} s is below the {output.needed:.0f} s the return "
                    f"home needs (baseline: {output.baseline:.0f} s)")
            self.get_logger().warning(text)
            self._event("endurance_low", Event.ERROR, text, {"endurance": round(output.remaining, 1),
                                                             "needed": round(output.needed, 1)})

    def _anomaly_tick(self) -> None:
        self.inputs.drain()
        output = self.core.anomaly_tick(self._ros_now())
        if output is None:
            return
        slot = self.core.slots["anomaly"]
        message = AnomalyScore(score=output.score, threshold=output.threshold, anomalous=output.anomalous,
                               worst_feature=output.worst, model_version=slot.version,
                               model_cell=slot.model.config.cell)
        message.header.stamp = self.get_clock().now().to_msg()
        self.anomaly_pub.publish(message)
        if output.event:
            text = (f"anomaly: score {output.score:.1f} above {output.threshold:.1f} (worst: {output.worst}"
                    f"{': ' + output.detail if output.detail else ''})")
            self.get_logger().warning(text)
            self._event("anomaly", Event.WARN, text, {"score": round(output.score, 2), "feature": output.worst})

    def _event(self, code: str, severity: int, text: str, values: dict) -> None:
        event = Event(source=self.get_fully_qualified_name(), code=code, severity=severity, message=text,
                      values=key_values(values))
        event.header.stamp = self.get_clock().now().to_msg()
        self.events_pub.publish(event)

    # -- Model updates: decided and prepared in a worker (qai_intelligence.updates), swapped here --------

    async def _on_activate(self, request, response):
        problem = self.updater.check(request.model, request.version, request.checkpoint)
        return await self._update(request.model, response, problem, self.updater.promote, request.model,
                                  request.version, request.checkpoint)

    async def _on_rollback(self, request, response):
        return await self._update(request.model, response, self.updater.check(request.model, path=None),
                                  self.updater.rollback, request.model)

    async def _update(self, task, response, problem, work, *args):
        if not problem:
            self.updater.busy = True
            try:
                ok, outcome = await in_worker(self, self._pool, work, *args)
            finally:
                self.updater.busy = False
            if ok:
                decision, prepared = outcome
                if prepared is not None:
                    with self.lock:  # between two ticks
                        self.core.slots[task].swap(prepared)
                self.get_logger().info(decision.message)
                response.message, response.previous_version = decision.message, decision.previous
                if isinstance(response, ActivateModel.Response):
                    response.activated, response.metrics = prepared is not None, key_values(decision.metrics)
                else:
                    response.success = True
            else:
                problem = str(outcome) if isinstance(outcome, (StoreError, CheckpointError)) \
                    else f"{type(outcome).__name__}: {shorten(str(outcome), 200)}"
        if problem:
            self.get_logger().error(f"{shorten(task)} model change refused: {problem}")
            response.message = problem
        response.active_version = getattr(self.core.slots.get(task), "version", "")
        return response

    # -- Health -----------------------------------------------------------------------------------------

    def health(self):
        with self.lock:
            values = self.core.status_values()
        if self.load_errors:
            return Level.ERROR, "; ".join(f"{t}: {e}" for t, e in self.load_errors.items()), values
        if self.core.watch.low:
            return Level.WARN, "endurance low: return home", values
        return Level.OK, "models loaded: " + ", ".join(f"{t} {s.version}" for t, s in self.core.slots.items()), values

    def destroy_node(self):
        self.ticker.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().destroy_node()


def main(args=None):
    code = spin_node(IntelligenceEngine, args)
    # Everything the node made is destroyed by now; the interpreter's teardown of torch alone takes about a
    # second (more on a busy machine), which would break the engines' promise to exit within two of a signal.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
