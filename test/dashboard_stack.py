"""Helpers for the dashboard's tests and bench: a login file, a headless Chromium driven by WebDriver.

The browser is Debian's `chromium` with its `chromium-driver` (apt-get install chromium chromium-driver),
driven by selenium with an explicit driver path (selenium never downloads a driver or a browser). Tests
that need it skip with the reason where it is not installed, and fail instead under CI=true, where
.ci/run installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

from qai_hub.browser import Browser as _Browser, chromium_paths

PASSWORD = "operator-test-password"


def require_chromium() -> tuple[str, str]:
    import pytest

    paths = chromium_paths()
    if paths is None:
        reason = "no headless browser: install Debian's chromium and chromium-driver (apt-get install chromium " \
                 "chromium-driver; `make setup` does it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI installs them (.ci/run)")
        pytest.skip(reason)
    return paths


def write_login_file(directory: Path, password: str = PASSWORD) -> Path:
    path = directory / "dashboard.password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


class Browser(_Browser):
    """The package's headless Chromium; skips (or fails under CI) where none is installed; logs in with PASSWORD."""

    def __init__(self, directory: Path, width: int = 1400, height: int = 1800):
        require_chromium()
        super().__init__(directory, width, height)

    def login(self, url: str, password: str = PASSWORD) -> None:
        super().login(url, password)
