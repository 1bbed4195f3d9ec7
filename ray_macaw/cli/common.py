"""Argument helpers shared by the `ray-macaw` commands."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
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


def add_experiment_options(
    parser: Any, file_help: str, set_example: str, storage_help: str
) -> None:
    """The options every `... tune FILE` command takes (`ray-macaw tune`, `ray-macaw supervised
    tune`): --set, --name, --storage-path, --resume, --address, --json."""
    parser.add_argument("file", help=file_help)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a shared setting, e.g. --set {set_example} (repeatable)",
    )
    parser.add_argument("--name", default=None, help="experiment name (default: the file's)")
    parser.add_argument("--storage-path", default=None, help=storage_help)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    parser.add_argument("--address", default=None, help="Ray cluster (default: local Ray)")
    parser.add_argument("--json", action="store_true", help="print a summary of the trials as JSON")


def print_doc(doc: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    """A command's result: JSON with --json, else the command's rendering."""
    print(json.dumps(doc, indent=2) if as_json else render(doc))
