"""The process supervisor behind `qai-edge up`, with plain Python children (no ROS)."""

import signal
import sys
import time
from pathlib import Path

import pytest

from harness import pid_alive, wait_for
from qai_edge.profile import RestartPolicy, StopPolicy
from qai_edge.supervisor import ProcessSpec, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
IGNORE_SIGINT = "signal.signal(signal.SIGINT, signal.SIG_IGN); "
IGNORE_SIGTERM = "signal.signal(signal.SIGTERM, signal.SIG_IGN); "


def ready_sleeper(ready: Path, handlers: str = "") -> list[str]:
    """Return the command line of a child that sets its signal handlers, then creates `ready`, then sleeps.

    A signal that lands while CPython is still starting can be lost (or kill it as SIG_DFL), so signal tests
    wait for `ready`.
    """
    return [sys.executable, "-c",
            f"import pathlib, signal, time; {handlers}pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"]


def wait_ready(*paths: Path) -> None:
    wait_for(lambda: all(path.exists() for path in paths), 10.0, f"{[p.name for p in paths]} to be created")


FAST = RestartPolicy(initial_backoff=0.05, max_backoff=0.2, max_restarts=3, restart_window=30)


@pytest.fixture
def supervisors():
    started = []

    def make(*specs, stop=StopPolicy(sigterm_timeout=1, sigkill_timeout=1)):
        events = []
        supervisor = Supervisor(list(specs), stop, on_event=events.append)
        started.append(supervisor)
        return supervisor, events

    yield make
    for supervisor in started:
        supervisor.stop_all()


def poll_until(supervisor, predicate, timeout=10.0, what="condition"):
    def check():
        supervisor.poll()
        return predicate()
    return wait_for(check, timeout, what, interval=0.01)


def kinds(events, name):
    return [event.kind for event in events if event.name == name]


def test_killed_process_is_restarted_with_a_new_pid(supervisors):
    supervisor, events = supervisors(ProcessSpec("node", SLEEPER, FAST))
    supervisor.start_all()
    first = supervisor.processes["node"].pid
    supervisor.processes["node"].popen.send_signal(signal.SIGKILL)
    poll_until(supervisor, lambda: supervisor.processes["node"].starts == 2, what="restart")
    second = supervisor.processes["node"].pid
    assert second != first and pid_alive(second)
    assert kinds(events, "node") == ["started", "exited", "restarting", "started"]
    exited = [e for e in events if e.kind == "exited"][0]
    assert exited.detail == "killed by SIGKILL" and exited.pid == first


def test_restarts_back_off_exponentially(supervisors):
    crasher = ProcessSpec("crasher", [sys.executable, "-c", "raise SystemExit(3)"],
                          RestartPolicy(initial_backoff=0.1, max_backoff=10, max_restarts=3, restart_window=60))
    supervisor, events = supervisors(crasher)
    supervisor.start_all()
    poll_until(supervisor, lambda: supervisor.processes["crasher"].state == "failed", what="give up")
    delays = [event.detail for event in events if event.kind == "restarting"]
    assert delays == ["in 0.1 s", "in 0.2 s", "in 0.4 s"]
    assert [e.detail for e in events if e.kind == "exited"] == ["exit code 3"] * 4


def test_gives_up_after_the_restart_limit_and_keeps_the_others(supervisors):
    crasher = ProcessSpec("crasher", [sys.executable, "-c", "raise SystemExit(1)"], FAST)
    steady = ProcessSpec("steady", SLEEPER, FAST)
    supervisor, events = supervisors(crasher, steady)
    supervisor.start_all()
    poll_until(supervisor, lambda: supervisor.processes["crasher"].state == "failed", what="give up")
    assert supervisor.processes["crasher"].starts == 1 + FAST.max_restarts
    assert kinds(events, "crasher")[-1] == "gave_up"
    assert "3 restarts in the last 30 s" in events[-1].detail
    assert [p.spec.name for p in supervisor.running()] == ["steady"]


def test_restarts_outside_the_window_do_not_count(supervisors):
    policy = RestartPolicy(initial_backoff=0.01, max_backoff=0.01, max_restarts=1, restart_window=1.0)
    supervisor, events = supervisors(ProcessSpec("node", SLEEPER, policy))
    supervisor.start_all()
    for expected_starts in (2, 3):
        time.sleep(1.1)  # the previous restart leaves the window
        supervisor.processes["node"].popen.kill()
        poll_until(supervisor, lambda: supervisor.processes["node"].starts == expected_starts, what="restart")
    assert "gave_up" not in kinds(events, "node")


def test_respawn_false_leaves_an_exited_node_down(supervisors):
    supervisor, events = supervisors(ProcessSpec("once", [sys.executable, "-c", "pass"],
                                                 RestartPolicy(respawn=False)))
    supervisor.start_all()
    poll_until(supervisor, lambda: supervisor.processes["once"].state == "stopped", what="exit")
    assert kinds(events, "once") == ["started", "exited"]


def test_missing_executable_is_reported_not_raised(supervisors):
    supervisor, events = supervisors(ProcessSpec("ghost", ["/nonexistent/program"], FAST))
    supervisor.start_all()
    assert supervisor.processes["ghost"].state == "failed"
    assert events[-1].kind == "gave_up" and "cannot start /nonexistent/program" in events[-1].detail


def test_stop_sends_sigint_first(supervisors, tmp_path):
    supervisor, events = supervisors(ProcessSpec("node", ready_sleeper(tmp_path / "node"), FAST))
    supervisor.start_all()
    wait_ready(tmp_path / "node")
    pid = supervisor.processes["node"].pid
    supervisor.stop_all()
    assert not pid_alive(pid)
    assert events[-1].kind == "stopped" and events[-1].detail == "killed by SIGINT"


def test_children_take_sigint_even_when_the_supervisor_was_started_ignoring_it(supervisors, tmp_path):
    """`qai-edge up &` from a script: the shell starts it with SIGINT ignored, which children would inherit."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        supervisor, events = supervisors(ProcessSpec("node", ready_sleeper(tmp_path / "node"), FAST))
        supervisor.start_all()
    finally:
        signal.signal(signal.SIGINT, previous)
    wait_ready(tmp_path / "node")
    supervisor.stop_all()
    assert events[-1].detail == "killed by SIGINT"


def test_stop_escalates_to_sigterm_then_sigkill(supervisors, tmp_path):
    stubborn = ProcessSpec("stubborn", ready_sleeper(tmp_path / "stubborn", IGNORE_SIGINT), FAST)
    very_stubborn = ProcessSpec("very_stubborn", ready_sleeper(tmp_path / "very_stubborn",
                                                               IGNORE_SIGINT + IGNORE_SIGTERM), FAST)
    supervisor, events = supervisors(stubborn, very_stubborn,
                                     stop=StopPolicy(sigterm_timeout=0.3, sigkill_timeout=0.3))
    supervisor.start_all()
    wait_ready(tmp_path / "stubborn", tmp_path / "very_stubborn")
    pids = [p.pid for p in supervisor.processes.values()]
    started = time.monotonic()
    supervisor.stop_all()
    assert time.monotonic() - started < 3.0
    assert not any(pid_alive(pid) for pid in pids)
    details = {e.name: e.detail for e in events if e.kind == "stopped"}
    assert details == {"stubborn": "killed by SIGTERM", "very_stubborn": "killed by SIGKILL"}


def test_stop_cancels_a_pending_restart(supervisors):
    slow = RestartPolicy(initial_backoff=30, max_backoff=30)
    supervisor, events = supervisors(ProcessSpec("node", [sys.executable, "-c", "pass"], slow))
    supervisor.start_all()
    poll_until(supervisor, lambda: supervisor.processes["node"].state == "backoff", what="backoff")
    supervisor.stop_all()
    assert supervisor.processes["node"].state == "stopped"
    assert kinds(events, "node") == ["started", "exited", "restarting"]


def test_names_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ProcessSpec("a", SLEEPER), ProcessSpec("a", SLEEPER)])
