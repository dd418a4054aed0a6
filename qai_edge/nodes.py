"""The node executables this package installs, and where each one's parameters are declared.

setup.py's console_scripts name the same executables (a test keeps the two in step). Parameter modules
are light (no rclpy, torch or qiskit), so the profile validator can read them all quickly.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from qai_edge.params import BUILTIN_PARAMETERS, COMMON_PARAMETERS, ParamSpec


@dataclass(frozen=True)
class NodeType:
    executable: str
    entry_point: str  # module:function, as in setup.py
    parameters_module: str  # module holding PARAMETERS: tuple[ParamSpec, ...]
    summary: str

    def parameter_specs(self) -> dict[str, ParamSpec]:
        own = importlib.import_module(self.parameters_module).PARAMETERS
        specs = {spec.name: spec for spec in (*BUILTIN_PARAMETERS, *COMMON_PARAMETERS, *own)}
        return specs


NODE_TYPES: dict[str, NodeType] = {
    node_type.executable: node_type
    for node_type in (
        NodeType("mission_engine", "qai_mission.node:main", "qai_mission.parameters",
                 "runs missions: the priority task graph"),
        NodeType("intelligence_engine", "qai_intelligence.node:main", "qai_intelligence.parameters",
                 "liquid neural networks and reinforcement learning"),
        NodeType("quantum_bridge", "qai_quantum_bridge.node:main", "qai_quantum_bridge.parameters",
                 "optimisation on qiskit-aer or a cloud QPU, with classical fallback"),
        NodeType("io_engine", "qai_io.node:main", "qai_io.parameters",
                 "sensors and actuators over DDS"),
        NodeType("sim_vehicle", "qai_io.sim_node:main", "qai_io.sim_parameters",
                 "simulated multirotor or ground robot with Gazebo's topics"),
        NodeType("hub_link", "qai_io.hub_node:main", "qai_io.hub_parameters",
                 "the link to the hub over MQTT: telemetry, signed commands"),
    )
}
