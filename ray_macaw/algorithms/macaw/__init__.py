"""MACAW as an RLlib Algorithm: its config, the algorithm, inner-loop workers and validation."""

from ray_macaw.algorithms.macaw.algorithm import MACAW
from ray_macaw.algorithms.macaw.config import MACAWConfig

__all__ = ["MACAW", "MACAWConfig"]
