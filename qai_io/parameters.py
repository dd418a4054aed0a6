"""Parameters the io_engine declares beyond the common ones; config/edge.yaml documents the defaults.

The `pid_*` defaults are the gains `qai-train pid` tuned (qai_io/pid_gains.json; qai_intelligence.pid_tuning).
"""

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec
from qai_io.motion import shipped_gains

_TUNED = shipped_gains()

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("vehicle_kind", "multirotor", "multirotor, or ground: how motion is controlled", read_only=True,
              choices=("multirotor", "ground")),
    ParamSpec("controller", "pid", "pid (built in); external: follow control/cmd_vel from another node "
              "(e.g. the intelligence engine's policy), stopping when it goes quiet; residual (multirotor): the PID "
              "plus the correction another node publishes on control/residual, the PID alone when it goes quiet",
              read_only=True, choices=("pid", "external", "residual")),
    ParamSpec("external_command_timeout", 0.3, "s: an external command older than this stops the vehicle (a "
              "residual correction this old counts as zero)", min=0.05, max=5.0),
    ParamSpec("residual_limit", 2.0, "m/s: the most a residual correction adds to the PID's command, a component",
              min=0.0, max=10.0, read_only=True),
    ParamSpec("pid_kp", _TUNED["kp"], "1/s: the PID's approach speed per metre still to go", min=0.05, max=20.0),
    ParamSpec("pid_ki", _TUNED["ki"], "1/s: the PID's integral gain near a target", min=0.0, max=10.0),
    ParamSpec("pid_deceleration", _TUNED["deceleration"], "m/s^2 the PID brakes into a target with", min=0.1,
              max=20.0),
    ParamSpec("pid_wind_filter_time", _TUNED["wind_filter_time"], "s: how quickly the wind estimate (the PID's "
              "and the external path's limit) follows the observed drift", min=0.05, max=60.0, read_only=True),
    ParamSpec("pid_integral_zone", _TUNED["integral_zone"], "m: the PID integrates only this near a target",
              min=0.0, max=100.0),
    ParamSpec("pid_integral_limit", _TUNED["integral_limit"], "m*s: the bound on the PID's integral", min=0.0,
              max=100.0),
    ParamSpec("pid_max_climb_rate", _TUNED["max_climb_rate"], "m/s: the most the PID climbs or descends",
              min=0.1, max=20.0),
    ParamSpec("default_speed", 3.0, "m/s when a task gives none", min=0.1, max=50.0),
    ParamSpec("max_speed", 8.0, "m/s: a task asking for more is refused (announced in the kinds' schemas)",
              min=0.1, max=50.0),
    ParamSpec("arrival_tolerance", 0.5, "m: default distance at which a waypoint counts as reached",
              min=0.05, max=50.0),
    ParamSpec("landing_speed", 0.8, "m/s of descent when landing", min=0.1, max=5.0),
    ParamSpec("return_altitude", 10.0, "m: return_home climbs to at least this (multirotor)", min=0.0, max=500.0),
    ParamSpec("landed_altitude", 0.3, "m (odom z): a multirotor at or below this is on the ground (battery "
              "reserve rules)", min=0.0, max=100.0),
    ParamSpec("home", [], "x, y, z of home; empty: where the first odometry put the vehicle", item_type=float,
              read_only=True),
    ParamSpec("data_dir", "~/.ros/qai_edge", "Directory for <robot_id>/home.json: the home taken from the first "
              "odometry, kept for an io_engine restarted in the air within the same run of qai-edge up (or boot); "
              "empty: not kept", read_only=True),
    ParamSpec("geofence_polygon", [], "x1, y1, x2, y2, ... (m, odom frame); empty: no horizontal fence",
              item_type=float, read_only=True),
    ParamSpec("geofence_min_altitude", 0.0, "m", min=-1000.0, max=100000.0, read_only=True),
    ParamSpec("geofence_max_altitude", 120.0, "m", min=-1000.0, max=100000.0, read_only=True),
    ParamSpec("max_waypoints", 1000, "waypoints (and order indices) a navigate task may give", min=1,
              max=100000),
    ParamSpec("max_hold_duration", 3600.0, "s: the longest hold a task may ask (hold duration, navigate's hold "
              "at each waypoint)", min=0.0, max=86400.0),
    ParamSpec("max_scan_duration", 3600.0, "s: the longest scan a task may ask", min=0.1, max=86400.0),
    ParamSpec("odom_timeout", 0.5, "s without odometry during a motion task: stop and fail safe", min=0.05,
              max=10.0),
    ParamSpec("battery_reserve", 0.2, "Charge (0..1) below which the battery is at its reserve", min=0.0,
              max=1.0),
    ParamSpec("battery_min_voltage", 13.8, "V (pack, under load) below which the battery is at its reserve; "
              "13.8: 3.45 V a cell of the simulated 4S LiPo; 0: off", min=0.0, max=1000.0),
    ParamSpec("battery_timeout", 3.0, "s without a valid battery reading (none came, or each was rejected) "
              "that put an airborne vehicle in the reserve; navigate needs a valid reading this recent",
              min=0.5, max=600.0),
    ParamSpec("battery_recover_time", 3.0, "s of healthy readings on the ground before the reserve clears",
              min=0.0, max=3600.0),
    ParamSpec("battery_event_period", 5.0, "s between repeats of the battery_reserve event while the vehicle "
              "is airborne in the reserve and no return_home or land runs", min=0.5, max=600.0),
    ParamSpec("odom_min_rate", 10.0, "Hz expected at least from odom", min=0.0, max=1000.0, read_only=True),
    ParamSpec("imu_min_rate", 20.0, "Hz expected at least from imu/data", min=0.0, max=1000.0, read_only=True),
    ParamSpec("battery_min_rate", 0.5, "Hz expected at least from battery_state (0: no battery watched)",
              min=0.0, max=100.0, read_only=True),
    ParamSpec("gps_min_rate", 1.0, "Hz expected at least from navsat/fix", min=0.0, max=100.0, read_only=True),
    ParamSpec("stuck_after", 50, "identical readings in a row that make a stream count as stuck", min=2,
              max=100000, read_only=True),
)

# Limits announced in the task kinds' schemas: a change re-announces them.
SCHEMA_LIMITS = ("max_speed", "max_waypoints", "max_hold_duration", "max_scan_duration")
# Read where they are used (qai_io.core, qai_io.safety), so a change applies at the next use.
READ_LIVE = ("pid_kp", "pid_ki", "pid_deceleration", "pid_integral_zone", "pid_integral_limit",
             "pid_max_climb_rate", "default_speed", "arrival_tolerance",
             "landing_speed", "return_altitude", "landed_altitude",
             "odom_timeout", "battery_reserve", "battery_min_voltage", "battery_timeout", "battery_recover_time",
             "battery_event_period")

NODE = NodeType("io_engine", "qai_io.node:main", "sensors and actuators over DDS", PARAMETERS)
