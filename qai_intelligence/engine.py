"""The intelligence engine's core: readings in; predictions, scores, commands, events and task results out.

No rclpy import. The node (qai_intelligence.node) converts messages to readings (qai_intelligence.features
documents them), calls `offer` for each and the three ticks, and publishes what they return; task handlers
run in worker threads and read what the ticks left here.

  endurance_tick  the endurance model on the latest battery and odometry readings; `endurance_low` when the
                  prediction falls below what the return home needs (runtime.ReturnPlan)
  anomaly_tick    the anomaly model on every stream's latest reading (sample and hold) and their ages; an
                  `anomaly` event when its score crosses the threshold. A tick that runs late (this process
                  was stalled: a loaded CPU, a slow first model call) does not count the silence of streams
                  whose readings are still queued behind it (qai_edge.stall)
  policy_command  the learned policy on the latest odometry and the target the io_engine published
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from qai_edge.stall import StallHold
from qai_edge.tasks import TaskFailed, TaskKindSpec
from qai_edge.text import shorten
from qai_intelligence.baselines import EnduranceBaseline
from qai_intelligence.features import (AGE_ALLOWANCE, ANOMALY_TARGETS, STREAMS, AnomalyFeatureBuilder,
                                       PolicyFeatureBuilder, check_reading, endurance_features)
from qai_intelligence.fast import output_std
from qai_intelligence.metrics import WARM_UP
from qai_intelligence.model_config import predicted_spread
from qai_intelligence.runtime import AnomalyScorer, EnduranceWatch, ModelSlot, ReturnPlan


def _timed(task: str):
    """Record a tick's whole time (features, step, scoring) in its slot's tick_latency, when it ran."""
    def wrap(tick):
        @functools.wraps(tick)
        def timed(self, *args):
            started = time.perf_counter()
            output = tick(self, *args)
            if output is not None:
                self.slots[task].tick_latency.add(time.perf_counter() - started)
            return output
        return timed
    return wrap


POINT = {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"}}
CHECK_ENDURANCE = TaskKindSpec(
    "check_endurance", "Fail unless the predicted flight time covers the route (waypoints from where the vehicle "
    "is, at `speed`; none: no route), the return home and the margin; with `watch`, keep checking until the "
    "vehicle is within `tolerance` of `until` (default: the last waypoint) or has landed, failing when the "
    "prediction falls below what the return home needs.",
    {"type": "object", "additionalProperties": False, "properties": {
        "waypoints": {"type": "array", "maxItems": 1000, "items": POINT}, "until": POINT,
        "speed": {"type": "number", "exclusiveMinimum": 0, "maximum": 50},
        "watch": {"type": "boolean"}, "tolerance": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}}},
    result_keys=("endurance", "needed", "baseline", "model_version"), default_timeout=3600.0)
WATCH_ANOMALIES = TaskKindSpec(
    "watch_anomalies", "Watch the sensors beside a flight and fail on an anomaly; ends after `duration` seconds, "
    "or once the vehicle is within `tolerance` of `until` or has landed, or when canceled.",
    {"type": "object", "additionalProperties": False, "properties": {
        "duration": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}, "until": POINT,
        "tolerance": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}}},
    result_keys=("max_score", "threshold", "ticks", "model_version"), default_timeout=3600.0)

FRESH_ODOM = 0.5  # s: older odometry is no pose to act on
ANOMALY_STREAMS = ("odom", "imu", "battery", "gps")
# s the running detector scores after a start or a data gap before its verdicts count. Its hidden state starts
# at zero: on the ground after a start the score stays within ~15 % of the threshold for over a second (measured:
# 2.3-2.9 against 3.26 after the 1 s warm-up the evaluation uses, 3 starts on a loaded machine), and a loaded
# CPU's jitter on top raised false alarms 1-2 s after start-up (3 of about 12 full test runs). Flights in evaluation
# start in the air without that jitter and keep metrics.WARM_UP.
SETTLE_S = 3.0


@dataclass
class EnduranceOutput:
    remaining: float
    baseline: float
    needed: float
    low: bool
    event: bool  # endurance_low goes out now


@dataclass
class AnomalyOutput:
    score: float
    threshold: float
    anomalous: bool
    worst: str
    event: bool
    detail: str = ""  # for a stream's age: how long ago it was last heard


class IntelligenceCore:
    def __init__(self, slots: Mapping[str, ModelSlot], return_plan: ReturnPlan, payload: Callable[[], float],
                 home: Sequence[float] | None = None, battery_timeout: float = 5.0,
                 anomaly_threshold: Callable[[], float] = lambda: 0.0, refractory: float = 2.0,
                 max_policy_speed: float = 8.0, landed_altitude: float = 0.3):
        self.slots = dict(slots)
        self.return_plan = return_plan
        self.payload = payload
        self.home = tuple(home) if home else None
        self.battery_timeout = battery_timeout
        self.anomaly_threshold = anomaly_threshold
        self.refractory = refractory
        self.max_policy_speed = max_policy_speed
        self.landed_altitude = landed_altitude  # m (odom z): at or below, the vehicle is on the ground
        self.latest: dict[str, dict[str, float]] = {}
        self.last_valid: dict[str, float] = {}
        self.rejected = dict.fromkeys(STREAMS, 0)
        self.last_rejected = ""
        self.baseline = EnduranceBaseline()  # the endurance model's fitted one once a tick has run
        self.baseline_source = ""
        self._baseline_for: tuple[str, int] | None = None
        self.watch = EnduranceWatch()
        self.endurance: EnduranceOutput | None = None
        self.endurance_at: float | None = None
        self.anomaly: AnomalyOutput | None = None
        self.alarms = 0  # anomaly events so far
        self._anomaly_builder = AnomalyFeatureBuilder()
        # Stalled: more than 5 anomaly periods between two ticks; then, for the shortest allowance, silence is
        # not judged (the readings queued meanwhile are read within milliseconds of the stall's end).
        self.stall = StallHold(gap=0.25, hold=min(AGE_ALLOWANCE.values()))
        self._policy_builder = PolicyFeatureBuilder()
        self._policy_last: float | None = None
        self.scorer: AnomalyScorer | None = None
        self._scorer_for: tuple[str, int] | None = None

    # -- Readings -------------------------------------------------------------------------------------

    def offer(self, stream: str, values: Mapping[str, float], now: float) -> bool:
        """Keep a reading if it is whole and plausible; otherwise count it and say why."""
        problem = check_reading(stream, values)
        if problem:
            self.rejected[stream] += 1
            self.last_rejected = problem
            return False
        self.latest[stream] = dict(values)
        self.last_valid[stream] = now
        if stream == "odom" and self.home is None:
            self.home = (values["x"], values["y"], values["z"])
        return True

    def _fresh(self, stream: str, now: float, within: float) -> bool:
        at = self.last_valid.get(stream)
        return at is not None and 0.0 <= now - at <= within

    # -- Ticks ----------------------------------------------------------------------------------------

    @_timed("endurance")
    def endurance_tick(self, now: float) -> EnduranceOutput | None:
        slot = self.slots.get("endurance")
        if slot is None or not self._fresh("battery", now, self.battery_timeout) or "odom" not in self.latest:
            return None
        features = endurance_features(self.latest["battery"], self.latest["odom"], self.payload())
        output = slot.step(features, now)
        if output is None:
            return None
        remaining = max(0.0, float(output[0]))
        baseline = self._endurance_baseline(slot).predict(features, slot.period)
        odom = self.latest["odom"]
        needed = self.return_plan.seconds((odom["x"], odom["y"], odom["z"]), self.home or (0.0, 0.0, 0.0))
        event = self.watch.update(remaining, needed, now)
        self.endurance = EnduranceOutput(remaining, baseline, needed, self.watch.low, event)
        self.endurance_at = now
        return self.endurance

    def _endurance_baseline(self, slot: ModelSlot) -> EnduranceBaseline:
        """Return the baseline fitted on the model's own training flights (its checkpoint's metrics.baseline).

        A checkpoint without one gets the autopilot estimate uncalibrated (scale 1, offset 0), said in status.
        """
        key = (slot.version, slot.swaps)
        if self._baseline_for != key:
            metrics = slot.meta.get("metrics") if isinstance(slot.meta, dict) else None
            fitted = metrics.get("baseline") if isinstance(metrics, dict) else None  # a meta.json of any shape
            try:
                scale, offset = float(fitted["scale"]), float(fitted["offset"])
                ok = math.isfinite(scale) and math.isfinite(offset) and scale > 0
            except (TypeError, KeyError, ValueError):
                ok = False
            self.baseline = EnduranceBaseline(scale=scale, offset=offset) if ok else EnduranceBaseline()
            self.baseline_source = f"fitted: scale {scale:.3f}, offset {offset:.1f} s" if ok else \
                "uncalibrated: the checkpoint has no fitted metrics.baseline"
            self._baseline_for = key
        return self.baseline

    @_timed("anomaly")
    def anomaly_tick(self, now: float) -> AnomalyOutput | None:
        slot = self.slots.get("anomaly")
        if slot is None or not all(s in self.last_valid for s in ANOMALY_STREAMS):
            return None  # until every stream has been heard from: a stream not up yet is no fault
        scorer = self._anomaly_scorer(slot)
        resets = slot.resets
        self.stall.gap = 5 * slot.period
        features = self.anomaly_features(now)
        prediction = slot.step(features, now)
        if prediction is None:
            return None
        if slot.resets != resets:  # a gap: what came before says nothing about now
            scorer.reset()
            self._anomaly_builder.reset()
        override = self.anomaly_threshold()
        scorer.threshold = override if override > 0 else slot.model.config.extra["threshold"]
        scorer.refractory = self.refractory
        mean, spread = predicted_spread(output_std(slot.model), prediction, len(ANOMALY_TARGETS))
        event = scorer.update(features, mean, now, spread)
        if event:
            self.alarms += 1
        stream = scorer.worst.removeprefix("age_") if scorer.worst.startswith("age_") else ""
        heard = self.last_valid.get(stream)
        detail = f"{stream} last heard {now - heard:.2f} s before" if stream and heard is not None else ""
        self.anomaly = AnomalyOutput(scorer.score, scorer.threshold, scorer.above, scorer.worst, event, detail)
        return self.anomaly

    def anomaly_features(self, now: float) -> list[float] | None:
        """Return the anomaly model's inputs at `now` from the latest readings (None until every stream spoke).

        What the model sees in the node, and what qai_intelligence.recordings replays from a recorded flight.
        """
        if not all(s in self.last_valid for s in ANOMALY_STREAMS):
            return None
        self.stall.step(now)
        ages = {s: now - self.last_valid[s] for s in ANOMALY_STREAMS}
        if self.stall.holding(now):
            ages = {s: min(age, AGE_ALLOWANCE[s]) for s, age in ages.items()}
        return self._anomaly_builder.build(self.latest, ages)

    def _anomaly_scorer(self, slot: ModelSlot) -> AnomalyScorer:
        key = (slot.version, slot.swaps)
        if self.scorer is None or self._scorer_for != key:
            extra = slot.model.config.extra
            self.scorer = AnomalyScorer(ANOMALY_TARGETS, slot.model.config.inputs, extra["residual_std"],
                                        extra["smoothing"], extra["threshold"], self.refractory,
                                        warm_up=max(WARM_UP, round(SETTLE_S / slot.period)))
            self._scorer_for = key
        return self.scorer

    @_timed("policy")
    def policy_command(self, target: Sequence[float], now: float) -> tuple[float, float, float, float] | None:
        """Answer a control/target with the policy's command (None without fresh odometry, or on bad input)."""
        slot = self.slots.get("policy")
        if slot is None or not self._fresh("odom", now, FRESH_ODOM) or \
                check_reading("target", {"x": target[0], "y": target[1], "z": target[2]}):
            return None
        if self._policy_last is None or not 0.0 <= now - self._policy_last <= slot.gap:
            self._policy_builder.reset()  # a new task (or a gap): no stale target motion, no stale state
            slot.reset()
        dt = slot.period if self._policy_last is None else max(1e-3, now - self._policy_last)
        self._policy_last = now
        features = self._policy_builder.build(self.latest["odom"], target, dt)
        output = slot.step(features, now)
        if output is None:
            return None
        limit = self.max_policy_speed
        command = [max(-limit, min(limit, float(v))) for v in output[:3]]
        self._policy_builder.remember_command(command)
        return command[0], command[1], command[2], 0.0

    def policy_topic(self) -> str:
        """Return the topic of the active policy's output: a correction's or a whole command's.

        control/residual for a correction to the io_engine's PID (qai_intelligence.residual), control/cmd_vel
        for a whole command. An io_engine in the other mode hears nothing: a residual one flies its PID
        alone, an external one stops.
        """
        slot = self.slots.get("policy")
        residual = slot is not None and bool(slot.model.config.extra.get("residual"))
        return "control/residual" if residual else "control/cmd_vel"

    def status_values(self) -> dict[str, str]:
        """Return the health report's values: rejected inputs, each model's figures, the latest outputs."""
        values = {"inputs_rejected": ",".join(f"{s}:{n}" for s, n in self.rejected.items() if n)}
        if self.last_rejected:
            values["last_rejected"] = shorten(self.last_rejected, 120)
        for slot in self.slots.values():
            values.update(slot.status())
        if self.endurance is not None:
            values.update(endurance_s=f"{self.endurance.remaining:.0f}", return_needed_s=f"{self.endurance.needed:.0f}",
                          endurance_baseline=self.baseline_source)
        if self.anomaly is not None:
            values["anomaly_score"] = f"{self.anomaly.score:.2f}"
        waiting = [s for s in ANOMALY_STREAMS if s not in self.last_valid]
        if waiting:
            values["waiting_for"] = ",".join(waiting)
        return values

    # -- Task kinds (worker threads) ------------------------------------------------------------------

    def _position(self) -> tuple[float, float, float]:
        odom = self.latest.get("odom")
        if odom is None:
            raise TaskFailed("no odometry yet: the vehicle's position is unknown", retryable=True)
        return odom["x"], odom["y"], odom["z"]

    def _flight_over(self, request, seen_airborne: bool) -> bool:
        """Tell whether a watch beside the flight has nothing left to watch: the vehicle is down.

        Down after it was seen in the air during this attempt (it landed), or down when an attempt after the
        first starts: the earlier one, interrupted (its engine restarted), watched the flight that has ended
        since, so its `until` point may lie behind the vehicle for good.
        """
        return self._position()[2] <= self.landed_altitude and (seen_airborne or request.attempt > 1)

    def endurance_not_ready(self) -> str:
        """Why check_endurance cannot answer now ('' when it can): a position and a fresh prediction."""
        if self.latest.get("odom") is None:
            return "no odometry yet"
        if self.endurance is None:
            return "no endurance prediction yet (it needs battery and odometry readings)"
        return ""

    def anomalies_not_ready(self) -> str:
        """Why watch_anomalies cannot watch now ('' when it can): it needs the vehicle's readings."""
        return "" if self.latest.get("odom") is not None else "no odometry yet"

    def _prediction(self, context, wait: float = 5.0) -> EnduranceOutput:
        started = context.now()
        while self.endurance is None or (self.endurance_at is not None and context.now() - self.endurance_at > 5.0):
            if context.now() - started > wait:
                raise TaskFailed("no endurance prediction: no fresh battery and odometry readings", retryable=True)
            context.sleep(0.1)
        return self.endurance

    def check_endurance(self, request, context) -> dict[str, Any]:
        parameters = request.parameters
        speed = parameters.get("speed", self.return_plan.speed)
        tolerance = parameters.get("tolerance", 1.0)
        altitude = self._position()[2]
        waypoints = [tuple(w) + ((altitude,) if len(w) == 2 else ()) for w in parameters.get("waypoints", [])]
        prediction = self._prediction(context)
        position = self._position()
        route = [position, *waypoints]
        flying = sum(math.dist(a, b) for a, b in zip(route, route[1:])) / speed
        needed = flying + self.return_plan.seconds(route[-1], self.home or position)
        result = {"endurance": round(prediction.remaining, 1), "needed": round(needed, 1),
                  "baseline": round(prediction.baseline, 1), "model_version": self.slots["endurance"].version}
        if prediction.remaining < needed:
            raise TaskFailed(f"predicted endurance {prediction.remaining:.0f} s is less than the {needed:.0f} s the "
                             f"route ({flying:.0f} s) and the return home need, margin included", retryable=False)
        if not parameters.get("watch"):
            return result
        goal = parameters.get("until") or (waypoints[-1] if waypoints else None)
        airborne = False
        while goal is None or math.dist(self._position()[:len(goal)], goal) > tolerance:
            airborne = airborne or self._position()[2] > self.landed_altitude
            if self._flight_over(request, airborne):
                break
            context.sleep(0.2)
            prediction = self._prediction(context)
            context.feedback(status=f"endurance {prediction.remaining:.0f} s, return needs {prediction.needed:.0f} s",
                             endurance=round(prediction.remaining, 1), needed=round(prediction.needed, 1))
            if prediction.low:
                raise TaskFailed(f"endurance low: predicted {prediction.remaining:.0f} s, the return home needs "
                                 f"{prediction.needed:.0f} s", retryable=False)
        prediction = self._prediction(context)
        return {**result, "endurance": round(prediction.remaining, 1)}

    def watch_anomalies(self, request, context) -> dict[str, Any]:
        parameters = request.parameters
        duration, until = parameters.get("duration"), parameters.get("until")
        tolerance = parameters.get("tolerance", 1.0)
        started, alarms = context.now(), self.alarms
        max_score, ticks, last, airborne = 0.0, 0, None, False
        while True:
            if duration is not None and context.now() - started >= duration:
                break
            if until is not None and math.dist(self._position()[:len(until)], until) <= tolerance:
                break
            airborne = airborne or self._position()[2] > self.landed_altitude
            if self._flight_over(request, airborne):
                break
            context.sleep(0.1)
            anomaly = self.anomaly
            if anomaly is None or anomaly is last:
                continue
            last, ticks = anomaly, ticks + 1
            max_score = max(max_score, anomaly.score)
            if anomaly.anomalous or self.alarms > alarms:
                raise TaskFailed(f"anomaly: score {anomaly.score:.1f} above {anomaly.threshold:.1f} "
                                 f"(worst: {anomaly.worst}{': ' + anomaly.detail if anomaly.detail else ''})",
                                 retryable=False)
            context.feedback(status=f"score {anomaly.score:.1f} (threshold {anomaly.threshold:.1f})",
                             score=round(anomaly.score, 2))
        return {"max_score": round(max_score, 3), "threshold": round(self.anomaly.threshold, 3) if self.anomaly
                else None, "ticks": ticks, "model_version": self.slots["anomaly"].version}
