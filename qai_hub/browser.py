"""A headless Chromium driven by WebDriver, for looking at the hub dashboard from a script.

Used by the demo's --screenshot, the dashboard's tests and its bench.

The browser is Debian's `chromium` with its `chromium-driver` (apt-get install chromium chromium-driver),
driven by selenium with an explicit driver path: selenium never downloads a driver or a browser.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any


def chromium_paths() -> tuple[str, str] | None:
    """Return (browser, driver) where Debian's chromium and chromium-driver are installed, else None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    candidates = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
    driver = shutil.which("chromedriver") or next((p for p in candidates if os.access(p, os.X_OK)), None)
    return (browser, driver) if browser and driver else None


class Browser:
    """One headless Chromium with its own profile directory; quit() ends it (and its driver)."""

    def __init__(self, directory: Path, width: int = 1400, height: int = 1800):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        paths = chromium_paths()
        if paths is None:
            raise RuntimeError("no headless browser: install Debian's chromium and chromium-driver")
        browser, driver = paths
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-extensions", "--no-first-run", f"--window-size={width},{height}",
                         f"--user-data-dir={directory / 'chromium-profile'}"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(driver, log_output=str(directory / "chromedriver.log"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_script_timeout(30)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, script: str, timeout: float, what, *args: Any, interval: float = 0.1) -> Any:
        """Run `script` until it returns something truthy; return that, or fail naming `what` and the page's log."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}"
                                     f"\npage: {self.where()}\nbrowser log: {self.console()[-20:]}")
            time.sleep(interval)

    def where(self) -> str:
        """Say which page the browser shows: its URL, title, load state and the start of its text."""
        try:
            return str(self.js("return [location.href, document.title, document.readyState,"
                               " document.body ? document.body.innerText.slice(0, 300) : '(no body)']"))
        except Exception as error:  # noqa: BLE001 - a crashed page is itself the answer
            return f"(the page does not answer: {error})"

    def console(self) -> list[str]:
        return [f"{entry['level']}: {entry['message']}" for entry in self.driver.get_log("browser")]

    def login(self, url: str, password: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.get(url)
        self.wait("return location.pathname === '/login' && document.getElementById('password')", 15, "the login page")
        self.driver.find_element(By.ID, "password").send_keys(password)
        self.driver.find_element(By.ID, "login-button").click()
        self.wait("return location.pathname === '/' && document.getElementById('live-state').textContent === 'live'",
                  20, lambda: f"the dashboard live after the login (at {self.driver.current_url})")

    def quit(self) -> None:
        self.driver.quit()
