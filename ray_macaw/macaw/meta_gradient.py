"""The meta-gradient of one task batch (Alg. 1; spec §5): vectorised across tasks or per task.

The meta-loss is a sum over tasks, so its exact second-order gradient is a sum of per-task
gradients: that is what lets tasks spread over workers, and what `vmap` batches here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch

from ray_macaw.macaw.inner_loop import (
    Batch,
    InnerLoopConfig,
    autograd_grad,
    func_grad,
    mean_stats,
)
from ray_macaw.macaw.model import MACAWModel
from ray_macaw.macaw.objectives import get_objective
from ray_macaw.nn.transform_products import deferred_matrix_grads

LossScale = Literal["num_train_tasks", "task_batch"]
logger = logging.getLogger(__name__)


def loss_divisor(scale: LossScale, num_train_tasks: int, task_batch: int) -> int:
    """What each task's loss is divided by: the number of training tasks, as the authors did
    (spec §5 'Aggregation'; 35 for Cheetah-Vel), or the task-batch size."""
    if scale == "num_train_tasks":
        return num_train_tasks
    if scale == "task_batch":
        return task_batch
    raise ValueError(f"loss scale must be 'num_train_tasks' or 'task_batch', got {scale!r}")


def meta_backward(
    model: MACAWModel,
    inner: Batch,
    outer: Batch,
    config: InnerLoopConfig,
    divisor: float,
    vectorize: bool = True,
) -> dict[str, float]:
    """Accumulate the meta-gradient of a task batch into the model's `.grad` fields.

    Args:
        model: The meta-parameters (gradients accumulate; zero them before if needed).
        inner: Inner (adaptation) batches, each column shaped (tasks, rows, ...).
        outer: Outer (meta) batches, same layout.
        config: Inner-loop settings.
        divisor: Each task's loss is divided by this (see `loss_divisor`).
        vectorize: Run all tasks at once under `torch.func.vmap` (else a per-task loop with
            `torch.autograd.grad`; same result).

    Returns:
        Stats averaged over tasks (inner/outer losses, AWR weight statistics).
    """
    params = model.params()
    if vectorize:
        task_fn = functools.partial(_task_loss_fn(config), model, config=config, grad_fn=func_grad)
        value_losses, policy_losses, stats = torch.func.vmap(
            task_fn, in_dims=(None, 0, 0), randomness="error"
        )(params, inner, outer)
    else:
        value_losses, policy_losses, stats = _task_loop(model, params, inner, outer, config)
    total = (value_losses.sum() + policy_losses.sum()) / divisor
    with deferred_matrix_grads():  # one dM per transform matrix, not one per product
        total.backward()
    return mean_stats(stats)


def _task_loss_fn(config: InnerLoopConfig) -> Callable[..., Any]:
    """The per-task loss of the configured objective."""
    return get_objective(config.objective).task_loss


def _task_loop(
    model: MACAWModel, params, inner: Batch, outer: Batch, config: InnerLoopConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    value_losses, policy_losses, per_task = [], [], []
    for i in range(next(iter(inner.values())).shape[0]):
        task_inner = {k: v[i] for k, v in inner.items()}
        task_outer = {k: v[i] for k, v in outer.items()}
        value_loss, policy_loss, stats = _task_loss_fn(config)(
            model, params, task_inner, task_outer, config, autograd_grad
        )
        value_losses.append(value_loss)
        policy_losses.append(policy_loss)
        per_task.append(stats)
    stacked = {k: torch.stack([s[k] for s in per_task]) for k in per_task[0]}
    return torch.stack(value_losses), torch.stack(policy_losses), stacked


def clip_per_network(model: MACAWModel, max_norm: float) -> None:
    """Clip the value network's and the policy's meta-gradients to `max_norm` each, as the
    authors clip each network separately (spec §5, macaw.py:399-408); learned lrs and c are not
    clipped."""
    for net in (model.value, model.policy):
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)


def learned_lrs_without_gradient(
    model: MACAWModel, networks: Sequence[str] = ("value", "policy")
) -> list[str]:
    """Learned inner lrs of `networks` whose accumulated meta-gradient is missing or zero."""
    rates = {"policy": model.policy_lr, "value": model.value_lr}
    return [
        f"{net}:{name}"
        for net in networks
        for name, rho in rates[net].raw_by_name().items()
        if rho.grad is None or not bool(rho.grad.any())
    ]


def warn_learned_lrs_without_gradient(model: MACAWModel, config: InnerLoopConfig) -> list[str]:
    """Log once which learned lrs of the networks the objective adapts the meta-gradient never
    reaches (spec §3: with the advantage head, the head's, since the outer policy loss does not
    depend on the adapted head); they keep their initial value. Returns their names."""
    unused = learned_lrs_without_gradient(model, get_objective(config.objective).adapted_networks)
    if unused:
        logger.warning(
            "%d learned inner lrs receive no meta-gradient and keep their initial value: %s",
            len(unused),
            ", ".join(unused),
        )
    return unused


def gradient_norms(model: MACAWModel) -> Mapping[str, float]:
    """L2 norm of the accumulated gradient per parameter group, for logging."""
    groups = {
        "value": model.value.parameters(),
        "policy": model.policy.parameters(),
        "value_lr": model.value_lr.parameters(),
        "policy_lr": model.policy_lr.parameters(),
    }
    norms = {}
    for name, group in groups.items():
        grads = [p.grad.detach() for p in group if p.grad is not None]  # logged, not learned
        norms[name] = (
            float(
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            )
            if grads
            else 0.0
        )
    return norms
