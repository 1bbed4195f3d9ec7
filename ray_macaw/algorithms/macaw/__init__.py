"""MACAW as an RLlib Algorithm: its config, the algorithm, inner-loop workers and validation.

`MACAW` and `MACAWConfig` are imported on first use (PEP 562): an inner-loop replica imports
`workers` from this package and needs neither RLlib nor the algorithm (it starts seconds sooner).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_macaw.algorithms.macaw.algorithm import MACAW
    from ray_macaw.algorithms.macaw.config import MACAWConfig

_PUBLIC = {
    "MACAW": "ray_macaw.algorithms.macaw.algorithm",
    "MACAWConfig": "ray_macaw.algorithms.macaw.config",
}

__all__ = ["MACAW", "MACAWConfig"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
