"""Parameters of sim_vehicle (beyond the common ones); config/edge.yaml documents the defaults."""

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("vehicle_kind", "multirotor", "multirotor, or ground (a unicycle robot)", read_only=True,
              choices=("multirotor", "ground")),
    ParamSpec("physics_rate", 100.0, "Physics steps per simulated second.", min=10.0, max=2000.0, read_only=True),
    ParamSpec("real_time_factor", 1.0, "Simulated seconds per wall-clock second (faster than real time > 1). "
              "Above 1, run every node with use_sim_time and publish_clock.", min=0.01, max=1000.0, read_only=True),
    ParamSpec("publish_clock", False, "Publish /clock: the simulator owns time (nodes set use_sim_time).",
              read_only=True),
    ParamSpec("seed", 0, "Seed of every random draw: the same seed and commands give the same run.", min=0,
              max=2**31 - 1, read_only=True),
    ParamSpec("odom_rate", 50.0, "Hz", min=0.1, max=1000.0, read_only=True),
    ParamSpec("imu_rate", 100.0, "Hz", min=0.1, max=1000.0, read_only=True),
    ParamSpec("battery_rate", 2.0, "Hz", min=0.1, max=100.0, read_only=True),
    ParamSpec("gps_rate", 5.0, "Hz", min=0.1, max=100.0, read_only=True),
    ParamSpec("frame_id", "odom", "World frame of odom and the start pose.", read_only=True),
    ParamSpec("child_frame_id", "base_link", "Body frame (odometry twist and IMU are in it).", read_only=True),
    ParamSpec("start_position", [0.0, 0.0, 0.0], "x, y, z in frame_id, m.", item_type=float, read_only=True),
    ParamSpec("start_yaw", 0.0, "rad", read_only=True),
    ParamSpec("origin", [47.397742, 8.545594, 488.0], "Latitude, longitude (deg) and altitude (m) of the "
              "frame's origin, for navsat/fix.", item_type=float, read_only=True),
    ParamSpec("cmd_timeout", 0.5, "Seconds without cmd_vel after which the vehicle stops (hovers).", min=0.05,
              max=10.0, read_only=True),
    ParamSpec("noise", True, "Sensor noise (off: exact readings, for debugging).", read_only=True),
    ParamSpec("wind", [0.0, 0.0], "Mean wind, east and north, m/s (multirotor).", item_type=float, read_only=True),
    ParamSpec("wind_gust", 0.0, "Gust strength, m/s (standard deviation).", min=0.0, max=20.0, read_only=True),
    ParamSpec("payload", 0.0, "kg carried: more power drawn.", min=0.0, max=100.0),
    ParamSpec("battery_capacity_wh", 80.0, "Wh when full.", min=0.1, max=100000.0, read_only=True),
    ParamSpec("battery_initial", 1.0, "Charge at start, 0..1.", min=0.0, max=1.0, read_only=True),
    # Fault injection: settable while running (ros2 param set).
    ParamSpec("fault_dropout", "", "Comma-separated streams that stop publishing: odom, imu, battery, gps."),
    ParamSpec("fault_stuck", "", "Comma-separated streams that repeat their last reading."),
    ParamSpec("fault_battery_sag", 0.0, "Volts lost by the battery, as by a failing cell.", min=0.0, max=100.0),
    ParamSpec("fault_gps_loss", False, "The GPS reports no fix."),
    ParamSpec("fault_vibration", 0.0, "m/s^2 of vibration on the IMU (a damaged propeller); 0: none.", min=0.0,
              max=50.0),
)

NODE = NodeType("sim_vehicle", "qai_sim.node:main",
                "simulated multirotor or ground robot with Gazebo's topics", PARAMETERS)
