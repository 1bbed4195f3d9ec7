"""Meta-gradients of task batches: in the driver (vectorised) or in inner-loop worker actors.

The meta-loss is a sum over tasks, so its exact second-order gradient is a sum of per-task
gradients (architecture.md): each worker holds a model copy and the data of its tasks, returns the
summed gradient of the tasks it was given, and the driver adds them up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import ray
import torch

from ray_macaw.algorithms.common.devices import resolve_device, to_device
from ray_macaw.data.batches import BATCH_COLUMNS, TaskRequest, gather
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.task_data import TaskData
from ray_macaw.macaw import InnerLoopConfig, MACAWModel, ModelConfig, meta_backward

Grads = dict[str, torch.Tensor | None]


def load_batch_columns(root: str, family: str, task_ids: Sequence[int]) -> dict[int, TaskData]:
    """The tasks' data, keeping only the columns meta-training reads."""
    datasets = TaskDatasets(root, family)
    out = {}
    for task_id in task_ids:
        data = datasets.load(task_id)
        out[task_id] = TaskData(task_id, {c: data.columns[c] for c in BATCH_COLUMNS})
    # Arrow's pool keeps the freed read buffers (about 3x the data, benchmarks/scale.py).
    pa.default_memory_pool().release_unused()
    return out


class GradientComputer:
    """Holds some tasks' data and a model; accumulates meta-gradients of requested task batches.

    Batches are gathered on the CPU and moved to the model's device once per request (all tasks
    in one go).

    Args:
        model: The model whose `.grad` fields receive the gradients (on its device).
        data: The data of the tasks this computer serves.
        inner_config: Inner-loop settings.
        vectorize: vmap across tasks (else a per-task loop).
        one_hot_tasks: Length of the task one-hot appended to observations (multi-task
            baseline); 0 for none.
        inner_data: The tasks' inner-buffer data when it has its own root (else `data`).
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


@ray.remote
class InnerLoopWorker:
    """A Ray actor with a model copy and the data of its tasks (spec: parallel inner loops)."""

    def __init__(
        self,
        root: str,
        family: str,
        task_ids: Sequence[int],
        model_config: ModelConfig,
        inner_config: InnerLoopConfig,
        vectorize: bool,
        num_threads: int,
        one_hot_tasks: int = 0,
        device: str = "cpu",
        inner_root: str | None = None,
    ) -> None:
        torch.set_num_threads(max(1, num_threads))
        self.computer = GradientComputer(
            MACAWModel(model_config).to(resolve_device(device)),
            load_batch_columns(root, family, task_ids),
            inner_config,
            vectorize,
            one_hot_tasks,
            load_batch_columns(inner_root, family, task_ids) if inner_root else None,
        )

    def gradients(
        self, weights: Mapping[str, torch.Tensor], requests: Sequence[TaskRequest], divisor: float
    ) -> tuple[Grads, dict[str, float], int]:
        """(summed gradient by parameter name, on the CPU; mean stats; number of tasks) of
        `requests`. `weights` load onto the worker's device."""
        model = self.computer.model
        model.load_state_dict(weights)
        model.zero_grad(set_to_none=True)
        stats = self.computer.accumulate(requests, divisor)
        grads = {
            n: None if p.grad is None else p.grad.detach().cpu()
            for n, p in model.named_parameters()
        }
        return grads, stats, len(requests)

    def node_id(self) -> str:
        """The Ray node this worker runs on."""
        return ray.get_runtime_context().get_node_id()


def add_gradients(
    model: MACAWModel, results: Sequence[tuple[Grads, dict[str, float], int]]
) -> dict[str, float]:
    """Sum workers' gradients into `model`'s `.grad`; returns task-weighted mean stats."""
    params = dict(model.named_parameters())
    for grads, _, _ in results:
        for name, grad in grads.items():
            if grad is None:
                continue
            param = params[name]
            grad = grad.to(param.device)
            param.grad = grad.clone() if param.grad is None else param.grad + grad
    total = sum(n for _, _, n in results)
    keys = results[0][1].keys()
    return {k: sum(stats[k] * n for _, stats, n in results) / total for k in keys}


def assign_tasks(task_ids: Sequence[int], num_workers: int) -> list[list[int]]:
    """Round-robin the training tasks over the workers."""
    ordered = sorted(task_ids)
    return [ordered[i::num_workers] for i in range(num_workers)]


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
