"""Isolation for every test run and test worker, set up before anything imports rclpy (qai_edge.isolation).

Each run, and each pytest-xdist worker of a run (`make test` runs several), gets its own ROS_DOMAIN_ID (a
lock per domain, so parallel runs never meet), ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, its own range of
TCP ports (QAI_PORT_RANGE, for brokers and servers) and ROS_LOG_DIR in a temp dir; pytest's tmp_path is
per worker too. Child processes inherit them. QAI_TEST_DOMAIN_ID forces a domain.

Tests start in order of their expected length, longest first (`slow`, then those that start processes),
so that with several workers the long ones overlap instead of ending the run alone.
"""

from __future__ import annotations

import pytest

from qai_edge.isolation import isolate, release

ENVIRONMENT = isolate("qai-edge-test-ros-log-")


def pytest_unconfigure(config):
    release()


def pytest_collection_modifyitems(config, items):
    def expected_length(item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        fixtures = set(getattr(item, "fixturenames", ()))
        return 1 if fixtures & {"processes", "stack", "ros_probe", "flight", "robot", "page"} else 2

    items.sort(key=expected_length)  # stable: the file's order within each group


def pytest_report_header(config):
    return " ".join(f"{key}={ENVIRONMENT[key]}"
                    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "QAI_PORT_RANGE", "ROS_LOG_DIR"))


@pytest.fixture
def ros_probe():
    """Yield a ROS node inside the test process, in its own context, shut down after the test."""
    from harness import RosProbe

    probe = RosProbe("test_probe")
    try:
        yield probe
    finally:
        probe.close()


@pytest.fixture
def processes(tmp_path):
    """Yield a ProcessGroup that starts nodes and `qai-edge up`, and always stops them, even when the test fails."""
    from harness import ProcessGroup

    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def stack(processes, ros_probe, tmp_path):
    """Yield a mission engine and the test engine in their own processes, with a MissionClient (mission_stack)."""
    from mission_stack import MissionStack

    stack = MissionStack(processes, ros_probe, tmp_path)
    try:
        yield stack
    finally:
        stack.close()
