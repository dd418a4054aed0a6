"""The profile parser: what runs where, and a clear error naming the key when a profile is wrong."""

import re
import textwrap

import pytest
import yaml

from qai_edge.nodes import NODE_TYPES
from qai_edge.params import COMMON_PARAMETERS
from qai_edge.profile import (ProfileError, RestartPolicy, default_profile_path, load_profile,
                              parse_profile)


def write(tmp_path, text):
    path = tmp_path / "profile.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_profile_runs_the_four_engines_and_the_simulated_vehicle():
    profile = load_profile()
    assert {spec.executable for spec in profile.nodes} == {
        "mission_engine", "intelligence_engine", "quantum_bridge", "io_engine", "sim_vehicle", "hub_link"}
    assert profile.namespace == "/"
    for spec in profile.nodes:
        assert spec.parameters["robot_id"] == "robot"
        assert spec.parameters["heartbeat_period"] == 1.0


def test_shipped_profile_documents_every_declared_parameter_with_its_default():
    """config/edge.yaml is the documentation of defaults: every parameter a node declares appears there."""
    document = yaml.safe_load(default_profile_path().read_text())
    for name, node in document["nodes"].items():
        documented = {**document.get("defaults", {}), **(node.get("parameters") or {})}
        for param, spec in NODE_TYPES[node.get("executable", name)].parameter_specs().items():
            if param == "robot_id":
                assert "robot_id" in document  # set once, at the top
                continue
            assert param in documented, f"config/edge.yaml does not document {name}.{param}"
            assert documented[param] == spec.default, f"config/edge.yaml: {name}.{param} is not the default"


def test_array_parameters_are_checked_and_empty_ones_left_unset(tmp_path):
    profile = load_profile(write(tmp_path, """
        nodes:
          io_engine: {parameters: {geofence_polygon: [0, 0, 10, 0, 10, 10], home: []}}
    """))
    (io,) = profile.nodes
    assert io.parameters["geofence_polygon"] == [0.0, 0.0, 10.0, 0.0, 10.0, 10.0]
    assert "home" not in io.parameters  # an empty array has no ROS type: unset
    with pytest.raises(ProfileError, match=r"nodes.io_engine.parameters.home: item 1: expected a number, got 'x'"):
        load_profile(write(tmp_path, "nodes: {io_engine: {parameters: {home: [1, x, 3]}}}\n"))
    with pytest.raises(ProfileError, match="nodes.io_engine.parameters.home: expected a list of numbers"):
        load_profile(write(tmp_path, "nodes: {io_engine: {parameters: {home: 5}}}\n"))


def test_namespace_robot_id_and_parameters_resolve(tmp_path):
    profile = load_profile(write(tmp_path, """
        namespace: drone1
        defaults: {heartbeat_period: 0.5}
        nodes:
          mission_engine: {}
          io_engine:
            parameters: {heartbeat_period: 2}
    """))
    assert profile.namespace == "/drone1"
    assert profile.robot_id == "drone1"
    mission, io = profile.nodes
    assert mission.fully_qualified_name == "/drone1/mission_engine"
    assert mission.parameters["heartbeat_period"] == 0.5
    assert io.parameters["heartbeat_period"] == 2.0 and isinstance(io.parameters["heartbeat_period"], float)
    assert io.parameters["robot_id"] == "drone1"


def test_namespace_argument_overrides_the_file(tmp_path):
    profile = load_profile(write(tmp_path, "namespace: a\nnodes: {io_engine: {}}\n"), namespace="/b/c")
    assert profile.namespace == "/b/c"
    assert profile.robot_id == "b_c"


def test_two_instances_of_one_executable_under_different_names(tmp_path):
    profile = load_profile(write(tmp_path, """
        nodes:
          io_front: {executable: io_engine}
          io_rear: {executable: io_engine}
    """))
    assert [(s.name, s.executable) for s in profile.nodes] == [("io_front", "io_engine"), ("io_rear", "io_engine")]


def test_disabled_nodes_are_left_out(tmp_path):
    profile = load_profile(write(tmp_path, "nodes: {io_engine: {}, quantum_bridge: {enabled: false}}\n"))
    assert [s.name for s in profile.nodes] == ["io_engine"]


def test_supervisor_settings_become_restart_and_stop_policies(tmp_path):
    profile = load_profile(write(tmp_path, """
        supervisor: {initial_backoff: 0.5, max_backoff: 4, max_restarts: 2, restart_window: 10,
                     sigterm_timeout: 1, sigkill_timeout: 2}
        nodes: {io_engine: {respawn: false}}
    """))
    (io,) = profile.nodes
    assert io.restart == RestartPolicy(respawn=False, initial_backoff=0.5, max_backoff=4.0, max_restarts=2,
                                       restart_window=10.0)
    assert (profile.stop.sigterm_timeout, profile.stop.sigkill_timeout) == (1.0, 2.0)


def test_restart_backoff_doubles_up_to_the_cap():
    policy = RestartPolicy(initial_backoff=1.0, max_backoff=5.0)
    assert [policy.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_params_file_and_ros_arguments_name_the_node(tmp_path):
    (spec,) = load_profile(write(tmp_path, "namespace: r1\nnodes: {io_engine: {}}\n")).nodes
    assert spec.params_file_content() == {"/r1/io_engine": {"ros__parameters": dict(spec.parameters)}}
    assert spec.ros_arguments("p.yaml") == ["--ros-args", "-r", "__node:=io_engine", "-r", "__ns:=/r1",
                                            "--params-file", "p.yaml"]


def test_launch_arguments_carry_what_the_launch_file_needs(tmp_path):
    profile = load_profile(write(tmp_path, "namespace: r1\nnodes: {io_engine: {respawn: false}}\n"))
    arguments = profile.nodes[0].launch_arguments(profile.stop)
    assert arguments["package"] == "qai_edge"
    assert arguments["executable"] == "io_engine"
    assert arguments["name"] == "io_engine"
    assert arguments["namespace"] == "/r1"
    assert arguments["parameters"] == [dict(profile.nodes[0].parameters)]
    assert arguments["respawn"] is False
    assert arguments["sigterm_timeout"] == "5.0"


@pytest.mark.parametrize("text, key, why", [
    ("nodes: {io_engine: {}}\nnamspace: x\n", "namspace", "unknown key"),
    ("nodes: {io_engine: {paramters: {}}}\n", "nodes.io_engine.paramters", "unknown key"),
    ("nodes: {io_engine: {executable: io_engin}}\n", "nodes.io_engine.executable", "unknown executable 'io_engin'"),
    ("nodes: {io_engine: {parameters: {heartbeat: 1.0}}}\n", "nodes.io_engine.parameters.heartbeat",
     "unknown parameter of io_engine"),
    ("nodes: {io_engine: {parameters: {heartbeat_period: fast}}}\n",
     "nodes.io_engine.parameters.heartbeat_period", "expected a number, got 'fast'"),
    ("nodes: {io_engine: {parameters: {heartbeat_period: 0.0}}}\n",
     "nodes.io_engine.parameters.heartbeat_period", "must be >= 0.05"),
    ("nodes: {io_engine: {parameters: {heartbeat_period: .nan}}}\n",
     "nodes.io_engine.parameters.heartbeat_period", "expected a finite number"),
    ("nodes: {io_engine: {parameters: {use_sim_time: 1}}}\n",
     "nodes.io_engine.parameters.use_sim_time", "expected a boolean, got 1"),
    ("defaults: {heartbeat_perod: 1.0}\nnodes: {io_engine: {}}\n", "defaults.heartbeat_perod",
     "no node declares this parameter"),
    ("nodes: {io_engine: {enabled: yes please}}\n", "nodes.io_engine.enabled", "expected true or false"),
    ("nodes: {io_engine: {respawn: 3}}\n", "nodes.io_engine.respawn", "expected true or false"),
    ("nodes: {io_engine: []}\n", "nodes.io_engine", "expected a mapping"),
    ("nodes: {9lives: {}}\n", "nodes.9lives", "a node name is letters"),
    ("nodes: {}\n", "nodes", "no nodes"),
    ("nodes: {io_engine: {enabled: false}}\n", "nodes", "every node is disabled"),
    ("namespace: drone-1\nnodes: {io_engine: {}}\n", "namespace", "is not a ROS namespace"),
    ("robot_id: 7\nnodes: {io_engine: {}}\n", "robot_id", "expected a string"),
    ("supervisor: {max_restarts: -1}\nnodes: {io_engine: {}}\n", "supervisor.max_restarts", "must be between"),
    ("supervisor: {max_restarts: 1.5}\nnodes: {io_engine: {}}\n", "supervisor.max_restarts",
     "expected an integer"),
    ("supervisor: {initial_backoff: 10, max_backoff: 1}\nnodes: {io_engine: {}}\n",
     "supervisor.initial_backoff", "must not exceed"),
    ("supervisor: {restart: always}\nnodes: {io_engine: {}}\n", "supervisor.restart", "unknown key"),
    ("- just\n- a list\n", "profile", "expected a mapping"),
])
def test_bad_profile_names_the_key_and_why(tmp_path, text, key, why):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as error:
        load_profile(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert why in message


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = write(tmp_path, "nodes:\n  io_engine: {parameters: [}\n")
    with pytest.raises(ProfileError, match=r"line 2, column \d+: not valid YAML"):
        load_profile(path)


def test_missing_file_is_a_profile_error(tmp_path):
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "absent.yaml")


def test_common_parameters_are_declared_by_every_node_type():
    for node_type in NODE_TYPES.values():
        specs = node_type.parameter_specs()
        for common in COMMON_PARAMETERS:
            assert specs[common.name] == common


def test_parse_profile_accepts_an_already_loaded_document():
    profile = parse_profile({"nodes": {"quantum_bridge": None}}, source="inline")
    assert profile.nodes[0].executable == "quantum_bridge"


@pytest.mark.parametrize("section, field", [
    ("x", "dds"), ({"discovery": "internet"}, "dds.discovery"), ({"range": "localhost"}, "dds.range"),
    ({"static_peers": "10.0.0.1"}, "dds.static_peers"), ({"static_peers": ["a;b"]}, "dds.static_peers[0]"),
    ({"static_peers": ["h"] * 33}, "dds.static_peers"),
    ({"discovery": "environment", "static_peers": ["h"]}, "dds.static_peers")])
def test_a_bad_dds_section_is_refused_and_names_the_field(section, field):
    with pytest.raises(ProfileError, match=re.escape(f"inline: {field}:")):
        parse_profile({"nodes": {"quantum_bridge": None}, "dds": section}, source="inline")


def test_dds_discovery_stays_on_this_machine_unless_the_profile_says_otherwise():
    environ = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_LOCALHOST_ONLY": "0", "ROS_STATIC_PEERS": "x"}
    parse_profile({"nodes": {"quantum_bridge": None}}).dds.apply(environ)
    assert environ == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    subnet = parse_profile({"nodes": {"quantum_bridge": None},
                            "dds": {"discovery": "subnet", "static_peers": ["192.168.1.7", "base.local"]}}).dds
    subnet.apply(environ)
    assert environ == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_STATIC_PEERS": "192.168.1.7;base.local"}
    kept = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT", "ROS_STATIC_PEERS": "h"}
    parse_profile({"nodes": {"quantum_bridge": None}, "dds": {"discovery": "environment"}}).dds.apply(kept)
    assert kept == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT", "ROS_STATIC_PEERS": "h"}
