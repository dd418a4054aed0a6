"""A test-only engine node: serves simple kinds through the real RunTask action.

It lets the mission engine be tested across processes before (and beside) the real engines.

Kinds (each prefixed by the `kind_prefix` parameter):
  sleep  {seconds}                 succeeds after `seconds`
  move   {seconds}                 the same, holding the exclusive resource "motion"
  fail   {times, retryable}        fails its first `times` attempts, then succeeds
  echo   {...}                     returns its parameters as its result
  once   {seconds}                 like sleep, but not safe to run twice (on_restart: fail)
  crash  {}                        kills its own engine process (SIGKILL): a "poison" task

Every start and end is appended as a JSON line to the file named by the `run_log` parameter.

    python test/task_engine.py --ros-args -r __node:=test_engine -p run_log:=/tmp/runs.jsonl
"""

import json
import os
import signal
import sys
import threading
import time

from qai_edge.engine_node import EngineNode, spin_node
from qai_edge.params import ParamSpec
from qai_edge.tasks import ON_RESTART_FAIL, ServedKind, TaskFailed, TaskKindSpec

SECONDS = {"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0}},
           "required": ["seconds"], "additionalProperties": False}
FAIL = {"type": "object", "properties": {"times": {"type": "integer", "minimum": 0}, "retryable": {"type": "boolean"}},
        "additionalProperties": False}


class TaskEngine(EngineNode):
    def __init__(self):
        super().__init__("test_engine", (ParamSpec("kind_prefix", "", "prefix of every kind name", read_only=True),
                                         ParamSpec("run_log", "", "JSON-lines file of task starts and ends",
                                                   read_only=True)))
        prefix = self.get_parameter("kind_prefix").value
        self._log_path = self.get_parameter("run_log").value
        self._log_lock = threading.Lock()
        self.serve([
            ServedKind(TaskKindSpec(f"{prefix}sleep", parameters_schema=SECONDS, result_keys=("slept",)), self.sleep),
            ServedKind(TaskKindSpec(f"{prefix}move", parameters_schema=SECONDS, result_keys=("slept",),
                                    resources=frozenset({"motion"})), self.sleep),
            ServedKind(TaskKindSpec(f"{prefix}fail", parameters_schema=FAIL, result_keys=("attempt",)), self.fail),
            ServedKind(TaskKindSpec(f"{prefix}echo"), self.echo),
            ServedKind(TaskKindSpec(f"{prefix}once", parameters_schema=SECONDS, result_keys=("slept",),
                                    on_restart=ON_RESTART_FAIL), self.sleep),
            ServedKind(TaskKindSpec(f"{prefix}crash"), self.crash),
        ], max_workers=32)
        self.start()

    def _log(self, event, request, **extra):
        if self._log_path:
            line = json.dumps({"event": event, "mission": request.mission_id, "task": request.task_id,
                               "attempt": request.attempt, "kind": request.kind, "t": time.time(), **extra})
            with self._log_lock, open(self._log_path, "a") as log:
                log.write(line + "\n")

    def sleep(self, request, context):
        self._log("start", request)
        seconds = request.parameters["seconds"]
        try:
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                context.feedback(progress=1 - left / seconds, status=f"{left:.2f} s left", left=round(left, 3))
                context.sleep(min(left, 0.1))
        except BaseException:
            self._log("stop", request)
            raise
        self._log("end", request)
        return {"slept": seconds}

    def fail(self, request, context):
        self._log("start", request)
        if request.attempt <= request.parameters.get("times", 1_000_000):
            self._log("end", request, failed=True)
            raise TaskFailed(f"failing on purpose (attempt {request.attempt})",
                             retryable=request.parameters.get("retryable", True))
        self._log("end", request)
        return {"attempt": request.attempt}

    def crash(self, request, context):
        self._log("start", request)
        os.kill(os.getpid(), signal.SIGKILL)

    def echo(self, request, context):
        self._log("start", request)
        self._log("end", request)
        return dict(request.parameters)


if __name__ == "__main__":
    sys.exit(spin_node(TaskEngine))
