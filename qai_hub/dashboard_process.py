"""A `qai-hub serve` process for the demo and tests: start it, wait until it answers, stop it. No rclpy import.

Kept apart from the dashboard server (qai_hub.dashboard), so a program that only starts one imports
neither aiohttp nor the mission checks the server runs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from qai_edge.broker import free_port
from qai_edge.processes import die_with_parent, stop_process
from qai_hub.client import BrokerOptions
from qai_hub.dashboard_auth import read_password_file


def broker_arguments(broker: BrokerOptions) -> list[str]:
    """Return the qai-hub options that say where the broker is and who the hub is there."""
    arguments = ["--host", broker.host, "--port", str(broker.port)]
    for option, value in (("--username", broker.username), ("--password-file", broker.password_file),
                          ("--tls-ca", broker.tls_ca), ("--tls-cert", broker.tls_cert), ("--tls-key", broker.tls_key)):
        if value:
            arguments += [option, str(value)]
    return arguments


class DashboardError(RuntimeError):
    """The dashboard did not start; the message has its output."""


class RunningDashboard:
    """A `qai-hub serve` process started by start_dashboard(); stop() (or leaving a with block) ends it."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path):
        self.process, self.url, self.log_path = process, url, log_path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL; by PID."""
        stop_process(self.process, timeout)

    def __enter__(self) -> "RunningDashboard":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_dashboard(password_file: str | Path, *, broker: BrokerOptions = BrokerOptions(), fleet: str = "fleet",
                    robots: str | Path | None = None, key: str | Path | None = None, bind: str = "127.0.0.1",
                    port: int = 0, log_path: str | Path | None = None, timeout: float = 30.0,
                    extra_args: tuple[str, ...] = ()) -> RunningDashboard:
    """Start `qai-hub serve` as a subprocess and return once it answers; its URL is `.url`.

    port 0 takes a free port. A missing password file is created with a random password (mode 0600); the
    operator logs in with its content. `broker` is where the broker is and the hub's credentials there,
    `robots` the registry of enrolled robots (default: qai-hub's). `key` is the hub's ML-DSA-65 private key
    (default: qai-hub's, ~/.config/qai-hub/hub.mldsa65.key); without a usable key the page works and its
    commands are refused. The process dies with the thread that started it (PR_SET_PDEATHSIG); its output
    goes to `log_path` (default: a temp file).
    """
    read_password_file(password_file, create=True)  # refuses an unusable one here, with the reason
    port = port or free_port(bind)
    log_file = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="qai-dashboard-", suffix=".log")[1])
    argv = [sys.executable, "-m", "qai_hub.cli", *broker_arguments(broker), "--fleet", fleet,
            *(("--robots", str(robots)) if robots else ()),
            "serve", "--bind", bind, "--port", str(port), "--login-file", str(password_file),
            *(("--key", str(key)) if key else ()), *extra_args]
    with open(log_file, "wb") as output:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=die_with_parent)
    host = f"[{bind}]" if ":" in bind else bind
    running = RunningDashboard(process, f"http://{host}:{port}/", log_file)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise DashboardError(f"qai-hub serve exited with {process.returncode}:\n{running.log()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{running.url}healthz", timeout=1.0) as answer:
                if answer.status == 200:
                    return running
        except OSError:
            pass
        if time.monotonic() > deadline:
            running.stop()
            raise DashboardError(f"qai-hub serve did not answer within {timeout:g} s:\n{running.log()[-2000:]}")
        time.sleep(0.1)
