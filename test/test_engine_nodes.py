"""Each engine, in its own process over real DDS: heartbeat, capability announcement, clean exit."""

import signal
import time

import pytest

from harness import pid_alive, status_level, status_values, unique_namespace
from qai_edge.nodes import NODE_TYPES

ENGINES = sorted(NODE_TYPES)
# The io_engine is OK only with sensor streams to watch: it runs beside the simulated vehicle.
COMPANIONS = {"io_engine": ("sim_vehicle",)}


def start_with_companions(processes, executable, namespace, parameters=None):
    for companion in COMPANIONS.get(executable, ()):
        processes.start_node(companion, namespace=namespace, parameters={"heartbeat_period": 0.2})
    return processes.start_node(executable, namespace=namespace,
                                parameters={**own_parameters(processes, executable), **(parameters or {})})


def own_parameters(processes, executable) -> dict:
    """Keep a node's files in the test's dir (not ~/.ros, which other runs on the machine share).

    hub_link is OK only once connected: it also gets a broker of its own (never the default broker port,
    where a real one may run).
    """
    if executable == "mission_engine":
        return {"data_dir": str(processes.directory / "data")}
    if executable != "hub_link":
        return {}
    from harness import wait_for
    from qai_edge.broker import LocalBroker, find_mosquitto, free_port, port_open

    broker = LocalBroker(free_port(), processes.directory / "broker")
    broker.data_dir.mkdir(parents=True, exist_ok=True)
    config = broker.data_dir / "mosquitto-run.conf"
    config.write_text(broker.runtime_config())
    processes.start("mosquitto", [find_mosquitto(), "-c", str(config)])  # stopped with the other processes
    wait_for(lambda: port_open("127.0.0.1", broker.port), 10, "the test's broker")
    return {"broker_port": broker.port, "data_dir": str(processes.directory / "data")}


# First contact between fresh processes takes about a second (discovery); leave room on a loaded CI box.
DISCOVERY_TIMEOUT = 40.0


@pytest.mark.parametrize("executable", ENGINES)
def test_engine_reports_ok_on_diagnostics_from_its_own_process(executable, processes, ros_probe):
    namespace = unique_namespace()
    node = start_with_companions(processes, executable, namespace,
                                 {"robot_id": "rover7", "heartbeat_period": 0.2})
    ros_probe.watch_diagnostics()
    name = f"{namespace}/{executable}"
    status = ros_probe.spin_until(lambda: ros_probe.latest_status(name) and status_level(
        ros_probe.latest_status(name)) == 0 and ros_probe.latest_status(name), DISCOVERY_TIMEOUT,
        lambda: f"an OK heartbeat from {name}: {ros_probe.latest_status(name)}\n{node.log()}")
    assert status.hardware_id == "rover7"
    values = status_values(status)
    assert values["pid"] == str(node.pid)  # from that process, not from a stale one
    # The heartbeat keeps coming at the configured period.
    count = len(ros_probe.diagnostics[name])
    ros_probe.spin_for(1.0)
    assert len(ros_probe.diagnostics[name]) - count >= 3


@pytest.mark.parametrize("executable", ENGINES)
def test_engine_announces_capabilities_that_are_true(executable, processes, ros_probe):
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.action import get_action_server_names_and_types_by_node

    from qai_edge.qos import CAPABILITIES_QOS
    from qai_interfaces.msg import EngineCapabilities

    namespace = unique_namespace()
    node = processes.start_node(executable, namespace=namespace, parameters=own_parameters(processes, executable))
    announcements = []
    ros_probe.node.create_subscription(EngineCapabilities, f"{namespace}/engine_capabilities",
                                       announcements.append, CAPABILITIES_QOS)
    ros_probe.watch_diagnostics()
    name = f"{namespace}/{executable}"
    ros_probe.spin_until(lambda: announcements and ros_probe.latest_status(name), DISCOVERY_TIMEOUT,
                         lambda: f"the announcement and a heartbeat of {name}\n{node.log()}")
    announcement = announcements[0]
    assert announcement.engine == name
    announced_kinds = [kind.name for kind in announcement.kinds]
    assert status_values(ros_probe.latest_status(name))["kinds"] == ",".join(announced_kinds)

    def action_servers():
        # The graph learns a node's name after its topics: until then rcl raises "error not set".
        try:
            return [server for server, _ in get_action_server_names_and_types_by_node(
                ros_probe.node, executable, namespace)]
        except RCLError:
            return None

    if announcement.task_action:
        ros_probe.spin_until(lambda: announcement.task_action in (action_servers() or []), DISCOVERY_TIMEOUT,
                             lambda: f"{announcement.task_action} among {action_servers()}")
    servers = ros_probe.spin_until(lambda: (action_servers(),) if action_servers() is not None else None,
                                   DISCOVERY_TIMEOUT, f"the action servers of {name}")[0]
    if announcement.task_action:
        assert announcement.task_action in servers
    else:
        assert announced_kinds == []  # serving kinds without an action to run them would be a lie
        assert not any(server.endswith("/run_task") for server in servers)


def test_capability_announcement_repeats_with_the_same_start_stamp(processes, ros_probe):
    """Check the announcement repeats, as a transient-local sample can miss a late joiner (eProsima/Fast-DDS#3822).

    The stamp says when the engine started, so a repeat is not mistaken for a restart.
    """
    from qai_edge.qos import CAPABILITIES_QOS
    from qai_interfaces.msg import EngineCapabilities

    namespace = unique_namespace()
    processes.start_node("io_engine", namespace=namespace, parameters={"announce_period": 0.2})
    announcements = []
    ros_probe.node.create_subscription(EngineCapabilities, f"{namespace}/engine_capabilities",
                                       announcements.append, CAPABILITIES_QOS)
    ros_probe.spin_until(lambda: len(announcements) >= 3, DISCOVERY_TIMEOUT, "three announcements")
    assert len({(a.header.stamp.sec, a.header.stamp.nanosec) for a in announcements}) == 1


def test_capability_announcement_reaches_a_late_subscriber(processes, ros_probe):
    """Transient local: a mission engine that starts (or restarts) after an engine still learns its kinds."""
    from qai_edge.qos import CAPABILITIES_QOS
    from qai_interfaces.msg import EngineCapabilities

    namespace = unique_namespace()
    node = processes.start_node("io_engine", namespace=namespace, parameters={"heartbeat_period": 0.2})
    ros_probe.watch_diagnostics()
    ros_probe.spin_until(lambda: ros_probe.latest_status(f"{namespace}/io_engine"), DISCOVERY_TIMEOUT,
                         lambda: f"io_engine up\n{node.log()}")
    ros_probe.spin_for(0.5)
    announcements = []
    ros_probe.node.create_subscription(EngineCapabilities, f"{namespace}/engine_capabilities",
                                       announcements.append, CAPABILITIES_QOS)
    ros_probe.spin_until(lambda: announcements, DISCOVERY_TIMEOUT, "the latched announcement")
    assert announcements[0].engine == f"{namespace}/io_engine"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("executable", ENGINES)
def test_engine_exits_cleanly_within_two_seconds_of_a_signal(executable, sig, processes, ros_probe):
    namespace = unique_namespace()
    node = processes.start_node(executable, namespace=namespace,
                                parameters={"heartbeat_period": 0.2, **own_parameters(processes, executable)})
    ros_probe.watch_diagnostics()
    ros_probe.spin_until(lambda: ros_probe.latest_status(f"{namespace}/{executable}"), DISCOVERY_TIMEOUT,
                         lambda: f"{executable} spinning\n{node.log()}")
    sent = time.monotonic()
    node.popen.send_signal(sig)
    code = node.wait(timeout=2.0)
    assert code is not None, f"{executable} still running 2 s after {sig.name}\n{node.log()}"
    assert time.monotonic() - sent <= 2.0
    assert code == 0, node.log()
    assert "Traceback" not in node.log()
    assert not pid_alive(node.pid)


def test_out_of_range_parameter_stops_the_node_with_an_error_naming_it(processes):
    node = processes.start_node("mission_engine", parameters={"heartbeat_period": 0.0})
    code = node.wait(timeout=DISCOVERY_TIMEOUT)
    assert code not in (None, 0)
    assert "heartbeat_period" in node.log()


@pytest.mark.parametrize("executable", ENGINES)
def test_engine_exits_cleanly_when_sigint_comes_twice(executable, processes, ros_probe):
    """ros2 launch forwards a Ctrl-C to its nodes while the terminal's process group gets it too."""
    namespace = unique_namespace()
    node = processes.start_node(executable, namespace=namespace, parameters={"heartbeat_period": 0.2})
    ros_probe.watch_diagnostics()
    ros_probe.spin_until(lambda: ros_probe.latest_status(f"{namespace}/{executable}"), DISCOVERY_TIMEOUT,
                         lambda: f"{executable} spinning\n{node.log()}")
    node.popen.send_signal(signal.SIGINT)
    time.sleep(0.01)
    node.popen.send_signal(signal.SIGINT)
    code = node.wait(timeout=5.0)
    assert code == 0, f"exit {code}\n{node.log()}"
    assert "Traceback" not in node.log()
