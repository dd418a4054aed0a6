"""The mission engine's services (add_tasks, cancel_task, get_mission_state).

Requests into core calls and answers back. Message conversion only; the decisions are the core's.
"""

from __future__ import annotations

from qai_mission.codec import MissionFormatError
from qai_mission.journal import JournalError
from qai_mission.messages import mission_state_msg, task_from_msg
from qai_mission.validation import MissionInvalid, check_tasks

RECENT_FROM_JOURNAL = 100  # finished missions a get_mission_state for all of them lists at most


def add_tasks(node, request, response):
    core = node.core
    mission = core.scheduler.missions.get(request.mission_id)
    try:
        if mission is None:
            raise ValueError(f"no running mission {request.mission_id!r}")
        if core.journal_problem:
            raise ValueError(f"the mission journal is unusable, so nothing can be added: {core.journal_problem}")
        if len(request.tasks) > node.limits.max_tasks:
            raise ValueError(f"tasks: {len(request.tasks)} tasks, the limit (max_tasks_per_mission) is "
                             f"{node.limits.max_tasks}")
        specs = [task_from_msg(t, f"tasks[{i}]", node.limits) for i, t in enumerate(request.tasks)]
        if len(mission.tasks) + len(specs) > node.limits.max_tasks:
            raise ValueError(f"tasks: the mission would hold {len(mission.tasks) + len(specs)} tasks, the limit "
                             f"(max_tasks_per_mission) is {node.limits.max_tasks}")
        check_tasks(specs, core.scheduler.routes, core.clock(),
                    existing={t.spec.id: t.spec for t in mission.tasks.values()})
        core.scheduler.add_tasks(request.mission_id, specs)
    except (MissionFormatError, MissionInvalid, ValueError, LookupError) as error:
        response.accepted, response.message = False, str(error)
        return response
    node.flush()
    response.accepted, response.message = True, f"added {len(specs)} task(s)"
    return response


def cancel_task(node, request, response):
    problem = node.core.cancel(request.mission_id, request.task_id, request.reason)
    response.accepted, response.message = not problem, problem or "cancel requested"
    if not problem:
        node.flush()
    return response


def get_mission_state(node, request, response):
    try:
        return _get_mission_state(node, request, response)
    except JournalError as error:
        response.found, response.message = False, str(error)
        return response


def _get_mission_state(node, request, response):
    core = node.core
    now = core.clock()
    journal = core.journal
    if request.mission_id:
        mission = core.scheduler.missions.get(request.mission_id)
        if mission is None and journal is not None:
            mission = journal.mission(request.mission_id)
        response.found = mission is not None
        response.message = "" if mission else f"no mission {request.mission_id!r}"
        response.missions = [mission_state_msg(mission, now)] if mission else []
        return response
    missions = sorted(core.scheduler.missions.values(), key=lambda m: m.seq, reverse=True)
    if journal is not None and request.include_finished:
        known = {m.id for m in missions}
        missions += [m for m in journal.recent(RECENT_FROM_JOURNAL) if m.id not in known]
    if not request.include_finished:
        missions = [m for m in missions if not m.status.terminal]
    response.found = bool(missions)
    response.missions = [mission_state_msg(m, now) for m in missions]
    return response
