"""Gazebo support (launch/gazebo.launch.py) agrees with the nodes it stands in for. No ROS, Gazebo or launch.

config/gz_bridge.yaml must give io_engine, from Gazebo, exactly the topics sim_vehicle gives it; those are read
from the nodes' create_publisher/create_subscription calls, not written here again. Each Gazebo topic in the
bridge must be one config/gazebo/x3_world.sdf actually configures, flowing the same way.
"""

import ast
import py_compile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import yaml

from qai_edge.nodes import NODE_TYPES
from qai_sim.parameters import PARAMETERS as SIM_PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
BRIDGE = ROOT / "config" / "gz_bridge.yaml"
WORLD = ROOT / "config" / "gazebo" / "x3_world.sdf"
LAUNCH = ROOT / "launch" / "gazebo.launch.py"

# ROS type -> Gazebo type, as ros_gz_bridge pairs them (gazebosim/ros_gz, jazzy: ros_gz_bridge/README.md).
GZ_TYPES = {
    "geometry_msgs/msg/Twist": "gz.msgs.Twist",
    "nav_msgs/msg/Odometry": "gz.msgs.Odometry",
    "sensor_msgs/msg/Imu": "gz.msgs.IMU",
    "sensor_msgs/msg/BatteryState": "gz.msgs.BatteryState",
    "sensor_msgs/msg/NavSatFix": "gz.msgs.NavSat",
    "rosgraph_msgs/msg/Clock": "gz.msgs.Clock",
}
# ros_gz_bridge's YAML keys and directions (ros_gz_bridge/src/bridge_config.cpp).
BRIDGE_KEYS = {"topic_name", "ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction",
               "lazy", "publisher_queue", "subscriber_queue"}
DIRECTION = {"pub": "GZ_TO_ROS", "sub": "ROS_TO_GZ"}  # sim_vehicle publishes what Gazebo must publish
# Gazebo's server publishes /clock whatever the world says (gz-sim: SimulationRunner).
SERVER_TOPICS = {"/clock": "pub"}
# A sensor of this type needs this world system (gz-sim examples/worlds/sensors.sdf, spherical_coordinates.sdf).
SENSOR_SYSTEMS = {"imu": "gz::sim::systems::Imu", "navsat": "gz::sim::systems::NavSat"}


def ros_interface(module: Path) -> dict[str, tuple[str, str]]:
    """{topic: (ROS type, "pub" or "sub")} from a node's create_publisher/create_subscription calls.

    `subscribe` is qai_edge.polled.Polled's: a subscription the node reads with its own timer.
    """
    tree = ast.parse(module.read_text())
    types = {alias.asname or alias.name: f"{node.module.replace('.', '/')}/{alias.name}"
             for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(".msg")
             for alias in node.names}
    topics = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("create_publisher", "create_subscription", "subscribe")
                and isinstance(node.args[1], ast.Constant)):
            topic = node.args[1].value
            entry = (types[node.args[0].id], "pub" if node.func.attr == "create_publisher" else "sub")
            assert topics.get(topic) != entry, f"{module.name}: {topic} created twice"
            topics[topic] = (entry[0], "pubsub") if topic in topics else entry  # events: both ways
    return topics


def world_topics(world: Path) -> dict[str, str]:
    """Return {Gazebo topic: "pub" or "sub"} that the world's sensors and model plugins are configured with.

    The topics are composed as each plugin composes them (gz-sim8 sources: OdometryPublisher.cc,
    LinearBatteryPlugin.cc, MulticopterVelocityControl.cc).
    """
    topics = dict(SERVER_TOPICS)
    for model in ElementTree.parse(world).getroot().iter("model"):
        name = model.get("name")
        for sensor in model.iter("sensor"):
            topics[sensor.findtext("topic")] = "pub"
        for plugin in model.findall("plugin"):
            system = plugin.get("name").rsplit("::", 1)[-1]
            if system == "OdometryPublisher":
                topics[plugin.findtext("odom_topic", f"/model/{name}/odometry")] = "pub"
            elif system == "LinearBatteryPlugin":
                topics[f"/model/{name}/battery/{plugin.findtext('battery_name')}/state"] = "pub"
            elif system == "MulticopterVelocityControl":
                topics[f"/{plugin.findtext('robotNamespace')}/{plugin.findtext('commandSubTopic', 'cmd_vel')}"] = "sub"
    return topics


def bridge_entries() -> list[dict]:
    entries = yaml.safe_load(BRIDGE.read_text())
    assert isinstance(entries, list), "ros_gz_bridge wants a YAML list of maps"
    return entries


SIM_TOPICS = ros_interface(ROOT / "qai_sim" / "node.py")
IO_TOPICS = ros_interface(ROOT / "qai_io" / "node.py")


def test_sim_vehicle_gives_io_engine_what_it_uses():
    """The topics the bridge must carry (sim_vehicle's) are the ones io_engine uses, the other way round."""
    assert set(SIM_TOPICS) >= {"cmd_vel", "odom", "imu/data", "battery_state", "navsat/fix", "/clock"}
    for topic, (ros_type, kind) in SIM_TOPICS.items():
        if topic != "/clock":  # every node takes /clock through use_sim_time, not a subscription
            assert IO_TOPICS.get(topic) == (ros_type, "sub" if kind == "pub" else "pub"), topic


def test_bridge_carries_each_simulator_topic_once_with_its_type_and_direction():
    entries = bridge_entries()
    names = [entry["ros_topic_name"] for entry in entries]
    assert len(names) == len(set(names)), f"a topic bridged twice: {names}"
    bridged = {entry["ros_topic_name"]: (entry["ros_type_name"], entry["direction"]) for entry in entries}
    assert bridged == {topic: (ros_type, DIRECTION[kind]) for topic, (ros_type, kind) in SIM_TOPICS.items()}


def test_entries_are_valid_bridge_config():
    for entry in bridge_entries():
        assert set(entry) <= BRIDGE_KEYS, entry
        assert {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"} <= set(entry)
        assert entry["direction"] in ("BIDIRECTIONAL", "GZ_TO_ROS", "ROS_TO_GZ"), entry


def test_ros_names_are_relative_except_clock():
    """Relative names resolve under the bridge node's namespace, the robot's; /clock is global."""
    for entry in bridge_entries():
        name = entry["ros_topic_name"]
        if name == "/clock":
            continue
        assert not name.startswith(("/", "~")), f"{name}: would not follow the robot's namespace"


def test_gazebo_types_match_ros_types():
    for entry in bridge_entries():
        assert entry["gz_type_name"] == GZ_TYPES[entry["ros_type_name"]], entry


def test_every_gazebo_topic_is_one_the_world_configures_the_same_way():
    configured = world_topics(WORLD)
    for entry in bridge_entries():
        gz_topic = entry["gz_topic_name"]
        assert gz_topic in configured, f"{gz_topic}: not a topic of {WORLD.name} (it has {sorted(configured)})"
        assert DIRECTION[configured[gz_topic]] == entry["direction"], entry


def test_world_loads_the_system_of_each_sensor():
    root = ElementTree.parse(WORLD).getroot()
    systems = {plugin.get("name") for plugin in root.find("world").findall("plugin")}
    for sensor in root.iter("sensor"):
        assert SENSOR_SYSTEMS[sensor.get("type")] in systems, sensor.get("name")


def test_world_matches_sim_vehicle_origin_and_frames():
    defaults = {spec.name: spec.default for spec in SIM_PARAMETERS}
    world = ElementTree.parse(WORLD).getroot().find("world")
    origin = world.find("spherical_coordinates")
    assert [float(origin.findtext(key)) for key in ("latitude_deg", "longitude_deg", "elevation")] == \
        defaults["origin"]
    odometry = next(p for p in world.iter("plugin") if p.get("name").endswith("::OdometryPublisher"))
    assert odometry.findtext("dimensions") == "3"
    assert odometry.findtext("odom_frame") == defaults["frame_id"]
    assert odometry.findtext("robot_base_frame") == defaults["child_frame_id"]


# -- launch/gazebo.launch.py (ROS 2 launch is not installable here: compile it and read it) -------------

LAUNCH_TREE = ast.parse(LAUNCH.read_text())


def _launch_function(name: str):
    """Return a function of the launch file, compiled alone (it must use nothing but its arguments)."""
    node = next(n for n in LAUNCH_TREE.body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(LAUNCH), "exec"), namespace)
    return namespace[name]


def test_launch_file_compiles(tmp_path):
    py_compile.compile(str(LAUNCH), cfile=str(tmp_path / "gazebo.launch.pyc"), doraise=True)


def test_launch_file_names_the_bridge_config_and_world_that_exist():
    shared = {"/".join(arg.value for arg in node.args) for node in ast.walk(LAUNCH_TREE)
              if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "share_file"
              and all(isinstance(arg, ast.Constant) for arg in node.args)}
    assert shared == {"config/gz_bridge.yaml", "config/gazebo/x3_world.sdf"}
    for relative in shared:
        assert (ROOT / relative).is_file(), relative
    source = LAUNCH.read_text()
    assert "parameter_bridge" in source and "gz_sim.launch.py" in source


def test_launch_leaves_out_the_simulator_and_gives_every_other_node_sim_time():
    from qai_edge.profile import load_profile

    simulator = next(node.value.value for node in LAUNCH_TREE.body if isinstance(node, ast.Assign)
                     and getattr(node.targets[0], "id", None) == "SIMULATOR")
    assert simulator in NODE_TYPES
    profile = load_profile(ROOT / "config" / "edge.yaml")
    assert simulator in {spec.executable for spec in profile.nodes}  # so leaving it out matters
    with_sim_time = _launch_function("_with_sim_time")
    for spec in profile.nodes:
        arguments = with_sim_time(spec.launch_arguments(profile.stop))
        assert arguments["parameters"] == [{**spec.parameters, "use_sim_time": True}]
        assert {k: v for k, v in arguments.items() if k != "parameters"} == \
            {k: v for k, v in spec.launch_arguments(profile.stop).items() if k != "parameters"}
