"""The mission engine under the faults and loads that grounded robots before (issue 8), across processes.

Admission right after start-up, poison tasks, large missions beside a running one, missions on simulated
time, and the command line with hostile files.
"""

import subprocess
import time

import pytest

from harness import installed, wait_for
from mission_stack import MissionStack
from qai_mission.client import MissionOutcome, MissionRejected
from qai_mission.model import TaskStatus

TIMEOUT = 60.0


def test_a_mission_submitted_right_after_start_up_waits_for_its_engine_and_says_so(processes, ros_probe, tmp_path):
    stack = MissionStack(processes, ros_probe, tmp_path, start_test_engine=False,
                         mission_parameters={"kind_grace_period": 30.0})
    try:
        waits = []
        pending = {}

        def start_engine_soon(why):
            waits.append(why)
            if "engine" not in pending:
                pending["engine"] = stack.start_test_engine()

        mission_id = stack.client.submit({"tasks": [{"id": "nap", "kind": "sleep", "parameters": {"seconds": 0.2}}]},
                                         on_waiting=start_engine_soon)
        assert waits and "engines serving sleep" in waits[0]
        assert stack.client.wait(mission_id, TIMEOUT).outcome is MissionOutcome.SUCCEEDED
    finally:
        stack.close()


def test_outside_the_grace_period_a_kind_nobody_serves_is_rejected_at_once(processes, ros_probe, tmp_path):
    stack = MissionStack(processes, ros_probe, tmp_path, mission_parameters={"kind_grace_period": 0.0})
    try:
        started = time.monotonic()
        with pytest.raises(MissionRejected, match="'teleport' is not served by any running engine"):
            stack.client.submit({"tasks": [{"id": "a", "kind": "teleport"}]})
        assert time.monotonic() - started < 10.0
    finally:
        stack.close()


def test_a_task_that_kills_its_engine_fails_after_max_engine_losses_and_names_the_engine(
        processes, ros_probe, tmp_path):
    stack = MissionStack(processes, ros_probe, tmp_path, mission_parameters={"max_engine_losses": 2})
    try:
        mission_id = stack.client.submit({"tasks": [
            {"id": "poison", "kind": "crash", "retry": {"max_retries": 5, "initial_backoff": 0.1}},
            {"id": "after", "kind": "echo", "depends_on": ["poison"]}]})
        for restart in range(2):  # as a supervisor would: restart the engine each time it dies
            wait_for(lambda: stack.test_engine.popen.poll() is not None, TIMEOUT,
                     lambda: f"the engine to die of the poison task\n{stack.logs()}")
            if restart == 0:
                stack.test_engine = stack.start_test_engine()
        result = stack.client.wait(mission_id, TIMEOUT)
        assert result.outcome is MissionOutcome.FAILED
        poison = result.task("poison")
        assert poison.state == TaskStatus.FAILED
        assert f"engine lost 2 times while running this task (last: {stack.namespace}/test_engine)" in poison.message
        assert stack.starts("poison") == 2 and stack.starts("after") == 0
    finally:
        stack.close()


@pytest.mark.slow
def test_a_5000_task_mission_beside_a_running_one_disturbs_neither(processes, ros_probe, tmp_path):
    stack = MissionStack(processes, ros_probe, tmp_path, mission_parameters={"engine_timeout": 3.0})
    try:
        steady = stack.client.submit({"tasks": [
            {"id": f"step{i}", "kind": "sleep", "depends_on": [f"step{i - 1}"] if i else [],
             "parameters": {"seconds": 0.2}} for i in range(30)]})
        big = stack.client.submit({"name": "big", "tasks": [
            {"id": f"t{i}", "kind": "echo", "parameters": {"i": i}} for i in range(5000)]}, timeout=TIMEOUT)
        assert stack.client.wait(steady, 120).outcome is MissionOutcome.SUCCEEDED
        result = stack.client.wait(big, 300)
        assert result.outcome is MissionOutcome.SUCCEEDED and len(result.tasks) == 5000
        log = stack.mission_engine.log()
        assert " lost" not in log, log[-3000:]  # no engine was declared lost meanwhile
        # And the engine still answers small missions at once afterwards.
        assert stack.client.run({"tasks": [{"id": "ping", "kind": "echo"}]}, timeout=TIMEOUT).outcome is \
            MissionOutcome.SUCCEEDED
    finally:
        stack.close()


def test_deadlines_run_on_simulated_time_when_the_simulator_owns_the_clock(processes, ros_probe, tmp_path):
    """sim_vehicle publishes /clock five times faster than the wall; the mission engine uses it."""
    namespace_parameters = {"heartbeat_period": 0.2}
    stack = MissionStack(processes, ros_probe, tmp_path, start_test_engine=False,
                         mission_parameters={"use_sim_time": True, **namespace_parameters})
    try:
        processes.start_node("sim_vehicle", namespace=stack.namespace, parameters={
            "publish_clock": True, "real_time_factor": 5.0, **namespace_parameters})
        wall = time.monotonic()
        result = stack.client.run({"tasks": [
            {"id": "short", "kind": "wait", "deadline_in": 30.0, "parameters": {"seconds": 10.0}},
            {"id": "long", "kind": "wait", "deadline_in": 20.0, "parameters": {"seconds": 60.0}}]}, timeout=TIMEOUT)
        wall = time.monotonic() - wall
        short, long = result.task("short"), result.task("long")
        assert short.state == TaskStatus.SUCCEEDED and short.result == {"waited": 10.0}
        assert long.state == TaskStatus.FAILED and long.message == "missed its deadline"
        assert result.outcome is MissionOutcome.FAILED
        states = stack.client.status(result.mission_id)[0]
        assert states.state.name == "FAILED"
        assert wall < 20.0, f"20 s of simulated deadline took {wall:.1f} s of wall time: not on simulated time"
    finally:
        stack.close()


# -- The command line ------------------------------------------------------------------------------------

HOSTILE = {
    "alias_bomb.yaml": "\n".join(["a: &a [x, x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(7)]) + "\n",
    "duplicate.yaml": "tasks:\n  - {id: a, kind: scan}\ntasks:\n  - {id: b, kind: scan}\n",
    "priority.yaml": "tasks:\n  - {id: a, kind: scan, priority: 1000000000000}\n",
    "retries.yaml": "tasks:\n  - {id: a, kind: scan, retry: {max_retries: -1}}\n",
    "float_priority.yaml": "tasks:\n  - {id: a, kind: scan, priority: 1.5}\n",
    "nan.yaml": "tasks:\n  - {id: a, kind: scan, parameters: {x: .nan}}\n",
    "huge_deadline.yaml": "tasks:\n  - {id: a, kind: scan, deadline_in: 1.0e+300}\n",
    "deep.yaml": "tasks:\n  - {id: a, kind: scan, parameters: {x: " + "[" * 100 + "]" * 100 + "}}\n",
    "empty.yaml": "",
    "cycle.yaml": "tasks:\n  - {id: a, kind: scan, depends_on: [b]}\n  - {id: b, kind: scan, depends_on: [a]}\n",
    "reference.yaml": "tasks:\n  - {id: a, kind: scan}\n  - {id: b, kind: scan, parameters: {x: {$result: a.y}}}\n",
}


def _run(*args, timeout=60):
    return subprocess.run([str(installed("qai-mission")), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_validate_and_submit_refuse_a_hostile_file_alike_without_a_traceback(tmp_path, name):
    path = tmp_path / name
    path.write_text(HOSTILE[name])
    validate = _run("validate", str(path), "--timeout", "0")
    submit = _run("submit", str(path), "--namespace", "/nobody_here", "--timeout", "2")
    for outcome in (validate, submit):
        assert outcome.returncode == 2, (outcome.stdout, outcome.stderr)
        assert "Traceback" not in outcome.stderr + outcome.stdout
        assert len(outcome.stderr) < 2000
    assert validate.stderr.strip().splitlines()[-1].split(": ", 2)[-1] == \
        submit.stderr.strip().splitlines()[-1].split(": ", 2)[-1]


def test_non_utf8_bytes_are_refused_by_validate_and_submit(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"tasks:\n  - {id: \xff\xfe\xfd, kind: scan}\n")
    for outcome in (_run("validate", str(path), "--timeout", "0"), _run("submit", str(path), "--timeout", "2")):
        assert outcome.returncode == 2 and "not UTF-8" in outcome.stderr and "Traceback" not in outcome.stderr


def test_validate_checks_kinds_and_parameters_against_the_engines_it_hears(stack, tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("tasks:\n  - {id: a, kind: sleep, parameters: {seconds: 1}}\n")
    bad.write_text("tasks:\n  - {id: a, kind: sleep, parameters: {seconds: soon}}\n  - {id: b, kind: teleport}\n")
    ok = _run("validate", str(good), "--namespace", stack.namespace)
    assert ok.returncode == 0, ok.stderr
    assert "kinds and their parameters" not in ok.stdout  # they were checked
    refused = _run("validate", str(bad), "--namespace", stack.namespace)
    assert refused.returncode == 2
    assert "task 'a': parameters.seconds: 'soon' is not of type 'number'" in refused.stderr
    assert "task 'b': kind: 'teleport' is not served" in refused.stderr
