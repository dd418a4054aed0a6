"""Run the qai_edge engines against Gazebo (gz-sim Harmonic, ROS 2 Jazzy) instead of sim_vehicle.

    ros2 launch qai_edge gazebo.launch.py [profile:=/path/to/profile.yaml] [namespace:=drone2]
                                          [world:=/path/to/world.sdf] [headless:=true]

Starts Gazebo with config/gazebo/x3_world.sdf (ros_gz_sim's gz_sim.launch.py), ros_gz_bridge's
parameter_bridge under the profile's namespace with config/gz_bridge.yaml (cmd_vel, odom, imu/data,
battery_state, navsat/fix, /clock: the topics sim_vehicle speaks), and every node of the profile except
sim_vehicle, all with use_sim_time. Needs ros_gz_sim and ros_gz_bridge (apt: ros-jazzy-ros-gz).

Thin on purpose, like edge.launch.py: qai_edge.profile reads and checks the profile.
"""

import os
import shlex

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from qai_edge.paths import share_file
from qai_edge.profile import default_profile_path, load_profile

SIMULATOR = "sim_vehicle"  # the executable Gazebo replaces


def _with_sim_time(arguments):
    """launch_ros Node arguments with use_sim_time set in each parameter dict."""
    return {**arguments, "parameters": [{**parameters, "use_sim_time": True}
                                        for parameters in arguments["parameters"]]}


def _gazebo(context):
    world = LaunchConfiguration("world").perform(context)
    headless = LaunchConfiguration("headless").perform(context).lower() in ("true", "1", "yes")
    # gz sim: -r runs at once, -s is the server alone (no GUI). The arguments go through a shell.
    gz_args = " ".join(["-r", *(["-s"] if headless else []), shlex.quote(world)])
    gz_sim = os.path.join(get_package_share_directory("ros_gz_sim"), "launch", "gz_sim.launch.py")
    return [IncludeLaunchDescription(PythonLaunchDescriptionSource(gz_sim),
                                     launch_arguments={"gz_args": gz_args, "on_exit_shutdown": "true"}.items())]


def _nodes_from_profile(context):
    profile_path = LaunchConfiguration("profile").perform(context) or None
    namespace = LaunchConfiguration("namespace").perform(context) or None
    profile = load_profile(profile_path, namespace)
    bridge = Node(package="ros_gz_bridge", executable="parameter_bridge", name="ros_gz_bridge",
                  namespace=profile.namespace, output="screen",
                  parameters=[{"config_file": str(share_file("config", "gz_bridge.yaml"))}])
    engines = [Node(**_with_sim_time(spec.launch_arguments(profile.stop)))
               for spec in profile.nodes if spec.executable != SIMULATOR]
    return [bridge, *engines]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("profile", default_value=str(default_profile_path()),
                              description="qai_edge profile YAML"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="run under this namespace instead of the profile's"),
        DeclareLaunchArgument("world", default_value=str(share_file("config", "gazebo", "x3_world.sdf")),
                              description="Gazebo world SDF"),
        DeclareLaunchArgument("headless", default_value="false",
                              description="true: Gazebo's server only, no GUI"),
        OpaqueFunction(function=_gazebo),
        OpaqueFunction(function=_nodes_from_profile),
    ])
