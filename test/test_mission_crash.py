"""Crash recovery across processes.

SIGKILL the mission engine mid-mission, start it again on the same journal, and the mission completes with no
finished task run again.
"""

import signal
import time

import pytest

from harness import wait_for
from qai_mission.client import MissionClient, MissionOutcome
from qai_mission.model import TaskStatus

TIMEOUT = 40.0

MISSION = {"name": "survives", "tasks": [
    {"id": "a", "kind": "sleep", "parameters": {"seconds": 0.2}},
    {"id": "b", "kind": "sleep", "depends_on": ["a"], "parameters": {"seconds": 2.0}},
    {"id": "c", "kind": "echo", "depends_on": ["b"], "parameters": {"after": {"$result": "b.slept"}}},
]}


def kill_mission_engine(stack):
    stack.mission_engine.popen.send_signal(signal.SIGKILL)
    assert stack.mission_engine.wait(10) == -signal.SIGKILL


def restart_mission_engine(stack):
    stack.mission_engine = stack.start_mission_engine()
    stack.wait_engine_up("test_engine")


def test_sigkill_mid_mission_resumes_without_rerunning_finished_tasks(stack):
    mission_id = stack.client.submit(MISSION)
    wait_for(lambda: stack.starts("b") == 1, TIMEOUT, lambda: f"task b to start\n{stack.logs()}")
    kill_mission_engine(stack)
    restart_mission_engine(stack)
    # The submitting client's action goal died with the engine; it follows the resumed mission instead.
    result = stack.client.wait(mission_id, TIMEOUT)
    assert result.outcome is MissionOutcome.SUCCEEDED, (result, stack.logs())
    assert (stack.starts("a"), stack.starts("b"), stack.starts("c")) == (1, 1, 1)  # b was reattached, not re-run
    assert result.task("c").result == {"after": 2.0}
    assert "resumed 1 unfinished mission" in stack.mission_engine.log()


def test_a_task_that_finished_while_the_mission_engine_was_down_is_not_run_again(stack):
    mission_id = stack.client.submit(MISSION)
    wait_for(lambda: stack.starts("b") == 1, TIMEOUT, "task b to start")
    kill_mission_engine(stack)
    wait_for(lambda: any(r["task"] == "b" and r["event"] == "end" for r in stack.runs()), TIMEOUT, "b to end")
    restart_mission_engine(stack)
    result = stack.client.wait(mission_id, TIMEOUT)
    assert result.outcome is MissionOutcome.SUCCEEDED
    assert (stack.starts("b"), stack.starts("c")) == (1, 1)
    assert result.task("c").result == {"after": 2.0}  # b's result, recovered from its engine


def test_a_new_client_can_follow_a_resumed_mission(stack):
    mission_id = stack.client.submit(MISSION)
    wait_for(lambda: stack.starts("b") == 1, TIMEOUT, "task b to start")
    kill_mission_engine(stack)
    restart_mission_engine(stack)
    with MissionClient(namespace=stack.namespace, node_name="second_client") as other:
        snapshot = other.follow(mission_id, timeout=TIMEOUT)
        assert snapshot.name == "survives"
        assert other.wait(mission_id, TIMEOUT).outcome is MissionOutcome.SUCCEEDED


@pytest.mark.parametrize("kind, outcome, starts", [("sleep", MissionOutcome.SUCCEEDED, 2),
                                                   ("once", MissionOutcome.FAILED, 1)])
def test_when_both_crash_the_kinds_restart_policy_decides(stack, kind, outcome, starts):
    mission = {"tasks": [{"id": "a", "kind": "echo"},
                         {"id": "b", "kind": kind, "depends_on": ["a"], "parameters": {"seconds": 5.0}}]}
    mission_id = stack.client.submit(mission)
    wait_for(lambda: stack.starts("b") == 1, TIMEOUT, "task b to start")
    kill_mission_engine(stack)
    stack.test_engine.popen.send_signal(signal.SIGKILL)
    stack.test_engine.wait(10)
    time.sleep(0.5)
    stack.test_engine = stack.start_test_engine()
    restart_mission_engine(stack)
    if kind == "sleep":  # redispatched: the shorter wait keeps the test quick
        wait_for(lambda: stack.starts("b") == 2, TIMEOUT, lambda: f"b to start again\n{stack.logs()}")
    result = stack.client.wait(mission_id, TIMEOUT)
    assert result.outcome is outcome, (result, stack.logs())
    assert stack.starts("a") == 1 and stack.starts("b") == starts
    if kind == "once":
        assert result.task("b").state == TaskStatus.FAILED
        assert "not safe to run again" in result.task("b").message
