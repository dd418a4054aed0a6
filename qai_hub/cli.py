"""qai-hub: the hub operator's side of the hub link, plain Python with paho-mqtt (no ROS on the hub machine).

    qai-hub keygen                                   ML-DSA-65 key pair (and --ed25519) for signing commands
    qai-hub send-mission MISSION.yaml --robot R      signed; prints acceptance and progress; exit code = outcome
    qai-hub cancel MISSION_ID --robot R [--task T]
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
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import orjson

from qai_hub.client import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_ANSWER, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, HubClient,
                            HubError)
from qai_hub.fleet import Fleet, RobotView
from qai_hub.protocol import (ALL_ROBOTS, DIAGNOSTIC_LEVELS, ED25519, ML_DSA_65, ROOT, TERMINAL, KeyFileError, Signer,
                              check_name, command_topic, generate_key_pair, make_command, mission_state_name,
                              task_state_name)

DEFAULT_KEY_DIR = "~/.config/qai-hub"
MAX_MISSION_FILE_BYTES = 1 << 20

EPILOG = """\
The broker and fleet come from the options or the environment: QAI_HUB_HOST, QAI_HUB_PORT,
QAI_HUB_FLEET, QAI_HUB_KEY (ML-DSA-65 private key), QAI_HUB_ED25519_KEY, QAI_HUB_USERNAME,
QAI_HUB_PASSWORD_FILE, QAI_HUB_TLS_CA, QAI_HUB_TLS_CERT, QAI_HUB_TLS_KEY.

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


class _Replies:
    """Replies to one request id, from any robot, in arrival order."""

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.items: list[dict[str, Any]] = []
        self._event = threading.Condition()

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            reply = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(reply, dict) and reply.get("id") == self.request_id:
            with self._event:
                self.items.append(reply)
                self._event.notify_all()

    def next(self, index: int, deadline: float) -> dict[str, Any] | None:
        with self._event:
            while len(self.items) <= index:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._event.wait(min(left, 0.2))
            return self.items[index]


def _send(args, verb: str, body: dict[str, Any], robot: str,
          on_other: Callable[[str, bytes], None] | None = None,
          also: tuple[str, ...] = (), settle: float = 0.0) -> tuple[HubClient, _Replies, str]:
    """Sign and publish a command, subscribed first to its replies (and to `also`, fed to `on_other`)."""
    signer = _signer(args)
    topic = command_topic(args.fleet, robot, verb)
    replies = _Replies(uuid.uuid4().hex)

    def on_message(message_topic: str, payload: bytes) -> None:
        if message_topic.endswith("/reply"):
            replies.on_message(message_topic, payload)
        elif on_other is not None:
            on_other(message_topic, payload)

    client = HubClient(args, on_message).connect()
    client.subscribe(f"{ROOT}/{args.fleet}/{'+' if robot == ALL_ROBOTS else robot}/cmd/{verb}/reply", *also)
    time.sleep(settle)  # e.g. for the retained statuses to arrive
    command = make_command(signer, fleet=args.fleet, robot=robot, verb=verb, body=body, topic=topic,
                           request_id=replies.request_id)
    client.publish(topic, orjson.dumps(command))
    return client, replies, command["id"]


FINAL = ("succeeded", "failed", "canceled", "rejected", "error")


def cmd_send_mission(args) -> int:
    document = _load_mission(args.file)
    robot = ALL_ROBOTS if args.all else args.robot
    fleet = Fleet(args.fleet)
    lock = threading.Lock()

    def on_other(topic: str, payload: bytes) -> None:
        with lock:
            fleet.on_message(topic, payload)

    base = f"{ROOT}/{args.fleet}/{'+' if args.all else args.robot}"
    client, replies, request_id = _send(args, "submit_mission", {"mission": document}, robot, on_other,
                                        (f"{base}/status", f"{base}/telemetry/mission_states"),
                                        settle=1.0 if args.all else 0.0)
    started = time.monotonic()
    with lock:
        targets = {name for name, view in fleet.robots.items() if view.online} if args.all else {args.robot}
    if not targets:
        client.close()
        print(f"no robot of fleet {args.fleet} is online", file=sys.stderr)
        return EXIT_NO_ANSWER
    print(f"sent {args.file} to {', '.join(sorted(targets))} (request {request_id})", flush=True)
    deadline = time.monotonic() + args.timeout
    outcomes: dict[str, str] = {}
    missions: dict[str, tuple[str, float]] = {}  # robot -> (mission id, when its state was last checked)
    try:
        index = 0
        while set(outcomes) < targets:
            reply = replies.next(index, min(deadline, time.monotonic() + 1.0))
            if reply is None:
                if time.monotonic() > deadline:
                    missing = ", ".join(sorted(targets - set(outcomes)))
                    print(f"no final answer within {args.timeout:g} s from {missing}", file=sys.stderr)
                    return EXIT_NO_ANSWER
                with lock:
                    _finish_from_telemetry(fleet, missions, outcomes, started)
                continue
            index += 1
            print(f"[{time.monotonic() - started:6.1f} s] {_reply_text(reply)}", flush=True)
            status, sender = reply.get("status"), reply.get("robot", "?")
            if status == "accepted" and reply.get("mission_id"):
                missions[sender] = (reply["mission_id"], time.monotonic())
                if args.no_wait:
                    outcomes[sender] = "succeeded"
            if status in FINAL:
                outcomes[sender] = status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        client.close()
    codes = [{"succeeded": EXIT_OK, "rejected": EXIT_REFUSED, "error": EXIT_REFUSED}.get(o, EXIT_FAILED)
             for o in outcomes.values()]
    return max(codes) if codes else EXIT_NO_ANSWER


def _finish_from_telemetry(fleet: Fleet, missions: dict, outcomes: dict, started: float) -> None:
    """End a mission whose result reply never comes (hub_link restarted while it ran) by its telemetry."""
    for robot, (mission_id, since) in missions.items():
        state = fleet.robots.get(robot) and fleet.robots[robot].missions.get(mission_id)
        if robot in outcomes or not state or state.get("state", 0) < TERMINAL or time.monotonic() - since < 5.0:
            continue
        outcome = mission_state_name(state["state"]).lower()
        outcomes[robot] = outcome if outcome in FINAL else "failed"
        print(f"[{time.monotonic() - started:6.1f} s] {robot}: mission {mission_id} {outcome.upper()} "
              f"(from its mission_states telemetry; no reply came)", flush=True)


def _reply_text(reply: dict[str, Any]) -> str:
    status = reply.get("status", "?")
    robot = reply.get("robot", "?")
    mission = reply.get("mission_id", "")
    if status == "rejected":
        return f"{robot}: REJECTED ({reply.get('reason')}): {reply.get('message', '')}"
    if status == "progress":
        feedback = reply.get("feedback", {})
        tasks = ", ".join(f"{t.get('task_id')} {task_state_name(t.get('state'))}"
                          f"{_percent(t.get('progress'))}{(': ' + t['message'][:60]) if t.get('message') else ''}"
                          for t in feedback.get("updated_tasks", []))
        return (f"{robot}: {mission} {reply.get('state')} {feedback.get('tasks_succeeded', 0)}/"
                f"{feedback.get('tasks_total', 0)} done{'; ' + tasks if tasks else ''}")
    if status in ("succeeded", "failed", "canceled"):
        tasks = reply.get("result", {}).get("tasks", [])
        message = f": {reply['message']}" if reply.get("message") else ""
        lines = [f"{robot}: mission {mission} {status.upper()}{message}"]
        lines += [f"    {t.get('task_id'):<16} {task_state_name(t.get('state')):<10} {t.get('message', '')[:80]}"
                  for t in tasks]
        return "\n".join(lines)
    if status == "done":
        return f"{robot}: done{': ' + reply['message'] if reply.get('message') else ''}"
    return f"{robot}: {status} {mission}{': ' + reply['message'] if reply.get('message') else ''}"


def _percent(progress) -> str:
    return f" {progress * 100:.0f}%" if isinstance(progress, (int, float)) else ""


def cmd_cancel(args) -> int:
    body = {"mission_id": args.mission_id, **({"task_id": args.task} if args.task else {}),
            **({"reason": args.reason} if args.reason else {})}
    client, replies, _ = _send(args, "cancel_mission", body, args.robot)
    try:
        reply = replies.next(0, time.monotonic() + args.timeout)
    finally:
        client.close()
    if reply is None:
        print(f"no answer from {args.robot} within {args.timeout:g} s", file=sys.stderr)
        return EXIT_NO_ANSWER
    print(_reply_text(reply))
    return EXIT_OK if reply.get("status") == "done" else EXIT_REFUSED


def _collect(args, seconds: float, robot: str | None = None) -> Fleet:
    fleet = Fleet(args.fleet)
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        with lock:
            fleet.on_message(topic, payload)

    client = HubClient(args, on_message).connect()
    try:
        base = f"{ROOT}/{args.fleet}/{robot or '+'}"
        client.subscribe(f"{base}/status", f"{base}/telemetry/+")
        time.sleep(seconds)
    finally:
        client.close()
    return fleet


def cmd_status(args) -> int:
    fleet = _collect(args, args.timeout, args.robot)
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    console.print(render_fleet(fleet))
    if not args.robot:
        return EXIT_OK if fleet.robots else EXIT_NO_ANSWER
    client, replies, _ = _send(args, "get_state", {"include_finished": True}, args.robot)
    try:
        reply = replies.next(0, time.monotonic() + args.timeout + 5)
    finally:
        client.close()
    if reply is None:
        print(f"no answer from {args.robot}", file=sys.stderr)
        return EXIT_NO_ANSWER
    if reply.get("status") != "done":
        print(_reply_text(reply))
        return EXIT_REFUSED
    console.print(render_missions(args.robot, reply.get("missions", [])))
    return EXIT_OK


def cmd_watch(args) -> int:
    from rich.console import Console
    from rich.live import Live

    fleet = Fleet(args.fleet)
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        with lock:
            fleet.on_message(topic, payload)

    client = HubClient(args, on_message).connect()
    client.subscribe(f"{ROOT}/{args.fleet}/+/status", f"{ROOT}/{args.fleet}/+/telemetry/+",
                     f"{ROOT}/{args.fleet}/+/cmd/+/reply")
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    end = time.monotonic() + args.duration if args.duration else None
    try:
        if console.is_terminal:
            with Live(render_fleet(fleet), console=console, refresh_per_second=4) as live:
                while end is None or time.monotonic() < end:
                    time.sleep(args.interval)
                    with lock:
                        live.update(render_fleet(fleet))
        else:  # a pipe or a file: one snapshot per interval
            while end is None or time.monotonic() < end:
                time.sleep(args.interval)
                with lock:
                    console.print(f"--- {time.strftime('%H:%M:%S')}")
                    console.print(render_fleet(fleet))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        client.close()
    return EXIT_OK


def cmd_serve(args) -> int:
    from qai_hub.dashboard import DashboardOptions, FeedLimits, serve

    if not 1 <= args.http_port <= 65535 or not 1 <= args.max_robots <= 100_000:
        raise HubError("--port must be 1-65535 and --max-robots 1-100000")
    options = DashboardOptions(
        host=args.host, port=args.port, fleet=args.fleet, username=args.username, password_file=args.password_file,
        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key, key=args.key, ed25519_key=args.ed25519_key,
        bind=args.bind, http_port=args.http_port, login_file=args.login_file, cookie_secure=args.cookie_secure,
        origins=tuple(args.origin), limits=FeedLimits(max_robots=args.max_robots))
    return serve(options)


# -- Rendering -------------------------------------------------------------------------------------

def render_fleet(fleet: Fleet):
    from rich.table import Table

    table = Table(title=f"fleet {fleet.fleet}: {len(fleet.robots)} robot(s)", expand=False)
    for column in ("robot", "link", "mission", "tasks", "position", "battery", "health", "queue", "telemetry"):
        table.add_column(column)
    now = time.time()
    for name in sorted(fleet.robots):
        robot = fleet.robots[name]
        table.add_row(name, _link_cell(robot, now), *_mission_cells(robot), _position_cell(robot),
                      _battery_cell(robot), _health_cell(robot), _queue_cell(robot), _telemetry_cell(robot))
    return table


def _link_cell(robot: RobotView, now: float) -> str:
    state = robot.status.get("state", "?")
    link = robot.status.get("link", {}) or {}
    seen = f"{now - robot.last_seen:.0f} s ago" if robot.last_seen else "never"
    color = "green" if state == "online" else "red"
    rtt = f", rtt {link['rtt_ms']:.1f} ms" if isinstance(link.get("rtt_ms"), (int, float)) else ""
    return f"[{color}]{state}[/{color}] ({seen}{rtt}, {link.get('connects', 0)} connects)"


def _mission_cells(robot: RobotView) -> tuple[str, str]:
    mission = robot.current_mission()
    if mission is None:
        summary = (robot.status.get("missions") or {}).get("active") or []
        return (f"{len(summary)} active" if summary else "-"), "-"
    state = mission_state_name(mission.get("state"))
    color = {"SUCCEEDED": "green", "FAILED": "red", "REJECTED": "red", "CANCELED": "yellow"}.get(state, "cyan")
    head = f"{mission.get('name') or mission.get('mission_id')} [{color}]{state}[/{color}]"
    tasks = mission.get("tasks", [])
    running = [t for t in tasks if t.get("state", 0) < TERMINAL and t.get("state", 0) >= 2]
    detail = "; ".join(f"{t['task_id']} {task_state_name(t['state'])}{_percent(t.get('progress'))}" for t in running)
    done = f"{mission.get('tasks_succeeded', 0)}/{mission.get('tasks_total', 0)} done"
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
    percentage, voltage = battery.get("percentage"), battery.get("voltage")
    parts = [f"{percentage * 100:.0f}%" if isinstance(percentage, (int, float)) else "?"]
    if isinstance(voltage, (int, float)):
        parts.append(f"{voltage:.1f} V")
    return " ".join(parts)


def _health_cell(robot: RobotView) -> str:
    if not robot.health:
        return "-"
    worst = DIAGNOSTIC_LEVELS.get(robot.health.get("worst"), "?")
    bad = [name.rsplit("/", 1)[-1] for name, node in (robot.health.get("nodes") or {}).items()
           if node.get("level", 0) > 0]
    return worst + (f" ({', '.join(bad[:3])})" if bad else "")


def _queue_cell(robot: RobotView) -> str:
    link = robot.status.get("link", {}) or {}
    dropped = sum((link.get("dropped") or {}).values())
    return f"{link.get('queue_depth', '?')} queued, {dropped} dropped"


def _telemetry_cell(robot: RobotView) -> str:
    received = sum(len(t.received) for t in robot.streams.values())
    missing = sum(t.missing_count() for t in robot.streams.values())
    return f"{received} msgs" + (f", {missing} missing" if missing else "")


def render_missions(robot: str, missions: list[dict[str, Any]]):
    from rich.table import Table

    table = Table(title=f"missions on {robot}")
    for column in ("mission", "name", "state", "tasks", "message"):
        table.add_column(column)
    for mission in missions:
        table.add_row(mission.get("mission_id", ""), mission.get("name", ""), mission_state_name(mission.get("state")),
                      f"{mission.get('tasks_succeeded', 0)}/{mission.get('tasks_total', 0)}",
                      (mission.get("message") or "")[:80])
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
    commands = parser.add_subparsers(dest="command", metavar="{keygen,send-mission,cancel,status,watch,serve}")

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
                       "https://hub.example.org (repeatable)")
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
    handlers = {"keygen": cmd_keygen, "send-mission": cmd_send_mission, "cancel": cmd_cancel, "status": cmd_status,
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
