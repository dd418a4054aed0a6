"""Untrusted documents (mission files, hub commands, task parameters) read within bounds. No rclpy import.

Every bound is checked before the work it guards: the byte size before decoding or parsing, the nesting
depth on the parser's event stream before a document tree is built, and the size of the tree with its
aliases expanded before anything walks it (a YAML "billion laughs" is a few hundred bytes). Bytes must
be UTF-8; a mapping that repeats a key is an error (YAML would silently keep the last); numbers must be
finite. Errors are InputRejected, a ValueError whose message names where, the limit and the value
(shortened): `mission.yaml: tasks[3].parameters.area: nested 40 levels deep, the limit is 32`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from qai_edge.text import shorten


class InputRejected(ValueError):
    """A document outside its bounds, or not well formed; the message says where and why."""


@dataclass(frozen=True)
class InputLimits:
    max_bytes: int = 1 << 20  # of the encoded document
    max_depth: int = 32  # nesting of mappings and sequences
    max_nodes: int = 200_000  # values in the document, aliases expanded
    max_string: int = 65_536  # characters in one string (keys included)
    max_items: int = 100_000  # entries in one mapping or sequence

    def __post_init__(self):
        for name in ("max_bytes", "max_depth", "max_nodes", "max_string", "max_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")


DEFAULT_LIMITS = InputLimits()


def text_from_bytes(data: bytes | str, where: str, limits: InputLimits = DEFAULT_LIMITS) -> str:
    """Return the document as text: its size checked first, then that it is UTF-8."""
    if len(data) > limits.max_bytes:
        raise InputRejected(f"{where}: {len(data)} bytes, the limit is {limits.max_bytes}")
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputRejected(f"{where}: not UTF-8 text (byte {error.start}: {data[error.start:error.start + 8]!r})"
                            ) from None


# -- YAML ------------------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, f"unhashable key {shorten(key)}",
                                                        key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {shorten(key)}",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _mark(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""


def load_yaml(data: bytes | str, where: str, limits: InputLimits = DEFAULT_LIMITS) -> Any:
    """Parse one YAML document within `limits`; an empty document is an error."""
    text = text_from_bytes(data, where, limits)
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_StrictLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > limits.max_depth:
                    raise InputRejected(f"{where}:{_event_mark(event)} nested more than {limits.max_depth} "
                                        "levels deep, the limit")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        loader = _StrictLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise InputRejected(f"{where}: empty document")
            _check_node_tree(root, where, limits)
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error)
        raise InputRejected(f"{where}:{_mark(error)} not valid YAML: {problem}") from None


def _event_mark(event) -> str:
    mark = event.start_mark
    return f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""


def _check_node_tree(root, where: str, limits: InputLimits) -> None:
    """Check the expanded size and depth of a composed YAML graph against `limits`.

    An alias is the node it names, counted again each time it is used. Each node's figures are computed
    once, so a billion laughs costs its few hundred nodes.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, depth) with aliases expanded

    def measure(node, level: int) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > limits.max_string:
                raise InputRejected(f"{where}:{_event_mark(node)} a string of {len(node.value)} characters, "
                                    f"the limit is {limits.max_string}")
            result = (1, 0)
        else:
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
            if len(node.value) > limits.max_items:
                raise InputRejected(f"{where}:{_event_mark(node)} {len(node.value)} entries, the limit is "
                                    f"{limits.max_items}")
            if level >= limits.max_depth:
                raise InputRejected(f"{where}:{_event_mark(node)} nested more than {limits.max_depth} levels "
                                    "deep (aliases expanded), the limit")
            count, depth = 1, 0
            for child in children:
                child_count, child_depth = measure(child, level + 1)
                count += child_count
                depth = max(depth, child_depth + 1)
                if count > limits.max_nodes:
                    raise InputRejected(f"{where}: more than {limits.max_nodes} values (aliases expanded), the "
                                        "limit")
            result = (count, depth)
        sizes[id(node)] = result
        return result

    measure(root, 0)


# -- JSON and decoded values ----------------------------------------------------------------------------

def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed (JSON numbers must be finite)")


def load_json(data: bytes | str, where: str, limits: InputLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON within `limits`: size before parsing, NaN/Infinity refused, then the value's bounds."""
    text = text_from_bytes(data, where, limits)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InputRejected(f"{where}: nested too deeply to parse (the limit is {limits.max_depth})") from None
    except ValueError as error:
        raise InputRejected(f"{where}: not valid JSON ({error})") from None
    check_value(value, where, limits)
    return value


def check_value(value: Any, where: str, limits: InputLimits = DEFAULT_LIMITS) -> None:
    """Check a decoded document (dicts, lists, strings, numbers, booleans, None) against `limits`.

    Checked without recursion: depth, values, string lengths, entries per container, finite numbers, string
    keys.
    """
    stack = [(value, where, 0)]
    seen = 0
    while stack:
        current, path, depth = stack.pop()
        seen += 1
        if seen > limits.max_nodes:
            raise InputRejected(f"{where}: more than {limits.max_nodes} values, the limit")
        if isinstance(current, str):
            if len(current) > limits.max_string:
                raise InputRejected(f"{path}: a string of {len(current)} characters, the limit is "
                                    f"{limits.max_string}: {shorten(current, 40)}")
        elif isinstance(current, float):
            if not math.isfinite(current):
                raise InputRejected(f"{path}: {current} is not a finite number")
        elif isinstance(current, (dict, list, tuple)):
            if depth >= limits.max_depth:
                raise InputRejected(f"{path}: nested more than {limits.max_depth} levels deep, the limit")
            if len(current) > limits.max_items:
                raise InputRejected(f"{path}: {len(current)} entries, the limit is {limits.max_items}")
            if isinstance(current, dict):
                for key, item in current.items():
                    if not isinstance(key, str):
                        raise InputRejected(f"{path}: key {shorten(key, 40)} is not a string")
                    if len(key) > limits.max_string:
                        raise InputRejected(f"{path}: a key of {len(key)} characters, the limit is "
                                            f"{limits.max_string}: {shorten(key, 40)}")
                    stack.append((item, f"{path}.{key}", depth + 1))
            else:
                stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(current))
        elif not (current is None or isinstance(current, (bool, int))):
            raise InputRejected(f"{path}: {type(current).__name__} is not a plain value ({shorten(current, 40)})")
