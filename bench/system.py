"""System figures: what each engine process of the default profile costs, idle.

Runs `qai-edge up` on a private copy of the installed default profile (config/edge.yaml: the same nodes
and parameters; its own ROS domain, broker port, data directories and hub key, so it meets nothing else
on the machine), waits until every node reports OK on /diagnostics, holds it `--seconds` with the
simulated vehicle flying nothing, and records for each process the supervisor started (every engine node
and the MQTT broker) and for the supervisor itself: CPU seconds since start (start-up included), the
share of a core used over the idle window, and peak RSS (VmHWM), from /proc. Then it stops them all
(SIGINT to `qai-edge up`, which stops its children in order) and checks none is left.

`qai_edge.figures.measure_processes` is the part the demo reuses for its own processes.

    .venv/bin/python bench/system.py [--seconds 30] [--startup-timeout 120] [--json PATH]
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from qai_edge.figures import FigureLog, measure_processes, snapshot
from qai_edge.isolation import isolate

STARTED = re.compile(r"\[qai-edge\] (\S+) started \(pid (\d+)\)")
BROKER = re.compile(r"\[qai-edge\] MQTT broker started on \S+ \(pid (\d+)")
HEALTHY = re.compile(r"\[qai-edge\] all (\d+) nodes healthy")
PRIVATE_PREFIXES = ("~/.ros/qai_edge", "~/.config/qai-hub")


def private_profile(directory: Path) -> Path:
    """Write the default profile with its ports, data directories and hub key made private to `directory`."""
    from qai_edge.broker import free_port
    from qai_edge.profile import default_profile_path
    from qai_hub.protocol import generate_key_pair

    profile = yaml.safe_load(default_profile_path().read_text())
    port = free_port()
    generate_key_pair(directory / "keys" / "hub.key", directory / "keys" / "hub.mldsa65.pub")

    def private(value):
        if isinstance(value, str):
            for prefix in PRIVATE_PREFIXES:
                if value.startswith(prefix):
                    return str(directory / "keys") + value.removeprefix(prefix) if "qai-hub" in prefix \
                        else str(directory / "data") + value.removeprefix(prefix)
            return value
        if isinstance(value, list):
            return [private(item) for item in value]
        return value

    if profile.get("broker"):
        profile["broker"] = {**profile["broker"], "port": port, "data_dir": str(directory / "mosquitto")}
    for node in (profile.get("nodes") or {}).values():
        parameters = node.get("parameters") or {}
        for key, value in parameters.items():
            parameters[key] = private(value)
        if "broker_port" in parameters:
            parameters["broker_port"] = port
    path = directory / "profile.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


class Up:
    """`qai-edge up` as a child process, its output read on a thread."""

    def __init__(self, profile: Path):
        executable = Path(sys.executable).with_name("qai-edge")
        self.process = subprocess.Popen([str(executable), "up", "--profile", str(profile)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for text in self.process.stdout:
            self.lines.append(text.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def pids(self) -> dict[str, int]:
        """Return the running processes by name: the supervisor, the broker, and each node's latest start."""
        found = {"qai-edge up (supervisor)": self.process.pid}
        for text in list(self.lines):
            if match := BROKER.search(text):
                found["mosquitto (MQTT broker)"] = int(match.group(1))
            elif match := STARTED.search(text):
                found[match.group(1)] = int(match.group(2))
        return found

    def wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if any(HEALTHY.search(text) for text in list(self.lines)):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> int:
        """SIGINT (qai-edge stops its children in order), then SIGKILL; its children die with it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.reader.join(5)
        return self.process.returncode


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead and not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="idle seconds after every node is OK (30)")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for every node OK")
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    args = parser.parse_args()
    log = FigureLog(args.json, "system")
    environment = isolate("qai-edge-bench-system-")
    with tempfile.TemporaryDirectory(prefix="qai-edge-bench-system-") as scratch:
        profile = private_profile(Path(scratch))
        print(f"qai-edge up on the default profile, made private (ROS_DOMAIN_ID={environment['ROS_DOMAIN_ID']}, "
              f"{profile})", flush=True)
        began = time.monotonic()
        up = Up(profile)
        pids: dict[str, int] = {}
        try:
            if not up.wait_healthy(args.startup_timeout):
                print(up.output())
                raise SystemExit(f"not every node healthy after {args.startup_timeout:g} s")
            healthy_after = time.monotonic() - began
            pids = up.pids()
            nodes = len(pids) - 1 - ("mosquitto (MQTT broker)" in pids)
            print(f"  all {nodes} nodes healthy {healthy_after:.1f} s after `qai-edge up` started; "
                  f"holding {args.seconds:g} s idle", flush=True)
            log.add(f"default profile ({nodes} nodes): `qai-edge up` to every node OK", healthy_after, "s")
            earlier = snapshot(pids)
            time.sleep(args.seconds)
            restarts = [text for text in up.lines if " exited (pid " in text]
            records = measure_processes(pids, earlier=earlier, window_s=args.seconds, label="")
            log.extend(records)
            total_rss = sum(r["value"] for r in records if r["figure"].endswith("peak RSS") and r["value"])
            total_cpu = sum(r["value"] for r in records if r["figure"].endswith("CPU time") and r["value"])
            log.add("all processes: peak RSS, summed", total_rss, "MiB")
            log.add(f"all processes: CPU time (start-up + {args.seconds:g} s idle), summed", total_cpu, "s")
            if restarts:
                log.add(f"processes that exited during the run: {'; '.join(restarts)[:200]}", len(restarts), "")
            width = max(len(r["figure"]) for r in records)
            for record in records:
                value = "-" if record["value"] is None else f"{record['value']:.4g}"
                print(f"  {record['figure']:<{width}} {value:>10} {record['unit']}")
            print(f"  summed: peak RSS {total_rss:.0f} MiB, CPU {total_cpu:.1f} s; restarts: {len(restarts)}")
        finally:
            code = up.stop()
            left = [name for name, pid in pids.items() if alive(pid)]
            print(f"  stopped (`qai-edge up` exit {code}); still running: {', '.join(left) or 'none'}", flush=True)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
