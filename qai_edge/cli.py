"""qai-edge: run a qai_edge profile without ROS 2 launch (pip installs), and check its health."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import yaml

from qai_edge.health import HealthBoard, Level, format_table
from qai_edge.nodes import NODE_TYPES
from qai_edge.paths import RUN_VARIABLE, installed_executable
from qai_edge.profile import Profile, ProfileError, load_profile
from qai_edge.supervisor import ProcessSpec, Supervisor

DESCRIPTION = """\
Run the engine nodes of a qai_edge profile, each as its own process.

A profile (default: config/edge.yaml of the installed package) says which nodes run, under which
namespace, with which parameters. On ROS 2 installs `ros2 launch qai_edge edge.launch.py` reads the
same file.
"""

EPILOG = """\
commands:
  up        start every node of the profile, restart one that dies (backoff, then a limit), print
            their health from /diagnostics as it changes, and stop them all on Ctrl-C or SIGTERM
            (SIGINT, then SIGTERM, then SIGKILL, as ros2 launch does).
            --check: stop once every node reports OK (exit 0) or --timeout passes (exit 1).
  demo      bring the profile up, wait until every node is healthy and the mission engine routes the
            demo mission's kinds, run the mission (config/missions/demo.yaml, or --mission FILE) with live
            progress, then stop everything; exit 0 when the mission succeeded (from qai_mission).
  status    listen to /diagnostics for the profile's nodes (started elsewhere) and print their health;
            exit 0 when all are OK.
  profile   check the profile and print what would run.

examples:
  qai-edge up
  qai-edge up --profile my_robot.yaml --namespace drone2
  qai-edge status --timeout 5

environment: ROS_DOMAIN_ID is passed on to the nodes. DDS discovery stays on this machine
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) unless the profile's `dds` section says otherwise.
"""


def say(text: str) -> None:
    print(f"[qai-edge] {text}", flush=True)


def executable_command(executable: str) -> list[str]:
    """How to start a node executable: the installed program, or its module run by this interpreter."""
    found = installed_executable(executable)
    if found is not None:
        return [str(found)]
    module = NODE_TYPES[executable].entry_point.split(":")[0]
    return [sys.executable, "-m", module]


def load_or_exit(args) -> Profile:
    try:
        return load_profile(args.profile, args.namespace)
    except ProfileError as error:
        print(f"qai-edge: bad profile: {error}", file=sys.stderr)
        raise SystemExit(2) from None


class _HealthWatch:
    """A small ROS node that listens to /diagnostics for the profile's nodes."""

    def __init__(self, profile: Profile, install_signal_handlers: bool):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from qai_edge.diagnostics_listener import DiagnosticsListener

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=(
            SignalHandlerOptions.ALL if install_signal_handlers else SignalHandlerOptions.NO))
        self.node = rclpy.create_node("qai_edge_health", namespace=profile.namespace, context=self.context,
                                      start_parameter_services=False)
        self.board = HealthBoard({spec.fully_qualified_name: spec.heartbeat_period for spec in profile.nodes})
        # Heartbeats read at each spin (the supervisor spins every 0.1 s), not one wake-up per message.
        self._listener = DiagnosticsListener(self.node, self.board, polled=True)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_once(self, timeout: float) -> None:
        self.executor.spin_once(timeout_sec=timeout)
        self._listener.drain()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def parameter_reference() -> str:
    """Return every node's parameters as a markdown reference: name, default, range or choices, meaning."""
    lines = ["# Configuration reference", "",
             "Every parameter of every node, from the specs the nodes declare (`qai-edge profile --reference`",
             "writes this file; a test keeps it current). `config/edge.yaml` sets them per node; read-only ones",
             "are read once at start, the others apply when set at run time (`ros2 param set`).", ""]
    for executable, node_type in NODE_TYPES.items():
        lines += [f"## {executable}", "", node_type.summary, "",
                  "| parameter | default | allowed | read-only | meaning |", "|---|---|---|---|---|"]
        for spec in node_type.parameter_specs().values():
            allowed = (", ".join(map(str, spec.choices)) if spec.choices else
                       f"{spec.min if spec.min is not None else ''} .. {spec.max if spec.max is not None else ''}"
                       if spec.min is not None or spec.max is not None else "")
            meaning = spec.description.replace("|", "/")
            lines.append(f"| `{spec.name}` | `{spec.default!r}` | {allowed} | {'yes' if spec.read_only else ''} | "
                         f"{meaning} |")
        lines.append("")
    return "\n".join(lines)


def cmd_profile(args) -> int:
    if args.reference:
        print(parameter_reference(), end="")
        return 0
    profile = load_or_exit(args)
    print(f"profile: {profile.source}")
    print(f"namespace: {profile.namespace}  robot_id: {profile.robot_id}")
    print(profile.dds.describe())
    if profile.broker is not None and profile.broker.start:
        print(f"broker: mosquitto on 127.0.0.1:{profile.broker.port} ({profile.broker.config_path()})")
    for spec in profile.nodes:
        print(f"\n{spec.fully_qualified_name}  ({spec.executable}: {NODE_TYPES[spec.executable].summary})")
        print(f"  command: {' '.join(executable_command(spec.executable))} "
              f"{' '.join(spec.ros_arguments('<params-file>'))}")
        for key, value in spec.parameters.items():
            print(f"  {key}: {value!r}")
    return 0


def cmd_keygen(args) -> int:
    """Make the robot's key pair for the profile's hub_link (its robot_key, or the default path), if it has none."""
    from qai_hub.protocol import KeyFileError, generate_key_pair, key_id, load_public_key

    from qai_edge.paths import robot_key_path

    profile = load_or_exit(args)
    link = next((spec for spec in profile.nodes if spec.executable == "hub_link"), None)
    if link is None:
        print("qai-edge: the profile runs no hub_link: this robot signs nothing for a hub", file=sys.stderr)
        return 2
    path = Path(link.parameters.get("robot_key") or robot_key_path(link.parameters["data_dir"], profile.robot_id))
    path = path.expanduser()
    public = path.with_suffix(".pub")
    try:
        if path.exists():
            kid = key_id(load_public_key(public))
            print(f"robot {profile.robot_id} has a key: {kid}, private {path}, public {public}")
        else:
            kid = generate_key_pair(path, public)
            print(f"made robot {profile.robot_id}'s key {kid}: private {path} (mode 0600, stays on the robot), "
                  f"public {public}")
    except (KeyFileError, OSError) as error:
        print(f"qai-edge: {error}", file=sys.stderr)
        return 2
    print(f"on the hub: qai-hub enroll {profile.robot_id} {public}")
    return 0


def cmd_status(args) -> int:
    profile = load_or_exit(args)
    profile.dds.apply(os.environ)  # look where the profile's nodes are
    watch = _HealthWatch(profile, install_signal_handlers=True)
    try:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and not watch.board.all_ok():
            watch.spin_once(0.1)
        print(format_table(watch.board.snapshot()))
        return 0 if watch.board.all_ok() else 1
    except KeyboardInterrupt:
        return 130
    finally:
        watch.close()


class RunningProfile:
    """The profile's nodes, each its own process under the supervisor, and their health from /diagnostics.

    Stops them all (SIGINT, SIGTERM, SIGKILL) when the `with` block ends.
    """

    def __init__(self, profile: Profile):
        self.profile = profile
        self._params_dir = tempfile.TemporaryDirectory(prefix="qai-edge-")
        self.broker = None
        self._broker_restarts: list[float] = []
        self._broker_next_start: float | None = None
        specs = []
        for spec in profile.nodes:
            params_file = Path(self._params_dir.name) / f"{spec.name}.yaml"
            content = spec.params_file_content()
            _use_local_broker_account(profile, spec, content)
            params_file.write_text(yaml.safe_dump(content))
            argv = executable_command(spec.executable) + spec.ros_arguments(params_file)
            specs.append(ProcessSpec(spec.name, argv, spec.restart))
        profile.dds.apply(os.environ)  # before rclpy starts here; the nodes inherit it
        # One id for this run, inherited by every node (and each restart of one): what is kept across a restart
        # within the run (the I/O engine's home) is told apart from an earlier run's.
        os.environ[RUN_VARIABLE] = f"{os.getpid()}-{time.time_ns()}"
        self.watch = _HealthWatch(profile, install_signal_handlers=False)
        self.supervisor = Supervisor(specs, profile.stop, on_event=self._on_event)
        self._levels: dict[str, Level] = {}
        self._all_ok_reported = False

    def __enter__(self) -> "RunningProfile":
        say(f"profile {self.profile.source}: {len(self.profile.nodes)} nodes under {self.profile.namespace}, "
            f"{self.profile.dds.describe()}")
        self.broker = _start_broker(self.profile)
        try:
            self.supervisor.start_all()
        except BaseException:
            if self.broker is not None:
                self.broker.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        say("stopping")
        self.supervisor.stop_all()
        if self.broker is not None:
            self.broker.stop()
            say("MQTT broker stopped")
        self.watch.close()
        self._params_dir.cleanup()
        if self.supervisor.failed():
            say(f"gave up on: {', '.join(p.spec.name for p in self.supervisor.failed())}")
        say("all nodes stopped")

    @staticmethod
    def _on_event(event) -> None:
        pid = f" (pid {event.pid})" if event.pid else ""
        detail = f": {event.detail}" if event.detail else ""
        say(f"{event.name} {event.kind}{pid}{detail}")

    def step(self, seconds: float = 0.1) -> None:
        """Spin, restart what died (the broker it started too), and say when a node's health changes."""
        self.watch.spin_once(seconds)
        self.supervisor.poll()
        self._keep_broker()
        for node in self.watch.board.snapshot():
            if node.received_at is not None and self._levels.get(node.name) != node.level:
                self._levels[node.name] = node.level
                say(f"{node.name} {node.level.name}: {node.message}")
        all_ok = self.watch.board.all_ok()
        if all_ok and not self._all_ok_reported:
            say(f"all {len(self.profile.nodes)} nodes healthy\n{format_table(self.watch.board.snapshot())}")
        self._all_ok_reported = all_ok

    def _keep_broker(self) -> None:
        """Start the broker again when it died, with the nodes' backoff and restart limit."""
        broker, policy = self.broker, self.profile.broker_restart
        if broker is None or broker.running():
            return
        now = time.monotonic()
        if self._broker_next_start is None:
            code = broker.process.returncode if broker.process is not None else None
            self._broker_restarts = [t for t in self._broker_restarts if now - t < policy.restart_window]
            if len(self._broker_restarts) >= policy.max_restarts:
                say(f"MQTT broker exited ({code}); gave up after {len(self._broker_restarts)} restarts")
                self.broker = None
                return
            self._broker_next_start = now + policy.delay(len(self._broker_restarts))
            say(f"MQTT broker exited ({code}); starting it again in "
                f"{self._broker_next_start - now:.1f} s")
            return
        if now < self._broker_next_start:
            return
        self._broker_next_start = None
        self._broker_restarts.append(now)
        from qai_edge.broker import BrokerError

        try:
            broker.start()
            say(f"MQTT broker started again (pid {broker.pid})")
        except BrokerError as error:
            say(f"MQTT broker did not start: {error}")

    @property
    def all_ok(self) -> bool:
        return self.watch.board.all_ok()

    @property
    def lost_everything(self) -> bool:
        return bool(self.supervisor.failed()) and not self.supervisor.running()

    def values_of(self, executable: str) -> dict[str, str]:
        """Return the latest heartbeat values of the profile's node running `executable`."""
        for spec in self.profile.nodes:
            if spec.executable == executable:
                for node in self.watch.board.snapshot():
                    if node.name == spec.fully_qualified_name:
                        return node.values
        return {}


def _local_accounts(profile: Profile):
    from qai_edge.broker import BrokerAccounts

    fleet = next((spec.parameters.get("fleet", "fleet") for spec in profile.nodes if spec.executable == "hub_link"),
                 "fleet")
    return BrokerAccounts(profile.broker.accounts_dir, fleet)


def _use_local_broker_account(profile: Profile, spec, content: dict) -> None:
    """Give hub_link the robot's account on the local broker `qai-edge up` starts, unless it names its own."""
    broker = profile.broker
    if broker is None or not broker.start or spec.executable != "hub_link":
        return
    parameters = content[spec.fully_qualified_name]["ros__parameters"]
    if parameters.get("username") or parameters.get("broker_host", "127.0.0.1") not in ("127.0.0.1", "localhost"):
        return
    parameters["username"] = profile.robot_id
    parameters["password_file"] = str(_local_accounts(profile).password_file(profile.robot_id))


def _start_broker(profile: Profile):
    """Start the local MQTT broker the profile asks for (its `broker` section), locked; return it, or None.

    The robot gets an account (its robot id), the hub's tools another ("hub", on broker.hub_port). A broker
    that cannot start is reported, not fatal: the robot runs without its hub link, which retries.
    """
    from qai_edge.broker import HUB_USER, BrokerError, LocalBroker

    spec = profile.broker
    if spec is None or not spec.start:
        return None
    accounts = _local_accounts(profile)
    try:
        accounts.ensure([profile.robot_id])
        broker = LocalBroker(spec.port, spec.data_dir, spec.config_path(), accounts=accounts, hub_port=spec.hub_port)
        broker.start()
    except BrokerError as error:
        say(f"MQTT broker not started: {error}")
        return None
    say(f"MQTT broker started (pid {broker.pid}, log {broker.log_path}), locked: robots on 127.0.0.1:{spec.port}, "
        f"the hub on 127.0.0.1:{spec.hub_port} as user {HUB_USER} with password file "
        f"{accounts.password_file(HUB_USER)}")
    return broker


def stop_on_signals() -> list:
    requested: list = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: requested.append(signum))
    return requested


def cmd_up(args) -> int:
    profile = load_or_exit(args)
    stop_requested = stop_on_signals()
    deadline = time.monotonic() + args.timeout if args.check else None
    exit_code = 0
    with RunningProfile(profile) as running:
        while not stop_requested:
            running.step()
            if args.check and running.all_ok:
                break
            if deadline is not None and time.monotonic() > deadline:
                say(f"not every node healthy after {args.timeout:g} s\n{format_table(running.watch.board.snapshot())}")
                exit_code = 1
                break
            if running.lost_everything:
                say("every node has stopped for good")
                exit_code = 1
                break
    return 1 if running.supervisor.failed() else exit_code


def plugin_commands() -> dict:
    """Return the subcommands other packages add (the `qai_edge.commands` entry points).

    A dict of name -> command object with `help`, `add_arguments(parser)` and `run(args) -> int`.
    """
    return {entry.name: entry.load() for entry in metadata.entry_points(group="qai_edge.commands")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="qai-edge", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    plugins = plugin_commands()
    names = ["up", *plugins, "status", "profile", "keygen"]
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(names) + "}")

    def add(name: str, help_text: str):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--profile", help="profile YAML (default: the installed config/edge.yaml)")
        sub.add_argument("--namespace", help="run under this namespace instead of the profile's")
        return sub

    up = add("up", "start the profile's nodes and keep them running")
    up.add_argument("--check", action="store_true",
                    help="stop once every node reports OK on /diagnostics (exit 0), or after --timeout (exit 1)")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds --check waits (default 30)")
    status = add("status", "print the health of the profile's nodes from /diagnostics")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to listen (default 5)")
    add("profile", "check the profile and print what would run").add_argument(
        "--reference", action="store_true", help="print every node's parameters as markdown (docs/configuration.md)")
    add("keygen", "make the robot's ML-DSA-65 key pair (what it signs for the hub with), if it has none, and say "
        "how to enroll it on the hub")
    handlers = {"up": cmd_up, "status": cmd_status, "profile": cmd_profile, "keygen": cmd_keygen}
    for name, command in plugins.items():
        command.add_arguments(add(name, command.help))
        handlers[name] = command.run

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
