"""Parameters the io_engine declares beyond the common ones; config/edge.yaml documents the defaults."""

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("vehicle_kind", "multirotor", "multirotor, or ground: how motion is controlled", read_only=True),
    ParamSpec("controller", "pid", "pid (built in), or external: follow control/cmd_vel from another node "
              "(e.g. the intelligence engine's policy), stopping when it goes quiet", read_only=True),
    ParamSpec("external_command_timeout", 0.3, "s: an external command older than this stops the vehicle",
              min=0.05, max=5.0),
    ParamSpec("default_speed", 3.0, "m/s when a task gives none", min=0.1, max=50.0),
    ParamSpec("max_speed", 8.0, "m/s: a task asking for more is refused", min=0.1, max=50.0),
    ParamSpec("arrival_tolerance", 0.5, "m: default distance at which a waypoint counts as reached",
              min=0.05, max=50.0),
    ParamSpec("landing_speed", 0.8, "m/s of descent when landing", min=0.1, max=5.0),
    ParamSpec("return_altitude", 10.0, "m: return_home climbs to at least this (multirotor)", min=0.0, max=500.0),
    ParamSpec("home", [], "x, y, z of home; empty: where the first odometry put the vehicle", item_type=float,
              read_only=True),
    ParamSpec("geofence_polygon", [], "x1, y1, x2, y2, ... (m, odom frame); empty: no horizontal fence",
              item_type=float, read_only=True),
    ParamSpec("geofence_min_altitude", 0.0, "m", min=-1000.0, max=100000.0, read_only=True),
    ParamSpec("geofence_max_altitude", 120.0, "m", min=-1000.0, max=100000.0, read_only=True),
    ParamSpec("odom_timeout", 0.5, "s without odometry during a motion task: stop and fail safe", min=0.05,
              max=10.0),
    ParamSpec("battery_reserve", 0.2, "Charge (0..1) below which /diagnostics reports ERROR and a "
              "battery_reserve event goes out", min=0.0, max=1.0),
    ParamSpec("battery_min_voltage", 0.0, "V below which the battery counts as at its reserve; 0: off",
              min=0.0, max=1000.0),
    ParamSpec("odom_min_rate", 10.0, "Hz expected at least from odom", min=0.0, max=1000.0, read_only=True),
    ParamSpec("imu_min_rate", 20.0, "Hz expected at least from imu/data", min=0.0, max=1000.0, read_only=True),
    ParamSpec("battery_min_rate", 0.5, "Hz expected at least from battery_state", min=0.0, max=100.0,
              read_only=True),
    ParamSpec("gps_min_rate", 1.0, "Hz expected at least from navsat/fix", min=0.0, max=100.0, read_only=True),
    ParamSpec("stuck_after", 50, "identical readings in a row that make a stream count as stuck", min=2,
              max=100000, read_only=True),
)

NODE = NodeType("io_engine", "qai_io.node:main", "sensors and actuators over DDS", PARAMETERS)
