"""`qai-edge demo`: bring the profile up, run a mission with live progress, stop everything.

A subcommand of qai-edge that belongs here (qai_edge names no engine): registered through the
`qai_edge.commands` entry point.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from qai_edge.cli import RunningProfile, load_or_exit, say, stop_on_signals
from qai_edge.paths import share_file


class DemoCommand:
    help = "bring the profile up, run the demo mission with live progress, stop"

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("--mission", help="mission file (default: the installed config/missions/demo.yaml)")
        parser.add_argument("--timeout", type=float, default=120.0,
                            help="seconds to wait for the nodes, and then for the mission (default 120)")

    @staticmethod
    def run(args) -> int:
        from qai_mission.cli import print_update
        from qai_mission.client import MissionClient, MissionClientError, MissionOutcome
        from qai_mission.codec import MissionFormatError, load_mission_file

        profile = load_or_exit(args)
        mission_path = Path(args.mission) if args.mission else share_file("config", "missions", "demo.yaml")
        try:
            mission = load_mission_file(mission_path)
        except MissionFormatError as error:
            print(f"qai-edge: {error}", file=sys.stderr)
            return 2
        kinds = {task.kind for task in mission.tasks}
        stop_requested = stop_on_signals()
        with RunningProfile(profile) as running:
            def wait_until(condition, what: str) -> bool:
                deadline = time.monotonic() + args.timeout
                while not condition():
                    if stop_requested or time.monotonic() > deadline:
                        say(f"gave up waiting for {what} after {args.timeout:g} s")
                        return False
                    running.step()
                return True

            def routed() -> set[str]:
                return set(running.values_of("mission_engine").get("kinds_routed", "").split(","))

            if not wait_until(lambda: running.all_ok, "every node to report OK"):
                return 1
            if not wait_until(lambda: kinds <= routed(), f"the mission engine to route {', '.join(sorted(kinds))}"):
                return 1
            say(f"running {mission_path} ({len(mission.tasks)} tasks)")
            started = time.monotonic()
            with MissionClient(namespace=profile.namespace, node_name="qai_edge_demo") as client:
                try:
                    mission_id = client.submit(mission, on_update=print_update(started))
                    while not client.is_complete(mission_id) and not stop_requested:
                        running.step(0.05)
                    if stop_requested:
                        client.cancel(mission_id, reason="demo interrupted")
                        return 130
                    result = client.wait(mission_id, timeout=args.timeout)
                except MissionClientError as error:
                    say(f"mission failed to run: {error}")
                    return 1
            say(f"mission {mission_id} {result.outcome.value} after {time.monotonic() - started:.1f} s"
                f"{': ' + result.message if result.message else ''}")
            for task in result.tasks:
                say(f"  {task.id:<16} {task.state.name:<10} {task.result if task.result else task.message}")
        return 0 if result.outcome is MissionOutcome.SUCCEEDED else 1


COMMAND = DemoCommand()
