"""The two ROS packages as installed.

Interfaces import with no environment set-up, executables and declared dependencies match the code.
"""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from importlib import metadata
from pathlib import Path

import pytest

from qai_edge.nodes import NODE_TYPES
from qai_edge.paths import ament_prefix

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(ament_prefix() is not None, reason="a colcon workspace is used sourced; this checks the pip venv")
def test_interfaces_import_with_no_environment_variables():
    """`python -c "import qai_interfaces.action"` works in the venv as it is, no sourcing, no LD_LIBRARY_PATH."""
    code = ("import qai_interfaces.action, qai_interfaces.msg, qai_interfaces.srv; "
            "from qai_interfaces.action import ExecuteMission, RunTask, Optimize; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_interface_messages_serialize_round_trip():
    from rclpy.serialization import deserialize_message, serialize_message

    from diagnostic_msgs.msg import KeyValue
    from qai_interfaces.msg import Mission, Task, TaskState

    task = Task(id="survey", kind="navigate", priority=5, depends_on=["plan"], optional=True,
                resources=["motion"], parameters=[KeyValue(key="speed", value="2.5")])
    task.retry.max_retries = 3
    task.timeout.sec = 30
    mission = Mission(id="m1", name="demo", tasks=[task])
    again = deserialize_message(serialize_message(mission), Mission)
    assert again == mission
    assert Task().retry.backoff_multiplier == 2.0  # documented default
    assert TaskState.SUCCEEDED > TaskState.RETRY_WAIT  # terminal states sort after live ones


def test_every_interface_file_is_generated():
    cmake = (ROOT / "qai_interfaces" / "CMakeLists.txt").read_text()
    for path in sorted((ROOT / "qai_interfaces").glob("*/*")):
        if path.suffix in (".msg", ".srv", ".action"):
            assert f'"{path.parent.name}/{path.name}"' in cmake, f"{path.name} missing from CMakeLists.txt"


def test_console_scripts_match_the_node_registry():
    scripts = {ep.name: ep.value for ep in metadata.distribution("qai_edge").entry_points
               if ep.group == "console_scripts"}
    for executable, node_type in NODE_TYPES.items():
        assert scripts.get(executable) == node_type.entry_point
    assert scripts["qai-edge"] == "qai_edge.cli:main"


def test_package_xml_declares_what_the_code_imports():
    declared = {element.text for element in ElementTree.parse(ROOT / "package.xml").getroot()
                if element.tag.endswith("depend")}
    imported = set()
    for path in ROOT.glob("qai_*/**/*.py"):
        if "qai_interfaces" in path.parts:
            continue
        for module in re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), re.MULTILINE):
            imported.add(module)
    ros_packages = {"rclpy", "rcl_interfaces", "diagnostic_msgs", "qai_interfaces", "ament_index_python",
                    "std_msgs", "geometry_msgs", "nav_msgs", "sensor_msgs", "builtin_interfaces",
                    "action_msgs", "rosgraph_msgs", "std_srvs", "unique_identifier_msgs"}
    for package in imported & ros_packages:
        assert package in declared, f"package.xml does not declare {package}"
    assert {"launch", "launch_ros"} <= declared  # launch/edge.launch.py


def test_installed_executables_are_on_the_venv_path():
    from harness import installed  # colcon installs put them in <prefix>/lib/qai_edge, where `ros2 run` looks

    for executable in (*NODE_TYPES, "qai-edge"):
        assert os.access(installed(executable), os.X_OK), executable
