"""Isolation for every test run, set before anything imports rclpy.

- ROS_DOMAIN_ID: a domain no other test run on this machine holds (a lock file per domain), so parallel
  runs (CI jobs, pytest-xdist workers, a developer's second terminal) never see each other's nodes.
- ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: discovery never leaves the machine.
- ROS_LOG_DIR: a temp dir, not ~/.ros/log.
Child processes inherit all three.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

# Linux keeps domain ids 1..101 clear of the ephemeral port range; 0 is everyone's default.
_DOMAIN_RANGE = range(1, 101)


def _claim_domain_id():
    override = os.environ.get("QAI_TEST_DOMAIN_ID")
    if override:
        return int(override), None
    lock_dir = Path(tempfile.gettempdir()) / "qai-edge-test-domains"
    lock_dir.mkdir(exist_ok=True)
    offset = os.getpid() % len(_DOMAIN_RANGE)
    for i in range(len(_DOMAIN_RANGE)):
        domain = _DOMAIN_RANGE[(offset + i) % len(_DOMAIN_RANGE)]
        lock = open(lock_dir / f"{domain}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return domain, lock  # held (open) for the whole run
    raise RuntimeError(f"every ROS domain id in {_DOMAIN_RANGE} is held by another test run")


DOMAIN_ID, _DOMAIN_LOCK = _claim_domain_id()
_LOG_DIR = tempfile.mkdtemp(prefix="qai-edge-test-ros-log-")
os.environ.update({
    "ROS_DOMAIN_ID": str(DOMAIN_ID),
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    "ROS_LOG_DIR": _LOG_DIR,
    "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
})
os.environ.pop("ROS_LOCALHOST_ONLY", None)  # ignored by newer distros, contradicts the range on Jazzy
os.environ.setdefault("HOME", tempfile.gettempdir())  # rclpy.init needs it


def pytest_unconfigure(config):
    if _DOMAIN_LOCK is not None:
        _DOMAIN_LOCK.close()


def pytest_report_header(config):
    return f"ROS_DOMAIN_ID={DOMAIN_ID} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOG_DIR={_LOG_DIR}"


@pytest.fixture
def ros_probe():
    """A ROS node inside the test process, in its own context, shut down after the test."""
    from harness import RosProbe

    probe = RosProbe("test_probe")
    try:
        yield probe
    finally:
        probe.close()


@pytest.fixture
def processes(tmp_path):
    """Starts processes (nodes, `qai-edge up`) and always stops them, even when the test fails."""
    from harness import ProcessGroup

    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
