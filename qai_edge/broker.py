"""A local MQTT broker for the hub link: Debian's mosquitto with config/mosquitto.conf. No rclpy import.

`qai-edge up` starts one before the nodes when the profile has

    broker:
      start: true          # start a local mosquitto (false: the hub_link uses a broker run elsewhere)
      port: 18830          # the robots' listener (loopback); hub_link's broker_port must agree
      hub_port: 18831      # the hub tools' listener (loopback): qai-hub --port
      config: ""           # mosquitto settings file; empty: the installed config/mosquitto.conf
      data_dir: ~/.ros/qai_edge/mosquitto   # persistence, the broker's log and its accounts (accounts/)

restarts it when it dies (with the nodes' backoff), and stops it after them. The broker started so is
locked (BrokerAccounts): no anonymous client; each robot an account of its own (its username is its
robot id, and on the robots' listener its MQTT client id too, so no client can take another's session),
allowed to publish only under qai/<fleet>/<its id>/ and to read only its own and the fleet-wide commands;
the hub's tools an account on a listener of their own, allowed to read the fleet and publish commands.
Tests start their own on a free port, locked or open. The broker is stopped by its PID (SIGTERM, which
saves its persistence, then SIGKILL).
"""

from __future__ import annotations

import collections
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from qai_edge.paths import share_file
from qai_edge.processes import die_with_parent, stop_process

DEFAULT_PORT = 18830
DEFAULT_HUB_PORT = 18831
DEFAULT_DATA_DIR = "~/.ros/qai_edge/mosquitto"
HUB_USER = "hub"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # one MQTT topic level, as qai_hub.protocol.NAME
_KEYS = {"start", "port", "hub_port", "config", "data_dir"}


class BrokerError(RuntimeError):
    """The broker could not be started; the message says why (and shows its log)."""


@dataclass(frozen=True)
class BrokerSpec:
    """The profile's `broker` section."""

    start: bool = True
    port: int = DEFAULT_PORT
    hub_port: int = DEFAULT_HUB_PORT
    config: str = ""
    data_dir: str = DEFAULT_DATA_DIR

    @property
    def accounts_dir(self) -> Path:
        return Path(self.data_dir).expanduser() / "accounts"

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
    hub_port = value.get("hub_port", DEFAULT_HUB_PORT)
    if isinstance(hub_port, bool) or not isinstance(hub_port, int) or not 1 <= hub_port <= 65535 or hub_port == port:
        raise fail("broker.hub_port", f"expected a port number 1-65535 other than broker.port, got {hub_port!r}")
    for key in ("config", "data_dir"):
        if not isinstance(value.get(key, ""), str):
            raise fail(f"broker.{key}", f"expected a path, got {value[key]!r}")
    spec = BrokerSpec(start=start, port=port, hub_port=hub_port, config=value.get("config", ""),
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


_HANDED_OUT: "collections.deque[int]" = collections.deque(maxlen=64)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port free on `host` now, and not one this process was handed recently.

    With QAI_PORT_RANGE=low-high set (a test worker's own range, test/conftest.py), a free port from that
    range, so parallel test workers never pick the same one and none collides with the kernel's ephemeral
    ports, which outgoing connections take; otherwise one the kernel picks. A port is free until someone
    binds it, so two calls before either is bound (a broker's two listeners) could get the same one: the
    last 64 ports handed out are never handed out again.
    """
    span = os.environ.get("QAI_PORT_RANGE", "")
    if span:
        low, _, high = span.partition("-")
        candidates = list(range(int(low), int(high) + 1))
        random.shuffle(candidates)
    else:
        candidates = [0] * 32  # the kernel's pick, a few times over
    for candidate in candidates:
        if candidate in _HANDED_OUT:
            continue
        with socket.socket() as probe:
            # As mosquitto binds its listener: a port whose last connections wait in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            port = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.append(port)
            return port
    raise BrokerError(f"no free port in QAI_PORT_RANGE={span}" if span else "no free port from the kernel")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class BrokerAccounts:
    """The accounts of a locked broker, in one directory (mode 0700).

    Each account has a random password in `<name>.password` (mode 0600: what hub_link's password_file and
    qai-hub --password-file read). From them it writes mosquitto's hashed password files (robots.passwd,
    hub.passwd, with mosquitto_passwd) and ACL files (robots.acl, hub.acl) for `fleet`:

        robots:  publish qai/<fleet>/<own id>/status, .../telemetry/+, .../cmd/+/reply, .../link/ping;
                 read qai/<fleet>/<own id>/cmd/+, qai/<fleet>/all/cmd/+ and its own ping
        hub:     read qai/<fleet>/#; publish qai/<fleet>/+/cmd/+ (commands to a robot or to all)
    """

    def __init__(self, directory: str | Path, fleet: str):
        self.directory = Path(directory).expanduser()
        self.fleet = fleet

    def password_file(self, name: str) -> Path:
        return self.directory / f"{name}.password"

    def ensure(self, robots: list[str], hubs: list[str] = [HUB_USER]) -> None:
        """Give every robot and hub an account (a new random password for the ones without), write the files."""
        for name in [*robots, *hubs, self.fleet]:
            if not _NAME.match(name):
                raise BrokerError(f"{name!r}: an account or fleet name is 1-64 letters, digits, '_' or '-'")
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        for name in [*robots, *hubs]:
            path = self.password_file(name)
            if not path.exists():
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w") as out:
                    out.write(secrets.token_urlsafe(24) + "\n")
        known_robots = sorted(set(robots) | set(self._listed("robots.passwd")))
        known_hubs = sorted(set(hubs) | set(self._listed("hub.passwd")))
        self._write_passwd("robots.passwd", known_robots)
        self._write_passwd("hub.passwd", known_hubs)
        fleet = self.fleet
        (self.directory / "robots.acl").write_text(
            "# Written by qai_edge.broker.BrokerAccounts: a robot publishes only under its own id.\n"
            f"pattern write qai/{fleet}/%u/status\npattern write qai/{fleet}/%u/telemetry/+\n"
            f"pattern write qai/{fleet}/%u/cmd/+/reply\npattern readwrite qai/{fleet}/%u/link/ping\n"
            f"pattern read qai/{fleet}/%u/cmd/+\npattern read qai/{fleet}/all/cmd/+\n")
        (self.directory / "hub.acl").write_text(
            "# Written by qai_edge.broker.BrokerAccounts: the hub reads the fleet and sends commands.\n"
            + "".join(f"user {name}\ntopic read qai/{fleet}/#\ntopic write qai/{fleet}/+/cmd/+\n"
                      for name in known_hubs))

    def _listed(self, name: str) -> list[str]:
        path = self.directory / name
        if not path.exists():
            return []
        return [line.split(":", 1)[0] for line in path.read_text().splitlines() if ":" in line
                and self.password_file(line.split(":", 1)[0]).exists()]

    def _write_passwd(self, name: str, users: list[str]) -> None:
        if not users:  # mosquitto_passwd refuses an empty file: an empty password file lets nobody in
            (self.directory / name).write_text("")
            return
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        plain = self.directory / f".{name}.plain"
        descriptor = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            for user in users:
                out.write(f"{user}:{self.password_file(user).read_text().strip()}\n")
        try:
            subprocess.run([tool, "-U", str(plain)], check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as error:
            plain.unlink(missing_ok=True)
            raise BrokerError(f"cannot hash the broker's passwords with {tool}: {error}") from None
        os.replace(plain, self.directory / name)

    def listeners(self, host: str, port: int, hub_port: int) -> str:
        """Return the mosquitto lines of the two locked listeners, each with its own password file and ACL."""
        d = self.directory
        return (f"listener {port} {host}\nallow_anonymous false\npassword_file {d / 'robots.passwd'}\n"
                f"acl_file {d / 'robots.acl'}\nuse_username_as_clientid true\n"
                f"listener {hub_port} {host}\nallow_anonymous false\npassword_file {d / 'hub.passwd'}\n"
                f"acl_file {d / 'hub.acl'}\n")


class LocalBroker:
    """One mosquitto process on loopback, stopped by PID. Use as a context manager, or start/stop.

    With `accounts` (BrokerAccounts) it is locked: the robots' listener on `port` and the hub's on `hub_port`;
    without, one open listener on `port` (anonymous clients: tests of other things only).
    """

    def __init__(self, port: int, data_dir: str | Path, config_file: str | Path | None = None,
                 host: str = "127.0.0.1", extra_config: str = "", accounts: BrokerAccounts | None = None,
                 hub_port: int | None = None):
        self.host, self.port = host, port
        self.data_dir = Path(data_dir).expanduser()
        if config_file is None:
            config_file = BrokerSpec().config_path()
        self.config_file = Path(config_file)
        self.extra_config = extra_config
        self.accounts = accounts
        self.hub_port = hub_port
        if accounts is not None and hub_port is None:
            raise ValueError("a locked broker needs the hub's port")
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
        if self.accounts is not None:
            lines.append(self.accounts.listeners(self.host, self.port, self.hub_port))
        else:
            lines += [f"listener {self.port} {self.host}", "allow_anonymous true"]
        lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "LocalBroker":
        executable = find_mosquitto()
        if executable is None:
            raise BrokerError("mosquitto is not installed (Debian: sudo apt-get install mosquitto)")
        for port in (self.port, self.hub_port):
            if port is not None and port_open(self.host, port):
                raise BrokerError(f"port {self.host}:{port} is already in use (another broker?)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "mosquitto-run.conf"
        config.write_text(self.runtime_config())
        # Its own session (a Ctrl-C meant for qai-edge does not reach it first), and it dies with its starter
        # even when that is killed outright.
        self.process = subprocess.Popen([executable, "-c", str(config)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                        preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while not all(port_open(self.host, port) for port in (self.port, self.hub_port) if port is not None):
            if self.process.poll() is not None:
                process, self.process = self.process, None
                with process.stderr:  # closed here: an exited broker's pipe must not wait for the collector
                    stderr = process.stderr.read().decode(errors="replace")
                raise BrokerError(f"mosquitto exited with {process.returncode}: {stderr.strip()[-500:]}"
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

    def kill(self) -> None:
        """SIGKILL it, as a crash would (nothing saved since its last autosave); start() brings it back."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, 5.0, (signal.SIGKILL,))
            if process.stderr is not None:
                process.stderr.close()

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
