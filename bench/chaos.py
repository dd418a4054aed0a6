"""Chaos soak: survey missions again and again while engines and the broker are SIGKILLed at random.

One simulated drone as `qai-edge demo` brings it up (`qai-edge up` on a profile derived from config/edge.yaml:
every engine its own process under the supervisor; the locked mosquitto; the hub as qai_hub.session over
MQTT, verifying what the robot signs and seals). The hub sends the demo's signed survey (plan on the quantum
bridge, take off, fly and scan each point, report, return home) again and again. First `--calm` missions run
with no fault (the baseline); then, every 20-60 s (seeded: `--seed`), one of mission_engine, io_engine,
quantum_bridge, intelligence_engine, hub_link or the MQTT broker is SIGKILLed, as a crash would. The
supervisor restarts an engine; the broker is started again after a 2-10 s outage, as a service manager would
(the demo runs the fleet's broker itself, not `qai-edge up`).

Figures (each mission's outcome as the hub learns it: the signed final reply, else the signed mission states):
- missions succeeded and failed under chaos, with each failure's reason, beside the calm ones;
- finished tasks that ran again (the hub saw a task succeed and then run);
- per victim, kill -> the supervisor's "all nodes healthy" again (the broker: the hub hears the robot
  again), and kill -> the mission's next progress seen at the hub (a task succeeding), p50 and p99;
- telemetry sequence numbers the hub neither received nor was told were dropped (lost), counted after the
  hub had `--settle` seconds to get the gaps it asked for;
- missions after which the vehicle stayed airborne with nothing bringing it down (60 s after the end, above
  0.5 m with no mission running): the operator then sends a return home, counted too.
Between missions, on the ground, a battery below 60 % is swapped for a full one (sim_vehicle's
~/swap_battery), as an operator would: 30 minutes of flight would otherwise end at the battery reserve.

    .venv/bin/python bench/chaos.py [--minutes 30] [--seed 1] [--calm 1] [--json PATH] [--keep-dir]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import sys
import threading
import time
import traceback
from collections import defaultdict
from pathlib import Path

from qai_edge.broker import BrokerError
from qai_edge.figures import FigureLog, percentile
from qai_edge.isolation import isolate

VICTIMS = ("mission_engine", "io_engine", "quantum_bridge", "intelligence_engine", "hub_link", "broker")
STARTED = re.compile(r"\[qai-edge\] (\w+) started \(pid (\d+)\)")
SUCCEEDED = 10  # qai_mission.model.TaskStatus.SUCCEEDED, as mission states carry it
HEALTHY = re.compile(r"\[qai-edge\] all \d+ nodes healthy")


def wilson(successes: int, n: int) -> tuple[float, float]:
    """Return the 95 % Wilson interval of a proportion."""
    if n == 0:
        return math.nan, math.nan
    z = 1.96
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class LogWatch:
    """The robot's `qai-edge up` output, read as it grows, each line stamped with when it was read."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                with open(self.path, "rb") as log:
                    log.seek(self._offset)
                    chunk = log.read()
            except OSError:
                continue
            complete = chunk.rfind(b"\n") + 1
            self._offset += complete
            now = time.monotonic()
            for text in chunk[:complete].decode(errors="replace").splitlines():
                self.lines.append((now, text))

    def pid(self, node: str) -> int | None:
        """Return the latest pid the supervisor started `node` with."""
        for _, text in reversed(self.lines):
            match = STARTED.search(text)
            if match and match.group(1) == node:
                return int(match.group(2))
        return None

    def first_after(self, pattern: re.Pattern, after: float) -> float | None:
        return next((t for t, text in list(self.lines) if t > after and pattern.search(text)), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class Soak:
    def __init__(self, args):
        from qai_edge.demo import Demo

        self.args = args
        self.random = random.Random(args.seed)
        demo_args = argparse.Namespace(robots=1, points=args.points, faults=False, controller="pid",
                                       scan_seconds=1.0, timeout=180.0, summary_json=None, keep_dir=args.keep_dir,
                                       dashboard_port=-1, linger=0.0, screenshot=None)
        self.demo = Demo(demo_args)
        self.missions: list[dict] = []
        self.kills: list[dict] = []
        self.rescues = 0
        self.swaps = 0
        self.chaos_from: float | None = None
        self._stop_chaos = False
        self._released = threading.Event()

    # -- The hub's side ---------------------------------------------------------------------------------

    def run(self) -> int:
        demo = self.demo
        try:
            demo.set_up()
            if not demo.wait_ready():
                raise SystemExit("the robot never got ready")
            self.robot = demo.robots[0]
            self.log = LogWatch(self.robot.log)
            self.session = demo.session
            began = time.monotonic()
            stop_at = began + self.args.minutes * 60.0
            chaos = threading.Thread(target=self._chaos, args=(stop_at,), name="chaos", daemon=True)
            index = 0
            while time.monotonic() < stop_at or index < self.args.calm + 1:
                calm = index < self.args.calm
                if not calm and self.chaos_from is None:
                    self.chaos_from = time.monotonic()
                    chaos.start()
                try:
                    self._swap_battery_if_low()
                except Exception:
                    print(f"  battery swap went wrong:\n{traceback.format_exc()}", flush=True)
                self.missions.append(self._mission(index, calm))
                index += 1
            return 0
        finally:
            self._stop_chaos = True
            if hasattr(self, "log"):
                # The hub asks for the gaps an outage left; give the robot's resends a bounded time to come.
                self.session.wait(lambda: all(t["missing"] == 0 for t in demo.telemetry(self.robot.name).values()),
                                  self.args.settle)
                self.telemetry = demo.telemetry(self.robot.name)
                self.log.close()
            if any(m["outcome"] != "succeeded" or m["airborne_after"] for m in self.missions):
                demo.args.keep_dir = True  # a mission went wrong: keep the robot's logs and journals to say why
                (demo.workdir / "missions.json").write_text(json.dumps(
                    {"missions": self.missions, "kills": self.kills}, indent=1, default=str))
            demo.tear_down()
            # Only now may the chaos thread end: a broker it started again dies with it (PR_SET_PDEATHSIG
            # follows the thread that started a process), which ended the first soaks' last mission.
            self._released.set()
            if self.chaos_from is not None:
                chaos.join(150)

    def _mission(self, index: int, calm: bool) -> dict:
        from qai_hub import survey

        robot, session = self.robot, self.session
        from qai_edge.demo import SURVEY_POINTS

        mission = survey.survey_mission(SURVEY_POINTS[:self.args.points], robot.home, name=f"soak-{index}",
                                        scan_seconds=1.0, seed=index + 1)
        began = time.monotonic()
        request = session.send(robot.name, "submit_mission", {"mission": mission})
        record = {"index": index, "calm": calm, "request": request, "outcome": None, "message": "",
                  "seconds": None, "reran": [], "kills": [], "airborne_after": False}
        deadline = began + 600.0
        mission_id = None
        while time.monotonic() < deadline:
            mission_id = mission_id or session.accepted_mission(request)
            reply = session.final_reply(request)
            if reply is None and mission_id and session.mission_outcome(robot.name, mission_id):
                # No final reply (the broker was down when it was sent): the signed mission states say how it
                # ended; the reply, when it comes, is a moment behind.
                if session.wait(lambda: session.final_reply(request) is not None, 5.0):
                    reply = session.final_reply(request)
                else:
                    reply = {"status": session.mission_outcome(robot.name, mission_id), "from": "mission_states",
                             "message": self._message(mission_id)}
            if reply is not None:
                record.update(outcome=reply.get("status"), message=(reply.get("message") or "")[:300])
                break
            time.sleep(0.25)
        record["seconds"] = round(time.monotonic() - began, 1)
        record["mission_id"] = mission_id
        if record["outcome"] is None:
            record.update(outcome="no answer", message=f"no outcome within {deadline - began:.0f} s")
        if mission_id:
            record["reran"] = session.reran(robot.name, mission_id)
        record["kills"] = [k["victim"] for k in self.kills if began <= k["at"] <= time.monotonic()]
        record["airborne_after"] = self._left_airborne()
        print(f"  mission {index} ({'calm' if calm else 'chaos'}): {record['outcome']} in {record['seconds']} s; "
              f"kills: {', '.join(record['kills']) or 'none'}"
              f"{'; reran ' + ','.join(record['reran']) if record['reran'] else ''}"
              f"{'; LEFT AIRBORNE' if record['airborne_after'] else ''}"
              f"{'; ' + record['message'][:160] if record['outcome'] != 'succeeded' else ''}", flush=True)
        return record

    def _swap_battery_if_low(self) -> None:
        """Put a full pack in between missions, on the ground, below --swap-below (sim_vehicle's ~/swap_battery).

        An operator does so between flights; without it the soak ends at the battery reserve, not in chaos.
        """

        def look(session):
            view = session.fleet.robots.get(self.robot.name)
            return (view.battery or {}).get("percentage") if view is not None else None
        battery = self.session.read(look)
        if battery is None or battery >= self.args.swap_below:
            return
        import rclpy
        from std_srvs.srv import Trigger

        if not rclpy.ok():
            rclpy.init()
        node = rclpy.create_node("chaos_operator")
        try:
            client = node.create_client(Trigger, f"/{self.robot.name}/sim_vehicle/swap_battery")
            if not client.wait_for_service(timeout_sec=30.0):
                print("  battery swap: no service", flush=True)
                return
            future = client.call_async(Trigger.Request())
            rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
            answer = future.result()
            self.swaps += bool(answer and answer.success)
            print(f"  battery at {battery:.0%}: {answer.message if answer else 'no answer'}", flush=True)
        finally:
            node.destroy_node()

    def _message(self, mission_id: str) -> str:
        def look(session):
            view = session.fleet.robots.get(self.robot.name)
            return str((view.missions.get(mission_id) or {}).get("message", "")) if view else ""
        return self.session.read(look)

    def _altitude(self) -> float | None:
        def look(session):
            view = session.fleet.robots.get(self.robot.name)
            return view.position[2] if view is not None and view.position else None
        return self.session.read(look)

    def _running(self) -> bool:
        return self.session.read(self._running_in)

    def _running_in(self, session) -> bool:
        """Tell whether a mission runs on the robot, as `session` holds it (call under its lock)."""
        view = session.fleet.robots.get(self.robot.name)
        return bool(view) and any(m.get("state", 10) < 10 for m in view.missions.values())

    def _left_airborne(self) -> bool:
        """Tell whether the vehicle stays up with nothing bringing it down; if so, send it home (the operator)."""
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            altitude = self._altitude()
            if altitude is not None and altitude < 0.5:
                return False
            time.sleep(0.5)
        if self._running():
            # A mission the robot started itself (a fail-safe) is bringing it down: wait for it.
            if self.session.wait(lambda: not self._running_in(self.session), 300.0) and (self._altitude() or 0) < 0.5:
                return False
        self.rescues += 1
        home = {"name": "operator: home", "tasks": [{"id": "home", "kind": "return_home",
                                                     "parameters": {"speed": 4.0}}]}
        request = self.session.send(self.robot.name, "submit_mission", {"mission": home})
        self.session.wait(lambda: self.session.final_reply(request) is not None, 300.0)
        return True

    # -- The chaos --------------------------------------------------------------------------------------

    def _chaos(self, stop_at: float) -> None:
        while not self._stop_chaos:
            wait = self.random.uniform(20.0, 60.0)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and not self._stop_chaos:
                time.sleep(0.2)
            if self._stop_chaos or time.monotonic() > stop_at:
                break
            victim = self.random.choice(self.args.victims)
            try:
                self._kill(victim)
            except Exception:  # a bench fault must not end the chaos silently: say it, and go on
                print(f"  kill of {victim} went wrong:\n{traceback.format_exc()}", flush=True)
        self._released.wait()  # the broker this thread started must outlive the missions (see run())

    def _kill(self, victim: str) -> None:
        at = time.monotonic()
        kill = {"victim": victim, "at": at, "healthy_s": None, "progress_s": None, "outage_s": None}
        progress_before = self._progress()
        if victim == "broker":
            broker = self.demo.broker
            broker.kill()
            outage = self.random.uniform(2.0, 10.0)
            kill["outage_s"] = round(outage, 1)
            time.sleep(outage)
            for attempt in range(30):
                try:
                    broker.start()
                    break
                except BrokerError as error:
                    print(f"  broker did not start again (try {attempt + 1}): {error}", flush=True)
                    time.sleep(1.0)
        else:
            pid = self.log.pid(victim)
            if pid is None:
                print(f"  {victim}: no pid in the supervisor's output", flush=True)
                return
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
        self.kills.append(kill)
        print(f"  kill {len(self.kills)}: {victim} at {at - self.chaos_from:.0f} s", flush=True)
        deadline = at + 120.0
        while time.monotonic() < deadline and (kill["healthy_s"] is None or kill["progress_s"] is None):
            if kill["healthy_s"] is None:
                if victim == "broker":
                    if self._fresh_telemetry_after(at + (kill["outage_s"] or 0)):
                        kill["healthy_s"] = round(time.monotonic() - at, 2)
                else:
                    healthy = self.log.first_after(HEALTHY, at)
                    if healthy is not None:
                        kill["healthy_s"] = round(healthy - at, 2)
            if kill["progress_s"] is None and self._progress() - progress_before:
                kill["progress_s"] = round(time.monotonic() - at, 2)
            time.sleep(0.1)

    def _progress(self) -> set:
        """Return the tasks the hub has seen succeed: the missions' progress."""
        return self.session.read(lambda s: {key for key, states in s.task_history.items() if SUCCEEDED in states})

    def _fresh_telemetry_after(self, when: float) -> bool:
        """Tell whether the hub heard from the robot after `when` (steady time)."""
        when = time.time() - (time.monotonic() - when)  # the hub stamps what it hears with the wall clock

        def look(session):
            view = session.fleet.robots.get(self.robot.name)
            return getattr(view, "last_seen", None) if view is not None else None
        seen = self.session.read(look)
        return seen is not None and seen > when


def report(soak: Soak, log: FigureLog) -> None:
    calm = [m for m in soak.missions if m["calm"]]
    chaos = [m for m in soak.missions if not m["calm"]]
    ok = [m for m in chaos if m["outcome"] == "succeeded"]
    low, high = wilson(len(ok), len(chaos))
    calm_ok = [m for m in calm if m["outcome"] == "succeeded"]
    calm_s = [m["seconds"] for m in calm_ok]
    chaos_s = [m["seconds"] for m in ok]
    log.add(f"missions succeeded under chaos (n={len(chaos)}, {len(soak.kills)} kills; 95 % CI "
            f"{low:.2f}-{high:.2f})", len(ok) / len(chaos) if chaos else math.nan, "share",
            baseline=len(calm_ok) / len(calm) if calm else None, target="every mission succeeds (1.0)",
            met=bool(chaos) and len(ok) == len(chaos), n=len(chaos))
    reasons: dict[str, int] = defaultdict(int)
    for m in chaos:
        if m["outcome"] != "succeeded":
            reasons[f"{m['outcome']}: {m['message'][:120]}"] += 1
    log.add("missions failed under chaos" + (f" ({'; '.join(f'{n}x {r}' for r, n in reasons.items())})"
                                             if reasons else ""), len(chaos) - len(ok), "missions",
            target="0", met=len(ok) == len(chaos))
    if calm_s and chaos_s:
        mean_calm, mean_chaos = sum(calm_s) / len(calm_s), sum(chaos_s) / len(chaos_s)
        log.add(f"succeeded mission's wall time under chaos, mean (n={len(chaos_s)}; calm n={len(calm_s)})",
                mean_chaos, "s", baseline=mean_calm, ratio=mean_chaos / mean_calm)
    reran = sum(len(m["reran"]) for m in soak.missions)
    log.add("finished tasks that ran again", reran, "tasks", target="0", met=reran == 0)
    by_victim: dict[str, list[dict]] = defaultdict(list)
    for kill in soak.kills:
        by_victim[kill["victim"]].append(kill)
    for victim in VICTIMS:
        kills = by_victim.get(victim, [])
        if not kills:
            continue
        healthy = [k["healthy_s"] for k in kills if k["healthy_s"] is not None]
        progress = [k["progress_s"] for k in kills if k["progress_s"] is not None]
        log.add(f"{victim} killed (n={len(kills)}): kill -> healthy again, p50 (p99 "
                f"{percentile(healthy, 0.99):.1f} s; {len(kills) - len(healthy)} not seen within 120 s)",
                percentile(healthy, 0.5), "s", n=len(kills))
        log.add(f"{victim} killed (n={len(kills)}): kill -> the mission's next progress at the hub, p50 (p99 "
                f"{percentile(progress, 0.99):.1f} s; {len(kills) - len(progress)} with no task succeeding "
                f"within 120 s)", percentile(progress, 0.5), "s", n=len(kills))
    streams = getattr(soak, "telemetry", {}) or {}
    lost = sum(s["missing"] for s in streams.values())
    sent = sum(s["sent"] for s in streams.values())
    dropped = sum(s["dropped"] for s in streams.values())
    log.add(f"telemetry sequence numbers lost, unreported (of {sent} sent; {dropped} reported dropped)", lost,
            "messages", target="0", met=lost == 0)
    log.add("battery swaps between missions, on the ground (the operator's)", soak.swaps, "swaps")
    airborne = sum(1 for m in soak.missions if m["airborne_after"])
    log.add(f"missions after which the vehicle stayed airborne with nothing bringing it down (n="
            f"{len(soak.missions)})", airborne, "missions", target="0", met=airborne == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of chaos (30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kills' times and victims (1)")
    parser.add_argument("--calm", type=int, default=1, help="missions first with no fault: the baseline (1)")
    parser.add_argument("--points", type=int, default=3, help="survey points per mission (3)")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="seconds at the end for the hub to get the telemetry gaps it asked for (120)")
    parser.add_argument("--swap-below", type=float, default=0.6,
                        help="swap the battery between missions when below this charge (0.6)")
    parser.add_argument("--victims", default=",".join(VICTIMS),
                        help=f"what may be killed, comma-separated (all: {','.join(VICTIMS)})")
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    parser.add_argument("--keep-dir", action="store_true",
                        help="keep the robot's files (logs, journals); kept anyway when a mission went wrong")
    args = parser.parse_args()
    if not (args.minutes > 0 and args.calm >= 0 and 1 <= args.points <= 6):
        parser.error("--minutes > 0, --calm >= 0, --points 1 to 6")
    args.victims = [v.strip() for v in args.victims.split(",") if v.strip()]
    if not args.victims or set(args.victims) - set(VICTIMS):
        parser.error(f"--victims: some of {', '.join(VICTIMS)}")
    log = FigureLog(args.json, "chaos")
    environment = isolate("qai-edge-bench-chaos-")
    print(f"chaos soak: {args.minutes:g} min, seed {args.seed}, ROS_DOMAIN_ID={environment['ROS_DOMAIN_ID']}",
          flush=True)
    soak = Soak(args)
    code = soak.run()
    report(soak, log)
    for record in log.records:
        value = "-" if record["value"] is None else f"{record['value']:.4g}"
        print(f"  {record['figure']}: {value} {record['unit']}")
    if args.json:
        Path(args.json).with_suffix(".missions.json").write_text(json.dumps(
            {"missions": soak.missions, "kills": soak.kills}, indent=1, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
