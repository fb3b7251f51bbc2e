"""Hydra override strings for Python values (what sweeps and promote compose configs with)."""

from __future__ import annotations

import re
from typing import Any


def override(key: str, value: Any) -> str:
    """A Hydra override string `key=value` for a Python value."""
    return f"{key}={override_value(value)}"


def override_value(value: Any) -> str:
    """A Python value as a Hydra override value (null, lower-case bools, strings quoted when needed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./:-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
