"""Parameters of the recorder (beyond the common ones); config/edge.yaml documents the defaults."""

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec

DEFAULT_TOPICS = ["odom", "imu/data", "battery_state", "navsat/fix", "cmd_vel", "mission_states", "events",
                  "predictions/endurance", "predictions/anomaly", "/diagnostics"]

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("topics", DEFAULT_TOPICS, "Topics recorded (relative ones in the robot's namespace), each with the "
              "type and QoS its publishers offer, once one appears.", item_type=str, read_only=True),
    ParamSpec("data_dir", "~/.ros/qai_edge", "Recordings go to <data_dir>/<robot_id>/recordings, one rosbag2 "
              "directory per mission (and rolling ones while idle).", read_only=True),
    ParamSpec("record_idle", True, "Also record between missions (bags of at most idle_split_period s).",
              read_only=True),
    ParamSpec("idle_split_period", 300.0, "s of idle recording per bag.", min=1.0, max=86400.0, read_only=True),
    ParamSpec("max_bag_bytes", 67108864, "Bytes of one bag at most; then the next split starts.", min=65536,
              max=1 << 40, read_only=True),
    ParamSpec("max_total_bytes", 1073741824, "Bytes of every recording together at most: the oldest closed bags "
              "are removed first.", min=65536, max=1 << 50, read_only=True),
    ParamSpec("reserve_bytes", 536870912, "Bytes of the disk left free, never eaten: the oldest bags go, then "
              "recording pauses until there is room.", min=0, max=1 << 50, read_only=True),
    ParamSpec("flush_period", 1.0, "s between flushes to the disk: a SIGKILL loses at most this much.",
              min=0.1, max=60.0, read_only=True),
    ParamSpec("profile_name", "", "The profile's name, written into each bag's metadata (qai-edge up sets it).",
              read_only=True),
)

NODE = NodeType("recorder", "qai_recorder.node:main", "flight recordings: rosbag2 with MCAP, one per mission",
                PARAMETERS)
