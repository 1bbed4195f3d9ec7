"""ray-macaw: Ray-native MACAW (Mitchell et al., ICML 2021), offline meta-RL with advantage
weighting."""

from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.tasks import get_task_family

__version__ = "0.1.0"

__all__ = ["TaskDatasets", "__version__", "get_task_family"]
