"""Argument helpers shared by the `ray-macaw` commands."""

from __future__ import annotations

import json
import logging
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


# Library warnings that say nothing actionable to a ray-macaw user: MACAW has no EnvRunners or
# RLModules, so RLlib's "new API stack" notice does not apply, and GPU monitoring is optional.
NOISE = (
    ("ray.rllib.algorithms.algorithm_config", "on the new API stack"),
    ("ray.tune.utils.util", "Install gputil"),
)


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def quiet_library_noise() -> None:
    """Drop the known non-actionable library warnings from this process's logs."""
    for logger, fragment in NOISE:
        logging.getLogger(logger).addFilter(_DropMessage(fragment))
