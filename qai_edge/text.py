"""Text for error messages: values shown shortened, so a 1 MB field is never echoed whole. No rclpy import."""

from __future__ import annotations

from typing import Any

DEFAULT_WIDTH = 80


def shorten(value: Any, width: int = DEFAULT_WIDTH) -> str:
    """Return repr(value), cut to about `width` characters with its full length said when it is longer."""
    text = repr(value)
    if len(text) <= width:
        return text
    return f"{text[:width]}... ({len(text)} characters)"


def cut(text: str, width: int = 300) -> str:
    """Return `text` itself, cut to `width` characters with its full length said when it is longer."""
    return text if len(text) <= width else f"{text[:width]}... ({len(text)} characters)"
