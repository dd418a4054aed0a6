"""Helpers for the dashboard's tests and bench: a login file, a headless Chromium driven by WebDriver.

The browser is Debian's `chromium` with its `chromium-driver` (apt-get install chromium chromium-driver),
driven by selenium with an explicit driver path (selenium never downloads a driver or a browser). Tests
that need it skip with the reason where it is not installed, and fail instead under CI=true, where
.ci/run installs it.
"""

from __future__ import annotations

import http.cookiejar
import os
import urllib.error
import urllib.request
from pathlib import Path

import orjson

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


class Client:
    """HTTP with a cookie jar, as a browser keeps the session cookie."""

    def __init__(self, url: str):
        self.url = url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), NoRedirect)
        self.csrf = ""

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict, dict]:
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method, headers={
            **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
        try:
            with self.opener.open(request, timeout=20) as answer:
                status, raw, answer_headers = answer.status, answer.read(), dict(answer.headers)
        except urllib.error.HTTPError as error:
            status, raw, answer_headers = error.code, error.read(), dict(error.headers)
        try:
            parsed = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            parsed = {"text": raw.decode(errors="replace")}
        return status, parsed, answer_headers

    def post(self, path: str, body, csrf: bool = True, **headers) -> tuple[int, dict]:
        status, data, _ = self.request("POST", path, body, {**({"X-CSRF-Token": self.csrf} if csrf else {}),
                                                            **headers})
        return status, data

    def login(self, password: str = PASSWORD) -> None:
        status, data, _ = self.request("POST", "/api/login", {"password": password})
        assert status == 200, data
        status, session, _ = self.request("GET", "/api/session")
        assert status == 200, session
        self.csrf = session["csrf"]

    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.cookies)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
