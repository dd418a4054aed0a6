"""The profile: which nodes run, under which namespace, with which parameters.

One source of truth read by `launch/edge.launch.py` (ROS 2 installs) and by `qai-edge up` (pip installs).
Everything is checked before anything starts; a bad profile raises ProfileError naming the key, e.g.
`nodes.io_engine.parameters.heartbeat_period: must be >= 0.05, got 0.0`. No rclpy import here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from qai_edge.broker import BrokerSpec, parse_broker_section
from qai_edge.dds import DdsSpec, parse_dds_section
from qai_edge.nodes import NODE_TYPES

PACKAGE = "qai_edge"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProfileError(ValueError):
    """A profile that cannot run. The message starts with the file and the dotted key at fault."""


@dataclass(frozen=True)
class RestartPolicy:
    """How `qai-edge up` restarts a node that died: exponential backoff, and a limit per time window."""

    respawn: bool = True
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    max_restarts: int = 5
    restart_window: float = 60.0

    def delay(self, recent_restarts: int) -> float:
        """Backoff before the next start, given how many restarts fall inside the window."""
        return min(self.initial_backoff * 2.0 ** recent_restarts, self.max_backoff)


@dataclass(frozen=True)
class StopPolicy:
    """How nodes are stopped, as ros2 launch does: SIGINT, then SIGTERM, then SIGKILL."""

    sigterm_timeout: float = 5.0  # after SIGINT
    sigkill_timeout: float = 5.0  # after SIGTERM


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str
    namespace: str  # absolute, "/" for the root namespace
    parameters: Mapping[str, Any]
    restart: RestartPolicy

    @property
    def fully_qualified_name(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.name}"

    @property
    def heartbeat_period(self) -> float:
        return float(self.parameters["heartbeat_period"])

    def ros_arguments(self, params_file: str | Path) -> list[str]:
        """Command-line arguments that start this node with its name, namespace and parameters."""
        return ["--ros-args", "-r", f"__node:={self.name}", "-r", f"__ns:={self.namespace}",
                "--params-file", str(params_file)]

    def params_file_content(self) -> dict:
        """Return this node's parameters in the ROS 2 params-file layout."""
        return {self.fully_qualified_name: {"ros__parameters": dict(self.parameters)}}

    def launch_arguments(self, stop: StopPolicy) -> dict[str, Any]:
        """Keyword arguments of launch_ros.actions.Node that run this node as the profile says."""
        return {
            "package": PACKAGE,
            "executable": self.executable,
            "name": self.name,
            "namespace": self.namespace,
            "parameters": [dict(self.parameters)],
            "respawn": self.restart.respawn,
            "respawn_delay": self.restart.initial_backoff,
            "sigterm_timeout": str(stop.sigterm_timeout),
            "sigkill_timeout": str(stop.sigkill_timeout),
            "output": "screen",
        }


@dataclass(frozen=True)
class Profile:
    source: str
    namespace: str
    robot_id: str
    nodes: tuple[NodeSpec, ...]
    stop: StopPolicy = field(default_factory=StopPolicy)
    broker: BrokerSpec | None = None  # a local MQTT broker `qai-edge up` starts (the `broker` section)
    broker_restart: RestartPolicy = field(default_factory=RestartPolicy)  # as a node's (the supervisor section)
    dds: DdsSpec = field(default_factory=DdsSpec)  # DDS discovery for the nodes (the `dds` section)

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise KeyError(name)


def default_profile_path() -> Path:
    """config/edge.yaml as installed (share/qai_edge/config) or, in a source checkout, beside the code."""
    from qai_edge.paths import share_file

    return share_file("config", "edge.yaml")


def load_profile(path: str | Path | None = None, namespace: str | None = None) -> Profile:
    """Read and check a profile file; `namespace` overrides the one in the file."""
    path = Path(path) if path is not None else default_profile_path()
    try:
        text = path.read_text()
    except OSError as error:
        raise ProfileError(f"{path}: cannot read profile: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ProfileError(f"{path}:{where}: not valid YAML: {problem}") from None
    return parse_profile(data, source=str(path), namespace=namespace)


_TOP_KEYS = {"namespace", "robot_id", "defaults", "supervisor", "nodes", "broker", "dds"}
_NODE_KEYS = {"executable", "enabled", "respawn", "parameters"}
_SUPERVISOR_KEYS = {
    "initial_backoff": (float, 0.0, 3600.0),
    "max_backoff": (float, 0.0, 3600.0),
    "max_restarts": (int, 0, 1000),
    "restart_window": (float, 1.0, 86400.0),
    "sigterm_timeout": (float, 0.1, 600.0),
    "sigkill_timeout": (float, 0.1, 600.0),
}


def parse_profile(data: Any, source: str = "<profile>", namespace: str | None = None) -> Profile:
    """Check a loaded profile document and resolve it into node specs."""

    def fail(key: str, why: str) -> ProfileError:
        return ProfileError(f"{source}: {key}: {why}")

    def mapping(value: Any, key: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail(key, f"expected a mapping, got {type(value).__name__} {value!r}")
        return value

    def known_keys(value: dict, key: str, allowed: set[str] | dict) -> None:
        for name in value:
            if name not in allowed:
                prefix = f"{key}." if key else ""
                raise fail(f"{prefix}{name}", f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    top = mapping(data, "profile")
    known_keys(top, "", _TOP_KEYS)

    ns_value = namespace if namespace is not None else top.get("namespace", "")
    ns = _check_namespace(ns_value, lambda why: fail("namespace", why))
    robot_id = top.get("robot_id", "") or ""
    if not isinstance(robot_id, str):
        raise fail("robot_id", f"expected a string, got {robot_id!r}")
    if not robot_id:
        robot_id = ns.strip("/").replace("/", "_") or "robot"

    supervisor = mapping(top.get("supervisor"), "supervisor")
    known_keys(supervisor, "supervisor", _SUPERVISOR_KEYS)
    sup: dict[str, Any] = {}
    for key, (kind, low, high) in _SUPERVISOR_KEYS.items():
        if key in supervisor:
            sup[key] = _check_number(supervisor[key], kind, low, high,
                                     lambda why, key=key: fail(f"supervisor.{key}", why))
    if sup.get("initial_backoff", 1.0) > sup.get("max_backoff", 30.0):
        raise fail("supervisor.initial_backoff", "must not exceed supervisor.max_backoff")
    stop = StopPolicy(**{k: sup.pop(k) for k in ("sigterm_timeout", "sigkill_timeout") if k in sup})

    defaults = mapping(top.get("defaults"), "defaults")
    nodes = mapping(top.get("nodes"), "nodes")
    if not nodes:
        raise fail("nodes", "no nodes: a profile must name at least one node")

    specs = []
    for name, node in nodes.items():
        key = f"nodes.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(key, "a node name is letters, digits and '_', not starting with a digit")
        node = mapping(node, key)
        known_keys(node, key, _NODE_KEYS)
        enabled = node.get("enabled", True)
        if not isinstance(enabled, bool):
            raise fail(f"{key}.enabled", f"expected true or false, got {enabled!r}")
        executable = node.get("executable", name)
        node_type = NODE_TYPES.get(executable)
        if node_type is None:
            raise fail(f"{key}.executable", f"unknown executable {executable!r} "
                       f"(expected one of: {', '.join(sorted(NODE_TYPES))})")
        respawn = node.get("respawn", True)
        if not isinstance(respawn, bool):
            raise fail(f"{key}.respawn", f"expected true or false, got {respawn!r}")
        if not enabled:
            continue

        declared = node_type.parameter_specs()
        parameters = {spec.name: spec.default for spec in declared.values()}
        parameters["robot_id"] = robot_id
        own = mapping(node.get("parameters"), f"{key}.parameters")
        for source_key, values in (("defaults", defaults), (f"{key}.parameters", own)):
            for param, value in values.items():
                spec = declared.get(param)
                if spec is None:
                    if source_key == "defaults":
                        continue  # a default applies only to the nodes that declare it
                    raise fail(f"{source_key}.{param}", f"unknown parameter of {executable} "
                               f"(declared: {', '.join(sorted(declared))})")
                try:
                    parameters[param] = spec.check(value)
                except ValueError as error:
                    raise fail(f"{source_key}.{param}", str(error)) from None
        # An empty array has no ROS type, so it cannot go in a params file: leaving it out means "unset".
        parameters = {key: value for key, value in parameters.items() if value != []}
        specs.append(NodeSpec(name=name, executable=executable, namespace=ns, parameters=parameters,
                              restart=RestartPolicy(respawn=respawn, **sup)))

    if not specs:
        raise fail("nodes", "every node is disabled")
    _check_unknown_defaults(defaults, fail)
    broker = parse_broker_section(top.get("broker"), fail, {spec.name: spec.parameters for spec in specs})
    return Profile(source=source, namespace=ns, robot_id=robot_id, nodes=tuple(specs), stop=stop, broker=broker,
                   broker_restart=RestartPolicy(**sup), dds=parse_dds_section(top.get("dds"), fail))


def _check_unknown_defaults(defaults: dict, fail) -> None:
    """Refuse a key under `defaults` that no node type declares: it is a typo, not a harmless extra."""
    declared = set()
    for node_type in NODE_TYPES.values():
        declared.update(node_type.parameter_specs())
    for param in defaults:
        if param not in declared:
            raise fail(f"defaults.{param}", "no node declares this parameter")


def _check_namespace(value: Any, fail) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise fail(f"expected a string, got {value!r}")
    ns = "/" + value.strip("/") if value.strip("/") else "/"
    if ns != "/" and not all(_NAME.match(token) for token in ns[1:].split("/")):
        raise fail(f"{value!r} is not a ROS namespace (tokens of letters, digits and '_', "
                   "not starting with a digit, separated by '/')")
    return ns


def _check_number(value: Any, kind: type, low: float, high: float, fail) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise fail(f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not low <= value <= high:
        raise fail(f"must be between {low} and {high}, got {value!r}")
    return kind(value)
