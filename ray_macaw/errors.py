"""Errors that name the problem, the path or value at fault, and the fix.

Every error ray-macaw raises on bad input is a `RayMacawError`, so the CLI can print it as one line
and library users can catch one type.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_macaw.data.storage import ObjectPath


class RayMacawError(Exception):
    """Base class: a problem with user input, data or configuration, and how to fix it.

    Args:
        problem: What is wrong, in one sentence.
        fix: What the user should do about it.
        path: The file or directory at fault, if any.
    """

    def __init__(self, problem: str, fix: str, path: str | Path | object | None = None) -> None:
        self.problem = problem
        self.fix = fix
        self.path = None if path is None else _as_path(path)
        where = f" [{self.path}]" if self.path is not None else ""
        super().__init__(f"{problem}{where}. Fix: {fix}")

    def __reduce__(self) -> tuple[type, tuple[str, str, Any]]:
        # Pickle by the constructor's arguments (the default passes only str(self)), so the
        # error crosses a Ray actor or task boundary as itself and the CLI prints one line.
        return type(self), (self.problem, self.fix, self.path)


def _as_path(path: str | Path | object) -> Any:
    """A local path as a `Path`; an `ObjectPath`, or a URI as written ('s3://bucket/key': `Path`
    would fold it into 's3:/bucket/key'), as it is."""
    if isinstance(path, str | os.PathLike) and "://" not in str(path):
        return Path(path)
    return path


class UnknownNameError(RayMacawError, ValueError):
    """An unknown family, split, task id or option value."""


class ArgumentError(RayMacawError, ValueError):
    """A command-line argument out of its range."""


class DataError(RayMacawError):
    """A data root, manifest or Parquet part that cannot be used as it is."""


class MissingDataError(DataError, FileNotFoundError):
    """A root, family directory, task directory, manifest or part that does not exist."""


class ChecksumError(DataError):
    """A part whose sha256 differs from the one recorded in the manifest."""


class SchemaError(DataError):
    """A part or manifest with missing, extra or mistyped columns or fields."""


class NonFiniteDataError(DataError):
    """NaN or inf in a float column."""


class SchemaVersionError(DataError):
    """A manifest written by a newer (or unknown) version of the data format."""


def recollect_fix(family_dir: Path | ObjectPath, task_id: int) -> str:
    """The fix that collects one task again from scratch (its data is discarded first)."""
    return (
        f"re-collect it from scratch: re-run the `ray-macaw collect --family {family_dir.name} "
        f"--out {family_dir.parent} ...` command that wrote it, adding --recollect {task_id}"
    )


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """'did you mean X? ' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def unknown_name(
    kind: str, name: object, choices: Iterable[object], context: str = ""
) -> UnknownNameError:
    """Build the error for an unknown family, split, task id or option value.

    Args:
        kind: What was looked up ("task family", "split", ...).
        name: The unknown value.
        choices: The valid values, listed in the fix (elided in the middle when long).
        context: Appended to the problem, e.g. " for family 'cheetah-vel'".
    """
    options = [str(c) for c in choices]
    listed = ", ".join(options) if len(options) <= 12 else f"{options[0]} ... {options[-1]}"
    return UnknownNameError(
        f"unknown {kind} '{name}'{context}",
        f"{did_you_mean(str(name), options)}use one of: {listed or '(none available)'}",
    )


class NonFiniteLossError(RayMacawError, FloatingPointError):
    """A meta-step produced a non-finite loss or gradient and the run was set to stop."""
