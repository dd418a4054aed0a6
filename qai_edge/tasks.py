"""What an engine serves: task kinds, their handlers, and the context a handler runs in. No rclpy import.

A handler is a plain function `run(request, context) -> dict` called in a worker thread. It reports
progress with `context.feedback(...)`, checks `context.canceled` (or waits with `context.sleep`, which
raises TaskCanceled), and fails with `TaskFailed(message, retryable=...)`. The RunTask shell
(qai_edge.task_server) turns these into action feedback, results and cancellation.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import jsonschema

from qai_edge.geofence import Geofence
from qai_edge.text import cut, shorten

ON_RESTART_REDISPATCH = "redispatch"
ON_RESTART_FAIL = "fail"


class TaskFailed(Exception):
    """The attempt failed. `retryable=False` when another attempt cannot help (bad parameters)."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class TaskCanceled(BaseException):
    """Raised inside a handler (by TaskContext.sleep / check_canceled) once a cancel was requested.

    A BaseException, as asyncio's CancelledError is, so code guarding against failures with `except
    Exception` (a solver falling back when its backend fails) does not swallow a cancel.
    """


# -- JSON values: task parameters, results and feedback values travel as JSON text ---------------

def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed (JSON numbers must be finite)")


def decode_json(text: str) -> Any:
    """Strict JSON: NaN and Infinity (which Python's json accepts) are errors."""
    return json.loads(text, parse_constant=_reject_constant)


def encode_json(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def decode_values(pairs: Mapping[str, str]) -> dict[str, Any]:
    """Decode key -> JSON text pairs; ValueError names the key whose value is not valid JSON."""
    values = {}
    for key, text in pairs.items():
        try:
            values[key] = decode_json(text)
        except ValueError as error:
            raise ValueError(f"{key}: not valid JSON ({error}): {text!r}") from None
    return values


def has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_non_finite(v) for v in value)
    return False


# -- Kinds -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskKindSpec:
    """A task kind as an engine announces it (qai_interfaces/TaskKind)."""

    name: str
    description: str = ""
    parameters_schema: Mapping[str, Any] | None = None  # JSON Schema of the parameters object
    result_keys: tuple[str, ...] = ()
    resources: frozenset[str] = frozenset()
    default_timeout: float | None = None  # seconds
    on_restart: str = ON_RESTART_REDISPATCH
    ready: bool = True  # False while its engine cannot serve it (tasks of it wait); `not_ready` says why
    not_ready: str = ""

    def parameter_errors(self, parameters: Mapping[str, Any], skip: Callable[[str], bool] = lambda name: False
                         ) -> list[str]:
        """Return the schema violations as 'parameters.<name>: why'.

        Parameters for which `skip` is true (result references, resolved only when the task starts) are not
        checked.
        """
        if self.parameters_schema is None:
            return []
        errors = []
        for error in _validator(self.parameters_schema).iter_errors(dict(parameters)):
            path = list(error.absolute_path)
            if path and skip(str(path[0])):
                continue
            where = "parameters" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
            errors.append(f"{where}: {_short_message(error)}")
        return errors


MESSAGE_WIDTH = 300  # characters of one parameter error kept: a 1 MB field is never echoed whole


def _short_message(error) -> str:
    """Say why a value fails its schema, without echoing a huge value whole.

    Sizes and maxima come with their limit (and the parameter that sets it, named by the subschema's
    `x-limit`); anything else in jsonschema's words, cut to MESSAGE_WIDTH.
    """
    limit, instance = error.validator_value, error.instance
    named = error.schema.get("x-limit") if isinstance(error.schema, dict) else None
    suffix = f" ({named})" if named else ""
    if error.validator == "maxItems" and isinstance(instance, list):
        return f"{len(instance)} items, more than the limit of {limit}{suffix}"
    if error.validator == "maxLength" and isinstance(instance, str):
        return f"{len(instance)} characters, more than the limit of {limit}{suffix}"
    if error.validator == "maxProperties" and isinstance(instance, dict):
        return f"{len(instance)} entries, more than the limit of {limit}{suffix}"
    if error.validator == "maximum":
        return f"{shorten(instance)} is more than the limit of {limit}{suffix}"
    return cut(error.message, MESSAGE_WIDTH)


_VALIDATORS: dict[str, Any] = {}
GEOFENCE_KEYWORD = "x-geofence"


def _geofence_keyword(validator, keyword: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]):
    """Check `x-geofence` on a point ([x, y] or [x, y, z]): it must lie inside the announced fence.

    An [x, y] point is checked horizontally; its altitude is known only when the task runs.
    """
    numbers = isinstance(instance, list) and 2 <= len(instance) <= 3 and all(
        isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in instance)
    if not numbers:
        return  # the rest of the schema says what is wrong with it
    why = Geofence.from_schema(keyword).violation(*instance[:2], instance[2] if len(instance) == 3 else None)
    if why:
        yield jsonschema.ValidationError(f"({', '.join(f'{c:g}' for c in instance)}) is {why}")


def _validator(schema: Mapping[str, Any]):
    key = json.dumps(schema, sort_keys=True)
    validator = _VALIDATORS.get(key)
    if validator is None:
        base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        base.check_schema(schema)
        cls = jsonschema.validators.extend(base, {GEOFENCE_KEYWORD: _geofence_keyword})
        validator = _VALIDATORS[key] = cls(schema)
    return validator


# -- Running one task --------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskRequest:
    mission_id: str
    task_id: str
    kind: str
    attempt: int
    parameters: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None  # seconds; None: no limit given


class TaskContext:
    """Handed to a handler: feedback out, cancellation in, and the engine's clock.

    The clock is ROS time: simulated time under use_sim_time. Thread-safe.
    """

    def __init__(self, publish_feedback: Callable[[float, str, Mapping[str, Any]], None] = lambda *a: None,
                 clock: Callable[[], float] = time.monotonic):
        self._publish_feedback = publish_feedback
        self._canceled = threading.Event()
        self.now = clock

    @property
    def canceled(self) -> bool:
        return self._canceled.is_set()

    def request_cancel(self) -> None:
        self._canceled.set()

    def check_canceled(self) -> None:
        if self._canceled.is_set():
            raise TaskCanceled()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` on the engine's clock, waking at once (with TaskCanceled) when a cancel is requested.

        Under simulated time it follows the simulation's pace (and pauses with it).
        """
        end = self.now() + max(0.0, seconds)
        while (left := end - self.now()) > 0:
            if self._canceled.wait(min(left, 0.05)):
                raise TaskCanceled()
        self.check_canceled()

    def feedback(self, progress: float = math.nan, status: str = "", **values: Any) -> None:
        self._publish_feedback(progress, status, values)


Handler = Callable[[TaskRequest, TaskContext], Mapping[str, Any]]


Readiness = Callable[[], str]  # "" when the kind can be served now, else why not


@dataclass(frozen=True)
class ServedKind:
    """A kind an engine serves: its spec, its handler, and (optional) whether it can be served now."""

    spec: TaskKindSpec
    handler: Handler
    readiness: Readiness | None = None

    def not_ready(self) -> str:
        """Return why the kind cannot be served now ('' when it can)."""
        return self.readiness() if self.readiness is not None else ""
