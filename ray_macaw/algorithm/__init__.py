"""MACAW as an RLlib Algorithm: `MACAWConfig`, `MACAW`, inner-loop workers, evaluation."""

from ray_macaw.algorithm.config import MACAWConfig
from ray_macaw.algorithm.macaw import MACAW

__all__ = ["MACAW", "MACAWConfig"]
