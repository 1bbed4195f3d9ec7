"""Argument helpers shared by the `ray-macaw` commands."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ray_macaw.errors import UnknownNameError


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is read as JSON when it parses (numbers, lists), else a string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UnknownNameError(f"cannot read setting '{pair}'", "write it as KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
