"""Start the qai_edge engines as config/edge.yaml (or profile:=...) says.

    ros2 launch qai_edge edge.launch.py [profile:=/path/to/profile.yaml] [namespace:=drone2]

Thin on purpose: qai_edge.profile reads and checks the profile (the same code `qai-edge up` uses);
this file only turns each node spec into a launch_ros Node.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from qai_edge.profile import default_profile_path, load_profile


def _nodes_from_profile(context):
    profile_path = LaunchConfiguration("profile").perform(context) or None
    namespace = LaunchConfiguration("namespace").perform(context) or None
    profile = load_profile(profile_path, namespace)
    return [Node(**spec.launch_arguments(profile.stop)) for spec in profile.nodes]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("profile", default_value=str(default_profile_path()),
                              description="qai_edge profile YAML"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="run under this namespace instead of the profile's"),
        OpaqueFunction(function=_nodes_from_profile),
    ])
