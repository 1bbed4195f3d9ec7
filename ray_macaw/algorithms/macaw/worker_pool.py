"""The inner-loop replicas of one MACAW run: their group, each step's shares, replacing lost ones.

Every replica can serve every training task, so a step's tasks are split evenly (no replica
computes more than ceil(B / N) of them, `replicas.split_balanced`). No weights travel per step;
the driver's copy of the training state (its model and optimisers) is brought up to date from
rank 0 only when it is read (evaluation, checkpoints): that copy is the snapshot the replicas are
reset to after a loss. A replica that dies (its node was lost, it ran out of memory, it was killed)
is started again with the same rank, the group is formed again, every replica loads the snapshot,
the steps taken since it are replayed with the same shares, and the failed step is computed
again. Same ranks, same shares, same sums: the weights equal an undisturbed run's bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import ray
from ray.exceptions import RayActorError

from ray_macaw.algorithms.common.replicas import split_balanced
from ray_macaw.algorithms.replica.workers import (
    InnerLoopWorker,
    ReplicaSettings,
    ReplicaStep,
    worker_options,
)
from ray_macaw.data.batches import TaskRequest
from ray_macaw.errors import RayMacawError

logger = logging.getLogger(__name__)
T = TypeVar("T")


class WorkerLostError(RayMacawError, RuntimeError):
    """Inner-loop workers died more often than the run allows."""


class _ReplicasLost(Exception):
    """Replicas died during a call (internal: the pool replaces them and tries again)."""

    def __init__(self, ranks: list[int], error: Exception) -> None:
        super().__init__(f"replicas {ranks} lost: {error}")
        self.ranks, self.error = ranks, error


@dataclass(frozen=True)
class LoggedStep:
    """A step taken since the snapshot, as it was sent (replayed after a loss)."""

    shares: list[list[TaskRequest]]
    divisor: float
    first: bool


class InnerLoopPool:
    """N data-parallel replicas in one collective group, restarted when they die.

    Args:
        config: The MACAW config (worker count, resources, restarts allowed).
        held: Each training task's held buffers in the object store (`load_held_task`).
        settings: What each replica is built from.
        snapshot: The training state every replica starts from (`replicas.training_state`).
    """

    def __init__(
        self,
        config: Any,
        held: Mapping[int, ray.ObjectRef],
        settings: ReplicaSettings,
        snapshot: Mapping[str, Any],
    ) -> None:
        self.config = config
        self.held = dict(held)
        self.settings = settings
        self.max_restarts = config.max_inner_worker_restarts
        self.restarts = 0
        self.workers = [self._start() for _ in range(config.num_inner_loop_workers)]
        self.log: list[LoggedStep] = []
        self.broken = False
        self._form_group()
        self.push(snapshot)

    def _start(self) -> Any:
        options = worker_options(self.config)
        return InnerLoopWorker.options(**options).remote(self.held, self.settings)  # type: ignore[attr-defined]

    def _form_group(self) -> None:
        address, port = self._get([self.workers[0].address.remote()])[0]
        world = len(self.workers)
        self._get(
            [w.join.remote(rank, world, address, port) for rank, w in enumerate(self.workers)]
        )

    def step(
        self, requests: Sequence[TaskRequest], divisor: float, first: bool
    ) -> list[ReplicaStep]:
        """Every replica's answer for one meta-step, in rank order (the step is taken)."""
        logged = LoggedStep(split_balanced(requests, len(self.workers)), divisor, first)
        results = self._recovering(lambda: self._run(logged))
        self.log.append(logged)
        return results

    def pull(self) -> dict[str, Any]:
        """Rank 0's training state (with gradients), which becomes the snapshot."""
        state = self._recovering(lambda: self._get([self.workers[0].get_state.remote(True)])[0])
        self.log = []
        self.snapshot = ray.put(state)
        return state

    def push(self, state: Mapping[str, Any]) -> None:
        """Load `state` into every replica; it becomes the snapshot."""
        self.snapshot = ray.put(dict(state))
        self.log = []
        self._recovering(self._load_snapshot)

    def _load_snapshot(self) -> None:
        self._get([w.set_state.remote(self.snapshot) for w in self.workers])

    def _run(self, logged: LoggedStep) -> list[ReplicaStep]:
        futures = [
            w.step.remote(share, logged.divisor, logged.first)
            for w, share in zip(self.workers, logged.shares, strict=True)
        ]
        return self._get(futures)

    def _recovering(self, call: Callable[[], T]) -> T:
        """`call`, after resetting a broken group; lost replicas are replaced and it runs again."""
        while True:
            try:
                if self.broken:
                    self._reset()
                return call()
            except _ReplicasLost as lost:
                self._replace(lost)

    def _reset(self) -> None:
        """Form the group again, load the snapshot everywhere and replay the steps since it."""
        self._form_group()
        self._load_snapshot()
        for logged in self.log:
            self._run(replace(logged, first=False))  # its warnings were logged the first time
        self.broken = False

    def _get(self, futures: list[ray.ObjectRef]) -> list[Any]:
        """Every future's value; waits for all of them (the survivors of a lost peer fail their
        all-reduce at once), then reports lost replicas, else the first other error."""
        ray.wait(futures, num_returns=len(futures))
        values, lost, other = [], [], None
        for future in futures:
            try:
                values.append(ray.get(future))
            except RayActorError as error:
                lost.append(error)
            except Exception as error:  # re-raised below unless a peer died
                other = other or error
        if lost:
            ranks = [i for i, w in enumerate(self.workers) if not _alive(w)]
            raise _ReplicasLost(ranks, lost[0])
        if other is not None:
            raise other
        return values

    def _replace(self, lost: _ReplicasLost) -> None:
        self.restarts += len(lost.ranks)
        if self.restarts > self.max_restarts:
            raise WorkerLostError(
                f"inner-loop workers died {self.restarts} times (last: {lost.error})",
                "check the workers' logs (memory, lost nodes); raise max_inner_worker_restarts "
                "or resume from the last checkpoint with `ray-macaw train --resume`",
            ) from lost.error
        for rank in lost.ranks:
            logger.warning(
                "inner-loop replica %d died; restarting it and recomputing the step", rank
            )
            ray.kill(self.workers[rank], no_restart=True)
            self.workers[rank] = self._start()
        self.broken = True

    def node_ids(self) -> list[str]:
        """The Ray node of each replica."""
        return self._recovering(lambda: self._get([w.node_id.remote() for w in self.workers]))

    def stop(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []


def _alive(worker: Any) -> bool:
    """Whether an actor still answers (a dead one raises at once)."""
    try:
        ray.get(worker.node_id.remote(), timeout=60)
        return True
    except RayActorError:
        return False
