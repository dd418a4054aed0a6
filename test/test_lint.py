"""Lint as a test, as ros2/demos does (ament_flake8, ament_pep257), at 120 columns (setup.cfg [flake8]).

Each linter runs in its own process: flake8 forks workers, and forking this test process (which may hold
torch's and rclpy's threads by now) can crash a worker.
"""

import subprocess
from pathlib import Path

import pytest

from harness import tool

ROOT = Path(__file__).resolve().parents[1]
CHECKED = [str(ROOT / name) for name in ("qai_edge", "qai_hub", "qai_mission", "qai_intelligence",
                                         "qai_quantum_bridge", "qai_io", "qai_sim", "qai_recorder", "launch", "test",
                                         "bench", "setup.py")]
EXCLUDED = [str(ROOT / name) for name in (".venv", "build", "install", "qai_interfaces")]


@pytest.mark.linter
def test_flake8():
    result = subprocess.run([tool("ament_flake8"), "--config", str(ROOT / "setup.cfg"), "--exclude", *EXCLUDED,
                             "--", *CHECKED], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


@pytest.mark.linter
def test_pep257():
    # The pep257 convention without D100-D107 (ament's own default also requires D213, which the project's
    # summary-on-the-first-line style does not follow).
    result = subprocess.run([tool("ament_pep257"), "--convention", "pep257", "--add-ignore",
                             "D100,D101,D102,D103,D104,D105,D106,D107", "--exclude", *EXCLUDED, "--", *CHECKED],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
