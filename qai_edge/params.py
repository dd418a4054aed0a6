"""Parameter specifications, declared once for the node and the profile validator.

One declaration serves the node (ROS parameter descriptors) and the profile validator (which checks
config/*.yaml before anything starts). No rclpy import here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

# The Python types a ROS parameter can take, by the name used in error messages.
_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: its type, default, documentation and allowed range.

    A list default makes an array parameter whose items are `item_type` (ROS cannot tell the type of an
    empty list).
    """

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    read_only: bool = False
    item_type: type | None = None  # for array parameters: float or str
    choices: tuple | None = None  # the only values allowed (a string parameter naming a mode)

    @property
    def type(self) -> type:
        return type(self.default)

    @property
    def is_array(self) -> bool:
        return isinstance(self.default, list)

    def check(self, value: Any) -> Any:
        """Return `value` coerced to this parameter's type, or raise ValueError saying what was expected."""
        if self.is_array:
            if not isinstance(value, list):
                raise ValueError(f"expected a list of {_PLURALS[self.item_type]}, got {value!r}")
            checked = []
            for index, item in enumerate(value):
                try:
                    checked.append(self._check_scalar(item, self.item_type))
                except ValueError as error:
                    raise ValueError(f"item {index}: {error}") from None
            return checked
        return self._check_scalar(value, self.type)

    def _check_scalar(self, value: Any, kind: type) -> Any:
        expected = _TYPE_NAMES[kind]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise ValueError(f"expected {expected}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        if self.min is not None and value < self.min:
            raise ValueError(f"must be >= {self.min}, got {value!r}")
        if self.max is not None and value > self.max:
            raise ValueError(f"must be <= {self.max}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of: {', '.join(map(str, self.choices))}; got {value!r}")
        return value


# Every engine declares these.
COMMON_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("robot_id", "", "Robot identity: hardware_id on /diagnostics and the hub's <robot>. "
              "Empty means the node's namespace, or 'robot' in the root namespace.", read_only=True),
    ParamSpec("heartbeat_period", 1.0, "Seconds between /diagnostics heartbeats.", min=0.05, max=60.0),
    ParamSpec("announce_period", 2.0, "Seconds between repeats of the engine_capabilities announcement.",
              min=0.1, max=600.0),
    ParamSpec("task_result_retention", 60.0, "Seconds an engine keeps a finished task's result for a mission "
              "engine that restarted and asks again. Every kept goal costs each later goal a little (rclpy "
              "republishes all of them), so keep it short.", min=1.0, max=86400.0, read_only=True),
)

# Declared by rclpy itself on every node; a profile may set them.
BUILTIN_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("use_sim_time", False, "Take time from /clock (Gazebo or sim_vehicle)."),
)


def by_name(specs: Sequence[ParamSpec]) -> dict[str, ParamSpec]:
    return {spec.name: spec for spec in specs}
