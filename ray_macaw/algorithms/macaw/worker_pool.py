"""The inner-loop worker actors of one MACAW run: task ownership, gradients, replacing lost ones.

Each worker holds the data of a fixed group of training tasks. A worker that dies (its node was
lost, it ran out of memory, it was killed) is started again with the same tasks, and its part of
the meta-step is sent again with the same weights and rows, so the step's gradient is the one an
undisturbed run computes: nothing is skipped or silently changed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError

from ray_macaw.algorithms.macaw.workers import InnerLoopWorker, assign_tasks, worker_options
from ray_macaw.data.batches import TaskRequest
from ray_macaw.errors import RayMacawError

logger = logging.getLogger(__name__)


class WorkerLostError(RayMacawError, RuntimeError):
    """Inner-loop workers died more often than the run allows."""


class InnerLoopPool:
    """Inner-loop workers over the training tasks (round-robin), restarted when they die."""

    def __init__(
        self,
        config: Any,
        train_tasks: Sequence[int],
        worker_args: tuple[Any, ...],
        max_restarts: int,
    ) -> None:
        """`worker_args` are InnerLoopWorker's arguments after the task ids (model config, ...)."""
        self.config = config
        self.worker_args = worker_args
        self.max_restarts = max_restarts
        self.restarts = 0
        self.groups = assign_tasks(train_tasks, config.num_inner_loop_workers)
        self.owner = {task: i for i, tasks in enumerate(self.groups) for task in tasks}
        self.workers = [self._start(tasks) for tasks in self.groups]

    def _start(self, tasks: Sequence[int]) -> Any:
        cfg = self.config
        return InnerLoopWorker.options(**worker_options(cfg)).remote(  # type: ignore[attr-defined]
            cfg.data_root, cfg.family, tasks, *self.worker_args
        )

    def gradients(
        self, weights: Any, requests: Sequence[TaskRequest], divisor: float
    ) -> list[tuple[Any, dict[str, float], int]]:
        """Each involved worker's (gradients, stats, tasks), in worker order (a fixed summation
        order, so the result does not depend on which worker answered first)."""
        pending: dict[int, list[TaskRequest]] = defaultdict(list)
        for request in requests:
            pending[self.owner[request.task_id]].append(request)
        results: dict[int, Any] = {}
        while pending:
            futures = {
                i: self.workers[i].gradients.remote(weights, reqs, divisor)
                for i, reqs in pending.items()
            }
            for i, future in futures.items():
                try:
                    results[i] = ray.get(future)
                    del pending[i]
                except RayActorError as error:
                    self._replace(i, error)
        return [results[i] for i in sorted(results)]

    def _replace(self, index: int, error: Exception) -> None:
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise WorkerLostError(
                f"inner-loop workers died {self.restarts} times (last: {error})",
                "check the workers' logs (memory, lost nodes); raise max_inner_worker_restarts "
                "or resume from the last checkpoint with `ray-macaw train --resume`",
            ) from error
        logger.warning(
            "inner-loop worker %d (tasks %s) died; restarting it and retrying its part of the step",
            index,
            self.groups[index],
        )
        ray.kill(self.workers[index], no_restart=True)
        self.workers[index] = self._start(self.groups[index])

    def node_ids(self) -> list[str]:
        """The Ray node of each worker."""
        return ray.get([worker.node_id.remote() for worker in self.workers])

    def stop(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []
