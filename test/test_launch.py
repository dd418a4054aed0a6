"""launch/edge.launch.py under ROS 2 launch (launch_pytest), in a colcon workspace.

Where launch_pytest is not importable (pip-only installs, this CI) the module skips with that reason;
the profile logic the launch file relies on (load_profile, NodeSpec.launch_arguments) is covered by
test_profile.py, and the same nodes coming up healthy by test_cli_up.py.

It launches what colcon installed, as `ros2 launch qai_edge edge.launch.py` does: build the workspace and
source install/setup.bash first (docs/ros2_workspace.md), then
    colcon test --packages-select qai_edge --pytest-args test/test_launch.py
or, from this directory, `python3 -m pytest test/test_launch.py`. Where qai_edge is not in the ament index
the test fails at once saying so: launch would report it only in its log, and launch_pytest would wait for
ReadyToTest until pytest-timeout ends the test.

pytest: checked with Jazzy's launch 3.4.3 / launch_ros 0.26.6 under pytest 7.4.4 (Ubuntu 24.04's), 8.0.2,
8.1.1, 8.3.5, 8.4.2, 9.1.1 and 9.2.0. Two things make pytest >= 8.4 work: pytest.ini keeps the
launch_testing and launch_ros (launch_testing_ros) plugins out (this test does not use them, and pytest 9
refuses their `path` hook argument at start-up), and the fixture below carries the attribute launch_pytest
3.4.3 reads, which pytest >= 8.4 no longer sets (ros2/launch#947).
"""

import textwrap

import pytest

launch_pytest = pytest.importorskip(
    "launch_pytest", reason="launch_pytest is not installed (ROS 2 launch is not packaged for pip installs); "
                            "profile logic is tested in test_profile.py")

import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from harness import status_level, unique_namespace  # noqa: E402
from qai_edge.paths import ament_prefix  # noqa: E402
from qai_edge.profile import load_profile  # noqa: E402

# The io_engine reports OK only with sensor streams to watch: the simulated vehicle runs beside it.
ENGINES = ("mission_engine", "intelligence_engine", "quantum_bridge", "io_engine", "sim_vehicle")
NAMESPACE = unique_namespace()


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("launch") / "profile.yaml"
    path.write_text(textwrap.dedent("""\
        robot_id: launched
        defaults: {heartbeat_period: 0.2}
        nodes: {mission_engine: {}, intelligence_engine: {}, quantum_bridge: {}, io_engine: {}, sim_vehicle: {}}
        """))
    return path


@pytest.fixture(scope="module")
def installed_launch_file(profile_path):
    """edge.launch.py as colcon installed it; fails at once, with the reason, where the launch would fail.

    A launch that fails (package not found, unknown executable) does not fail the test: launch_pytest waits
    for ReadyToTest, which never comes.
    """
    prefix = ament_prefix()
    if prefix is None:
        pytest.fail("qai_edge is not in the ament index (AMENT_PREFIX_PATH does not list its install): "
                    "colcon build the workspace and source install/setup.bash first", pytrace=False)
    launch_file = prefix / "share" / "qai_edge" / "launch" / "edge.launch.py"
    missing = [str(path) for path in (launch_file, *(prefix / "lib" / "qai_edge" / engine for engine in ENGINES))
               if not path.is_file()]
    if missing:
        pytest.fail(f"qai_edge's install in {prefix} lacks {', '.join(missing)}: rebuild it (colcon build)",
                    pytrace=False)
    try:
        load_profile(profile_path, NAMESPACE)  # what the launch file does first
    except Exception as error:
        pytest.fail(f"the launch file could not load its profile: {error}", pytrace=False)
    return launch_file


@launch_pytest.fixture
def edge_launch(profile_path, installed_launch_file):
    return launch.LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(installed_launch_file)),
                                 launch_arguments={"profile": str(profile_path), "namespace": NAMESPACE}.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


# launch_pytest before ros2/launch#949 (Jazzy's 3.4.3) reads a launch fixture's scope from
# `_pytestfixturefunction`, which pytest >= 8.4 no longer sets: give it the fixture's marker under that name.
if not hasattr(edge_launch, "_pytestfixturefunction"):
    edge_launch._pytestfixturefunction = edge_launch._fixture_function_marker


# A launch that fails after these checks still waits for ReadyToTest: end it well before pytest.ini's 300 s.
@pytest.mark.timeout(120)
@pytest.mark.launch(fixture=edge_launch)
def test_launch_file_brings_up_every_engine_with_heartbeats(ros_probe):
    ros_probe.watch_diagnostics()
    names = [f"{NAMESPACE}/{engine}" for engine in ENGINES]

    def all_ok():
        statuses = [ros_probe.latest_status(name) for name in names]
        return all(s is not None and status_level(s) == 0 and s.hardware_id == "launched" for s in statuses)

    # 90 s: five processes start at once, and the intelligence engine imports torch (over 30 s at load 27).
    ros_probe.spin_until(all_ok, 90.0, "a heartbeat from every launched engine")
