"""The node executables installed with qai_edge, found through the `qai_edge.nodes` entry points.

Each engine package declares its own nodes (setup.py: `qai_edge.nodes` entry points naming a NodeType in
the engine's light parameters module: no rclpy, torch or qiskit there), so this shared base names no
engine and the profile validator can read every node's parameters quickly. setup.py's console_scripts
name the same executables (a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Iterator

from qai_edge.params import BUILTIN_PARAMETERS, COMMON_PARAMETERS, ParamSpec

ENTRY_POINT_GROUP = "qai_edge.nodes"


@dataclass(frozen=True)
class NodeType:
    executable: str
    entry_point: str  # module:function, as in setup.py's console_scripts
    summary: str
    parameters: tuple[ParamSpec, ...] = ()  # beyond the common ones

    def parameter_specs(self) -> dict[str, ParamSpec]:
        return {spec.name: spec for spec in (*BUILTIN_PARAMETERS, *COMMON_PARAMETERS, *self.parameters)}


class _NodeTypes(Mapping):
    """executable -> NodeType, read from the entry points on first use."""

    def __init__(self):
        self._types: dict[str, NodeType] | None = None

    def _load(self) -> dict[str, NodeType]:
        if self._types is None:
            types = {}
            for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
                node_type = entry.load()
                if not isinstance(node_type, NodeType) or node_type.executable != entry.name:
                    raise TypeError(f"entry point {entry.name} = {entry.value} is not the NodeType of {entry.name}")
                types[entry.name] = node_type
            self._types = dict(sorted(types.items()))
        return self._types

    def __getitem__(self, executable: str) -> NodeType:
        return self._load()[executable]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


NODE_TYPES: Mapping[str, NodeType] = _NodeTypes()
