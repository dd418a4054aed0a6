"""A mission document checked on the hub, with the robot's own code, before it is signed. No rclpy import.

The same path as the robot's admission: bounded strict YAML (qai_edge.bounded), qai_mission.codec, then
qai_mission.validation.check_tasks offline (no kinds, no clock): what fails here would be refused by
the robot. When the robot's engines announced their kinds (the `capabilities` telemetry stream), the kind
checks (kind served, parameters against the kind's schema, the geofence in it) run too, as warnings: the
robot, whose engines may have changed since, decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

from qai_edge.bounded import InputRejected, check_value, load_yaml
from qai_edge.tasks import ON_RESTART_FAIL, ON_RESTART_REDISPATCH, TaskKindSpec
from qai_mission.codec import MissionFormatError, mission_from_dict
from qai_mission.model import DEFAULT_LIMITS, KindRoute, MissionLimits
from qai_mission.validation import MissionInvalid, check_tasks, kind_problems

MAX_SCHEMA_BYTES = 1 << 18


@dataclass
class MissionCheck:
    """A checked mission: the document to send when `errors` is empty, and what the page previews."""

    document: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    name: str = ""
    tasks: list[dict[str, Any]] = field(default_factory=list)  # id, kind, depends_on

    @property
    def ok(self) -> bool:
        return self.document is not None and not self.errors

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": self.errors, "warnings": self.warnings, "name": self.name,
                "tasks": self.tasks}


def check_mission_text(data: str | bytes, where: str = "mission", kinds: Mapping[str, KindRoute] | None = None,
                       limits: MissionLimits = DEFAULT_LIMITS) -> MissionCheck:
    """Read and check a mission document (YAML or JSON text) as the robot will; never raises for bad input."""
    check = MissionCheck()
    try:
        document = load_yaml(data, where, limits.document())
        check_value(document, "mission", limits.document())
        spec = mission_from_dict(document, limits)
    except InputRejected as error:
        check.errors.append(str(error))
        return check
    except MissionFormatError as error:
        check.errors.append(f"{where}: {error}")
        return check
    check.name = spec.name
    check.tasks = [{"id": t.id, "kind": t.kind, "depends_on": list(t.depends_on)} for t in spec.tasks[:2000]]
    try:
        check_tasks(spec.tasks, None, None)
    except MissionInvalid as error:
        check.errors.extend(error.errors)
        return check
    check.document = document
    if kinds:
        graph = {task.id: task for task in spec.tasks}
        try:
            check.warnings.extend(kind_problems(list(spec.tasks), kinds, graph))
        except Exception as error:  # noqa: BLE001 - a robot's schema the validator cannot use: say so, go on
            check.warnings.append(f"the robot's announced kinds could not be checked against: {error!r:.200}")
    return check


def kinds_from_engines(engines: Mapping[str, Mapping[str, Any]]) -> dict[str, KindRoute]:
    """Return the kinds a robot's engines announced (EngineCapabilities as JSON), as the mission engine routes them.

    An announcement that cannot be read is left out.
    """
    routes: dict[str, KindRoute] = {}
    for engine, announcement in engines.items():
        for kind in announcement.get("kinds") or []:
            try:
                spec = kind_spec(kind)
            except (ValueError, TypeError, KeyError):
                continue
            routes.setdefault(spec.name, KindRoute(spec, str(engine), str(announcement.get("task_action", ""))))
    return routes


def kind_spec(kind: Mapping[str, Any]) -> TaskKindSpec:
    """Return a TaskKind (as JSON) as a TaskKindSpec: qai_edge.convert.kind_from_msg for a hub without ROS."""
    schema_text = kind.get("parameters_schema") or ""
    if not isinstance(kind.get("name"), str) or not isinstance(schema_text, str):
        raise ValueError("not a task kind")
    if len(schema_text) > MAX_SCHEMA_BYTES:
        raise ValueError("schema too large")
    schema = orjson.loads(schema_text) if schema_text else None
    if schema is not None and not isinstance(schema, dict):
        raise ValueError("schema is not an object")
    timeout = kind.get("default_timeout") or {}
    seconds = timeout.get("sec", 0) + timeout.get("nanosec", 0) * 1e-9 if isinstance(timeout, dict) else 0
    return TaskKindSpec(name=kind["name"], description=str(kind.get("description", "")), parameters_schema=schema,
                        result_keys=tuple(str(k) for k in kind.get("result_keys") or []),
                        resources=frozenset(str(r) for r in kind.get("resources") or []),
                        default_timeout=seconds or None,
                        on_restart=ON_RESTART_FAIL if kind.get("on_restart") == 1 else ON_RESTART_REDISPATCH)
