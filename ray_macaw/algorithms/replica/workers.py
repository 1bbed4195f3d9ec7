"""Meta-gradients of task batches: in the driver (vectorised) or in data-parallel replicas.

The meta-loss is a sum over tasks, so its exact second-order gradient is a sum of per-task
gradients (architecture.md). With 0 workers the driver computes the whole step. Otherwise each
inner-loop worker is a replica (issue 16): it holds the model, identical Adam optimisers and the
held buffers of every training task (shared-memory objects, one copy per node), computes the
meta-gradient of its share of the step's tasks, all-reduces it with the other replicas
(`common/replicas.py`) and takes the same Adam step as they do.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch

from ray_macaw.algorithms.common import replicas
from ray_macaw.algorithms.common.devices import resolve_device, to_device
from ray_macaw.algorithms.common.factor_gather import FactorGather, transform_matrices
from ray_macaw.data.batches import TaskRequest, gather
from ray_macaw.data.held import BufferSources, HeldTask, load_tasks, split_held
from ray_macaw.data.task_data import TaskData
from ray_macaw.macaw import InnerLoopConfig, MACAWModel, ModelConfig, meta_backward
from ray_macaw.macaw.meta_gradient import (
    clip_per_network,
    gradient_norms,
    warn_learned_lrs_without_gradient,
)
from ray_macaw.macaw.model import build_optimizers
from ray_macaw.nn.transform_products import matrix_grad_factors
from ray_macaw.runtime.memory import retain_freed_memory


class GradientComputer:
    """Holds the training tasks' buffers and a model; accumulates meta-gradients of requested
    task batches.

    Batches are gathered on the CPU and moved to the model's device once per request (all tasks
    in one go).

    Args:
        model: The model whose `.grad` fields receive the gradients (on its device).
        data: Each task's outer buffer (`data/held.py`).
        inner_config: Inner-loop settings.
        vectorize: vmap across tasks (else a per-task loop).
        one_hot_tasks: Length of the task one-hot appended to observations (multi-task
            baseline); 0 for none.
        inner_data: Each task's inner buffer when it differs from the outer one (else None).
    """

    def __init__(
        self,
        model: MACAWModel,
        data: Mapping[int, TaskData],
        inner_config: InnerLoopConfig,
        vectorize: bool,
        one_hot_tasks: int = 0,
        inner_data: Mapping[int, TaskData] | None = None,
    ) -> None:
        self.model = model
        self.one_hot_tasks = one_hot_tasks
        self.data = dict(data)
        self.inner_data = None if inner_data is None else dict(inner_data)
        self.inner_config = inner_config
        self.vectorize = vectorize

    def accumulate(self, requests: Sequence[TaskRequest], divisor: float) -> dict[str, float]:
        """Add the meta-gradient of `requests` to the model's `.grad`; returns mean stats."""
        inner, outer = gather(self.data, requests, self.one_hot_tasks, self.inner_data)
        device = next(self.model.parameters()).device
        inner, outer = to_device(inner, device), to_device(outer, device)
        return meta_backward(
            self.model, inner, outer, self.inner_config, divisor, vectorize=self.vectorize
        )


def local_computer(
    model: MACAWModel, held: Mapping[int, HeldTask], settings: ReplicaSettings
) -> GradientComputer:
    """The driver's own computer (0 workers), over the tasks' held buffers."""
    outer, inner = split_held(held)
    return GradientComputer(
        model, outer, settings.inner_config, settings.vectorize, settings.one_hot_tasks, inner
    )


@ray.remote(num_returns=2)
def load_held_task(sources: BufferSources, task_id: int) -> tuple[HeldTask, int]:
    """One task's held buffers, into the object store (shared by the replicas on a node), and
    their size in bytes (read by the driver, which never fetches the rows)."""
    held = load_tasks(sources, [task_id])[task_id]
    return held, held.nbytes


def add_adam_step(
    model: MACAWModel, optimizers: Mapping[str, torch.optim.Optimizer], clip: float | None
) -> None:
    """Alg. 1 L13-L14: clip each network's meta-gradient (when asked), then the Adam steps."""
    if clip is not None:
        clip_per_network(model, clip)
    for opt in optimizers.values():
        opt.step()


@dataclass(frozen=True)
class ReplicaSettings:
    """What every replica (and the driver's 0-worker path) is built from."""

    model_config: ModelConfig
    inner_config: InnerLoopConfig
    vectorize: bool
    num_threads: int
    one_hot_tasks: int
    device: str
    learning_rates: tuple[float, float, float]  # outer value lr, outer policy lr, lrlr
    grad_clip_norm: float | None


@dataclass(frozen=True)
class ReplicaStep:
    """A replica's answer for one meta-step: its share's mean stats and task count, and (the same
    on every replica) the all-reduced gradient's norms, whether the step was taken, and the
    learned lrs and lambda after it."""

    stats: dict[str, float]
    tasks: int
    norms: dict[str, float]
    stepped: bool
    inner_lrs: dict[str, dict[str, float]]
    adv_coef: float | None


@ray.remote
class InnerLoopWorker:
    """A data-parallel replica (issue 16): the model, its optimisers and every training task's
    held buffers; it computes its share of a step, all-reduces the gradient and steps Adam."""

    def __init__(self, held: Mapping[int, ray.ObjectRef], settings: ReplicaSettings) -> None:
        torch.set_num_threads(max(1, settings.num_threads))
        retain_freed_memory()  # as the driver (runtime/memory.py)
        self.settings = settings
        model = MACAWModel(settings.model_config).to(resolve_device(settings.device))
        self.optimizers = build_optimizers(model, *settings.learning_rates)
        # Zero-copy views of the object store's pages: one copy per node, however many replicas.
        tasks = dict(zip(held, ray.get(list(held.values())), strict=True))
        outer, inner = split_held(tasks)
        self.computer = GradientComputer(
            model,
            outer,
            settings.inner_config,
            settings.vectorize,
            settings.one_hot_tasks,
            inner,
        )
        # Transform matrices' gradients travel as low-rank factors (factor_gather.py); the
        # plain products of low_rank_wt off have none, so everything is all-reduced then.
        matrices = transform_matrices(model) if settings.inner_config.low_rank_wt else []
        factored = {id(m) for m in matrices}
        self.gatherer = FactorGather(matrices)
        self.dense = [p for p in model.parameters() if id(p) not in factored]
        self.reducer: replicas.GradientReducer | None = None  # sized by the group (`join`)
        self.rank = self.world = -1
        self.listener: socket.socket | None = None

    def address(self) -> tuple[str, int]:
        """Open the group's rendezvous here (this replica becomes rank 0); its address."""
        self.listener = replicas.open_rendezvous()
        address, port = self.listener.getsockname()[:2]
        return str(address), int(port)

    def join(self, rank: int, world_size: int, address: str, port: int) -> None:
        """Join the replicas' group as `rank` (rank 0 hosts it: `address` was called here)."""
        device = next(self.computer.model.parameters()).device
        listener, self.listener = (self.listener if rank == 0 else None), None
        backend = replicas.backend_for(device)
        replicas.join_group(rank, world_size, address, port, backend, listener)
        self.rank, self.world = rank, world_size
        # Flags: the non-finite count, then every rank's factor rows per matrix (`row_slots`).
        num_flags = 1 + world_size * len(self.gatherer.matrices)
        self.reducer = replicas.GradientReducer(self.dense, num_flags=num_flags)

    def step(self, requests: Sequence[TaskRequest], divisor: float, first: bool) -> ReplicaStep:
        """Alg. 1 L6-L14 for this replica's share `requests` of the step's tasks."""
        model = self.computer.model
        model.zero_grad(set_to_none=True)
        with matrix_grad_factors() as factors:  # the transform matrices' dM stay factored
            stats = self.computer.accumulate(requests, divisor) if requests else {}
        assert self.reducer is not None, "join the group before the first step"
        bad_losses = float(not np.isfinite(list(stats.values())).all())
        # One all-reduce (the other gradients, which parameters have one, the non-finite
        # count, every rank's factor rows) and one all-gather of the matrices' factors, which
        # each replica sums alike.
        own = self.gatherer.own(factors)
        slots = self.gatherer.row_slots(own, self.rank, self.world)
        bad_anywhere, *rows = self.reducer.all_reduce([bad_losses, *slots])
        self.gatherer.gather(own, rows)
        norms = dict(gradient_norms(model))
        if first and self.rank == 0:
            warn_learned_lrs_without_gradient(model, self.settings.inner_config)
        # Every replica sees the same sums, so all take the step or all skip it.
        stepped = bad_anywhere == 0 and bool(np.isfinite(list(norms.values())).all())
        if stepped:
            add_adam_step(model, self.optimizers, self.settings.grad_clip_norm)
        return ReplicaStep(
            stats, len(requests), norms, stepped, model.inner_lrs(), model.adv_coef()
        )

    def get_state(self, with_grads: bool = False) -> dict[str, Any]:
        """The model's weights and the optimisers' state (and gradients), on the CPU."""
        return replicas.training_state(self.computer.model, self.optimizers, with_grads)

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Load weights and optimiser state (`get_state`'s, or the driver's)."""
        replicas.load_training_state(self.computer.model, self.optimizers, state)

    def collective_bytes(self) -> dict[str, int]:
        """Bytes this replica put into the last step's all-reduce and all-gather."""
        assert self.reducer is not None, "join the group first"
        return {"all_reduce": self.reducer.nbytes, "all_gather": self.gatherer.sent_bytes}

    def node_id(self) -> str:
        """The Ray node this replica runs on."""
        return ray.get_runtime_context().get_node_id()


def combine_stats(results: Sequence[ReplicaStep]) -> dict[str, float]:
    """Task-weighted mean of the replicas' stats (replicas without tasks have none)."""
    answered = [r for r in results if r.tasks]
    total = sum(r.tasks for r in answered)
    keys = answered[0].stats.keys()
    return {k: sum(r.stats[k] * r.tasks for r in answered) / total for k in keys}


def worker_options(config: Any) -> dict[str, Any]:
    """Resources and placement of inner-loop workers: inside a Tune trial, in the trial's
    placement group (which reserved their bundles); otherwise spread over the cluster's nodes."""
    options: dict[str, Any] = {
        "num_cpus": config.num_cpus_per_inner_worker,
        "num_gpus": config.num_gpus_per_inner_worker,
    }
    if ray.util.get_current_placement_group() is None:
        options["scheduling_strategy"] = "SPREAD"
    return options
