"""How a parameter error is raised and how a value is quoted in its message."""

from __future__ import annotations

from typing import Any


class ParamsError(ValueError):
    """A parameter file or override is invalid; the message names the key and what is allowed."""


VALUE_SHOWN = 120  # characters of a value quoted in an error message


def show(value: Any, limit: int = VALUE_SHOWN) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (a 58 MB value from a
    YAML alias bomb, or a pasted file, never reaches the terminal whole)."""
    text = repr(value) if not isinstance(value, (list, dict, tuple)) or len(value) < 1000 \
        else f"<{type(value).__name__} of {len(value)} items>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
