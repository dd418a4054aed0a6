"""Robot identities for tests: key pairs made as `qai-edge keygen` makes them, enrolled in a hub registry.

`sign_as_robot(topic, payload)` signs what hub_link signs (status, replies, telemetry of the signed types) with
the key of the robot the topic names, and leaves the rest (sealed telemetry) as it is, so a test hands the
hub exactly what a robot would send.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson

from qai_hub.protocol import Signer, generate_key_pair, must_be_signed, parse_topic, sign_robot_message
from qai_hub.registry import RobotRegistry, enroll


class TestRobots:
    __test__ = False  # not a test class

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.registry_dir = self.directory / "registry"
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        self.registry = RobotRegistry(self.registry_dir, refresh=0.0)
        self._signers: dict[str, Signer] = {}

    def key(self, robot: str) -> Path:
        """Return the robot's private key file (made and enrolled on first use)."""
        path = self.directory / "keys" / robot / "robot.mldsa65.key"
        if not path.exists():
            generate_key_pair(path, path.with_suffix(".pub"))
            enroll(self.registry_dir, robot, path.with_suffix(".pub"))
        return path

    def signer(self, robot: str) -> Signer:
        if robot not in self._signers:
            self._signers[robot] = Signer.from_files(self.key(robot))
        return self._signers[robot]

    def sign(self, robot: str, topic: str, payload: bytes) -> bytes:
        return sign_robot_message(self.signer(robot), topic, payload)

    def as_robot(self, topic: str, payload: bytes) -> bytes:
        """Sign `payload` as the robot the topic names would, when hub_link signs such a message."""
        where = parse_topic(topic)
        if where is None:
            return payload
        self.key(where.robot)  # a robot a test speaks as is an enrolled robot
        if where.kind in ("status", "reply"):
            return self.sign(where.robot, topic, payload)
        if where.kind == "telemetry":
            try:
                kind = orjson.loads(payload).get("type", "")
            except (orjson.JSONDecodeError, AttributeError):
                return payload
            if isinstance(kind, str) and (must_be_signed(kind) or where.name in ("drops", "seals")):
                return self.sign(where.robot, topic, payload)
        return payload


_shared: TestRobots | None = None


def shared_robots() -> TestRobots:
    """One TestRobots per test process, in a temporary directory (unit tests of the hub's pure parts)."""
    global _shared
    if _shared is None:
        _shared = TestRobots(tempfile.mkdtemp(prefix="qai-test-robots-"))
    return _shared
