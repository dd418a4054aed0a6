"""Where home is, kept across restarts of the I/O engine within one run. No rclpy import.

With no `home` parameter, home is where the first odometry put the vehicle. An I/O engine restarted in the
air (the supervisor brings it back after a crash) must not take the spot it hovers at for home: so the
home it took is written to `<data_dir>/<robot_id>/home.json` with the run it belongs to, and a restarted
engine of the same run reads it back. A run is one `qai-edge up` (QAI_EDGE_RUN, set for every node it
starts), or else one boot of the machine; a new run takes home afresh from its first odometry.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from qai_edge.paths import RUN_VARIABLE


def current_run() -> str:
    """Return this run's id: `qai-edge up`'s, else the machine's boot id."""
    run = os.environ.get(RUN_VARIABLE, "")
    if run:
        return run
    try:
        return "boot-" + Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class HomeStore:
    def __init__(self, path: str | Path | None, run: str | None = None):
        self.path = Path(path).expanduser() if path else None
        self.run = current_run() if run is None else run
        self.error = ""  # the last reason a home could not be read or written

    def load(self) -> tuple[float, float, float] | None:
        """Return the home this run recorded, or None (none recorded, another run's, or unreadable)."""
        if self.path is None or not self.run:
            return None
        try:
            data = json.loads(self.path.read_text())
            home = tuple(float(v) for v in data["home"])
            if data.get("run") != self.run or len(home) != 3 or not all(math.isfinite(v) for v in home):
                return None
            return home
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            self.error = f"{self.path}: {error}"
            return None

    def save(self, home: tuple[float, float, float]) -> None:
        """Record home for this run (atomically: a crash leaves the old file or the new one)."""
        if self.path is None or not self.run:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps({"run": self.run, "home": [float(v) for v in home]}))
            os.replace(temporary, self.path)
        except OSError as error:
            self.error = f"{self.path}: {error.strerror or error}"
