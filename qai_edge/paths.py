"""Where the package's shared files (config/, launch/) are, however it was installed; where a robot keeps its key."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

PACKAGE = "qai_edge"

RUN_VARIABLE = "QAI_EDGE_RUN"  # one id per run of `qai-edge up`, inherited by its nodes and their restarts


def share_dir() -> Path:
    """Return the qai_edge share directory.

    A source checkout (an editable install, or running from the repo) uses its own files, so an edited
    config/edge.yaml takes effect without reinstalling. Otherwise: the ament index (colcon installs),
    then share/qai_edge under this interpreter's prefix (pip installs).
    """
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "package.xml").is_file() and (checkout / "config").is_dir():
        return checkout
    prefix = ament_prefix()
    if prefix is not None:
        return prefix / "share" / PACKAGE
    installed = Path(sys.prefix) / "share" / PACKAGE
    if installed.is_dir():
        return installed
    raise FileNotFoundError(f"cannot find the {PACKAGE} share directory (looked in {checkout} and {installed})")


def ament_prefix() -> Path | None:
    """Return the install prefix of qai_edge in the ament index (colcon installs), or None when not indexed."""
    try:
        from ament_index_python.packages import get_package_prefix

        return Path(get_package_prefix(PACKAGE))
    except (ImportError, LookupError, OSError, ValueError):  # OSError: AMENT_PREFIX_PATH unset
        return None


def installed_executable(executable: str) -> Path | None:
    """Return the path of an executable of this package.

    Looked for in <prefix>/lib/qai_edge (colcon installs, where `ros2 run` looks), else in this
    interpreter's scripts directory (pip installs), else on PATH.
    """
    candidates = []
    prefix = ament_prefix()
    if prefix is not None:
        candidates.append(prefix / "lib" / PACKAGE / executable)
    candidates.append(Path(sysconfig.get_path("scripts")) / executable)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(executable)
    return Path(found) if found else None


def share_file(*parts: str) -> Path:
    return share_dir().joinpath(*parts)


def robot_key_path(data_dir: str | Path, robot_id: str) -> Path:
    """Where a robot's ML-DSA-65 private key is by default (hub_link's robot_key empty): beside its queue."""
    return Path(data_dir).expanduser() / robot_id / "robot.mldsa65.key"
