"""A local MQTT broker for the hub link: Debian's mosquitto with config/mosquitto.conf. No rclpy import.

`qai-edge up` starts one before the nodes when the profile has

    broker:
      start: true          # start a local mosquitto (false: the hub_link uses a broker run elsewhere)
      port: 18830          # loopback port; hub_link's broker_port must agree
      config: ""           # mosquitto settings file; empty: the installed config/mosquitto.conf
      data_dir: ~/.ros/qai_edge/mosquitto   # persistence and the broker's log

and stops it after them. Tests start their own on a free port. The broker is stopped by its PID
(SIGTERM, which saves its persistence, then SIGKILL).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from qai_edge.paths import share_file
from qai_edge.processes import die_with_parent, stop_process

DEFAULT_PORT = 18830
DEFAULT_DATA_DIR = "~/.ros/qai_edge/mosquitto"
_KEYS = {"start", "port", "config", "data_dir"}


class BrokerError(RuntimeError):
    """The broker could not be started; the message says why (and shows its log)."""


@dataclass(frozen=True)
class BrokerSpec:
    """The profile's `broker` section."""

    start: bool = True
    port: int = DEFAULT_PORT
    config: str = ""
    data_dir: str = DEFAULT_DATA_DIR

    def config_path(self) -> Path:
        if self.config:
            return Path(self.config).expanduser()
        return share_file("config", "mosquitto.conf")


def parse_broker_section(value: Any, fail: Callable[[str, str], Exception],
                         nodes: Mapping[str, Mapping[str, Any]] = {}) -> BrokerSpec | None:
    """Check the profile's `broker` section; return None when it is absent.

    `nodes` maps node names to their resolved parameters: a hub_link on loopback must use the port of the
    broker `qai-edge up` starts.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail("broker", f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in _KEYS:
            raise fail(f"broker.{key}", f"unknown key (expected one of: {', '.join(sorted(_KEYS))})")
    start = value.get("start", True)
    if not isinstance(start, bool):
        raise fail("broker.start", f"expected true or false, got {start!r}")
    port = value.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise fail("broker.port", f"expected a port number 1-65535, got {port!r}")
    for key in ("config", "data_dir"):
        if not isinstance(value.get(key, ""), str):
            raise fail(f"broker.{key}", f"expected a path, got {value[key]!r}")
    spec = BrokerSpec(start=start, port=port, config=value.get("config", ""),
                      data_dir=value.get("data_dir", DEFAULT_DATA_DIR) or DEFAULT_DATA_DIR)
    if start:
        for name, parameters in nodes.items():
            if "broker_port" in parameters and parameters.get("broker_host") in ("127.0.0.1", "localhost", "::1") \
                    and parameters["broker_port"] != port:
                raise fail(f"nodes.{name}.parameters.broker_port",
                           f"{parameters['broker_port']} is not broker.port {port}, the local broker qai-edge starts")
    return spec


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
                                              if os.access(p, os.X_OK)), None)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port free on `host` now.

    With QAI_PORT_RANGE=low-high set (a test worker's own range, test/conftest.py), a free port from that
    range, so parallel test workers never pick the same one and none collides with the kernel's ephemeral
    ports, which outgoing connections take; otherwise one the kernel picks.
    """
    span = os.environ.get("QAI_PORT_RANGE", "")
    if span:
        low, _, high = span.partition("-")
        ports = list(range(int(low), int(high) + 1))
        random.shuffle(ports)
        for port in ports:
            with socket.socket() as probe:
                # As mosquitto binds its listener: a port whose last connections wait in TIME_WAIT is free.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError:
                    continue
                return port
        raise BrokerError(f"no free port in QAI_PORT_RANGE={span}")
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class LocalBroker:
    """One mosquitto process on a loopback port, stopped by PID. Use as a context manager, or start/stop."""

    def __init__(self, port: int, data_dir: str | Path, config_file: str | Path | None = None,
                 host: str = "127.0.0.1", extra_config: str = ""):
        self.host, self.port = host, port
        self.data_dir = Path(data_dir).expanduser()
        if config_file is None:
            config_file = BrokerSpec().config_path()
        self.config_file = Path(config_file)
        self.extra_config = extra_config
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "mosquitto.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def runtime_config(self) -> str:
        lines = [self.config_file.read_text(), "", "# Added by qai_edge.broker for this run:",
                 f"persistence_location {self.data_dir}/", f"log_dest file {self.log_path}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto switches to user mosquitto, who cannot write data_dir
        lines += [f"listener {self.port} {self.host}", self.extra_config]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "LocalBroker":
        executable = find_mosquitto()
        if executable is None:
            raise BrokerError("mosquitto is not installed (Debian: sudo apt-get install mosquitto)")
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.host}:{self.port} is already in use (another broker?)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "mosquitto-run.conf"
        config.write_text(self.runtime_config())
        # Its own session (a Ctrl-C meant for qai-edge does not reach it first), and it dies with its starter
        # even when that is killed outright.
        self.process = subprocess.Popen([executable, "-c", str(config)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                        preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise BrokerError(f"mosquitto exited with {self.process.returncode}: {stderr.strip()[-500:]}"
                                  f"{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"mosquitto did not accept connections on {self.host}:{self.port} within "
                                  f"{timeout:g} s{self._log_tail()}")
            time.sleep(0.05)
        return self

    def _log_tail(self) -> str:
        try:
            return "\n" + self.log_path.read_text(errors="replace")[-1000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (mosquitto saves its persistence), then SIGKILL; by PID, never by name."""
        process, self.process = self.process, None
        if process is None:
            return
        stop_process(process, timeout)
        if process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
