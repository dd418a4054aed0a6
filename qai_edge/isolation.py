"""A private ROS 2 environment for a test run or a benchmark on a shared machine.

- ROS_DOMAIN_ID: a domain no other run on this machine holds (a lock file per domain, kept for the
  life of the process), so parallel runs never see each other's nodes;
- ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: discovery never leaves the machine;
- ROS_LOG_DIR: a temp dir, not ~/.ros/log;
- QAI_PORT_RANGE: TCP ports of its own for brokers and servers (qai_edge.broker.free_port), below the
  ports DDS and the kernel's outgoing connections use, 63 per domain id, so parallel runs never pick the
  same one.
Child processes inherit all of it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

# Linux keeps domain ids 1..101 clear of the ephemeral port range; 0 is everyone's default.
DOMAIN_RANGE = range(1, 101)
# Ports 1100-7399: above the well-known ports, below Fast DDS's (7400 + 250 x domain id) and the ephemeral range.
PORTS_LOW, PORTS_PER_DOMAIN = 1100, 63
_held = []


def claim_domain_id() -> int:
    """QAI_TEST_DOMAIN_ID if set, else a free domain id, held until this process exits."""
    override = os.environ.get("QAI_TEST_DOMAIN_ID")
    if override:
        return int(override)
    lock_dir = Path(tempfile.gettempdir()) / "qai-edge-test-domains"
    lock_dir.mkdir(exist_ok=True)
    offset = os.getpid() % len(DOMAIN_RANGE)
    for i in range(len(DOMAIN_RANGE)):
        domain = DOMAIN_RANGE[(offset + i) % len(DOMAIN_RANGE)]
        lock = open(lock_dir / f"{domain}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _held.append(lock)
        return domain
    raise RuntimeError(f"every ROS domain id in {DOMAIN_RANGE} is held by another run on this machine")


def isolate(log_prefix: str = "qai-edge-ros-log-") -> dict[str, str]:
    """Set up the private environment in os.environ (before rclpy is imported) and return it."""
    domain = claim_domain_id()
    first = PORTS_LOW + (domain % len(DOMAIN_RANGE)) * PORTS_PER_DOMAIN
    environment = {
        "ROS_DOMAIN_ID": str(domain),
        "QAI_PORT_RANGE": f"{first}-{first + PORTS_PER_DOMAIN - 1}",
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOG_DIR": tempfile.mkdtemp(prefix=log_prefix),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
    }
    os.environ.update(environment)
    os.environ.pop("ROS_LOCALHOST_ONLY", None)  # ignored by newer distros, contradicts the range on Jazzy
    os.environ.setdefault("HOME", tempfile.gettempdir())  # rclpy.init needs it
    return environment


def release() -> None:
    while _held:
        _held.pop().close()
