"""Lint as a test, as ros2/demos does (ament_flake8, ament_pep257), at 120 columns (setup.cfg [flake8])."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = [str(ROOT / name) for name in ("qai_edge", "qai_mission", "qai_intelligence", "qai_quantum_bridge",
                                         "qai_io", "launch", "test", "bench", "setup.py")]
EXCLUDED = [str(ROOT / name) for name in (".venv", "build", "install", "qai_interfaces")]


@pytest.mark.linter
def test_flake8():
    from ament_flake8.main import main_with_errors

    rc, errors = main_with_errors(argv=["--config", str(ROOT / "setup.cfg"), "--exclude", *EXCLUDED,
                                        "--", *CHECKED])
    assert rc == 0, f"{len(errors)} flake8 error(s):\n" + "\n".join(errors)


@pytest.mark.linter
def test_pep257():
    from ament_pep257.main import main

    # The pep257 convention without D100-D107 (ament's own default also requires D213, which the project's
    # summary-on-the-first-line style does not follow).
    rc = main(argv=["--convention", "pep257", "--add-ignore", "D100,D101,D102,D103,D104,D105,D106,D107",
                    "--exclude", *EXCLUDED, "--", *CHECKED])
    assert rc == 0, "docstring style errors (see the output above)"
