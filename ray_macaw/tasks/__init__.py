"""Task families with the paper's splits (spec §8): each gives tasks, splits and `make_env`."""

from ray_macaw.tasks.base import Split, Task, TaskFamily
from ray_macaw.tasks.registry import FAMILIES, get_task_family

__all__ = ["FAMILIES", "Split", "Task", "TaskFamily", "get_task_family"]
