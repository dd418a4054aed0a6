"""Isolation for every test run, set up before anything imports rclpy (qai_edge.isolation).

Each run gets its own ROS_DOMAIN_ID (a lock per domain, so parallel runs never meet),
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, and ROS_LOG_DIR in a temp dir. Child processes inherit them.
QAI_TEST_DOMAIN_ID forces a domain.
"""

from __future__ import annotations

import pytest

from qai_edge.isolation import isolate, release

ENVIRONMENT = isolate("qai-edge-test-ros-log-")


def pytest_unconfigure(config):
    release()


def pytest_report_header(config):
    return " ".join(f"{key}={ENVIRONMENT[key]}"
                    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR"))


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
