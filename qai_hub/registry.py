"""The robots a hub has enrolled, and their public keys: what every robot message is verified against.

No rclpy import; no ROS on the hub. A registry is a directory (default ~/.config/qai-hub/robots) with one
subdirectory per robot holding its public keys, `<robot>/<key id>.pub` (PEM, ML-DSA-65 and optionally
Ed25519): several at once while a robot's key is rotated. `qai-hub enroll ROBOT KEY.pub` adds a key,
`qai-hub enroll --remove ROBOT [--key-id K]` removes one or all. A robot that is not enrolled takes no slot
in the hub's fleet model and nothing it sends is believed.

RobotRegistry re-reads the directory when it changed (checked at most every `refresh` seconds), so a
running dashboard sees an enrolment without a restart.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from qai_hub.protocol import (ML_DSA_65, KeyFileError, Keyring, KnownKey, algorithm_of, check_name, key_id,
                              load_public_key)

DEFAULT_REGISTRY = "~/.config/qai-hub/robots"


class RobotRegistry:
    def __init__(self, directory: str | Path = DEFAULT_REGISTRY, refresh: float = 2.0):
        self.directory = Path(directory).expanduser()
        self.refresh = refresh
        self.errors: list[str] = []  # key files that could not be used, with why
        self._keyrings: dict[str, Keyring] = {}
        self._stamp: tuple[float, ...] | None = None
        self._checked = -float("inf")
        self._load()

    def keyring(self, robot: str) -> Keyring | None:
        """Return the keys of `robot`, or None when it is not enrolled."""
        self._maybe_reload()
        return self._keyrings.get(robot)

    def admits(self, robot: str) -> bool:
        return self.keyring(robot) is not None

    @property
    def robots(self) -> list[str]:
        self._maybe_reload()
        return sorted(self._keyrings)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.refresh:
            return
        self._checked = now
        if self._directory_stamp() != self._stamp:
            self._load()

    def _directory_stamp(self) -> tuple[float, ...]:
        try:
            return (self.directory.stat().st_mtime, *(entry.stat().st_mtime for entry in sorted(
                self.directory.iterdir()) if entry.is_dir()))
        except OSError:
            return ()

    def _load(self) -> None:
        self._stamp = self._directory_stamp()
        keyrings: dict[str, Keyring] = {}
        errors: list[str] = []
        if self.directory.is_dir():
            for robot_dir in sorted(self.directory.iterdir()):
                if not robot_dir.is_dir():
                    continue
                try:
                    check_name(robot_dir.name, "robot")
                except ValueError as error:
                    errors.append(f"{robot_dir}: {error}")
                    continue
                keys = []
                for path in sorted(robot_dir.glob("*.pub")):
                    try:
                        key = load_public_key(path)
                    except KeyFileError as error:
                        errors.append(str(error))
                        continue
                    keys.append(KnownKey(key_id(key), algorithm_of(key), key, str(path)))
                if any(key.algorithm == ML_DSA_65 for key in keys):
                    keyrings[robot_dir.name] = Keyring(keys)
        self._keyrings, self.errors = keyrings, errors


def enroll(directory: str | Path, robot: str, public_key: str | Path) -> str:
    """Add `public_key` (a PEM file) to `robot`'s keys in the registry; return its key id."""
    check_name(robot, "robot")
    key = load_public_key(public_key)
    kid = key_id(key)
    robot_dir = Path(directory).expanduser() / robot
    robot_dir.mkdir(parents=True, exist_ok=True)
    target = robot_dir / f"{kid}.pub"
    temporary = target.with_suffix(".pub.tmp")
    shutil.copyfile(public_key, temporary)
    os.replace(temporary, target)
    _touch(Path(directory).expanduser())
    return kid


def unenroll(directory: str | Path, robot: str, kid: str | None = None) -> list[str]:
    """Remove one key of `robot` (or every key, and the robot); return the key ids removed."""
    check_name(robot, "robot")
    robot_dir = Path(directory).expanduser() / robot
    removed = []
    for path in sorted(robot_dir.glob("*.pub")) if robot_dir.is_dir() else []:
        if kid is None or path.stem == kid:
            path.unlink()
            removed.append(path.stem)
    if robot_dir.is_dir() and not any(robot_dir.iterdir()):
        robot_dir.rmdir()
    _touch(Path(directory).expanduser())
    return removed


def _touch(directory: Path) -> None:
    if directory.is_dir():
        os.utime(directory)
