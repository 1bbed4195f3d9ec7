"""Read the authors' task-spec pickles without running arbitrary code.

`env_<env>_train_task{i}.pkl` holds a list with one dict of task parameters (floats, lists, numpy
arrays). Only builtin containers and numpy array reconstruction may be loaded; anything else (a
class, a function) is refused, so a malicious file cannot execute code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from ray_macaw.errors import DataError

_ALLOWED = {
    ("builtins", name)
    for name in (
        "dict",
        "list",
        "tuple",
        "set",
        "float",
        "int",
        "str",
        "bool",
        "complex",
        "bytes",
        "frozenset",
    )
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a task-spec file")
        return super().find_class(module, name)


def load_task_spec(path: Path) -> dict[str, Any]:
    """The task dict of an authors' task-spec pickle, as JSON-ready values."""
    try:
        with open(path, "rb") as f:
            spec = _RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
        raise DataError(
            f"task-spec file is not a plain list of one parameter dict ({e})",
            "pass the authors' env_<env>_train_task<i>.pkl files, or leave --task-specs out",
            path,
        ) from e
    if isinstance(spec, list) and len(spec) == 1:
        spec = spec[0]
    if not isinstance(spec, dict):
        raise DataError("task-spec file does not hold a parameter dict", "check the file", path)
    return {str(k): _jsonable(v) for k, v in spec.items()}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
