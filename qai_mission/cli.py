"""qai-mission: submit, follow, inspect and cancel missions from the command line."""

from __future__ import annotations

import argparse
import sys
import time

DESCRIPTION = "Submit missions to a qai_edge mission engine, follow them, inspect and cancel them."
EPILOG = """\
commands:
  submit FILE.yaml   send the mission and print its progress live until it ends (--no-wait: print its id
                     and return); while the mission engine waits for the engines its kinds need (right
                     after a start), it says so.
  status [ID]        the state of one mission with its tasks, or a line per known mission.
  cancel ID          cancel a mission, or one of its tasks with --task.
  validate FILE.yaml the checks the mission engine runs at submission: the file (size, YAML, fields and
                     their ranges, the limits of the profile's mission_engine), the task graph (ids,
                     dependencies, cycles, result references), and, when engines can be heard announcing
                     their kinds (--timeout s), each task's kind and parameters against them (including an
                     engine's static limits: geofence, speed). It says which checks it could not do.

exit status: 0 succeeded (validate: valid), 1 failed or canceled, 2 invalid or rejected (the reason names
the task and field), 3 no answer from the mission engine, 130 interrupted.

Mission files are YAML; see config/missions/ and docs/missions.md. Use the robot's namespace (--namespace drone1)
and the same ROS_DOMAIN_ID as the nodes.
"""


def print_update(started: float, progress_interval: float = 1.0):
    """Return an on_update callback printing task changes, one line each, stamped from `started`.

    A line comes at once when a task's state or attempt changes, otherwise (progress) at most every
    `progress_interval` seconds.
    """
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

    from qai_mission.codec import MissionFormatError

    started = time.monotonic()
    try:
        mission_id = client.submit(args.file, timeout=args.timeout,
                                   on_update=None if args.no_wait else print_update(started),
                                   on_waiting=lambda why: print(f"{time.monotonic() - started:7.1f}s  {why}",
                                                                flush=True))
    except MissionFormatError as error:
        print(f"qai-mission: {error}", file=sys.stderr)
        return 2
    except MissionRejected as error:
        print(f"qai-mission: mission rejected: {error}", file=sys.stderr)
        return 2
    if args.no_wait:
        print(f"mission {mission_id} accepted", flush=True)
        return 0
    result = client.wait(mission_id, timeout=args.mission_timeout)
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


def _profile_limits(path: str | None):
    """Return the mission limits of the profile's mission_engine; defaults (and a note) when it cannot be read."""
    from qai_edge.profile import ProfileError, load_profile
    from qai_mission.model import DEFAULT_LIMITS
    from qai_mission.parameters import limits_from

    try:
        profile = load_profile(path)
    except ProfileError as error:
        print(f"note: default mission limits ({error})", file=sys.stderr)
        return DEFAULT_LIMITS
    for spec in profile.nodes:
        if spec.executable == "mission_engine":
            return limits_from(spec.parameters.get)
    return DEFAULT_LIMITS


SETTLE = 0.5  # s with every discovered engine heard before validate stops listening (every kind it needs heard)
SETTLE_MISSING = 3.0  # s, the same while a kind the mission needs is unheard: DDS discovery may still be under way


def _announced_kinds(namespace: str, timeout: float, needed: frozenset[str] = frozenset()) -> dict:
    """Kinds the engines announce on <namespace>/engine_capabilities (transient local), within `timeout` s.

    It listens until every engine discovered has announced and none appeared for SETTLE s; while a kind in
    `needed` is still unheard, for SETTLE_MISSING s (on a loaded machine an engine's publisher was
    discovered more than SETTLE s after another's announcement, and validate called a served kind unserved).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from qai_edge.convert import kind_from_msg
    from qai_edge.qos import CAPABILITIES_QOS
    from qai_interfaces.msg import EngineCapabilities
    from qai_mission.model import KindRoute

    routes: dict = {}
    engines: set[str] = set()
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("qai_mission_validate", namespace=namespace or "/", context=context,
                             start_parameter_services=False)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def on_announcement(msg):
        engines.add(msg.engine)
        for kind in msg.kinds:
            routes.setdefault(kind.name, KindRoute(kind_from_msg(kind), msg.engine, msg.task_action))

    subscription = node.create_subscription(EngineCapabilities, "engine_capabilities", on_announcement,
                                            CAPABILITIES_QOS)
    try:
        # Until every engine the graph knows has been heard from, and no new one appeared for a moment; an
        # engine is discovered before its announcement (transient local) arrives, so the wait ends early
        # on an idle robot and still hears each engine on a loaded one.
        deadline = time.monotonic() + timeout
        heard_all_since = None
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            publishers = node.count_publishers(subscription.topic_name)
            if engines and len(engines) >= publishers:
                heard_all_since = heard_all_since or time.monotonic()
                settle = SETTLE if needed <= routes.keys() else SETTLE_MISSING
                if time.monotonic() - heard_all_since >= settle:
                    break
            else:
                heard_all_since = None
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return routes


def cmd_validate(args) -> int:
    from qai_mission.codec import MissionFormatError, load_mission_file
    from qai_mission.validation import MissionInvalid, check_tasks

    limits = _profile_limits(args.profile)
    try:
        spec = load_mission_file(args.file, limits)
    except MissionFormatError as error:
        print(f"qai-mission: {error}", file=sys.stderr)
        return 2
    try:
        check_tasks(spec.tasks, None, None)
    except MissionInvalid as error:
        print(f"qai-mission: {args.file}: {error}", file=sys.stderr)
        return 2
    not_checked = ["deadlines against the robot's clock (at submission)"]
    needed = frozenset(task.kind for task in spec.tasks)
    routes = _announced_kinds(args.namespace, args.timeout, needed) if args.timeout > 0 else {}
    if routes:
        try:
            check_tasks(spec.tasks, routes, None)
        except MissionInvalid as error:
            print(f"qai-mission: {args.file}: {error}", file=sys.stderr)
            return 2
    else:
        not_checked.insert(0, "kinds and their parameters (no engine announced its kinds on "
                              f"{args.namespace.rstrip('/')}/engine_capabilities within {args.timeout:g} s)")
    print(f"{args.file}: valid: {len(spec.tasks)} tasks: {', '.join(f'{t.id} ({t.kind})' for t in spec.tasks)}")
    print(f"not checked: {'; '.join(not_checked)}")
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
    submit.add_argument("--mission-timeout", type=float, default=86400.0,
                        help="seconds to follow the mission before giving up (default 86400)")
    submit.add_argument("--no-wait", action="store_true", help="print the mission id and return")
    status = add("status", "show one mission, or all")
    status.add_argument("mission_id", nargs="?")
    status.add_argument("--active", action="store_true", help="only missions that have not ended")
    cancel = add("cancel", "cancel a mission or one of its tasks")
    cancel.add_argument("mission_id")
    cancel.add_argument("--task", help="cancel only this task")
    cancel.add_argument("--reason")
    validate = add("validate", "run the mission engine's checks on a mission file", ros=False)
    validate.add_argument("file")
    validate.add_argument("--namespace", default="", help="the robot's namespace, to hear its engines' kinds")
    validate.add_argument("--profile", help="profile whose mission_engine limits apply (default: the installed one)")
    validate.add_argument("--timeout", type=float, default=10.0,
                          help="seconds to wait for the engines' kinds, at most (it stops once every engine "
                               "it discovers has announced them); 0: offline (default 10)")

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
