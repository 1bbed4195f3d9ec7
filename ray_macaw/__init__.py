"""ray-macaw: Ray-native MACAW (Mitchell et al., ICML 2021), offline meta-RL with advantage
weighting.

    from ray_macaw import MACAW, MACAWConfig, PEARL, PEARLConfig, TaskDatasets, get_task_family

The names are imported on first use (PEP 562), so that importing a math package such as
`ray_macaw.nn` does not start importing Ray and RLlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ray_macaw.version import __version__

if TYPE_CHECKING:
    from ray_macaw.algorithms.macaw import MACAW, MACAWConfig
    from ray_macaw.algorithms.pearl import PEARL, PEARLConfig
    from ray_macaw.data.datasets import TaskDatasets
    from ray_macaw.tasks import get_task_family

# public name -> module that defines it
_PUBLIC = {
    "MACAW": "ray_macaw.algorithms.macaw",
    "MACAWConfig": "ray_macaw.algorithms.macaw",
    "PEARL": "ray_macaw.algorithms.pearl",
    "PEARLConfig": "ray_macaw.algorithms.pearl",
    "TaskDatasets": "ray_macaw.data.datasets",
    "get_task_family": "ray_macaw.tasks",
}

__all__ = [
    "MACAW",
    "PEARL",
    "MACAWConfig",
    "PEARLConfig",
    "TaskDatasets",
    "__version__",
    "get_task_family",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ray_macaw' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
