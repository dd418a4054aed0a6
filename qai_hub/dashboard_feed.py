"""What the hub's dashboard shows, from the fleet's MQTT messages. No rclpy import, no web framework.

DashboardFeed follows a qai_hub.fleet.Fleet (the hub's one fleet model) and adds what a screen needs:
views of each robot shaped for the browser, recent history (tracks on the map, time series for the
plots), and a fleet-wide event log (command replies and rejections, robot events such as the battery
reserve or an anomaly, robots going offline and back, engine restarts, nodes leaving OK, missions and
tasks ending). Each message becomes a list of operations for the browsers:

    ["pose", robot, {x, y, z, yaw, speed, stamp, seq}]    the latest pose (coalesced)
    ["robot", robot, {field: value, ...}]                  fields of the robot's view that changed (merged)
    ["mission", robot, mission_id, {...}]                  a mission's latest state (coalesced)
    ["broker", {...}]                                      the dashboard's own MQTT connection (coalesced)
    ["track", robot, t, x, y]                              a point of the robot's track (appended)
    ["series", robot, name, t, value]                      a point of a plot (appended)
    ["event", {t, robot, level, kind, text, ...}]          an entry of the log (appended)

An Outbox per browser holds what it has not taken yet: the latest value of each coalesced operation
(a browser that falls behind skips intermediate poses, never the latest state) and appended points up
to a bound, past which the browser is sent a new snapshot instead. Every string that came from a robot
stays a string here; the page puts them in the DOM as text, never as markup.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from qai_hub.fleet import Change, Fleet, RobotView
from qai_hub.registry import RobotRegistry
from qai_hub.protocol import DIAGNOSTIC_LEVELS, TERMINAL, check_name, mission_state_name, task_state_name

SERIES = ("battery", "endurance", "return_needed", "speed", "rtt_ms", "queue_depth", "dropped")
LEVELS = ("info", "warn", "error")
PLAN_KEYS = ("solver", "cost", "verified", "fallback", "fallback_reason", "backend", "technology_profile",
             "reference_cost", "solve_time", "total_time", "order", "waypoints")
COALESCED = ("pose", "robot", "mission", "broker")


@dataclass(frozen=True)
class FeedLimits:
    """Bounds on what the dashboard keeps and sends (qai-hub serve's options set some)."""

    max_robots: int = 1000
    track_points: int = 2000  # per robot
    series_points: int = 900  # per plot per robot: 15 min at 1 Hz
    log_events: int = 2000  # the fleet-wide log
    snapshot_events: int = 500  # of the log, in a browser's first snapshot
    max_tasks_shown: int = 500  # tasks of one mission sent to browsers
    max_text: int = 300  # characters of one robot-given text sent to browsers
    max_result_bytes: int = 65536  # a task's result value (JSON text) larger than this is not read
    max_route_points: int = 1000
    outbox_appends: int = 5000  # appended operations a browser may fall behind by before a new snapshot
    track_step: float = 0.25  # m a robot moves before its track gets a point
    speed_period: float = 0.5  # s between points of the speed plot


def text(value: Any, limit: int) -> str:
    """Return `value` as a string of at most `limit` characters (with its full length said when cut)."""
    value = value if isinstance(value, str) else ("" if value is None else str(value))
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def epoch(stamp: Any) -> float | None:
    """Return a builtin_interfaces Time dict as seconds, None for zero (not set) or no time."""
    if not isinstance(stamp, dict):
        return None
    sec, nanosec = stamp.get("sec"), stamp.get("nanosec", 0)
    if not isinstance(sec, int) or not isinstance(nanosec, int) or (sec == 0 and nanosec == 0):
        return None
    return sec + nanosec * 1e-9


def find_geofence(schema: Any) -> dict[str, Any] | None:
    """Return the first `x-geofence` keyword in a JSON schema (qai_edge.geofence announces the fence so)."""
    stack, seen = [schema], 0
    while stack and seen < 10000:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            fence = item.get("x-geofence")
            if isinstance(fence, dict):
                return fence
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def geofence_of(engines: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Return the geofence an engine announced in a kind's parameter schema, as {polygon, min/max_altitude}."""
    for engine in engines.values():
        for kind in engine.get("kinds") or []:
            schema_text = kind.get("parameters_schema") if isinstance(kind, dict) else None
            if not isinstance(schema_text, str) or "x-geofence" not in schema_text:
                continue
            try:
                fence = find_geofence(orjson.loads(schema_text))
            except orjson.JSONDecodeError:
                continue
            if fence is None:
                continue
            polygon = [[number(p[0]), number(p[1])] for p in fence.get("polygon") or []
                       if isinstance(p, list) and len(p) >= 2 and number(p[0]) is not None
                       and number(p[1]) is not None]
            return {"polygon": polygon[:10000], "min_altitude": number(fence.get("min_altitude")),
                    "max_altitude": number(fence.get("max_altitude")), "engine": engine.get("engine", "")}
    return None


class History:
    """Points in time order, at most `limit` (the oldest go first)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.points: list[list[float]] = []

    def add(self, point: list[float]) -> None:
        if not self.points or point[0] >= self.points[-1][0]:
            self.points.append(point)
        else:  # the backlog after an outage: put it where it belongs
            bisect.insort(self.points, point, key=lambda p: p[0])
        if len(self.points) > self.limit:
            del self.points[:len(self.points) - self.limit]

    @property
    def last(self) -> list[float] | None:
        return self.points[-1] if self.points else None


class DashboardFeed:
    def __init__(self, fleet: str, registry: RobotRegistry, limits: FeedLimits = FeedLimits(), clock=time.time):
        self.limits = limits
        self.fleet = Fleet(fleet, registry, max_robots=limits.max_robots)
        self.clock = clock
        self.events: deque[dict[str, Any]] = deque(maxlen=limits.log_events)
        self.tracks: dict[str, History] = {}
        self.series: dict[str, dict[str, History]] = {}
        self.restarts: dict[str, dict[str, int]] = {}
        self.broker: dict[str, Any] = {"state": "connecting", "since": clock(), "detail": ""}
        self._backlog_at: dict[tuple[str, str], float] = {}  # the last backlog point kept per plot

    # -- Input --------------------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes, now: float | None = None) -> list[list[Any]]:
        """Take one MQTT message; return the operations for the browsers."""
        now = self.clock() if now is None else now
        change = self.fleet.on_message(topic, payload, now)
        if change is None:
            return []
        robot = change.robot
        if change.kind == "refused":
            return self._refused(change, now)
        if change.kind == "status":
            return self._status(robot, change, now)
        if change.kind == "reply":
            return self._reply(robot, change.name, change.data, now)
        kind = change.type
        stamp = change.message.stamp
        if kind.endswith("/Event"):
            return self._event(robot, change.data, stamp)
        if change.name == "drops":
            return [["robot", robot.name, {"telemetry": self.telemetry_counts(robot)}]]
        if kind.endswith("/Odometry"):
            return self._odometry(robot, change, stamp)
        if kind.endswith("/BatteryState"):
            ops = self._point(robot, "battery", stamp, number(change.data.get("percentage")), change.applied, 100.0)
            return ops + ([["robot", robot.name, {"battery": battery_view(robot.battery)}]] if change.applied else [])
        if kind.endswith("/EndurancePrediction"):
            ops = self._point(robot, "endurance", stamp, number(change.data.get("remaining")), change.applied)
            ops += self._point(robot, "return_needed", stamp, number(change.data.get("return_needed")),
                               change.applied)
            return ops + ([["robot", robot.name, {"endurance": endurance_view(robot.endurance)}]]
                          if change.applied else [])
        if not change.applied:
            return []
        if kind.endswith("/MissionState"):
            return self._mission(robot, change, now)
        if kind.endswith("/DiagnosticArray"):
            return self._health(robot, change, now)
        if kind.endswith("/EngineCapabilities"):
            return self._engines(robot, change, now)
        return []

    def on_broker(self, state: str, detail: str = "") -> list[list[Any]]:
        """Record the dashboard's own broker connection: 'connected', 'connecting' or 'disconnected'."""
        if state == self.broker["state"]:
            return []
        was = self.broker["state"]
        self.broker = {"state": state, "since": self.clock(), "detail": text(detail, 200)}
        ops: list[list[Any]] = [["broker", dict(self.broker)]]
        if state == "disconnected" or (state == "connected" and was == "disconnected"):
            level = "error" if state == "disconnected" else "info"
            ops += self.log("", level, "broker", f"dashboard {'lost' if level == 'error' else 'regained'} the "
                            f"broker{': ' + detail if detail else ''}", self.clock())
        return ops

    def on_command(self, robot: str, verb: str, request_id: str, summary: str) -> list[list[Any]]:
        """Log a command this dashboard signed and sent."""
        return self.log(robot, "info", "command", f"sent {verb}: {summary}", self.clock(), request_id=request_id)

    def log(self, robot: str, level: str, kind: str, message: str, t: float, **extra: Any) -> list[list[Any]]:
        entry = {"t": t, "robot": robot, "level": level, "kind": kind, "text": text(message, 4 * self.limits.max_text),
                 **extra}
        self.events.append(entry)
        return [["event", entry]]

    # -- Per kind -------------------------------------------------------------------------------------

    def _refused(self, change: Change, now: float) -> list[list[Any]]:
        """Log a message the hub refused (it did not fit its schema, or did not verify) as a security event."""
        event = change.message
        ops = self.log(text(event.robot, 64), "warn", "security", f"refused a message on {text(event.topic, 200)}: "
                       f"{text(event.why, self.limits.max_text)}", now)
        if change.robot is not None:
            ops.append(["robot", change.robot.name, {"refused": change.robot.refused}])
        return ops

    def _status(self, robot: RobotView, change: Change, now: float) -> list[list[Any]]:
        status, previous = change.data, change.previous or {}
        ops: list[list[Any]] = [["robot", robot.name, status_view(robot, self.limits)]]
        ops[0][2]["telemetry"] = self.telemetry_counts(robot)
        state, was = status.get("state"), previous.get("state")
        if state != was:
            if state == "offline":
                reason = text(status.get("reason", ""), self.limits.max_text)
                ops += self.log(robot.name, "info" if reason == "shutdown" else "error", "offline",
                                f"offline ({reason or 'no reason given'})", now)
            elif state == "online":
                ops += self.log(robot.name, "info", "online", "back online" if was == "offline" else "online", now)
        link = status.get("link") if isinstance(status.get("link"), dict) else {}
        stamp = number(status.get("stamp")) or now
        if state == "online":
            ops += self._point(robot, "rtt_ms", stamp, number(link.get("rtt_ms")), True)
            ops += self._point(robot, "queue_depth", stamp, number(link.get("queue_depth")), True)
            dropped = link.get("dropped") if isinstance(link.get("dropped"), dict) else {}
            ops += self._point(robot, "dropped", stamp, float(sum(v for v in dropped.values() if number(v))), True)
        return ops

    def _reply(self, robot: RobotView, verb: str, reply: dict[str, Any], now: float) -> list[list[Any]]:
        status = reply.get("status")
        request_id = text(reply.get("id", ""), 64)
        mission = text(reply.get("mission_id", ""), 64)
        message = text(reply.get("message", ""), self.limits.max_text)
        extra = {"request_id": request_id, "status": text(status, 32), "verb": text(verb, 32), "mission_id": mission}
        if status == "rejected":
            reason = text(reply.get("reason", ""), 64)
            return self.log(robot.name, "warn", "rejected", f"{verb} refused ({reason}): {message}", now,
                            reason=reason, **extra)
        if status == "accepted":
            return self.log(robot.name, "info", "reply", f"mission {mission} accepted", now, **extra)
        if status in ("succeeded", "failed") and isinstance(reply.get("model"), dict):
            return self._model_reply(robot, reply["model"], status, message, now, extra)
        if status in ("succeeded", "failed", "canceled"):
            level = "info" if status == "succeeded" else "warn"
            return self.log(robot.name, level, "reply", f"mission {mission} {status}"
                            f"{': ' + message if message else ''}", now, **extra)
        if status == "done":
            return self.log(robot.name, "info", "reply", f"{verb} done{': ' + message if message else ''}", now,
                            **extra)
        if status == "progress":
            return []
        if isinstance(reply.get("model"), dict):
            return self._model_reply(robot, reply["model"], status, message, now, extra)
        return self.log(robot.name, "warn", "reply", f"{verb} {text(status, 32)}: {message}", now, **extra)

    def _model_reply(self, robot: RobotView, model: dict[str, Any], status: str, message: str, now: float,
                     extra: dict[str, Any]) -> list[list[Any]]:
        """Record a deploy_model or rollback_model answer: the robot's active version of that model; log it."""
        task, active = text(model.get("task", ""), 16), text(model.get("active_version", ""), 8)
        if active and task:
            robot.models[task] = active
        line = (f"{task} model {active} active (was {text(model.get('previous_version', ''), 8)})"
                if status == "succeeded" else f"{task} model not changed: {message}")
        return [["robot", robot.name, {"models": dict(robot.models)}],
                *self.log(robot.name, "info" if status == "succeeded" else "warn", "reply", line, now, **extra)]

    def _event(self, robot: RobotView, event: dict[str, Any], stamp: float) -> list[list[Any]]:
        severity = event.get("severity")
        level = LEVELS[severity] if isinstance(severity, int) and 0 <= severity < len(LEVELS) else "warn"
        values = {text(v.get("key"), 64): text(v.get("value"), 100) for v in (event.get("values") or [])[:20]
                  if isinstance(v, dict)}
        code = text(event.get("code", ""), 64)
        when = epoch(event.get("header", {}).get("stamp") if isinstance(event.get("header"), dict) else None)
        return self.log(robot.name, level, "event", f"{code}: {text(event.get('message', ''), self.limits.max_text)}",
                        when or stamp, code=code, source=text(event.get("source", ""), 128), values=values)

    def _odometry(self, robot: RobotView, change: Change, stamp: float) -> list[list[Any]]:
        if not change.applied:
            return []
        position = robot.position
        if position is None or any(number(axis) is None for axis in position):
            return []
        x, y, z = position
        pose = {"x": x, "y": y, "z": z, "yaw": number(robot.yaw), "speed": number(robot.speed), "stamp": stamp,
                "seq": change.message.seq}
        ops: list[list[Any]] = [["pose", robot.name, pose]]
        track = self.tracks.setdefault(robot.name, History(self.limits.track_points))
        last = track.last
        if last is None or math.dist(last[1:], (x, y)) >= self.limits.track_step \
                or (stamp - last[0] >= 5.0 and math.dist(last[1:], (x, y)) > 0.01):
            point = [stamp, round(x, 3), round(y, 3)]
            track.add(point)
            ops.append(["track", robot.name, *point])
        speed = self.series.get(robot.name, {}).get("speed")
        if speed is None or speed.last is None or stamp - speed.last[0] >= self.limits.speed_period:
            ops += self._point(robot, "speed", stamp, number(robot.speed), True)
        return ops

    def _point(self, robot: RobotView, name: str, t: float, value: float | None, live: bool,
               scale: float = 1.0) -> list[list[Any]]:
        if value is None:
            return []
        if not live:  # the backlog: at most one point a second of it per plot
            key = (robot.name, name)
            if abs(t - self._backlog_at.get(key, -math.inf)) < 1.0:
                return []
            self._backlog_at[key] = t
        point = [t, round(value * scale, 4)]
        self.series.setdefault(robot.name, {}).setdefault(name, History(self.limits.series_points)).add(point)
        return [["series", robot.name, name, *point]]

    def _mission(self, robot: RobotView, change: Change, now: float) -> list[list[Any]]:
        state = robot.missions[str(change.data.get("mission_id", ""))]  # merged: the message has what changed
        view = mission_view(state, self.limits)
        ops: list[list[Any]] = [["mission", robot.name, view["mission_id"], view]]
        previous = change.previous or {}
        before = {t.get("task_id"): t.get("state") for t in previous.get("tasks") or [] if isinstance(t, dict)}
        for task in view["tasks"]:
            if task["state"] == before.get(task["id"]) or task["state"] not in (11, 12):
                continue
            if task["state"] == 11:
                ops += self.log(robot.name, "warn", "task", f"task {task['id']} of {view['mission_id']} failed: "
                                f"{task['message']}", now, mission_id=view["mission_id"], task_id=task["id"])
        mission_state = state.get("state")
        if isinstance(mission_state, int) and mission_state >= TERMINAL and previous.get("state") != mission_state:
            name = mission_state_name(mission_state)
            level = "info" if mission_state == 10 else "warn"
            ops += self.log(robot.name, level, "mission", f"mission {view['mission_id']} ({view['name'] or 'unnamed'})"
                            f" {name}{': ' + view['message'] if view['message'] else ''}", now,
                            mission_id=view["mission_id"])
        return ops

    def _health(self, robot: RobotView, change: Change, now: float) -> list[list[Any]]:
        view = health_view(robot.health, self.limits)
        ops: list[list[Any]] = [["robot", robot.name, {"health": view}]]
        if change.previous is None:
            return ops
        before = change.previous.get("nodes") if isinstance(change.previous.get("nodes"), dict) else {}
        nodes = robot.health.get("nodes") if isinstance(robot.health.get("nodes"), dict) else {}
        for name, node in list(nodes.items())[:200]:
            level = node.get("level") if isinstance(node, dict) else None
            old = before.get(name, {}).get("level", 0) if isinstance(before.get(name), dict) else 0
            if not isinstance(level, int) or level == old:
                continue
            word = DIAGNOSTIC_LEVELS.get(level, str(level))
            detail = f": {text(node.get('message'), self.limits.max_text)}" if level else ""
            ops += self.log(robot.name, "info" if level == 0 else ("warn" if level == 1 else "error"), "health",
                            f"{text(name, 128)}: {word}{detail}", now, node=text(name, 128))
        return ops

    def _engines(self, robot: RobotView, change: Change, now: float) -> list[list[Any]]:
        data, previous = change.data, change.previous
        engine = text(data.get("engine"), 128)
        if previous is not None and epoch(_stamp(previous)) != epoch(_stamp(data)):
            counts = self.restarts.setdefault(robot.name, {})
            counts[engine] = counts.get(engine, 0) + 1
            ops = self.log(robot.name, "warn", "restart", f"engine {engine} restarted", now, engine=engine)
        else:
            ops = []
        return [["robot", robot.name, {"engines": self.engines_view(robot), "geofence": geofence_of(robot.engines)}],
                *ops]

    # -- Views --------------------------------------------------------------------------------------

    def telemetry_counts(self, robot: RobotView) -> dict[str, int]:
        trackers = robot.streams.values()
        return {"received": sum(len(t.received) for t in trackers), "duplicates": sum(t.duplicates for t in trackers),
                "dropped": sum(t.dropped_count() for t in trackers),
                "missing": sum(t.missing_count() for t in trackers)}

    def engines_view(self, robot: RobotView) -> list[dict[str, Any]]:
        counts = self.restarts.get(robot.name, {})
        return [{"name": text(name, 128), "started": epoch(_stamp(data)), "restarts": counts.get(name, 0),
                 "kinds": [text(k.get("name"), 64) for k in (data.get("kinds") or [])[:100] if isinstance(k, dict)]}
                for name, data in robot.engines.items()]

    def robot_view(self, robot: RobotView) -> dict[str, Any]:
        view = status_view(robot, self.limits)
        view.update(battery=battery_view(robot.battery), endurance=endurance_view(robot.endurance),
                    health=health_view(robot.health, self.limits), engines=self.engines_view(robot),
                    geofence=geofence_of(robot.engines), telemetry=self.telemetry_counts(robot),
                    models=dict(robot.models))
        return view

    def pose_view(self, robot: RobotView) -> dict[str, Any] | None:
        if robot.position is None or any(number(axis) is None for axis in robot.position):
            return None
        x, y, z = robot.position
        return {"x": x, "y": y, "z": z, "yaw": number(robot.yaw), "speed": number(robot.speed), "stamp": None,
                "seq": None}

    def snapshot(self) -> dict[str, Any]:
        robots = self.fleet.robots
        events = list(self.events)[-self.limits.snapshot_events:]
        return {
            "type": "snapshot", "fleet": self.fleet.fleet, "now": self.clock(), "broker": dict(self.broker),
            "robots": {name: self.robot_view(robot) for name, robot in robots.items()},
            "poses": {name: pose for name, robot in robots.items() if (pose := self.pose_view(robot))},
            "missions": {name: {mid: mission_view(m, self.limits) for mid, m in robot.missions.items()}
                         for name, robot in robots.items()},
            "tracks": {name: track.points for name, track in self.tracks.items()},
            "series": {name: {series: history.points for series, history in plots.items()}
                       for name, plots in self.series.items()},
            "events": events,
        }


def _stamp(data: dict[str, Any]) -> Any:
    header = data.get("header")
    return header.get("stamp") if isinstance(header, dict) else None


def status_view(robot: RobotView, limits: FeedLimits) -> dict[str, Any]:
    """Return the robot's retained status as the browser shows it: state, link figures, commands."""
    status = robot.status
    link = status.get("link") if isinstance(status.get("link"), dict) else {}
    commands = status.get("commands") if isinstance(status.get("commands"), dict) else {}
    rejected = commands.get("rejected") if isinstance(commands.get("rejected"), dict) else {}
    dropped = link.get("dropped") if isinstance(link.get("dropped"), dict) else {}
    try:
        check_name(robot.name, "robot")
        valid = True
    except ValueError:
        valid = False
    state = status.get("state")
    refused = status.get("streams_refused") if isinstance(status.get("streams_refused"), dict) else {}
    return {
        "name": robot.name, "valid_name": valid,
        "state": state if state in ("online", "offline") else "unknown",
        "reason": text(status.get("reason", ""), limits.max_text), "status_stamp": number(status.get("stamp")),
        "last_seen": robot.last_seen,
        "link": {"state": text(link.get("state", ""), 32), "queue_depth": number(link.get("queue_depth")),
                 "inflight": number(link.get("inflight")), "rtt_ms": number(link.get("rtt_ms")),
                 "connects": number(link.get("connects")), "protocol": text(link.get("protocol", ""), 16),
                 "dropped": {text(k, 32): number(v) for k, v in list(dropped.items())[:20]},
                 "dropped_total": sum(v for v in dropped.values() if number(v))},
        "commands": {"accepted": number(commands.get("accepted")),
                     "rejected": {text(k, 32): number(v) for k, v in list(rejected.items())[:20]}},
        "streams_refused": {text(k, 64): text(v, limits.max_text) for k, v in list(refused.items())[:20]},
    }


def battery_view(battery: dict[str, Any] | None) -> dict[str, Any] | None:
    if not battery:
        return None
    return {key: number(battery.get(key)) for key in ("percentage", "voltage", "current", "charge", "capacity")}


def endurance_view(endurance: dict[str, Any] | None) -> dict[str, Any] | None:
    if not endurance:
        return None
    view: dict[str, Any] = {key: number(endurance.get(key)) for key in ("remaining", "baseline", "return_needed")}
    view["low"] = endurance.get("low") is True
    view["model"] = f"{text(endurance.get('model_version', ''), 32)} {text(endurance.get('model_cell', ''), 16)}"
    return view


def health_view(health: dict[str, Any] | None, limits: FeedLimits) -> dict[str, Any] | None:
    if not health:
        return None
    nodes = health.get("nodes") if isinstance(health.get("nodes"), dict) else {}
    listed = [[text(name, 128), node.get("level"), text(node.get("message", ""), limits.max_text)]
              for name, node in list(nodes.items())[:200] if isinstance(node, dict)]
    worst = health.get("worst")
    return {"worst": worst if isinstance(worst, int) else None, "nodes": listed}


def mission_view(state: dict[str, Any], limits: FeedLimits) -> dict[str, Any]:
    """Return a MissionState (codec dict) as the browser draws it: tasks, their edges, states and results."""
    tasks = [t for t in (state.get("tasks") or []) if isinstance(t, dict)]
    shown = tasks[:limits.max_tasks_shown]
    view = {
        "mission_id": text(state.get("mission_id", ""), 128), "name": text(state.get("name", ""), limits.max_text),
        "state": state.get("state") if isinstance(state.get("state"), int) else None,
        "state_name": mission_state_name(state.get("state")),
        "message": text(state.get("message", ""), limits.max_text), "stamp": epoch(_stamp(state)),
        "total": number(state.get("tasks_total")), "succeeded": number(state.get("tasks_succeeded")),
        "failed": number(state.get("tasks_failed")), "running": number(state.get("tasks_running")),
        "tasks": [task_view(t, limits) for t in shown], "hidden": len(tasks) - len(shown),
    }
    return view


def task_view(task: dict[str, Any], limits: FeedLimits) -> dict[str, Any]:
    state = task.get("state")
    return {
        "id": text(task.get("task_id", ""), 128), "kind": text(task.get("kind", ""), 64),
        "depends_on": [text(d, 128) for d in (task.get("depends_on") or [])[:100]],
        "state": state if isinstance(state, int) else None, "state_name": task_state_name(state),
        "attempt": number(task.get("attempt")), "preemptions": number(task.get("preemptions")),
        "engine": text(task.get("engine", ""), 128), "progress": number(task.get("progress")),
        "message": text(task.get("message", ""), limits.max_text),
        "started": epoch(task.get("started")), "finished": epoch(task.get("finished")),
        "result": result_view(task.get("result"), limits),
    }


def result_view(pairs: Any, limits: FeedLimits) -> dict[str, Any]:
    """Return what the page shows of a task's result: a plan's solver figures and route, short values."""
    result: dict[str, Any] = {}
    for pair in (pairs or [])[:100] if isinstance(pairs, list) else []:
        if not isinstance(pair, dict) or not isinstance(pair.get("key"), str) or not isinstance(pair.get("value"), str):
            continue
        key, raw = pair["key"][:64], pair["value"]
        if len(raw) > limits.max_result_bytes:
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if key == "waypoints" and isinstance(value, list):
            route = [[number(p[0]), number(p[1]), number(p[2]) if len(p) > 2 else None] for p in value
                     if isinstance(p, list) and len(p) >= 2 and number(p[0]) is not None and number(p[1]) is not None]
            result[key] = route[:limits.max_route_points]
        elif key == "order" and isinstance(value, list):
            result[key] = [v for v in value[:limits.max_route_points] if isinstance(v, int)]
        elif isinstance(value, (int, float, bool)) or value is None:
            result[key] = value if not isinstance(value, float) or math.isfinite(value) else None
        elif isinstance(value, str):
            result[key] = text(value, 120)
        elif key in PLAN_KEYS or len(raw) <= 120:
            result[key] = text(raw, 120)  # a short list or object, as JSON text
    return result


def iter_ops(ops: Iterable[list[Any]]) -> Iterable[tuple[tuple, list[Any]]]:
    """Pair each operation with its coalescing key (None: appended)."""
    for op in ops:
        kind = op[0]
        if kind == "pose" or kind == "robot":
            yield (kind, op[1]), op
        elif kind == "mission":
            yield ("mission", op[1], op[2]), op
        elif kind == "broker":
            yield ("broker",), op
        else:
            yield None, op


class Outbox:
    """What one browser has not been sent yet: the latest of each coalesced operation, appended ones in order."""

    def __init__(self, max_appends: int = FeedLimits.outbox_appends):
        self.max_appends = max_appends
        self._latest: dict[tuple, list[Any]] = {}
        self._appends: list[list[Any]] = []
        self.resync = False  # it fell too far behind: send a snapshot instead
        self.coalesced = 0  # operations replaced by a newer one before they were sent

    def __bool__(self) -> bool:
        return bool(self._latest or self._appends or self.resync)

    def put(self, ops: Iterable[list[Any]]) -> None:
        for key, op in iter_ops(ops):
            if key is None:
                if self.resync:
                    continue
                if len(self._appends) >= self.max_appends:
                    self.resync = True
                    self._appends.clear()
                    self._latest.clear()
                    continue
                self._appends.append(op)
                continue
            if self.resync:
                continue
            old = self._latest.pop(key, None)
            if old is not None:
                self.coalesced += 1
                if op[0] == "robot":
                    op = ["robot", op[1], {**old[2], **op[2]}]
            self._latest[key] = op

    def take(self) -> list[list[Any]]:
        """Return what is waiting (coalesced first, then appended) and empty the box; not the resync flag."""
        ops = [*self._latest.values(), *self._appends]
        self._latest = {}
        self._appends = []
        return ops
