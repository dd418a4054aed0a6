"""The profile's `broker` section and the local mosquitto qai-edge up starts from it (qai_edge.broker)."""

import os
import textwrap

import pytest

from qai_edge.broker import BrokerError, LocalBroker, free_port, port_open
from qai_edge.profile import ProfileError, load_profile


def write(tmp_path, text):
    path = tmp_path / "profile.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_shipped_profile_asks_for_a_local_broker_on_the_hub_links_port():
    profile = load_profile()
    assert profile.broker is not None and profile.broker.start
    assert profile.node("hub_link").parameters["broker_port"] == profile.broker.port
    assert profile.broker.config_path().name == "mosquitto.conf" and profile.broker.config_path().is_file()


def test_a_profile_without_a_broker_section_starts_none(tmp_path):
    assert load_profile(write(tmp_path, "nodes: {mission_engine: {}}\n")).broker is None


@pytest.mark.parametrize("section, key, why", [
    ("{port: 0}", "broker.port", "expected a port number 1-65535, got 0"),
    ("{start: yes please}", "broker.start", "expected true or false"),
    ("{colour: red}", "broker.colour", "unknown key"),
    ("[1, 2]", "broker", "expected a mapping"),
    ("{port: 18839}", "nodes.hub_link.parameters.broker_port", "18830 is not broker.port 18839"),
    ("{port: 18831}", "broker.hub_port", "expected a port number 1-65535 other than broker.port"),
])
def test_a_bad_broker_section_names_the_key(tmp_path, section, key, why):
    path = write(tmp_path, f"broker: {section}\nnodes: {{hub_link: {{}}}}\n")
    with pytest.raises(ProfileError, match=f"{key}: {why}"):
        load_profile(path)


def test_a_broker_elsewhere_may_use_any_port(tmp_path):
    path = write(tmp_path, "broker: {start: false, port: 1}\nnodes: {hub_link: {parameters: {broker_port: 1883}}}\n")
    assert not load_profile(path).broker.start


def test_local_broker_starts_with_the_project_config_and_stops_by_pid(tmp_path):
    broker = LocalBroker(free_port(), tmp_path / "broker").start()
    pid = broker.pid
    try:
        assert port_open("127.0.0.1", broker.port)
        config = (tmp_path / "broker" / "mosquitto-run.conf").read_text()
        assert "set_tcp_nodelay true" in config and "max_queued_messages 200000" in config
        assert f"listener {broker.port} 127.0.0.1" in config
        with pytest.raises(BrokerError, match="already in use"):
            LocalBroker(broker.port, tmp_path / "second").start()
    finally:
        broker.stop()
    assert not port_open("127.0.0.1", broker.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert (tmp_path / "broker" / "mosquitto.db").exists()  # persistence saved on SIGTERM


def test_the_broker_dies_with_the_process_that_started_it_even_when_that_is_killed(tmp_path):
    import signal
    import subprocess
    import sys

    from harness import pid_alive, wait_for

    script = (f"from qai_edge.broker import LocalBroker, free_port\n"
              f"broker = LocalBroker(free_port(), {str(tmp_path / 'broker')!r}).start()\n"
              f"print(broker.pid, flush=True)\n"
              f"import time; time.sleep(60)\n")
    starter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        broker_pid = int(starter.stdout.readline())
        assert pid_alive(broker_pid)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        wait_for(lambda: not pid_alive(broker_pid), 10, "the orphaned broker to stop")
    finally:
        starter.kill()
        starter.wait(10)
        starter.stdout.close()


def test_free_port_never_hands_out_the_same_port_twice_in_a_row(monkeypatch):
    """Give a broker's two listeners two ports: in CI both came from one range and collided (Address in use)."""
    low = free_port()  # a port nobody holds, as the start of a two-port range
    monkeypatch.setenv("QAI_PORT_RANGE", f"{low}-{low + 1}")
    import qai_edge.broker as broker
    monkeypatch.setattr(broker, "_HANDED_OUT", broker.collections.deque(maxlen=64))
    first = free_port()
    if port_open("127.0.0.1", low + 1):
        pytest.skip(f"port {low + 1} is taken on this machine")
    second = free_port()
    assert {first, second} == {low, low + 1}
    with pytest.raises(BrokerError, match="no free port"):
        free_port()
    monkeypatch.delenv("QAI_PORT_RANGE")
    assert len({free_port() for _ in range(10)}) == 10


def test_a_broker_that_exits_at_start_says_why_and_leaves_no_pipe_open(tmp_path):
    """Close the exited broker's stderr pipe: left to the collector, it failed a later CI test (unraisable)."""
    import gc
    import warnings

    broker = LocalBroker(free_port(), tmp_path / "broker", extra_config="no_such_option true\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BrokerError, match="mosquitto exited with"):
            broker.start()
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
    assert broker.pid is None
    broker.stop()  # nothing to stop: no error
