"""Benchmark figures as records, and what running processes cost (CPU seconds, peak RSS). No rclpy import.

A figure is a plain dict, the format `bench/run_all.py` tabulates and writes to `bench/results.json`:

    {"area": "hub link", "figure": "ROS -> broker at QoS 1", "value": 3939.0, "unit": "msg/s",
     "baseline": 6584.0, "ratio": 0.6, "target": "ratio >= 0.5", "met": true}

`baseline` (the same figure of the raw library or peer, measured in the same run), `ratio` (as the script
defines it: its figure name or target says which way) and `target` (text) are optional; `met` is true or
false when a numeric target was checked, null otherwise. Values that are not finite (a NaN from an empty
sample) are written as null.

`FigureLog` collects a script's figures and, given a path (each bench script's `--json PATH`), rewrites
that file after every figure, so a script that fails or is stopped half way still leaves what it measured.

`percentile` and `wait_until` are what every bench script needs beside them: one definition of a
percentile (nearest rank; NaN for an empty sample) and a wait on a condition that ends the script naming it.

`measure_processes` reads /proc (Linux) for the CPU time and peak resident memory of running processes,
e.g. every engine process a supervisor started; `snapshot` taken earlier turns CPU time into the share of
a core used over a window.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

FIELDS = ("area", "figure", "value", "unit", "baseline", "ratio", "target", "met")


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def figure(area: str, name: str, value, unit: str, *, baseline=None, ratio=None, target: str | None = None,
           met: bool | None = None, **extra) -> dict:
    """Return one figure record; numbers become floats, non-finite ones None, `met` None without a value."""
    value = _number(value)
    record = {"area": area, "figure": name, "value": value, "unit": unit, "baseline": _number(baseline),
              "ratio": _number(ratio), "target": target or None,
              "met": None if met is None or value is None else bool(met)}
    record.update(extra)
    return record


class FigureLog:
    """A script's figures, written to `path` (if given) as a JSON list after each one is added."""

    def __init__(self, path: str | os.PathLike | None, area: str):
        self.path = Path(path) if path else None
        self.area = area
        self.records: list[dict] = []
        if self.path is not None:
            self._write()

    def add(self, name: str, value, unit: str, **options) -> dict:
        """Add a figure of this log's area (options as `figure`'s) and rewrite the file."""
        record = figure(options.pop("area", self.area), name, value, unit, **options)
        self.records.append(record)
        if self.path is not None:
            self._write()
        return record

    def extend(self, records: Iterable[dict]) -> None:
        self.records.extend(records)
        if self.path is not None:
            self._write()

    def _write(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.records, indent=1))
        temporary.replace(self.path)


def percentile(values: Iterable[float], share: float) -> float:
    """Return the nearest-rank value at `share` (0..1) of the sorted `values`; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.005) -> None:
    """Poll `predicate` until it is true; after `timeout` s end the script, naming what it waited for."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class ProcessSample:
    """One reading of a process from /proc."""

    cpu_seconds: float  # user + system since it started
    peak_rss_bytes: int  # VmHWM: the most resident memory it has had
    rss_bytes: int  # VmRSS now


def sample_process(pid: int) -> ProcessSample | None:
    """Read a process's CPU time and memory from /proc; None when it is gone (or not ours to read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of proc(5))
    memory = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            memory[key] = int(rest.split()[0]) * 1024  # kB
    return ProcessSample(cpu, memory.get("VmHWM", 0), memory.get("VmRSS", 0))


def snapshot(pids: Mapping[str, int]) -> dict[str, ProcessSample]:
    """Sample each named process; the ones that are gone are left out."""
    samples = {}
    for name, pid in pids.items():
        sample = sample_process(pid)
        if sample is not None:
            samples[name] = sample
    return samples


def measure_processes(pids: Mapping[str, int] | Iterable[int], *, area: str = "system",
                      earlier: Mapping[str, ProcessSample] | None = None, window_s: float | None = None,
                      label: str = "") -> list[dict]:
    """Return figures for each process: CPU seconds since it started, its CPU share, its peak RSS.

    The CPU share (percent of one core) is over the last `window_s` seconds, given `earlier`: a `snapshot` of
    the same names taken that long before. `pids` maps a name (e.g. the node's) to its pid; a plain list of
    pids is named by pid. A process that has exited gets a record with value None saying so. `label` is
    appended to each figure's name.
    """
    named = dict(pids) if isinstance(pids, Mapping) else {f"pid {pid}": pid for pid in pids}
    suffix = f" {label}" if label else ""
    records = []
    for name, pid in named.items():
        now = sample_process(pid)
        if now is None:
            records.append(figure(area, f"{name}: process gone{suffix}", None, "", pid=pid))
            continue
        records.append(figure(area, f"{name}: CPU time{suffix}", now.cpu_seconds, "s", pid=pid))
        if earlier is not None and name in earlier and window_s:
            share = (now.cpu_seconds - earlier[name].cpu_seconds) / window_s * 100
            records.append(figure(area, f"{name}: CPU share over the last {window_s:g} s{suffix}", share, "% core",
                                  pid=pid))
        records.append(figure(area, f"{name}: peak RSS{suffix}", now.peak_rss_bytes / 2**20, "MiB", pid=pid))
    return records
