"""Start a mission engine and the test engine in their own processes, and a MissionClient to drive them."""

from __future__ import annotations

import json
from pathlib import Path

from harness import ProcessGroup, RosProbe, status_values, unique_namespace

STARTUP_TIMEOUT = 30.0


class MissionStack:
    def __init__(self, processes: ProcessGroup, probe: RosProbe, tmp_path: Path, mission_parameters=None,
                 start_test_engine: bool = True):
        from qai_mission.client import MissionClient

        self.processes = processes
        self.probe = probe
        self.namespace = unique_namespace()
        self.data_dir = tmp_path / "data"
        self.run_log = tmp_path / "runs.jsonl"
        self.mission_parameters = {"data_dir": str(self.data_dir), "robot_id": "testbot", "heartbeat_period": 0.2,
                                   "engine_timeout": 1.5, **(mission_parameters or {})}
        probe.watch_diagnostics()
        self.mission_engine = self.start_mission_engine()
        self.test_engine = None
        if start_test_engine:
            self.test_engine = self.start_test_engine()
            self.wait_engine_up("test_engine")
        self.client = MissionClient(namespace=self.namespace)

    def start_mission_engine(self):
        return self.processes.start_node("mission_engine", namespace=self.namespace,
                                         parameters=self.mission_parameters)

    def start_test_engine(self):
        return self.processes.start_test_engine(namespace=self.namespace, parameters={
            "run_log": str(self.run_log), "heartbeat_period": 0.2})

    def mission_engine_values(self) -> dict:
        status = self.probe.latest_status(f"{self.namespace}/mission_engine")
        return status_values(status) if status else {}

    def wait_engine_up(self, engine: str, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until the mission engine counts `engine` as up (it reports engines_up on /diagnostics)."""
        full = f"{self.namespace}/{engine}"
        self.probe.spin_until(lambda: full in self.mission_engine_values().get("engines_up", "").split(","),
                              timeout, lambda: f"the mission engine to see {full}\n{self.logs()}")

    def wait_engine_down(self, engine: str, timeout: float = STARTUP_TIMEOUT) -> None:
        full = f"{self.namespace}/{engine}"
        self.probe.spin_until(lambda: self.mission_engine_values()
                              and full not in self.mission_engine_values().get("engines_up", "").split(","),
                              timeout, lambda: f"the mission engine to count {full} lost\n{self.logs()}")

    def runs(self) -> list[dict]:
        """Return the test engine's log of task starts and ends."""
        if not self.run_log.exists():
            return []
        return [json.loads(line) for line in self.run_log.read_text().splitlines() if line.strip()]

    def starts(self, task_id: str) -> int:
        return sum(1 for r in self.runs() if r["task"] == task_id and r["event"] == "start")

    def logs(self) -> str:
        seen = ", ".join(sorted(self.probe.diagnostics))
        return f"heartbeats seen by the test: {seen}\n" + "\n".join(
            f"--- {child.name} (pid {child.pid}, {child.describe()})\n{child.log()[-3000:]}"
            for child in self.processes.children)

    def close(self) -> None:
        self.client.close()
