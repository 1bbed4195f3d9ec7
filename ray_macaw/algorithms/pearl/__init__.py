"""Offline PEARL (the baseline) as an RLlib Algorithm: its config and the algorithm."""

from ray_macaw.algorithms.pearl.algorithm import PEARL
from ray_macaw.algorithms.pearl.config import PEARLConfig

__all__ = ["PEARL", "PEARLConfig"]
