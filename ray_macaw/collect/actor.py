"""The Ray actor that runs one unit of collection: a task, or a shared agent's group of tasks."""

from __future__ import annotations

from typing import Any

import ray
import torch

from ray_macaw.collect.collector import TaskCollection
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.shared import SharedCollection


@ray.remote(max_concurrency=2)  # type: ignore[call-overload]
class CollectorActor:
    """Collects its unit; `progress()` answers while `run()` works."""

    def __init__(
        self, config: CollectConfig, task_ids: list[int], obs_dim: int, act_dim: int
    ) -> None:
        torch.set_num_threads(max(1, int(config.num_cpus_per_task)))
        self.collection: TaskCollection | SharedCollection
        if config.shared_agents:
            self.collection = SharedCollection(config, task_ids, obs_dim, act_dim)
        else:
            (task_id,) = task_ids
            self.collection = TaskCollection(config, task_id, obs_dim, act_dim)

    def run(self) -> dict[int, dict[str, Any]]:
        """Collect the unit; returns each task's final progress and time, and the node."""
        node = ray.get_runtime_context().get_node_id()
        if isinstance(self.collection, SharedCollection):
            per_task = self.collection.run()
        else:
            per_task = {self.collection.task_id: self.collection.run()}
        return {t: {**r, "node_id": node} for t, r in per_task.items()}

    def progress(self) -> dict[str, Any]:
        """Current progress of the unit."""
        return self.collection.progress()
