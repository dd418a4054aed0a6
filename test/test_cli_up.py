"""`qai-edge up`, `status`, `profile` as a user runs them: real node processes over real DDS."""

import os
import re
import signal
import textwrap
from pathlib import Path

import pytest

from harness import installed, pid_alive, status_level, status_values, unique_namespace, wait_for

ENGINES = ("mission_engine", "intelligence_engine", "quantum_bridge", "io_engine", "sim_vehicle")
TIMEOUT = 30.0


def write_profile(tmp_path, namespace, supervisor="initial_backoff: 0.2, max_backoff: 1.0"):
    path = tmp_path / "profile.yaml"
    path.write_text(textwrap.dedent(f"""\
        namespace: {namespace}
        robot_id: testbot
        defaults: {{heartbeat_period: 0.2, data_dir: {tmp_path / 'data'}}}
        supervisor: {{{supervisor}, sigterm_timeout: 3, sigkill_timeout: 3}}
        nodes:
        """) + "".join(f"  {name}: {{}}\n" for name in ENGINES if name != "mission_engine")
                    + f"  mission_engine: {{parameters: {{data_dir: {tmp_path / 'data'}}}}}\n")
    return path


def started_pids(up, name):
    return [int(pid) for pid in re.findall(rf"\[qai-edge\] {name} started \(pid (\d+)\)", up.log())]


def all_node_pids(up):
    return [pid for name in ENGINES for pid in started_pids(up, name)]


def wait_all_ok(ros_probe, namespace, up):
    names = [f"{namespace}/{name}" for name in ENGINES]

    def all_ok():
        statuses = [ros_probe.latest_status(name) for name in names]
        return all(s is not None and status_level(s) == 0 for s in statuses)

    ros_probe.spin_until(all_ok, TIMEOUT, lambda: f"every node OK on /diagnostics\n{up.log()}")


@pytest.fixture
def running_up(tmp_path, processes, ros_probe):
    namespace = unique_namespace()
    up = processes.start_cli("up", "up", "--profile", str(write_profile(tmp_path, namespace)))
    ros_probe.watch_diagnostics()
    wait_all_ok(ros_probe, namespace, up)
    wait_for(lambda: "all 5 nodes healthy" in up.log(), TIMEOUT, lambda: f"up to report health\n{up.log()}")
    return namespace, up


def test_up_starts_every_node_in_its_own_process_and_reports_them_healthy(running_up, ros_probe):
    namespace, up = running_up
    pids = {}
    for name in ENGINES:
        status = ros_probe.latest_status(f"{namespace}/{name}")
        assert status.hardware_id == "testbot"
        pids[name] = int(status_values(status)["pid"])
        assert started_pids(up, name) == [pids[name]]
    assert len(set(pids.values())) == len(ENGINES)
    assert up.popen.pid not in pids.values()


def test_up_restarts_a_node_killed_with_sigkill(running_up, ros_probe):
    namespace, up = running_up
    (victim,) = started_pids(up, "io_engine")
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(started_pids(up, "io_engine")) == 2, TIMEOUT, lambda: f"io_engine restarted\n{up.log()}")
    assert "io_engine exited (pid %d): killed by SIGKILL" % victim in up.log()
    replacement = started_pids(up, "io_engine")[-1]
    assert replacement != victim and pid_alive(replacement)
    # The new process beats on /diagnostics.
    name = f"{namespace}/io_engine"
    ros_probe.spin_until(lambda: status_values(ros_probe.latest_status(name))["pid"] == str(replacement)
                         and status_level(ros_probe.latest_status(name)) == 0,
                         TIMEOUT, lambda: f"an OK heartbeat from the restarted io_engine\n{up.log()}")


def test_sigterm_stops_everything_and_leaves_no_process_behind(running_up):
    namespace, up = running_up
    pids = all_node_pids(up)
    assert all(pid_alive(pid) for pid in pids)
    up.popen.send_signal(signal.SIGTERM)
    assert up.wait(timeout=TIMEOUT) == 0, up.log()
    assert not [pid for pid in pids if pid_alive(pid)]
    for name in ENGINES:
        assert re.search(rf"{name} stopped \(pid \d+\): exit code 0", up.log()), up.log()
    assert "all nodes stopped" in up.log()


def test_sigint_stops_everything_like_ctrl_c(running_up):
    namespace, up = running_up
    pids = all_node_pids(up)
    up.popen.send_signal(signal.SIGINT)
    assert up.wait(timeout=TIMEOUT) == 0, up.log()
    assert not [pid for pid in pids if pid_alive(pid)]


def test_nodes_die_with_a_supervisor_killed_by_sigkill(running_up):
    namespace, up = running_up
    pids = all_node_pids(up)
    up.popen.send_signal(signal.SIGKILL)
    up.wait(timeout=TIMEOUT)
    wait_for(lambda: not [pid for pid in pids if pid_alive(pid)], TIMEOUT, "orphaned nodes to exit")


def test_up_gives_up_on_a_node_after_its_restart_limit(tmp_path, processes, ros_probe):
    namespace = unique_namespace()
    profile = write_profile(tmp_path, namespace,
                            supervisor="initial_backoff: 0.1, max_backoff: 0.1, max_restarts: 1, "
                                       "restart_window: 120")
    up = processes.start_cli("up", "up", "--profile", str(profile))
    ros_probe.watch_diagnostics()
    wait_all_ok(ros_probe, namespace, up)
    for attempt in (1, 2):
        wait_for(lambda: len(started_pids(up, "quantum_bridge")) == attempt, TIMEOUT, f"start {attempt}")
        os.kill(started_pids(up, "quantum_bridge")[-1], signal.SIGKILL)
    wait_for(lambda: "quantum_bridge gave_up" in up.log(), TIMEOUT, lambda: f"give up\n{up.log()}")
    assert "1 restarts in the last 120 s" in up.log()
    # The others keep running; the overall exit code says a node was lost.
    others = [pid for name in ENGINES if name != "quantum_bridge" for pid in started_pids(up, name)]
    assert all(pid_alive(pid) for pid in others)
    up.popen.send_signal(signal.SIGTERM)
    assert up.wait(timeout=TIMEOUT) == 1, up.log()
    assert "gave up on: quantum_bridge" in up.log()


def test_up_check_exits_zero_once_every_node_is_healthy(tmp_path, processes):
    up = processes.start_cli("up", "up", "--check", "--profile", str(write_profile(tmp_path, unique_namespace())))
    assert up.wait(timeout=60) == 0, up.log()
    assert "all 5 nodes healthy" in up.log()
    assert not [pid for pid in all_node_pids(up) if pid_alive(pid)]


def test_up_keeps_dds_discovery_on_this_machine_whatever_the_environment_says(tmp_path, processes):
    """Let the profile decide discovery (default: localhost), not a range left in the shell.

    The shell says OFF here, under which neither `up` nor its nodes would find each other.
    """
    path = tmp_path / "profile.yaml"
    path.write_text(f"namespace: {unique_namespace()}\ndefaults: {{heartbeat_period: 0.2}}\n"
                    "nodes: {sim_vehicle: {}}\n")
    up = processes.start("up", [str(installed("qai-edge")), "up", "--profile", str(path)],
                         env={"ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF", "ROS_LOCALHOST_ONLY": "1",
                              "ROS_STATIC_PEERS": "127.0.0.2"})
    wait_for(lambda: "all 1 nodes healthy" in up.log(), TIMEOUT, lambda: f"up to see its node\n{up.log()}")
    assert "DDS discovery localhost" in up.log()
    [pid] = started_pids(up, "sim_vehicle")
    environment = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if item)
    assert environment["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "ROS_LOCALHOST_ONLY" not in environment and "ROS_STATIC_PEERS" not in environment


def test_status_prints_health_of_nodes_started_elsewhere(running_up, processes, tmp_path):
    namespace, up = running_up
    status = processes.start_cli("status", "status", "--profile", str(tmp_path / "profile.yaml"),
                                 "--timeout", str(TIMEOUT))
    assert status.wait(timeout=TIMEOUT + 10) == 0, status.log()
    for name in ENGINES:
        assert re.search(rf"{namespace}/{name}\s+OK\s+testbot\s", status.log()), status.log()


def test_status_exits_nonzero_when_nodes_are_missing(processes, tmp_path):
    profile = write_profile(tmp_path, unique_namespace())
    status = processes.start_cli("status", "status", "--profile", str(profile), "--timeout", "1")
    assert status.wait(timeout=30) == 1, status.log()
    assert "STALE" in status.log() and "no heartbeat yet" in status.log()


def test_bad_profile_is_refused_before_anything_starts(processes, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("nodes:\n  io_engine:\n    parameters: {heartbeat_period: -1}\n")
    up = processes.start_cli("up", "up", "--profile", str(path))
    assert up.wait(timeout=30) == 2
    assert f"bad profile: {path}: nodes.io_engine.parameters.heartbeat_period: must be >= 0.05" in up.log()
    assert "started" not in up.log()


def test_profile_command_prints_what_would_run(processes, tmp_path):
    shown = processes.start_cli("profile", "profile", "--profile",
                                str(write_profile(tmp_path, "drone1")), "--namespace", "drone2")
    assert shown.wait(timeout=30) == 0, shown.log()
    assert "/drone2/io_engine" in shown.log()
    assert "__ns:=/drone2" in shown.log()


def test_help_explains_the_commands(processes):
    shown = processes.start_cli("help", "--help")
    assert shown.wait(timeout=30) == 0
    for text in ("up", "status", "profile", "--profile", "SIGTERM", "ROS_DOMAIN_ID"):
        assert text in shown.log()
