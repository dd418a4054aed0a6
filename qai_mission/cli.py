"""qai-mission: submit, follow, inspect and cancel missions from the command line."""

from __future__ import annotations

import argparse
import sys
import time

DESCRIPTION = "Submit missions to a qai_edge mission engine, follow them, inspect and cancel them."
EPILOG = """\
commands:
  submit FILE.yaml   send the mission and print its progress live until it ends (--no-wait: print its id
                     and return). Exit status: 0 succeeded, 1 failed or canceled, 2 rejected (the reason
                     names the task and field), 3 no answer from the mission engine.
  status [ID]        the state of one mission with its tasks, or a line per known mission.
  cancel ID          cancel a mission, or one of its tasks with --task.
  validate FILE.yaml check a mission file offline (format only; kinds and parameters are checked by the
                     mission engine, against the engines running).

Mission files are YAML; see config/missions/ and README.md. Use the robot's namespace (--namespace drone1)
and the same ROS_DOMAIN_ID as the nodes.
"""


def print_update(started: float, progress_interval: float = 1.0):
    """An on_update callback printing task changes, one line each, stamped from `started`: at once when a
    task's state or attempt changes, otherwise (progress) at most every `progress_interval` seconds."""
    announced = []
    last: dict[str, tuple] = {}  # task id -> (state, attempt, time printed)

    def show(snapshot, changed):
        from qai_mission.client import progress_text

        if not announced:
            announced.append(snapshot.mission_id)
            print(f"mission {snapshot.mission_id} accepted: {snapshot.tasks_total} tasks", flush=True)
        now = time.monotonic()
        stamp = f"{now - started:7.1f}s"
        for task in changed:
            state, attempt, printed = last.get(task.id, (None, None, -1e9))
            if (task.state, task.attempt) == (state, attempt) and now - printed < progress_interval:
                continue
            last[task.id] = (task.state, task.attempt, now)
            print(f"{stamp}  {progress_text(task)}", flush=True)
        if not changed:
            print(f"{stamp}  mission {snapshot.mission_id}: {snapshot.state.name}", flush=True)
    return show


def cmd_submit(args, client) -> int:
    from qai_mission.client import MissionOutcome, MissionRejected

    started = time.monotonic()
    try:
        mission_id = client.submit(args.file, timeout=args.timeout,
                                   on_update=None if args.no_wait else print_update(started))
    except MissionRejected as error:
        print(f"qai-mission: mission rejected: {error}", file=sys.stderr)
        return 2
    if args.no_wait:
        print(f"mission {mission_id} accepted", flush=True)
        return 0
    result = client.wait(mission_id)
    print(f"mission {mission_id} {result.outcome.value} after {time.monotonic() - started:.1f} s"
          f"{': ' + result.message if result.message else ''}")
    for task in result.tasks:
        extra = f"  result: {task.result}" if task.result else ""
        print(f"  {task.id:<16} {task.state.name:<10} {task.message}{extra}")
    return 0 if result.outcome is MissionOutcome.SUCCEEDED else 1


def cmd_status(args, client) -> int:
    from qai_mission.client import progress_text

    missions = client.status(args.mission_id or "", include_finished=not args.active, timeout=args.timeout)
    if args.mission_id:
        (mission,) = missions
        print(f"mission {mission.mission_id} {mission.name!r}: {mission.state.name}"
              f"{' - ' + mission.message if mission.message else ''}")
        for task in mission.tasks:
            print(f"  {progress_text(task)}")
        return 0
    if not missions:
        print("no missions")
    for mission in missions:
        print(f"{mission.mission_id:<28} {mission.state.name:<10} {mission.tasks_succeeded}/{mission.tasks_total} "
              f"tasks succeeded  {mission.name}")
    return 0


def cmd_cancel(args, client) -> int:
    client.cancel(args.mission_id, args.task or "", args.reason or "canceled from qai-mission", timeout=args.timeout)
    print(f"cancel requested: {args.mission_id}{'/' + args.task if args.task else ''}")
    return 0


def cmd_validate(args) -> int:
    from qai_mission.codec import MissionFormatError, load_mission_file

    try:
        spec = load_mission_file(args.file, time.time())
    except MissionFormatError as error:
        print(f"qai-mission: {error}", file=sys.stderr)
        return 2
    print(f"{args.file}: {len(spec.tasks)} tasks: {', '.join(f'{t.id} ({t.kind})' for t in spec.tasks)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="qai-mission", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="{submit,status,cancel,validate}")

    def add(name, help_text, ros=True):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if ros:
            sub.add_argument("--namespace", default="", help="the robot's namespace (as in the profile)")
            sub.add_argument("--timeout", type=float, default=10.0,
                             help="seconds to wait for the mission engine to answer (default 10)")
        return sub

    submit = add("submit", "send a mission file and follow it")
    submit.add_argument("file")
    submit.add_argument("--no-wait", action="store_true", help="print the mission id and return")
    status = add("status", "show one mission, or all")
    status.add_argument("mission_id", nargs="?")
    status.add_argument("--active", action="store_true", help="only missions that have not ended")
    cancel = add("cancel", "cancel a mission or one of its tasks")
    cancel.add_argument("mission_id")
    cancel.add_argument("--task", help="cancel only this task")
    cancel.add_argument("--reason")
    validate = add("validate", "check a mission file's format offline", ros=False)
    validate.add_argument("file")

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "validate":
        return cmd_validate(args)

    from qai_mission.client import MissionClient, MissionClientError

    client = MissionClient(namespace=args.namespace)
    try:
        return {"submit": cmd_submit, "status": cmd_status, "cancel": cmd_cancel}[args.command](args, client)
    except MissionClientError as error:
        print(f"qai-mission: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
