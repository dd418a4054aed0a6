"""Parameters the mission engine declares beyond the common ones (qai_edge.params.COMMON_PARAMETERS).

Read by the node (as ROS parameter descriptors) and by the profile validator; config/edge.yaml documents
the defaults.
"""

from qai_edge.params import ParamSpec

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("data_dir", "~/.ros/qai_edge", "Directory of the mission journal (<data_dir>/<robot_id>/missions.db).",
              read_only=True),
    ParamSpec("journal_durable", True, "fsync every journal commit (WAL, synchronous=FULL). false: for simulation "
              "and benchmarks only; a power loss may lose the last changes.", read_only=True),
    ParamSpec("max_concurrent_missions", 16, "Missions running at once; more are rejected.", min=1, max=10000),
    ParamSpec("tick_period", 0.05, "Seconds between checks of timeouts, deadlines and retry backoffs.",
              min=0.001, max=1.0),
    ParamSpec("engine_timeout", 3.0, "Seconds without a heartbeat after which an engine counts as lost.",
              min=0.5, max=600.0),
    ParamSpec("state_period", 0.1, "Least seconds between two state messages (and feedbacks) of one mission.",
              min=0.0, max=10.0),
    ParamSpec("event_missions", ["battery_reserve: missions/return_home.yaml",
                                 "endurance_low: missions/return_home.yaml"], "Rules 'code: mission file': an event with that code on `events` starts that "
              "mission (unless one it started is still running). Relative paths are in the installed config/.",
              item_type=str, read_only=True),
    ParamSpec("keep_finished_missions", 1000, "Finished missions the journal keeps for status queries.",
              min=0, max=1000000),
)
