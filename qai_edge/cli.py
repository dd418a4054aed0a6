"""qai-edge: run a qai_edge profile without ROS 2 launch (pip installs), and check its health."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

from qai_edge.health import HealthBoard, Level, format_table
from qai_edge.nodes import NODE_TYPES
from qai_edge.paths import installed_executable
from qai_edge.profile import Profile, ProfileError, load_profile

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
  status    listen to /diagnostics for the profile's nodes (started elsewhere) and print their health;
            exit 0 when all are OK.
  profile   check the profile and print what would run.

examples:
  qai-edge up
  qai-edge up --profile my_robot.yaml --namespace drone2
  qai-edge status --timeout 5

environment: ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE (use LOCALHOST off a real network) are
passed on to the nodes.
"""


def _say(text: str) -> None:
    print(f"[qai-edge] {text}", flush=True)


def executable_command(executable: str) -> list[str]:
    """How to start a node executable: the installed program, or its module run by this interpreter."""
    found = installed_executable(executable)
    if found is not None:
        return [str(found)]
    module = NODE_TYPES[executable].entry_point.split(":")[0]
    return [sys.executable, "-m", module]


def _load(args) -> Profile:
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
        self._listener = DiagnosticsListener(self.node, self.board)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_once(self, timeout: float) -> None:
        self.executor.spin_once(timeout_sec=timeout)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def cmd_profile(args) -> int:
    profile = _load(args)
    print(f"profile: {profile.source}")
    print(f"namespace: {profile.namespace}  robot_id: {profile.robot_id}")
    for spec in profile.nodes:
        print(f"\n{spec.fully_qualified_name}  ({spec.executable}: {NODE_TYPES[spec.executable].summary})")
        print(f"  command: {' '.join(executable_command(spec.executable))} "
              f"{' '.join(spec.ros_arguments('<params-file>'))}")
        for key, value in spec.parameters.items():
            print(f"  {key}: {value!r}")
    return 0


def cmd_status(args) -> int:
    profile = _load(args)
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


def cmd_up(args) -> int:
    from qai_edge.supervisor import ProcessSpec, Supervisor

    profile = _load(args)
    stop_requested = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop_requested.append(signum))

    with tempfile.TemporaryDirectory(prefix="qai-edge-") as params_dir:
        specs = []
        for spec in profile.nodes:
            params_file = Path(params_dir) / f"{spec.name}.yaml"
            params_file.write_text(yaml.safe_dump(spec.params_file_content()))
            argv = executable_command(spec.executable) + spec.ros_arguments(params_file)
            specs.append(ProcessSpec(spec.name, argv, spec.restart))

        def on_event(event) -> None:
            pid = f" (pid {event.pid})" if event.pid else ""
            detail = f": {event.detail}" if event.detail else ""
            _say(f"{event.name} {event.kind}{pid}{detail}")

        watch = _HealthWatch(profile, install_signal_handlers=False)
        supervisor = Supervisor(specs, profile.stop, on_event=on_event)
        _say(f"profile {profile.source}: {len(specs)} nodes under {profile.namespace}")
        supervisor.start_all()
        deadline = time.monotonic() + args.timeout if args.check else None
        levels: dict[str, Level] = {}
        all_ok_reported = False
        exit_code = 0
        try:
            while not stop_requested:
                watch.spin_once(0.1)
                supervisor.poll()
                for node in watch.board.snapshot():
                    if node.received_at is not None and levels.get(node.name) != node.level:
                        levels[node.name] = node.level
                        _say(f"{node.name} {node.level.name}: {node.message}")
                all_ok = watch.board.all_ok()
                if all_ok and not all_ok_reported:
                    _say(f"all {len(specs)} nodes healthy\n{format_table(watch.board.snapshot())}")
                all_ok_reported = all_ok
                if args.check and all_ok:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    _say(f"not every node healthy after {args.timeout:g} s\n"
                         f"{format_table(watch.board.snapshot())}")
                    exit_code = 1
                    break
                if supervisor.failed() and not supervisor.running():
                    _say("every node has stopped for good")
                    exit_code = 1
                    break
        finally:
            _say("stopping")
            supervisor.stop_all()
            watch.close()
        if supervisor.failed():
            _say(f"gave up on: {', '.join(p.spec.name for p in supervisor.failed())}")
            exit_code = 1
        _say("all nodes stopped")
        return exit_code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="qai-edge", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="{up,status,profile}")

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
    add("profile", "check the profile and print what would run")

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return {"up": cmd_up, "status": cmd_status, "profile": cmd_profile}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
