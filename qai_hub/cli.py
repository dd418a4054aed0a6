"""qai-hub: the hub operator's side of the hub link, plain Python with paho-mqtt (no ROS on the hub machine).

    qai-hub keygen                                   ML-DSA-65 key pair (and --ed25519) for signing commands
    qai-hub enroll ROBOT ROBOT_KEY.pub               believe what this robot signs (its key, from qai-edge keygen)
    qai-hub send-mission MISSION.yaml --robot R      signed; prints acceptance and progress; exit code = outcome
    qai-hub cancel MISSION_ID --robot R [--task T]
    qai-hub deploy-model CHECKPOINT_DIR --robot R    sign a model and send it; the robot's gate decides
    qai-hub rollback-model TASK --robot R            back to the model active before
    qai-hub status [--robot R]                       the fleet once (with --robot: that robot's missions)
    qai-hub watch                                    the fleet live, updating in place
    qai-hub serve [--port 8080] [--bind 127.0.0.1]   the dashboard in a browser (qai_hub.dashboard)

Exit codes: 0 done (mission succeeded), 1 mission failed or was canceled, 2 bad input here (file, key,
options), 3 refused by the robot (the reason is printed), 4 no answer in time or broker unreachable,
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from rich.markup import escape

from qai_hub import model_signing
from qai_hub.client import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_ANSWER, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, HubClient,
                            HubError)
from qai_hub.fleet import Fleet, RobotView
from qai_hub.registry import DEFAULT_REGISTRY, RobotRegistry
from qai_hub.protocol import (ALL_ROBOTS, DIAGNOSTIC_LEVELS, ED25519, ML_DSA_65, ROOT, TERMINAL, KeyFileError, Signer,
                              check_name, command_topic, generate_key_pair, make_command, mission_state_name,
                              task_state_name)

DEFAULT_KEY_DIR = "~/.config/qai-hub"
MAX_MISSION_FILE_BYTES = 1 << 20

EPILOG = """\
The broker and fleet come from the options or the environment: QAI_HUB_HOST, QAI_HUB_PORT,
QAI_HUB_FLEET, QAI_HUB_KEY (ML-DSA-65 private key), QAI_HUB_ED25519_KEY, QAI_HUB_USERNAME,
QAI_HUB_PASSWORD_FILE, QAI_HUB_TLS_CA, QAI_HUB_TLS_CERT, QAI_HUB_TLS_KEY; the enrolled robots from
QAI_HUB_ROBOTS (default ~/.config/qai-hub/robots).

exit codes: 0 done (mission succeeded), 1 mission failed or canceled, 2 bad input, 3 refused by the
robot, 4 no answer in time or broker unreachable, 130 interrupted.
"""


# -- Commands --------------------------------------------------------------------------------------

def cmd_keygen(args) -> int:
    directory = Path(args.dir).expanduser()
    pairs = [(ML_DSA_65, f"{args.name}.mldsa65")] + ([(ED25519, f"{args.name}.ed25519")] if args.ed25519 else [])
    for algorithm, stem in pairs:
        try:
            kid = generate_key_pair(directory / f"{stem}.key", directory / f"{stem}.pub", algorithm, args.force)
        except KeyFileError as error:
            raise HubError(f"{error} (use --force to replace it)") from None
        print(f"{algorithm} key {kid}: private {directory / (stem + '.key')} (mode 0600, keep it on the hub), "
              f"public {directory / (stem + '.pub')} (give it to every robot: hub_link's hub_public_keys)")
    return EXIT_OK


def _signer(args) -> Signer:
    try:
        return Signer.from_files(args.key, args.ed25519_key or None)
    except KeyFileError as error:
        raise HubError(f"signing key: {error} (create one with: qai-hub keygen)") from None


def _load_mission(path: str) -> dict[str, Any]:
    """Return the mission document of a YAML file, read and checked as the robot will (bounded, strict)."""
    from qai_edge.bounded import InputRejected, load_yaml  # light
    from qai_mission.codec import MissionFormatError, mission_from_dict  # a slow import: only when needed
    from qai_mission.model import DEFAULT_LIMITS

    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_MISSION_FILE_BYTES:
            raise HubError(f"{path}: {size} bytes, over the {MAX_MISSION_FILE_BYTES} a mission file may have")
        document = load_yaml(file.read_bytes(), path, DEFAULT_LIMITS.document())
        mission_from_dict(document)  # the robot checks again; this catches mistakes before sending
    except OSError as error:
        raise HubError(f"{path}: cannot read: {error.strerror or error}") from None
    except InputRejected as error:
        raise HubError(str(error)) from None
    except MissionFormatError as error:
        raise HubError(f"{path}: {error}") from None
    return document


class _HubView:
    """One connection and the fleet as this tool sees it: every message verified, its own commands' replies bound.

    Replies to this tool's commands are kept by request id, in arrival order, only when they verify as the
    robot's own and carry the command's id and nonce (Fleet.expect). After a reconnect it subscribes again
    (HubClient) and asks each robot whose outcome it waits for with a signed get_state.
    """

    def __init__(self, args, *topics: str):
        self.args = args
        self.fleet = Fleet(args.fleet, _registry(args), keep_missions=100)
        self.replies: dict[str, list[dict[str, Any]]] = {}
        self.waiting: dict[str, str] = {}  # robot -> the mission id whose outcome this tool waits for
        self._changed = threading.Condition()
        self._signer: Signer | None = None
        self.client = HubClient(args, self._on_message, client_id=f"qai-hub-{uuid.uuid4().hex[:12]}",
                                on_reconnect=self._on_reconnect).connect()
        if topics:
            self.client.subscribe(*topics)

    def _on_message(self, topic: str, payload: bytes) -> None:
        with self._changed:
            change = self.fleet.on_message(topic, payload)
            if change is not None and change.kind == "reply" and change.bound:
                self.replies.setdefault(change.message.request_id, []).append(change.data)
            self._changed.notify_all()

    def send(self, verb: str, body: dict[str, Any], robot: str) -> str:
        """Sign and publish a command (its replies are then bound to it); return its request id."""
        if self._signer is None:
            self._signer = _signer(self.args)
        if robot != ALL_ROBOTS and not self.fleet.registry.admits(robot):
            raise HubError(f"robot {robot} is not enrolled on this hub ({self.fleet.registry.directory}): its answers "
                           f"could not be verified; enroll it with: qai-hub enroll {robot} ROBOT_KEY.pub")
        topic = command_topic(self.args.fleet, robot, verb)
        command = make_command(self._signer, fleet=self.args.fleet, robot=robot, verb=verb, body=body, topic=topic)
        with self._changed:
            self.fleet.expect(command)
        self.client.publish(topic, orjson.dumps(command))
        return command["id"]

    def _on_reconnect(self) -> None:
        for robot, mission_id in list(self.waiting.items()):
            threading.Thread(target=self._ask, args=(robot, mission_id), daemon=True).start()

    def _ask(self, robot: str, mission_id: str) -> None:
        try:
            self.send("get_state", {"mission_id": mission_id, "include_finished": True}, robot)
        except HubError:
            pass  # the broker went away again: asked again on the next reconnect

    def next_reply(self, request_id: str, index: int, deadline: float) -> dict[str, Any] | None:
        with self._changed:
            while len(self.replies.get(request_id, [])) <= index:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.2))
            return self.replies[request_id][index]

    def mission_state(self, robot: str, mission_id: str) -> dict[str, Any] | None:
        with self._changed:
            view = self.fleet.robots.get(robot)
            return view.missions.get(mission_id) if view is not None else None

    def close(self) -> None:
        self.client.close()


def _registry(args) -> RobotRegistry:
    return RobotRegistry(args.robots)


FINAL = ("succeeded", "failed", "canceled", "rejected", "error")
_OUTCOME = {10: "succeeded", 11: "failed", 12: "canceled", 13: "rejected"}


def cmd_send_mission(args) -> int:
    document = _load_mission(args.file)
    robot = ALL_ROBOTS if args.all else args.robot
    base = f"{ROOT}/{args.fleet}/{'+' if args.all else args.robot}"
    view = _HubView(args, f"{base}/cmd/submit_mission/reply", f"{base}/cmd/get_state/reply", f"{base}/status",
                    f"{base}/telemetry/mission_states")
    try:
        if args.all:
            time.sleep(1.0)  # the retained statuses, to know who is online
            with view._changed:
                targets = {name for name, robot_view in view.fleet.robots.items() if robot_view.online}
            if not targets:
                print(f"no enrolled robot of fleet {args.fleet} is online", file=sys.stderr)
                return EXIT_NO_ANSWER
        else:
            targets = {args.robot}
        request_id = view.send("submit_mission", {"mission": document}, robot)
        default_id = document.get("id") or "hub-" + re.sub(r"[^A-Za-z0-9_-]", "-", request_id)[:60]
        for target in targets:
            view.waiting[target] = default_id
        print(f"sent {args.file} to {', '.join(sorted(targets))} (request {request_id})", flush=True)
        return _follow(view, request_id, targets, args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        view.close()


def _follow(view: _HubView, request_id: str, targets: set[str], args) -> int:
    """Print the replies to a submit_mission until every target's outcome is known; return the exit code."""
    started = time.monotonic()
    deadline = started + args.timeout
    outcomes: dict[str, str] = {}
    asked_at = time.monotonic()
    index = 0
    while set(outcomes) < targets:
        reply = view.next_reply(request_id, index, min(deadline, time.monotonic() + 1.0))
        if reply is None:
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(targets - set(outcomes)))
                print(f"no final answer within {args.timeout:g} s from {missing}", file=sys.stderr)
                return EXIT_NO_ANSWER
            for robot in targets - set(outcomes):  # the outcome from the robot's own signed mission states
                state = view.mission_state(robot, view.waiting.get(robot, ""))
                if state is not None and state["state"] >= TERMINAL:
                    outcomes[robot] = _OUTCOME.get(state["state"], "failed")
                    print(f"[{time.monotonic() - started:6.1f} s] {shown(robot, markup=False)}: mission "
                          f"{shown(state['mission_id'], 64, markup=False)} {outcomes[robot].upper()} (from its signed "
                          f"mission states; its reply did not come)", flush=True)
            if time.monotonic() - asked_at > 15.0:  # a reply lost with a broker crash: ask for the state
                asked_at = time.monotonic()
                for robot in targets - set(outcomes):
                    view._ask(robot, view.waiting.get(robot, ""))
            continue
        index += 1
        sender = reply["robot"]
        print(f"[{time.monotonic() - started:6.1f} s] {_reply_text(reply)}", flush=True)
        if reply["status"] == "accepted" and reply["mission_id"]:
            view.waiting[sender] = reply["mission_id"]
            if args.no_wait:
                outcomes[sender] = "succeeded"
        if reply["status"] in FINAL:
            outcomes[sender] = reply["status"]
    codes = [{"succeeded": EXIT_OK, "rejected": EXIT_REFUSED, "error": EXIT_REFUSED}.get(o, EXIT_FAILED)
             for o in outcomes.values()]
    return max(codes) if codes else EXIT_NO_ANSWER


def _reply_text(reply: dict[str, Any]) -> str:
    """Return a reply as a line (or a few) of plain text, every robot-given string made safe for a terminal."""
    status, robot = reply["status"], shown(reply["robot"], 64, markup=False)
    mission = shown(reply["mission_id"], 64, markup=False)
    message = shown(reply["message"], 300, markup=False)
    if "model" in reply and status != "rejected":
        return _model_text(robot, status, reply["model"], message)
    if status == "rejected":
        return f"{robot}: REJECTED ({reply.get('reason')}): {message}"
    if status == "progress":
        feedback = reply.get("feedback", {"updated_tasks": []})
        tasks = ", ".join(f"{shown(t['task_id'], 40, markup=False)} {task_state_name(t['state'])}"
                          f"{_percent(t['progress'])}"
                          f"{(': ' + shown(t['message'], 60, markup=False)) if t['message'] else ''}"
                          for t in feedback["updated_tasks"][:20])
        return (f"{robot}: {mission} {shown(reply['state'], 16, markup=False)} {feedback.get('tasks_succeeded', 0)}/"
                f"{feedback.get('tasks_total', 0)} done{'; ' + tasks if tasks else ''}")
    if status in ("succeeded", "failed", "canceled"):
        tasks = reply.get("result", {}).get("tasks", [])
        lines = [f"{robot}: mission {mission} {status.upper()}{': ' + message if message else ''}"]
        lines += [f"    {shown(t['task_id'], 16, markup=False):<16} {task_state_name(t['state']):<10} "
                  f"{shown(t['message'], 80, markup=False)}" for t in tasks[:200]]
        return "\n".join(lines)
    if status == "done":
        return f"{robot}: done{': ' + message if message else ''}"
    return f"{robot}: {status} {mission}{': ' + message if message else ''}"


def _model_text(robot: str, status: str, model: dict[str, Any], message: str) -> str:
    task, active = model["task"], shown(model["active_version"], 8, markup=False)
    previous = shown(model["previous_version"], 8, markup=False)
    head = (f"{robot}: {task} model {active} ACTIVE (was {previous})" if status == "succeeded"
            else f"{robot}: {task} model NOT CHANGED, {active or previous} stays active")
    lines = [f"{head}: {message}" if message else head]
    lines += [f"    {shown(key, 24, markup=False)}: {shown(text, 300, markup=False)}"
              for key, text in sorted(model["metrics"].items())]
    return "\n".join(lines)


def _percent(progress) -> str:
    return f" {progress * 100:.0f}%" if isinstance(progress, (int, float)) else ""


def cmd_cancel(args) -> int:
    body = {"mission_id": args.mission_id, **({"task_id": args.task} if args.task else {}),
            **({"reason": args.reason} if args.reason else {})}
    view = _HubView(args, f"{ROOT}/{args.fleet}/{args.robot}/cmd/cancel_mission/reply")
    try:
        request_id = view.send("cancel_mission", body, args.robot)
        reply = view.next_reply(request_id, 0, time.monotonic() + args.timeout)
    finally:
        view.close()
    if reply is None:
        print(f"no answer from {args.robot} within {args.timeout:g} s", file=sys.stderr)
        return EXIT_NO_ANSWER
    print(_reply_text(reply))
    return EXIT_OK if reply["status"] == "done" else EXIT_REFUSED


def _model_targets(view: _HubView, args) -> set[str]:
    if not args.all:
        return {args.robot}
    time.sleep(1.0)  # the retained statuses, to know who is online
    with view._changed:
        return {name for name, robot_view in view.fleet.robots.items() if robot_view.online}


def _model_command(args, verb: str, body: dict[str, Any], what: str) -> int:
    """Send a signed model command to --robot or --all; print each robot's answer; return the exit code."""
    base = f"{ROOT}/{args.fleet}/{'+' if args.all else args.robot}"
    view = _HubView(args, f"{base}/cmd/{verb}/reply", f"{base}/status")
    try:
        targets = _model_targets(view, args)
        if not targets:
            print(f"no enrolled robot of fleet {args.fleet} is online", file=sys.stderr)
            return EXIT_NO_ANSWER
        request_id = view.send(verb, body, ALL_ROBOTS if args.all else args.robot)
        print(f"sent {what} to {', '.join(sorted(targets))} (request {request_id})", flush=True)
        deadline, outcomes, index = time.monotonic() + args.timeout, {}, 0
        while set(outcomes) < targets:
            reply = view.next_reply(request_id, index, deadline)
            if reply is None:
                print(f"no answer within {args.timeout:g} s from {', '.join(sorted(targets - set(outcomes)))}",
                      file=sys.stderr)
                return EXIT_NO_ANSWER
            index += 1
            print(_reply_text(reply), flush=True)
            if reply["status"] in FINAL:
                outcomes[reply["robot"]] = reply["status"]
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        view.close()
    codes = [{"succeeded": EXIT_OK, "rejected": EXIT_REFUSED, "error": EXIT_REFUSED}.get(o, EXIT_FAILED)
             for o in outcomes.values()]
    return max(codes)


def cmd_deploy_model(args) -> int:
    try:
        files = model_signing.read_files(args.checkpoint)
        meta = orjson.loads(files["meta.json"])
        task = meta.get("config", {}).get("task") if isinstance(meta, dict) else None
        if args.model and task != args.model:
            raise model_signing.ModelRejected(f"{args.checkpoint}: a model for {task!r}, not {args.model!r}")
        note = args.note or Path(args.checkpoint).name
        signature = model_signing.sign(_signer(args), str(task), files, note)
    except (model_signing.ModelRejected, orjson.JSONDecodeError, AttributeError) as error:
        print(f"qai-hub: {args.checkpoint}: {error}", file=sys.stderr)
        return EXIT_USAGE
    body = {"task": task, "files": model_signing.encode_files(files), "signature": signature}
    return _model_command(args, "deploy_model", body, f"the {task} model {args.checkpoint} (signed)")


def cmd_rollback_model(args) -> int:
    return _model_command(args, "rollback_model", {"task": args.task}, f"a rollback of the {args.task} model")


def _collect(args, seconds: float, robot: str | None = None) -> Fleet:
    base = f"{ROOT}/{args.fleet}/{robot or '+'}"
    view = _HubView(args, f"{base}/status", f"{base}/telemetry/+")
    try:
        time.sleep(seconds)
    finally:
        view.close()
    return view.fleet


def cmd_status(args) -> int:
    from rich.console import Console

    fleet = _collect(args, args.timeout, args.robot)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    console.print(render_fleet(fleet))
    if not args.robot:
        return EXIT_OK if fleet.robots else EXIT_NO_ANSWER
    view = _HubView(args, f"{ROOT}/{args.fleet}/{args.robot}/cmd/get_state/reply")
    try:
        request_id = view.send("get_state", {"include_finished": True}, args.robot)
        reply = view.next_reply(request_id, 0, time.monotonic() + args.timeout + 5)
    finally:
        view.close()
    if reply is None:
        print(f"no answer from {args.robot}", file=sys.stderr)
        return EXIT_NO_ANSWER
    if reply["status"] != "done":
        print(_reply_text(reply))
        return EXIT_REFUSED
    console.print(render_missions(args.robot, reply.get("missions", [])))
    return EXIT_OK


def cmd_watch(args) -> int:
    from rich.console import Console
    from rich.live import Live

    view = _HubView(args, f"{ROOT}/{args.fleet}/+/status", f"{ROOT}/{args.fleet}/+/telemetry/+",
                    f"{ROOT}/{args.fleet}/+/cmd/+/reply")
    fleet = view.fleet
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    end = time.monotonic() + args.duration if args.duration else None
    try:
        if console.is_terminal:
            with Live(render_fleet(fleet), console=console, refresh_per_second=4) as live:
                while end is None or time.monotonic() < end:
                    time.sleep(args.interval)
                    with view._changed:
                        live.update(render_fleet(fleet))
        else:  # a pipe or a file: one snapshot per interval
            while end is None or time.monotonic() < end:
                time.sleep(args.interval)
                with view._changed:
                    console.print(f"--- {time.strftime('%H:%M:%S')}")
                    console.print(render_fleet(fleet))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        view.close()
    return EXIT_OK


def cmd_enroll(args) -> int:
    """Enroll a robot's public key (or remove one) in the hub's registry; list the robots with none given."""
    from qai_hub.registry import enroll, unenroll

    if args.robot is None:
        registry = _registry(args)
        for robot in registry.robots:
            keys = registry.keyring(robot).keys
            print(f"{robot}: {', '.join(f'{kid} ({key.algorithm})' for kid, key in keys.items())}")
        for error in registry.errors:
            print(f"unusable: {error}", file=sys.stderr)
        return EXIT_OK
    check_name(args.robot, "robot")
    if args.remove:
        removed = unenroll(args.robots, args.robot, args.key_id or None)
        if not removed:
            raise HubError(f"{args.robot} has no enrolled key{' ' + args.key_id if args.key_id else ''}")
        print(f"removed {args.robot}'s key(s) {', '.join(removed)}")
        return EXIT_OK
    if not args.public_key:
        raise HubError("give the robot's public key file (qai-edge keygen prints its path)")
    try:
        kid = enroll(args.robots, args.robot, args.public_key)
    except (KeyFileError, OSError) as error:
        raise HubError(f"{args.public_key}: {error}") from None
    print(f"enrolled {args.robot}: key {kid} in {Path(args.robots).expanduser() / args.robot}")
    return EXIT_OK


def cmd_serve(args) -> int:
    from qai_hub.dashboard import DashboardOptions, FeedLimits, serve

    if not 1 <= args.http_port <= 65535 or not 1 <= args.max_robots <= 100_000:
        raise HubError("--port must be 1-65535 and --max-robots 1-100000")
    options = DashboardOptions(
        host=args.host, port=args.port, fleet=args.fleet, username=args.username, password_file=args.password_file,
        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key, key=args.key, ed25519_key=args.ed25519_key,
        robots=args.robots, bind=args.bind, http_port=args.http_port, login_file=args.login_file,
        cookie_secure=args.cookie_secure, origins=tuple(args.origin), allow_hosts=tuple(args.allow_host),
        trusted_proxies=tuple(args.trusted_proxy), limits=FeedLimits(max_robots=args.max_robots))
    return serve(options)


# -- Rendering -------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def shown(value: Any, limit: int = 120, markup: bool = True) -> str:
    """Return robot-given text as it may reach a terminal.

    No control characters or escape sequences (each replaced by a visible mark), no bidirectional overrides, at
    most `limit` characters, and, for rich (`markup`), its square brackets escaped so it cannot style or hide the
    rest of the line.
    """
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text[:limit] + ("..." if len(text) > limit else ""))
    return escape(text) if markup else text


def render_fleet(fleet: Fleet):
    from rich.table import Table

    table = Table(title=f"fleet {shown(fleet.fleet)}: {len(fleet.robots)} robot(s)", expand=False)
    for column in ("robot", "link", "mission", "tasks", "position", "battery", "health", "queue", "telemetry"):
        table.add_column(column)
    now = time.time()
    for name in sorted(fleet.robots):
        robot = fleet.robots[name]
        table.add_row(shown(name), _link_cell(robot, now), *_mission_cells(robot), _position_cell(robot),
                      _battery_cell(robot), _health_cell(robot), _queue_cell(robot), _telemetry_cell(robot))
    if fleet.malformed or fleet.refused_robots:
        table.caption = (f"refused: {fleet.malformed} malformed or unverified message(s), "
                         f"{fleet.refused_robots} from robots this hub does not admit")
    return table


def _link_cell(robot: RobotView, now: float) -> str:
    state = robot.status.get("state", "?")
    link = robot.status.get("link") or {}
    seen = f"{now - robot.last_seen:.0f} s ago" if robot.last_seen else "never"
    color = "green" if state == "online" else "red"
    rtt = f", rtt {link['rtt_ms']:.1f} ms" if link.get("rtt_ms") is not None else ""
    connects = f"{link['connects']:.0f}" if link.get("connects") is not None else "?"
    return f"[{color}]{state}[/{color}] ({seen}{rtt}, {connects} connects)"


def _mission_cells(robot: RobotView) -> tuple[str, str]:
    mission = robot.current_mission()
    if mission is None:
        summary = (robot.status.get("missions") or {}).get("active") or []
        return (f"{len(summary)} active" if summary else "-"), "-"
    state = mission_state_name(mission["state"])
    color = {"SUCCEEDED": "green", "FAILED": "red", "REJECTED": "red", "CANCELED": "yellow"}.get(state, "cyan")
    head = f"{shown(mission['name'] or mission['mission_id'], 60)} [{color}]{state}[/{color}]"
    running = [t for t in mission["tasks"] if 2 <= t["state"] < TERMINAL]
    detail = "; ".join(f"{shown(t['task_id'], 40)} {task_state_name(t['state'])}{_percent(t['progress'])}"
                       for t in running[:10])
    done = f"{mission['tasks_succeeded']}/{mission['tasks_total']} done"
    return head, f"{done}{'; ' + detail if detail else ''}"


def _position_cell(robot: RobotView) -> str:
    if robot.position is None or None in robot.position:
        return "-"
    x, y, z = robot.position
    return f"{x:.1f}, {y:.1f}, {z:.1f} m"


def _battery_cell(robot: RobotView) -> str:
    battery = robot.battery
    if not battery:
        return "-"
    percentage, voltage = battery["percentage"], battery["voltage"]
    parts = [f"{percentage * 100:.0f}%" if percentage is not None else "?"]
    if voltage is not None:
        parts.append(f"{voltage:.1f} V")
    return " ".join(parts)


def _health_cell(robot: RobotView) -> str:
    if not robot.health:
        return "-"
    worst = DIAGNOSTIC_LEVELS.get(robot.health["worst"], "?")
    bad = [shown(name.rsplit("/", 1)[-1], 40) for name, node in robot.health["nodes"].items() if node["level"] > 0]
    return worst + (f" ({', '.join(bad[:3])})" if bad else "")


def _queue_cell(robot: RobotView) -> str:
    link = robot.status.get("link") or {}
    dropped = sum(v for v in (link.get("dropped") or {}).values() if v is not None)
    depth = f"{link['queue_depth']:.0f}" if link.get("queue_depth") is not None else "?"
    return f"{depth} queued, {dropped:.0f} dropped"


def _telemetry_cell(robot: RobotView) -> str:
    received = sum(len(t.received) for t in robot.streams.values())
    missing = sum(t.missing_count() for t in robot.streams.values())
    refused = f", {robot.refused} refused" if robot.refused else ""
    return f"{received} msgs" + (f", {missing} missing" if missing else "") + refused


def render_missions(robot: str, missions: list[dict[str, Any]]):
    from rich.table import Table

    table = Table(title=f"missions on {shown(robot)}")
    for column in ("mission", "name", "state", "tasks", "message"):
        table.add_column(column)
    for mission in missions:
        table.add_row(shown(mission["mission_id"], 64), shown(mission["name"], 60),
                      mission_state_name(mission["state"]), f"{mission['tasks_succeeded']}/{mission['tasks_total']}",
                      shown(mission["message"], 80))
    return table


# -- Entry point -----------------------------------------------------------------------------------

def _robot_name(value: str) -> str:
    try:
        return check_name(value, "robot")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="qai-hub", description="The hub side of the qai_edge hub link: sign "
                                     "and send commands to robots over MQTT, and watch the fleet.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=env("QAI_HUB_HOST", "127.0.0.1"), help="broker host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(env("QAI_HUB_PORT", "18830")), help="broker port (18830)")
    parser.add_argument("--fleet", default=env("QAI_HUB_FLEET", "fleet"), help="fleet name (default: fleet)")
    parser.add_argument("--username", default=env("QAI_HUB_USERNAME", ""), help="MQTT username")
    parser.add_argument("--password-file", default=env("QAI_HUB_PASSWORD_FILE", ""), help="file with the password")
    parser.add_argument("--tls-ca", default=env("QAI_HUB_TLS_CA", ""), help="CA certificate: connect with TLS")
    parser.add_argument("--tls-cert", default=env("QAI_HUB_TLS_CERT", ""), help="client certificate (PEM)")
    parser.add_argument("--tls-key", default=env("QAI_HUB_TLS_KEY", ""), help="client certificate's key (PEM)")
    parser.add_argument("--robots", default=env("QAI_HUB_ROBOTS", DEFAULT_REGISTRY),
                        help=f"the enrolled robots' public keys, one directory per robot (default {DEFAULT_REGISTRY}); "
                        "nothing from a robot not enrolled there is believed")
    commands = parser.add_subparsers(dest="command",
                                     metavar="{keygen,enroll,send-mission,cancel,deploy-model,rollback-model,"
                                     "status,watch,serve}")

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text)

    def signing_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--key", default=env("QAI_HUB_KEY", f"{DEFAULT_KEY_DIR}/hub.mldsa65.key"),
                         help="ML-DSA-65 private key (default ~/.config/qai-hub/hub.mldsa65.key)")
        sub.add_argument("--ed25519-key", default=env("QAI_HUB_ED25519_KEY", ""),
                         help="Ed25519 private key: sign hybrid (robots with require_hybrid need it)")

    keygen = add("keygen", "Create the hub's signing keys: an ML-DSA-65 key pair (and, with --ed25519, an "
                 "Ed25519 pair for hybrid signatures). The private key file gets mode 0600.")
    keygen.add_argument("--dir", default=DEFAULT_KEY_DIR, help="directory (default ~/.config/qai-hub)")
    keygen.add_argument("--name", default="hub", help="file name stem (default hub: hub.mldsa65.key/.pub)")
    keygen.add_argument("--ed25519", action="store_true", help="also create an Ed25519 pair")
    keygen.add_argument("--force", action="store_true", help="replace existing key files")

    enroll = add("enroll", "Enroll a robot's public key (qai-edge keygen makes the pair on the robot), so what it "
                 "signs is believed; --remove takes a key (or every key of the robot) out. Without a robot: list the "
                 "enrolled robots.")
    enroll.add_argument("robot", nargs="?", help="the robot's name (its robot_id)")
    enroll.add_argument("public_key", nargs="?", help="its public key file (robot.mldsa65.pub)")
    enroll.add_argument("--remove", action="store_true", help="remove the robot's key --key-id, or all its keys")
    enroll.add_argument("--key-id", default="", help="with --remove: only this key")

    send = add("send-mission", "Sign a mission file and send it to a robot (or --all); print its acceptance, "
               "progress and result. Exit 0 when it succeeded, 1 failed or canceled, 3 refused, 4 no answer.")
    send.add_argument("file", help="mission YAML (the format of config/missions/*.yaml)")
    target = send.add_mutually_exclusive_group(required=True)
    target.add_argument("--robot", type=_robot_name, help="robot name (its robot_id)")
    target.add_argument("--all", action="store_true", help="every robot of the fleet")
    send.add_argument("--timeout", type=float, default=600.0, help="s to wait for the result (default 600)")
    send.add_argument("--no-wait", action="store_true", help="return once the robot accepted the mission")
    signing_options(send)

    cancel = add("cancel", "Cancel a mission (or one task of it) on a robot; signed.")
    cancel.add_argument("mission_id")
    cancel.add_argument("--robot", type=_robot_name, required=True)
    cancel.add_argument("--task", default="", help="cancel only this task")
    cancel.add_argument("--reason", default="", help="why, for the mission's record")
    cancel.add_argument("--timeout", type=float, default=15.0, help="s to wait for the answer (default 15)")
    signing_options(cancel)

    def model_target(sub: argparse.ArgumentParser, timeout: float) -> None:
        target = sub.add_mutually_exclusive_group(required=True)
        target.add_argument("--robot", type=_robot_name, help="robot name (its robot_id)")
        target.add_argument("--all", action="store_true", help="every online robot of the fleet")
        sub.add_argument("--timeout", type=float, default=timeout,
                         help=f"s to wait for the answers (default {timeout:g})")
        signing_options(sub)

    deploy = add("deploy-model", "Sign a model checkpoint (model.pt, meta.json, as qai-train writes them) with the "
                 "hub's key and send it to a robot (or --all). Each robot checks the signature, runs its promotion "
                 "gate and activates the model only when it does better; it answers with the gate's figures. Exit 0 "
                 "when every robot activated it, 1 when a gate kept the active model, 3 refused, 4 no answer.")
    deploy.add_argument("checkpoint", help="checkpoint directory")
    deploy.add_argument("--model", choices=model_signing.TASKS, help="the task it must be for (default: meta.json's)")
    deploy.add_argument("--note", default="", help="a note signed with it (default: the directory's name)")
    model_target(deploy, 600.0)
    rollback = add("rollback-model", "Return a robot's model (or every robot's, --all) to the version active before; "
                   "signed.")
    rollback.add_argument("task", choices=model_signing.TASKS)
    model_target(rollback, 60.0)

    status = add("status", "Print the fleet once, from the robots' retained status and telemetry heard within "
                 "--timeout; with --robot also that robot's missions (a signed get_state).")
    status.add_argument("--robot", type=_robot_name, help="only this robot, with its missions")
    status.add_argument("--timeout", type=float, default=2.0, help="s to listen (default 2)")
    signing_options(status)

    watch = add("watch", "Show the fleet live, updated in place: each robot's link, mission and task progress, "
                "position, battery, health, queue depth and telemetry counts. Ctrl-C ends it. Piped, it prints "
                "a snapshot every --interval.")
    watch.add_argument("--interval", type=float, default=1.0, help="s between updates (default 1)")
    watch.add_argument("--duration", type=float, default=0.0, help="stop after this many s (default: run on)")

    serve = add("serve", "Serve the fleet's dashboard to browsers: a map, each robot's mission graph, plots and an "
                "event log, live over a WebSocket; missions and cancels from the page are checked and signed here. "
                "Log in with the password in --login-file. Loopback only by default: put it behind a TLS reverse "
                "proxy to reach it from elsewhere (docs/dashboard.md).")
    serve.add_argument("--port", dest="http_port", type=int, default=int(env("QAI_HUB_DASHBOARD_PORT", "8080")),
                       help="HTTP port (default 8080)")
    serve.add_argument("--bind", default=env("QAI_HUB_DASHBOARD_BIND", "127.0.0.1"),
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--login-file", default=env("QAI_HUB_DASHBOARD_LOGIN_FILE", "~/.config/qai-hub/dashboard."
                                                   "password"),
                       help="file holding the operator's password (default ~/.config/qai-hub/dashboard.password, "
                       "created with a random one when missing)")
    serve.add_argument("--cookie-secure", action="store_true",
                       help="send the session cookie over HTTPS only (behind a TLS proxy)")
    serve.add_argument("--origin", action="append", default=[], metavar="URL",
                       help="another origin allowed to post commands and open the WebSocket, e.g. the proxy's "
                       "https://hub.example.org (repeatable); its host is also a name the dashboard answers to")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="another host name the dashboard answers to (the Host header; repeatable). It answers to "
                       "localhost, 127.0.0.1, [::1], the --bind address and the --origin hosts; any other name gets "
                       "421, so a page whose own name resolves to this machine (DNS rebinding) reaches nothing")
    serve.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                       help="a reverse proxy (an address or a network, e.g. 127.0.0.1 or 10.0.0.0/8; repeatable) "
                       "whose X-Forwarded-For header names the client, for the login throttle")
    serve.add_argument("--max-robots", type=int, default=1000, help="robots shown at most (default 1000)")
    signing_options(serve)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        check_name(args.fleet, "--fleet")
    except ValueError as error:
        print(f"qai-hub: {error}", file=sys.stderr)
        return EXIT_USAGE
    handlers = {"keygen": cmd_keygen, "enroll": cmd_enroll, "send-mission": cmd_send_mission, "cancel": cmd_cancel,
                "deploy-model": cmd_deploy_model, "rollback-model": cmd_rollback_model, "status": cmd_status,
                "watch": cmd_watch, "serve": cmd_serve}
    try:
        return handlers[args.command](args)
    except HubError as error:
        print(f"qai-hub: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
