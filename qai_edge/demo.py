"""`qai-edge demo`: the product end to end.

A hub commands simulated drones over MQTT; they plan, fly, learn on the way, survive faults; the hub
watches it all from what arrives over MQTT.

What it does:
1. starts Debian's mosquitto with config/mosquitto.conf on a free loopback port, makes the hub's ML-DSA-65
   key pair (in a temporary directory), and brings up each robot with `qai-edge up` on a profile derived
   from config/edge.yaml (`drone1`...: its own namespace, sim vehicle, io, mission, quantum bridge,
   intelligence and hub link, each its own process, journals and queues in the temporary directory);
2. as the hub (qai_hub.session: no ROS), waits until every robot is online and its nodes are OK, then
   signs and sends each robot its survey (qai_hub.survey): with several robots, one robot's quantum
   bridge first shares the survey points among them (assign_tasks); each robot plans its own route;
3. shows the fleet live from the hub's side (task states, position, battery, predicted endurance, which
   solver answered), in the terminal and on the hub's browser dashboard (`qai-hub serve`, its URL and
   password printed), and with --faults injects a battery sag, a sensor dropout and a SIGKILL of an engine;
4. ends with a summary (tasks and timings, distance, energy, solver, scans, telemetry sent/received/lost)
   and exit 0 when every survey succeeded; stops everything it started.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qai_edge.broker import HUB_USER, BrokerAccounts, LocalBroker, free_port
from qai_edge.paths import installed_executable, robot_key_path, share_file
from qai_edge.processes import die_with_parent, stop_process
from qai_hub import survey
from qai_hub.client import BrokerOptions
from qai_hub.protocol import Signer, generate_key_pair
from qai_hub.registry import RobotRegistry, enroll
from qai_hub.session import HubSession

FLEET = "demo"
NODES = ("mission_engine", "intelligence_engine", "quantum_bridge", "io_engine", "sim_vehicle", "hub_link")
# The survey: points in the odom frame (m), split among the robots, whose homes are 8 m apart on the x axis.
SURVEY_POINTS = [[24.0, 8.0, 6.0], [30.0, -10.0, 6.0], [12.0, -16.0, 6.0], [6.0, 14.0, 6.0],
                 [40.0, 4.0, 6.0], [20.0, 22.0, 6.0]]
ROBOT_SPACING = 8.0


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


@dataclass
class Robot:
    name: str
    home: list[float]
    profile: Path
    log: Path
    process: subprocess.Popen | None = None
    points: list = field(default_factory=list)
    request_id: str = ""
    mission_id: str = ""
    reply: dict[str, Any] | None = None
    ended_at: float = 0.0  # when its signed mission states first showed the mission ended

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


# -- Set-up -------------------------------------------------------------------------------------------

def robot_profile(base: dict, name: str, home: list[float], workdir: Path, broker_port: int, public_key: Path,
                  controller: str, accounts: BrokerAccounts) -> dict:
    """Return the demo's profile of one robot: config/edge.yaml with its name, home, files, broker and account."""
    profile = json.loads(json.dumps(base))  # a deep copy
    profile["namespace"], profile["robot_id"] = name, name
    profile.pop("broker", None)  # the demo runs the one broker of the fleet
    data = str(workdir / "data")
    nodes = profile["nodes"]
    nodes["mission_engine"]["parameters"].update(data_dir=data)
    nodes["hub_link"]["parameters"].update(fleet=FLEET, broker_port=broker_port, data_dir=data,
                                           hub_public_keys=[str(public_key)], username=name,
                                           password_file=str(accounts.password_file(name)),
                                           robot_key=str(robot_key_path(data, name)))
    nodes["intelligence_engine"]["parameters"].update(model_store=str(workdir / "models"), home=home,
                                                      model_keys=[str(public_key)])
    nodes["io_engine"]["parameters"].update(home=home, controller=controller, data_dir=data)
    nodes["recorder"]["enabled"] = True  # every flight recorded, one rosbag2 (MCAP) bag per mission
    nodes["recorder"]["parameters"].update(data_dir=data, profile_name="demo")
    nodes["sim_vehicle"]["parameters"].update(start_position=home, seed=int(name[-1]) if name[-1].isdigit() else 0)
    return profile


def start_robot(robot: Robot) -> None:
    executable = installed_executable("qai-edge")
    command = [str(executable)] if executable else [sys.executable, "-m", "qai_edge.cli"]
    log = open(robot.log, "wb")
    robot.process = subprocess.Popen([*command, "up", "--profile", str(robot.profile)], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)


def stop_robot(robot: Robot, timeout: float = 20.0) -> None:
    """Stop a robot's supervisor as Ctrl-C would (it stops its nodes), then harder if it must."""
    if robot.process is not None:
        stop_process(robot.process, timeout, (signal.SIGINT, signal.SIGTERM, signal.SIGKILL), group=True)


# -- The run ------------------------------------------------------------------------------------------

class Demo:
    def __init__(self, args):
        self.args = args
        self.started = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="qai-demo-"))
        self.broker: LocalBroker | None = None
        self.session: HubSession | None = None
        self.dashboard = None
        self._screenshot: threading.Thread | None = None
        self._flying = threading.Event()  # a survey leg started, or the demo is ending: the screenshot goes on
        self._ending = False
        self.robots: list[Robot] = []
        self.faults: dict[str, Any] = {"injected": [], "killed": None, "restarted": None}
        self._fault_steps: list = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> int:
        try:
            self.set_up()
            if not self.wait_ready():
                return 1
            self.send_surveys()
            self.follow()
            code = self.finish()
            self.linger()
            return code
        except KeyboardInterrupt:
            say("interrupted")
            return 130
        finally:
            self.tear_down()

    def set_up(self) -> None:
        args = self.args
        key, public = self.workdir / "hub.mldsa65.key", self.workdir / "hub.mldsa65.pub"
        generate_key_pair(key, public)
        names = [f"drone{index + 1}" for index in range(args.robots)]
        # Each robot's identity: its key pair (as `qai-edge keygen` makes it), enrolled on the hub.
        registry = self.workdir / "hub-robots"
        for name in names:
            robot_key = robot_key_path(self.workdir / "data", name)
            generate_key_pair(robot_key, robot_key.with_suffix(".pub"))
            enroll(registry, name, robot_key.with_suffix(".pub"))
        # The broker, locked: an account per robot and one for the hub, each robot confined to its own topics.
        accounts = BrokerAccounts(self.workdir / "broker" / "accounts", FLEET)
        accounts.ensure(names)
        self.broker = LocalBroker(free_port(), self.workdir / "broker", share_file("config", "mosquitto.conf"),
                                  accounts=accounts, hub_port=free_port())
        self.broker.start()
        self.hub_broker = BrokerOptions(port=self.broker.hub_port, username=HUB_USER,
                                        password_file=str(accounts.password_file(HUB_USER)))
        say(f"MQTT broker (mosquitto, config/mosquitto.conf), locked: robots on 127.0.0.1:{self.broker.port}, each "
            f"with its own account and topics; the hub on 127.0.0.1:{self.broker.hub_port}; hub key {public.name} "
            f"(ML-DSA-65), robot keys enrolled in {registry}")
        base = yaml.safe_load(share_file("config", "edge.yaml").read_text())
        controller = "external" if args.controller == "learned" else "pid"
        for index, name in enumerate(names):
            home = [index * ROBOT_SPACING, 0.0, 0.0]
            path = self.workdir / f"{name}.yaml"
            path.write_text(yaml.safe_dump(robot_profile(base, name, home, self.workdir, self.broker.port, public,
                                                         controller, accounts)))
            robot = Robot(name, home, path, self.workdir / f"{name}.log")
            start_robot(robot)
            self.robots.append(robot)
            say(f"{name}: qai-edge up (pid {robot.pid}): 6 nodes under /{name}, home {home[:2]}, "
                f"{'learned CfC policy' if controller == 'external' else 'PID'} flight controller")
        self.session = HubSession(self.hub_broker, FLEET, Signer.from_files(key), RobotRegistry(registry)).connect()
        self.registry = registry
        say(f"hub connected to the broker, following qai/{FLEET}/#")
        if args.dashboard_port >= 0:
            self.start_dashboard(key)

    def start_dashboard(self, key: Path) -> None:
        """Serve the hub's dashboard for a person watching; its login file is in the temporary directory."""
        from qai_hub.dashboard_process import start_dashboard

        port = self.args.dashboard_port
        if port and not _port_free(port):
            say(f"port {port} is taken: the dashboard takes a free one")
            port = 0
        login = self.workdir / "dashboard.password"
        self.dashboard = start_dashboard(login, broker=self.hub_broker, fleet=FLEET, robots=self.registry, key=key,
                                         port=port, log_path=self.workdir / "dashboard.log")
        password = login.read_text().strip()  # made by start_dashboard: random, for this run only
        say(f"hub dashboard: {self.dashboard.url} (log in with {password})")
        if self.args.screenshot:
            self._screenshot = threading.Thread(target=self._take_screenshot, args=(password,),
                                                daemon=True, name="screenshot")
            self._screenshot.start()

    def _take_screenshot(self, password: str) -> None:
        """Save the dashboard as a browser shows it a few seconds into the first survey leg."""
        from qai_hub.browser import Browser

        browser = None
        try:
            browser = Browser(self.workdir, 1400, 1000)
            browser.login(self.dashboard.url, password)
            self._flying.wait()
            if not self._ending:
                time.sleep(6.0)  # a track and a few plot points
                browser.js("document.querySelector('#robots tbody tr')?.click()")
                time.sleep(1.0)
                browser.driver.save_screenshot(str(self.args.screenshot))
                say(f"dashboard screenshot saved to {self.args.screenshot}")
        except Exception as error:  # a missing browser must not fail the demo
            say(f"no dashboard screenshot: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        finally:
            if browser is not None:
                browser.quit()

    def wait_ready(self) -> bool:
        def ready() -> bool:
            for robot in self.robots:
                view = self.session.fleet.robots.get(robot.name)
                nodes = (view.health or {}).get("nodes", {}) if view else {}
                states = [nodes.get(f"/{robot.name}/{node}", {}).get("level") for node in NODES]
                if not (view and view.online and all(level == 0 for level in states)):
                    return False
            return True

        if self.session.wait(ready, self.args.timeout):
            say(f"every robot online and its {len(NODES)} nodes OK after {self.elapsed():.1f} s")
            return True
        for robot in self.robots:
            say(f"{robot.name} not ready; its log ends:\n{tail(robot.log)}")
        return False

    def send_surveys(self) -> None:
        points = SURVEY_POINTS[:self.args.points]
        if len(self.robots) == 1:
            self.robots[0].points = points
        else:
            first = self.robots[0]
            say(f"sharing {len(points)} survey points among {len(self.robots)} robots: assign_tasks on "
                f"{first.name}'s quantum bridge")
            request = self.session.send(first.name, "submit_mission",
                                        {"mission": survey.assignment_mission(points, [r.home for r in self.robots])})
            if not self.session.wait(lambda: self.session.final_reply(request) is not None, self.args.timeout):
                raise RuntimeError("no answer to the assignment")
            reply = self.session.final_reply(request)
            results = survey.task_results(reply.get("result", {}).get("tasks", []))
            if reply.get("status") != "succeeded" or "assign" not in results:
                raise RuntimeError(f"the assignment failed: {reply.get('message') or reply}")
            assign = results["assign"]
            say(f"assignment by {assign.get('solver')} ({'verified' if assign.get('verified') else 'unverified'}): "
                f"{assign.get('assignment')}")
            for robot, share in zip(self.robots, survey.split_points(points, assign["assignment"], len(self.robots))):
                robot.points = share
        for robot in self.robots:
            if not robot.points:
                say(f"{robot.name}: no survey point assigned")
                continue
            mission = survey.survey_mission(robot.points, robot.home, name=f"survey-{robot.name}",
                                            scan_seconds=self.args.scan_seconds)
            robot.request_id = self.session.send(robot.name, "submit_mission", {"mission": mission})
            say(f"{robot.name}: signed survey of {len(robot.points)} points sent ({len(mission['tasks'])} tasks)")
        if self.args.faults:
            self._plan_faults()

    def follow(self) -> None:
        from rich.console import Console
        from rich.live import Live

        active = [r for r in self.robots if r.request_id]
        deadline = time.monotonic() + self.args.timeout
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 140))  # a log file: whole columns
        live = Live(self.view(), console=console, refresh_per_second=4, transient=False) if console.is_terminal \
            else None
        next_print = 0.0
        try:
            if live is not None:
                live.start()
            while time.monotonic() < deadline:
                for robot in active:
                    robot.mission_id = robot.mission_id or self.session.accepted_mission(robot.request_id) or ""
                    robot.reply = robot.reply or self.session.final_reply(robot.request_id) or self._outcome(robot)
                self._run_fault_steps()
                if self._screenshot is not None and self._leg_started():
                    self._flying.set()
                if all(r.reply for r in active):
                    break
                if live is not None:
                    live.update(self.view())
                elif time.monotonic() >= next_print:
                    next_print = time.monotonic() + 5.0
                    console.print(self.view())
                time.sleep(0.25)
        finally:
            if live is not None:
                live.update(self.view())
                live.stop()
        for robot in active:
            if robot.reply is None:
                say(f"{robot.name}: no final answer within {self.args.timeout:g} s")

    def _outcome(self, robot: Robot) -> dict[str, Any] | None:
        """Return the mission's end from its signed mission states when the final reply never came (a broker crash)."""
        outcome = self.session.mission_outcome(robot.name, robot.mission_id) if robot.mission_id else None
        if outcome is None:
            return None
        robot.ended_at = robot.ended_at or time.monotonic()
        if time.monotonic() - robot.ended_at < 5.0:  # the reply, with its result, is usually a moment behind
            return None
        with self.session._lock:
            mission = self.session.fleet.robots[robot.name].missions[robot.mission_id]
            return {"status": outcome, "message": mission["message"], "from": "mission_states",
                    "result": {"tasks": list(mission["tasks"])}}

    def _leg_started(self) -> bool:
        """Tell whether any robot's survey has a leg (fly_N) running or done, as the hub sees it."""
        with self.session._lock:
            for robot in self.robots:
                view = self.session.fleet.robots.get(robot.name)
                mission = view.missions.get(robot.mission_id) if view and robot.mission_id else None
                if any(str(t.get("task_id", "")).startswith("fly_") and isinstance(t.get("state"), int)
                       and t["state"] >= 2 for t in (mission or {}).get("tasks", [])):  # RUNNING (2) or later
                    return True
        return False

    # -- Faults ---------------------------------------------------------------------------------------

    def _plan_faults(self) -> None:
        """Decide when to inject what.

        A sensor dropout early, a SIGKILL of drone1's mission engine after its first scan, a battery sag on
        the last robot (mid-survey with several robots, during the last leg alone).
        """
        first, last = self.robots[0], self.robots[-1]
        sag_after = "scan_1" if len(self.robots) > 1 else f"scan_{len(last.points)}"
        self._fault_steps = [
            (first, "fly_1", "running", self._dropout),
            (first, "scan_1", "succeeded", self._kill_mission_engine),
            (last, sag_after, "succeeded", self._sag),
        ]

    def _run_fault_steps(self) -> None:
        for step in list(self._fault_steps):
            robot, task, state, action = step
            if robot.mission_id and self._task_state(robot, task) == state:
                self._fault_steps.remove(step)
                action(robot)

    def _task_state(self, robot: Robot, task_id: str) -> str:
        from qai_hub.protocol import task_state_name

        view = self.session.fleet.robots.get(robot.name)
        mission = view.missions.get(robot.mission_id) if view else None
        for task in (mission or {}).get("tasks", []):
            if task.get("task_id") == task_id:
                return task_state_name(task.get("state")).lower()
        return ""

    def _injector(self):
        if not hasattr(self, "_fault_injector"):
            from qai_edge.demo_faults import FaultInjector

            self._fault_injector = FaultInjector()
        return self._fault_injector

    def _dropout(self, robot: Robot) -> None:
        problem = self._injector().set_parameters(f"/{robot.name}/sim_vehicle", fault_dropout="gps")
        self._fault_note(robot, "GPS dropout (sim_vehicle fault_dropout=gps) for 5 s", problem)
        self._fault_steps.append((robot, "fly_1", "succeeded", self._dropout_end))

    def _dropout_end(self, robot: Robot) -> None:
        problem = self._injector().set_parameters(f"/{robot.name}/sim_vehicle", fault_dropout="")
        self._fault_note(robot, "GPS back", problem)

    def _sag(self, robot: Robot) -> None:
        problem = self._injector().set_parameters(f"/{robot.name}/sim_vehicle", fault_battery_sag=3.0)
        self._fault_note(robot, "battery sag of 3 V (a failing cell)", problem)

    def _kill_mission_engine(self, robot: Robot) -> None:
        from qai_edge.demo_faults import kill_node, node_process

        pid = kill_node(robot.pid, "mission_engine")
        self.faults["killed"] = {"robot": robot.name, "node": "mission_engine", "pid": pid, "at": self.elapsed()}
        self._fault_note(robot, f"SIGKILL of its mission_engine (pid {pid})", "" if pid else "no such process")

        def restarted(_robot: Robot) -> None:
            process = node_process(robot.pid, "mission_engine")
            if process is not None and process.pid != pid:
                self.faults["restarted"] = {"pid": process.pid, "after": round(self.elapsed() - self.faults["killed"]
                                                                               ["at"], 1)}
                say(f"{robot.name}: the supervisor restarted mission_engine (pid {process.pid})")
            else:
                self._fault_steps.append((robot, "", "", restarted))

        self._fault_steps.append((robot, "", "", restarted))

    def _fault_note(self, robot: Robot, what: str, problem: str) -> None:
        self.faults["injected"].append({"robot": robot.name, "fault": what, "at": round(self.elapsed(), 1),
                                        "problem": problem})
        say(f"fault on {robot.name}: {what}{' FAILED: ' + problem if problem else ''}")

    # -- The view and the summary ---------------------------------------------------------------------

    def view(self):
        from rich.table import Table

        from qai_hub.protocol import mission_state_name, task_state_name

        table = Table(title=f"fleet {FLEET} as the hub sees it, {self.elapsed():.0f} s", expand=False)
        for column in ("robot", "mission", "tasks", "running", "position", "battery", "endurance", "solver"):
            table.add_column(column)
        with self.session._lock:
            for robot in self.robots:
                view = self.session.fleet.robots.get(robot.name)
                mission = view.missions.get(robot.mission_id) if view and robot.mission_id else None
                tasks = (mission or {}).get("tasks", [])
                running = [f"{t['task_id']} {_percent(t.get('progress'))}".strip() for t in tasks
                           if task_state_name(t.get("state")) == "RUNNING"]
                results = survey.task_results(tasks)
                plan = results.get("plan", {})
                solver = f"{plan.get('solver')}{' (fallback)' if plan.get('fallback') else ''}" if plan else "-"
                endurance = self.session.endurance.get(robot.name)
                table.add_row(
                    robot.name, mission_state_name(mission.get("state")) if mission else "-",
                    f"{sum(1 for t in tasks if t.get('state') == 10)}/{len(tasks)}" if tasks else "-",
                    ", ".join(running) or "-", _position(view), _battery(view),
                    f"{endurance.get('remaining', 0):.0f} s (home needs {endurance.get('return_needed', 0):.0f} s)"
                    if endurance else "-", solver)
        return table

    def recording(self, robot: Robot) -> dict[str, Any]:
        """Return the recorder's bag of the robot's survey mission (qai_recorder): its path and size."""
        root = self.workdir / "data" / robot.name / "recordings"
        label = re.sub(r"[^A-Za-z0-9_-]", "_", robot.mission_id)[:64]  # as the recorder names its bags
        found = sorted(root.glob(f"*_{label}")) if label and root.is_dir() else []
        size = sum(f.stat().st_size for bag in found for f in bag.iterdir() if f.is_file())
        return {"bag": str(found[-1]) if found else "", "bytes": size}

    def finish(self) -> int:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=max(Console().width, 140))
        summary = {"wall_seconds": round(self.elapsed(), 1), "robots": {}, "faults": self.faults,
                   "dashboard": self.dashboard.url if self.dashboard is not None else None}
        succeeded = True
        for robot in self.robots:
            if not robot.request_id:
                continue
            reply = robot.reply or {}
            tasks = reply.get("result", {}).get("tasks", [])
            figures = survey.outcome_figures(tasks)
            view = self.session.fleet.robots.get(robot.name)
            figures["energy_wh"] = survey.energy_wh(self.session.first_battery.get(robot.name),
                                                    view.battery if view else None)
            figures["outcome"] = reply.get("status", "no answer")
            figures["message"] = reply.get("message", "")
            figures["report_received"] = bool(self.session.reports.get(robot.name))
            figures["reran_after_success"] = self.session.reran(robot.name, robot.mission_id)
            figures["telemetry"] = self.telemetry(robot.name)
            figures["trust"] = self.trust(robot.name)
            figures["recording"] = self.recording(robot)
            figures["tasks"] = survey.task_rows(tasks)
            summary["robots"][robot.name] = figures
            succeeded &= figures["outcome"] == "succeeded"
            table = Table(title=f"{robot.name}: survey {figures['outcome'].upper()} — {figures['points_scanned']}/"
                                f"{figures['points']} points scanned, {figures['distance_m']} m flown, "
                                f"{figures['energy_wh']} Wh")
            for column in ("task", "kind", "state", "attempt", "s", "message"):
                table.add_column(column)
            for row in figures["tasks"]:
                table.add_row(row["task"], row["kind"], row["state"], str(row["attempt"]),
                              f"{row['seconds']:.1f}" if row["seconds"] is not None else "-", row["message"][:70])
            console.print(table)
            if figures["outcome"] != "succeeded" and figures["message"]:
                console.print(f"  {figures['outcome']}: {figures['message'][:600]}")
            console.print(f"  route planned by {figures['solver']} ({figures['qubits']} qubits"
                          f"{', verified against the classical answer' if figures['verified'] else ''}"
                          f"{', fallback: ' + figures['fallback_reason'] if figures['fallback'] else ''}); "
                          f"report {'received' if figures['report_received'] else 'MISSING'}")
            streams = figures["telemetry"]
            console.print("  telemetry: " + "; ".join(
                f"{name} {s['sent']} sent, {s['received']} received, {s['dropped']} dropped (reported), "
                f"{s['missing']} lost"
                for name, s in sorted(streams.items())))
            recording = figures["recording"]
            kept = "" if self.args.keep_dir else "; --keep-dir keeps it"
            console.print(f"  recorded: {recording['bag'] or 'NO BAG for the mission'} "
                          f"({recording['bytes'] // 1024} KB, rosbag2 with MCAP; ros2 bag, Foxglove read it{kept})")
            trust = figures["trust"]
            console.print(f"  verified as {robot.name}'s own: status, replies and mission states signed (ML-DSA-65); "
                          f"{trust['sealed']} telemetry messages checked against its seals, {trust['forged']} forged, "
                          f"{trust['unsealed']} unsealed; {trust['refused']} messages refused")
        summary["succeeded"] = succeeded
        if self.args.summary_json:
            Path(self.args.summary_json).write_text(json.dumps(summary, indent=2))
        say(f"{'every survey succeeded' if succeeded else 'not every survey succeeded'} after {self.elapsed():.1f} s")
        return 0 if succeeded else 1

    def linger(self) -> None:
        if self.dashboard is not None and self.args.linger > 0:
            say(f"the dashboard stays up {self.args.linger:g} s more at {self.dashboard.url} (Ctrl-C ends it)")
            time.sleep(self.args.linger)

    def telemetry(self, robot: str) -> dict[str, dict[str, int]]:
        """Count each stream's messages as the hub saw them.

        Sent (the robot numbers them from 1), received, reported dropped, and missing (neither).
        """
        view = self.session.fleet.robots.get(robot)
        if view is None:
            return {}
        with self.session._lock:
            return {name: {"sent": t.highest, "received": len(t.received), "dropped": t.dropped_count(),
                           "missing": t.missing_count(), "duplicates": t.duplicates}
                    for name, t in view.streams.items()}

    def trust(self, robot: str) -> dict[str, int]:
        """Count what the hub verified of a robot's messages: sealed telemetry checked, forged, unsealed, refused."""
        with self.session._lock:
            view = self.session.fleet.robots.get(robot)
            if view is None:
                return {"sealed": 0, "forged": 0, "unsealed": 0, "refused": 0}
            return {"sealed": view.seals.verified, "forged": view.seals.forged, "unsealed": view.seals.unsealed,
                    "refused": view.refused}

    def tear_down(self) -> None:
        if self._screenshot is not None:
            self._ending = True
            self._flying.set()
            self._screenshot.join(30)
        if self.dashboard is not None:
            self.dashboard.stop()
        if self.session is not None:
            self.session.close()
        if hasattr(self, "_fault_injector"):
            self._fault_injector.close()
        for robot in self.robots:
            stop_robot(robot)
        if self.broker is not None:
            self.broker.stop()
        if self.args.keep_dir:
            say(f"files kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        say("everything stopped")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _percent(progress) -> str:
    return f"{progress * 100:.0f}%" if isinstance(progress, (int, float)) and math.isfinite(progress) else ""


def _position(view) -> str:
    if view is None or view.position is None or None in view.position:
        return "-"
    return "{:.1f}, {:.1f}, {:.1f}".format(*view.position)


def _battery(view) -> str:
    battery = view.battery if view else None
    if not battery or not isinstance(battery.get("percentage"), (int, float)):
        return "-"
    return f"{battery['percentage'] * 100:.0f}% {battery.get('voltage', 0):.1f} V"


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class DemoCommand:
    """`qai-edge demo` (the `qai_edge.commands` entry point)."""

    help = "the end-to-end demo: a hub sends signed survey missions over MQTT to simulated drones"

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("--robots", type=int, default=1, help="simulated drones, each its own stack (default 1)")
        parser.add_argument("--points", type=int, default=4, help=f"survey points, at most {len(SURVEY_POINTS)}")
        parser.add_argument("--faults", action="store_true",
                            help="inject a GPS dropout, a battery sag and a SIGKILL of a mission engine")
        parser.add_argument("--controller", choices=("pid", "learned"), default="pid",
                            help="fly with the built-in PID or the intelligence engine's learned CfC policy")
        parser.add_argument("--scan-seconds", type=float, default=2.0, help="seconds each scan samples")
        parser.add_argument("--timeout", type=float, default=170.0,
                            help="seconds to wait for the robots, and then for the surveys (default 170)")
        parser.add_argument("--summary-json", help="write the summary (figures, tasks, telemetry) to this file")
        parser.add_argument("--keep-dir", action="store_true", help="keep the temporary files (logs, journals)")
        parser.add_argument("--dashboard-port", type=int, default=8080,
                            help="serve the hub's browser dashboard on this loopback port (0: a free one, -1: none)")
        parser.add_argument("--linger", type=float, default=0.0,
                            help="keep everything up this many seconds after the summary, to look at the dashboard")
        parser.add_argument("--screenshot", type=Path,
                            help="save a PNG of the dashboard during the first survey leg (headless chromium)")

    @staticmethod
    def run(args) -> int:
        if not 1 <= args.robots <= 5:
            print("qai-edge: demo: --robots: 1 to 5 on one machine", file=sys.stderr)
            return 2
        if not 1 <= args.points <= len(SURVEY_POINTS):
            print(f"qai-edge: demo: --points: 1 to {len(SURVEY_POINTS)}", file=sys.stderr)
            return 2
        if args.points < args.robots:
            print("qai-edge: demo: --points: at least one point per robot", file=sys.stderr)
            return 2
        for option, value, least in (("--timeout", args.timeout, 1.0), ("--scan-seconds", args.scan_seconds, 0.1),
                                     ("--linger", args.linger, 0.0)):
            if not (math.isfinite(value) and value >= least):
                print(f"qai-edge: demo: {option}: a number of seconds, at least {least:g} (got {value})",
                      file=sys.stderr)
                return 2
        if not -1 <= args.dashboard_port <= 65535:
            print("qai-edge: demo: --dashboard-port: a TCP port (0: a free one, -1: no dashboard)", file=sys.stderr)
            return 2
        if args.profile or args.namespace:
            print("qai-edge: demo: builds its own profiles from config/edge.yaml (no --profile/--namespace)",
                  file=sys.stderr)
            return 2
        return Demo(args).run()


COMMAND = DemoCommand()
