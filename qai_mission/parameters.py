"""Parameters the mission engine declares beyond the common ones (qai_edge.params.COMMON_PARAMETERS).

Read by the node (as ROS parameter descriptors), by the profile validator and by `qai-mission validate`
(the mission limits); config/edge.yaml documents the defaults. No rclpy import.
"""

from typing import Any, Callable

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec
from qai_mission.model import DEFAULT_LIMITS, MissionLimits

_LIMIT_PARAMETERS = {  # parameter -> MissionLimits field
    "max_tasks_per_mission": "max_tasks",
    "max_mission_bytes": "max_mission_bytes",
    "max_task_parameter_bytes": "max_task_parameter_bytes",
    "max_parameter_depth": "max_parameter_depth",
    "max_string_length": "max_string_length",
    "max_dependencies": "max_dependencies",
    "max_retries": "max_retries",
}

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("data_dir", "~/.ros/qai_edge", "Directory of the mission journal (<data_dir>/<robot_id>/missions.db).",
              read_only=True),
    ParamSpec("journal_durable", True, "fsync every journal commit (WAL, synchronous=FULL). false: for simulation "
              "and benchmarks only; a power loss may lose the last changes.", read_only=True),
    ParamSpec("max_concurrent_missions", 16, "Missions running at once; more are rejected.", min=1, max=10000),
    ParamSpec("tick_period", 0.05, "Seconds (on the ROS clock) between checks of timeouts, deadlines and retry "
              "backoffs.", min=0.001, max=1.0),
    ParamSpec("engine_timeout", 5.0, "Seconds without a heartbeat after which an engine counts as lost (no new "
              "task goes to it); silent three times as long, it is gone and its running tasks run again.",
              min=0.5, max=600.0),
    ParamSpec("state_period", 0.1, "Least seconds between two state messages (and feedbacks) of one mission.",
              min=0.0, max=10.0),
    ParamSpec("event_missions", ["battery_reserve: missions/return_home.yaml",
                                 "endurance_low: missions/return_home.yaml",
                                 "return_home_failed: missions/return_home.yaml"],
              "Rules 'code: mission file': an event with that code on `events` starts that mission (unless one "
              "started from that file still runs). Relative paths are in the installed config/.",
              item_type=str, read_only=True),
    ParamSpec("keep_finished_missions", 1000, "Finished missions the journal keeps for status queries.",
              min=0, max=1000000),
    ParamSpec("finished_retention", 604800.0, "Seconds a finished mission stays in the journal (pruned every "
              "minute).", min=60.0, max=3.2e8),
    ParamSpec("kind_grace_period", 15.0, "Seconds after start, or after an engine was lost, during which a "
              "mission whose kinds no running engine serves waits for them instead of being rejected.",
              min=0.0, max=3600.0),
    ParamSpec("max_engine_losses", 3, "Times a task's engine may die (or restart) while running it before the "
              "task fails instead of being sent again.", min=1, max=1000),
    ParamSpec("max_tasks_per_engine", 16, "Attempts running on one engine at once; more wait for a place, in "
              "order.", min=1, max=100000),
    ParamSpec("max_tasks_per_mission", DEFAULT_LIMITS.max_tasks, "Tasks in one mission (and in one add_tasks).",
              min=1, max=1000000, read_only=True),
    ParamSpec("max_mission_bytes", DEFAULT_LIMITS.max_mission_bytes, "Bytes of a mission document.", min=1024,
              max=1 << 30, read_only=True),
    ParamSpec("max_task_parameter_bytes", DEFAULT_LIMITS.max_task_parameter_bytes, "Bytes of one task's "
              "parameters as JSON.", min=64, max=1 << 28, read_only=True),
    ParamSpec("max_parameter_depth", DEFAULT_LIMITS.max_parameter_depth, "Nesting depth inside a task's "
              "parameters.", min=2, max=256, read_only=True),
    ParamSpec("max_string_length", DEFAULT_LIMITS.max_string_length, "Characters in any one string of a mission.",
              min=64, max=1 << 28, read_only=True),
    ParamSpec("max_dependencies", DEFAULT_LIMITS.max_dependencies, "depends_on entries of one task.", min=1,
              max=1000000, read_only=True),
    ParamSpec("max_retries", DEFAULT_LIMITS.max_retries, "Highest retry.max_retries a task may ask for.", min=0,
              max=1000000, read_only=True),
)


NODE = NodeType("mission_engine", "qai_mission.node:main", "runs missions: the priority task graph", PARAMETERS)


def limits_from(param: Callable[[str], Any]) -> MissionLimits:
    """Return the mission limits from parameter values (a node's `param`, or a profile's parameters.get)."""
    return MissionLimits(**{field: param(name) for name, field in _LIMIT_PARAMETERS.items()})
