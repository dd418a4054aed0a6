"""Canonical JSON (RFC 8785, the JSON Canonicalization Scheme): the bytes that hub commands are signed over.

One value has exactly one encoding, the one JavaScript's JSON.stringify gives with object keys sorted by
UTF-16 code units and no whitespace, so a hub written in any language (there are JCS libraries for most)
signs the same bytes this robot verifies. Numbers are IEEE doubles: integers beyond +-2^53 and non-finite
numbers cannot be represented and raise ValueError, as do lone surrogates in strings. No rclpy import.
"""

from __future__ import annotations

import math
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 encoding of a JSON value (dicts, lists, str, int, float, bool, None) as UTF-8."""
    parts: list[str] = []
    _encode(value, parts, "$")
    return "".join(parts).encode("utf-8")


def _encode(value: Any, out: list[str], where: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"{where}: integer {value} is beyond +-2^53 and has no exact JSON number")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(number_text(value, where))
    elif isinstance(value, str):
        out.append(_string(value, where))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"{where}: object key {key!r} is not a string")
        out.append("{")
        for index, key in enumerate(sorted(value, key=_utf16_order)):
            if index:
                out.append(",")
            out.append(_string(key, where))
            out.append(":")
            _encode(value[key], out, f"{where}.{key}")
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, f"{where}[{index}]")
        out.append("]")
    else:
        raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def _utf16_order(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _string(text: str, where: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{where}: lone surrogate U+{code:04X} in a string")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def number_text(value: float, where: str = "$") -> str:
    """Format a finite double as ECMAScript's Number.prototype.toString does (what RFC 8785 prescribes)."""
    if not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a JSON number")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript does; only the layout differs.
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    significant = all_digits.lstrip("0")
    point = len(whole) + (int(exponent) if exponent else 0) - (len(all_digits) - len(significant))
    digits = significant.rstrip("0") or "0"
    count = len(digits)
    if count <= point <= 21:
        return sign + digits + "0" * (point - count)
    if 0 < point <= 21:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    power = point - 1
    power_text = f"{'+' if power >= 0 else '-'}{abs(power)}"
    if count == 1:
        return f"{sign}{digits}e{power_text}"
    return f"{sign}{digits[0]}.{digits[1:]}e{power_text}"
