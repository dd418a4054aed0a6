"""ROS messages <-> JSON-ready dicts, driven by each message class's own introspection. No rclpy import.

Any generated ROS 2 message maps without per-type code: the codec reads the class's field names
(`get_fields_and_field_types()`) and types (`SLOT_TYPES`, rosidl_parser definitions) once and builds an
encoder and a strict decoder for it.

The JSON form (what a non-ROS hub reads):
- a message is an object with every field by name; nested messages nest;
- integers and booleans as JSON numbers and booleans; `octet` and `uint8` values (and their arrays) as
  integers 0-255; `char` as a one-character string;
- floating-point values as numbers, and NaN or +-infinity (which JSON cannot hold; ROS uses NaN for
  "unknown", e.g. BatteryState.temperature) as null, decoded back as NaN (as rosbridge does);
- arrays and sequences as JSON arrays; builtin_interfaces Time/Duration as {"sec", "nanosec"}.

Decoding checks everything before it builds the message: unknown fields, types, integer ranges, float32
range, fixed array lengths and sequence/string bounds; a CodecError names the field path, e.g.
`pose.covariance: expected 36 items, got 35`. Fields left out keep their defaults.
"""

from __future__ import annotations

import array
import importlib
import math
import struct
from typing import Any, Callable

from rosidl_parser import definition as idl

_INT_RANGES = {}
for _bits in (8, 16, 32, 64):
    _INT_RANGES[f"int{_bits}"] = (-(2 ** (_bits - 1)), 2 ** (_bits - 1) - 1)
    _INT_RANGES[f"uint{_bits}"] = (0, 2 ** _bits - 1)
for _alias, _real in (("short", "int16"), ("long", "int32"), ("long long", "int64"), ("unsigned short", "uint16"),
                      ("unsigned long", "uint32"), ("unsigned long long", "uint64")):
    _INT_RANGES[_alias] = _INT_RANGES[_real]
_FLOATS = {"float", "double", "long double"}
_FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]


class CodecError(ValueError):
    """A type the codec cannot map, or a value that does not fit its field; the message names the field."""


def type_name(cls: type) -> str:
    """'nav_msgs/msg/Odometry' for the Odometry class."""
    package = cls.__module__.split(".")[0]
    return f"{package}/msg/{cls.__name__}"


def message_class(name: str) -> type:
    """Return the message class named 'pkg/msg/Type' (or 'pkg/Type'); CodecError when it cannot be mapped."""
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(part.isidentifier() for part in parts):
        raise CodecError(f"{name!r} is not a ROS message type name (expected package/msg/Type)")
    package, kind, cls_name = parts
    if kind != "msg":
        raise CodecError(f"{name}: only messages map to telemetry, not {kind} types")
    try:
        module = importlib.import_module(f"{package}.{kind}")
    except ImportError as error:
        raise CodecError(f"{name}: cannot import {package}.{kind} ({error})") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise CodecError(f"{name}: {package}.{kind} has no type {cls_name}")
    codec_for(cls)  # refuses what it cannot map
    return cls


_CODECS: dict[type, "MessageCodec"] = {}


def codec_for(cls: type) -> "MessageCodec":
    codec = _CODECS.get(cls)
    if codec is None:
        codec = MessageCodec(cls)
        _CODECS[cls] = codec
    return codec


def to_dict(message: Any) -> dict[str, Any]:
    return codec_for(type(message)).encode(message)


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    return codec_for(cls).decode(data, where)


class MessageCodec:
    """Encoder and decoder of one message class, built once from its introspection."""

    def __init__(self, cls: type):
        fields = getattr(cls, "get_fields_and_field_types", None)
        slot_types = getattr(cls, "SLOT_TYPES", None)
        if fields is None or slot_types is None:
            raise CodecError(f"{getattr(cls, '__name__', cls)!r} is not a generated ROS message class")
        self.cls = cls
        self.names = list(fields())
        if len(self.names) != len(slot_types):
            raise CodecError(f"{cls.__name__}: field names and SLOT_TYPES disagree")
        _CODECS[cls] = self  # before the fields: a recursive type refers to itself
        try:
            self._encoders = [(name, _encoder(slot)) for name, slot in zip(self.names, slot_types)]
            self._decoders = {name: _decoder(slot) for name, slot in zip(self.names, slot_types)}
        except CodecError as error:
            del _CODECS[cls]
            raise CodecError(f"{type_name(cls)}: {error}") from None

    def encode(self, message: Any) -> dict[str, Any]:
        return {name: encode(getattr(message, name)) for name, encode in self._encoders}

    def decode(self, data: Any, where: str = "") -> Any:
        if not isinstance(data, dict):
            raise CodecError(f"{where or type_name(self.cls)}: expected an object, got {_kind(data)}")
        unknown = [key for key in data if key not in self._decoders]
        if unknown:
            raise CodecError(f"{_join(where, str(unknown[0])[:64])}: unknown field of {type_name(self.cls)} "
                             f"(fields: {', '.join(self.names)})")
        values = {name: self._decoders[name](value, _join(where, name)) for name, value in data.items()}
        return self.cls(**values)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# -- Encoders ------------------------------------------------------------------------------------

def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float_list(values) -> list:
    items = values.tolist()
    if math.isfinite(sum(items)):  # one C loop; only a non-finite item (or an overflow) takes the slow path
        return items
    return [item if math.isfinite(item) else None for item in items]


def _identity(value: Any) -> Any:
    return value


def _encoder(slot) -> Callable[[Any], Any]:
    if isinstance(slot, idl.BasicType):
        if slot.typename in _FLOATS:
            return _finite_or_none
        if slot.typename == "octet":
            return lambda value: value[0] if isinstance(value, (bytes, bytearray)) else int(value)
        return _identity
    if isinstance(slot, idl.AbstractGenericString):
        return _identity
    if isinstance(slot, idl.NamespacedType):
        codec = _nested_codec(slot)
        return lambda value: codec.encode(value)
    if isinstance(slot, idl.AbstractNestedType):  # Array, BoundedSequence, UnboundedSequence
        item = slot.value_type
        if isinstance(item, idl.BasicType):
            if item.typename in _FLOATS:
                return _float_list
            if item.typename == "octet":
                return lambda values: [v[0] if isinstance(v, (bytes, bytearray)) else int(v) for v in values]
            return lambda values: values.tolist() if hasattr(values, "tolist") else list(values)
        if isinstance(item, idl.AbstractGenericString):
            return list
        if isinstance(item, idl.NamespacedType):
            codec = _nested_codec(item)
            return lambda values: [codec.encode(v) for v in values]
    raise CodecError(f"unsupported field type {type(slot).__name__}")


def _nested_codec(slot) -> "MessageCodec":
    module_name = ".".join(slot.namespaces)
    try:
        cls = getattr(importlib.import_module(module_name), slot.name)
    except (ImportError, AttributeError) as error:
        raise CodecError(f"cannot import the nested type {module_name}.{slot.name} ({error})") from None
    return _CODECS.get(cls) or MessageCodec(cls)


# -- Decoders (strict) ---------------------------------------------------------------------------

def _decoder(slot) -> Callable[[Any, str], Any]:
    if isinstance(slot, idl.BasicType):
        return _basic_decoder(slot.typename)
    if isinstance(slot, idl.AbstractGenericString):
        limit = getattr(slot, "maximum_size", None)
        return lambda value, where: _string(value, where, limit)
    if isinstance(slot, idl.NamespacedType):
        codec = _nested_codec(slot)
        return lambda value, where: codec.decode(value, where)
    if isinstance(slot, idl.AbstractNestedType):
        item = _decoder(slot.value_type)
        exact = slot.size if isinstance(slot, idl.Array) else None
        limit = slot.maximum_size if isinstance(slot, idl.BoundedSequence) else None
        typecode = _ARRAY_TYPECODES.get(getattr(slot.value_type, "typename", None))
        fixed_numeric = exact is not None and isinstance(slot.value_type, idl.BasicType) and typecode

        def decode_list(value, where):
            if not isinstance(value, list):
                raise CodecError(f"{where}: expected an array, got {_kind(value)}")
            if exact is not None and len(value) != exact:
                raise CodecError(f"{where}: expected {exact} items, got {len(value)}")
            if limit is not None and len(value) > limit:
                raise CodecError(f"{where}: at most {limit} items, got {len(value)}")
            items = [item(v, f"{where}[{i}]") for i, v in enumerate(value)]
            if typecode and not fixed_numeric:
                return array.array(typecode, items)
            return items

        return decode_list
    raise CodecError(f"unsupported field type {type(slot).__name__}")


_ARRAY_TYPECODES = {"float": "f", "double": "d", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
                    "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q", "short": "h", "long": "i",
                    "long long": "q", "unsigned short": "H", "unsigned long": "I", "unsigned long long": "Q"}


def _basic_decoder(typename: str) -> Callable[[Any, str], Any]:
    if typename in _FLOATS:
        single = typename == "float"

        def decode_float(value, where):
            if value is None:
                return math.nan
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CodecError(f"{where}: expected a number or null, got {_kind(value)}")
            number = float(value)
            if single and math.isfinite(number) and abs(number) > _FLOAT32_MAX:
                raise CodecError(f"{where}: {value!r} is out of float32 range")
            return number

        return decode_float
    if typename == "boolean":
        def decode_bool(value, where):
            if not isinstance(value, bool):
                raise CodecError(f"{where}: expected true or false, got {_kind(value)}")
            return value

        return decode_bool
    if typename == "octet":
        def decode_octet(value, where):
            return bytes([_integer(value, where, 0, 255)])

        return decode_octet
    if typename in ("char", "wchar"):
        def decode_char(value, where):
            if not isinstance(value, str) or len(value) != 1:
                raise CodecError(f"{where}: expected a one-character string, got {_kind(value)}")
            return value

        return decode_char
    if typename in _INT_RANGES:
        low, high = _INT_RANGES[typename]
        return lambda value, where: _integer(value, where, low, high)
    raise CodecError(f"unsupported basic type {typename}")


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodecError(f"{where}: expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise CodecError(f"{where}: {value} is out of range [{low}, {high}]")
    return value


def _string(value: Any, where: str, limit: int | None) -> str:
    if not isinstance(value, str):
        raise CodecError(f"{where}: expected a string, got {_kind(value)}")
    if limit is not None and len(value) > limit:
        raise CodecError(f"{where}: at most {limit} characters, got {len(value)}")
    return value
