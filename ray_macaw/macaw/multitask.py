"""The multi-task + fine-tune baseline (spec §9 `multitask_standard.json`, §7.2).

Training: no meta-learning. The networks see the observation with a one-hot task id appended (all
zeros at test time); per task, an MC value regression and an AWR policy loss whose advantages use
the current value network. Test time: fine-tune copies of both networks with Adam for a few steps
on the adaptation batch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch

from ray_macaw.data.columns import ACTIONS, MC_RETURN, OBS, TERMINAL_DISCOUNT, TERMINAL_OBS
from ray_macaw.macaw import losses
from ray_macaw.macaw.inner_loop import (
    Batch,
    GradFn,
    InnerLoopConfig,
    TensorDict,
    batch_advantages,
    log_probs_and_head,
    policy_state,
    value_state,
)
from ray_macaw.macaw.model import MACAWModel, Params
from ray_macaw.nn.networks import gaussian_log_prob


def task_multitask_loss(
    model: MACAWModel,
    params: Params,
    inner: Batch,
    outer: Batch,
    config: InnerLoopConfig,
    grad_fn: GradFn,
) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
    """(MC value loss, AWR policy loss, stats) of one task on its uniform batch (`outer`)."""
    del inner, grad_fn  # no inner loop
    value = value_state(model, params, config)
    values = model.value.forward_effective(value.effective(), outer[OBS])
    value_loss = losses.value_loss(values, outer[MC_RETURN])
    advantages = batch_advantages(model, value, outer)
    weights = losses.awr_weights(
        advantages, config.temperature, config.max_weight, config.normalize_advantages
    )
    log_probs, _ = log_probs_and_head(model, policy_state(model, params, config), outer)
    policy_loss = losses.awr_policy_loss(log_probs, weights)
    return (
        value_loss,
        policy_loss,
        {
            "outer_value_loss": value_loss.detach(),
            "outer_policy_loss": policy_loss.detach(),
            "outer_weight_mean": weights.mean(),
            "outer_weight_max": weights.max(),
        },
    )


def value_and_awr_step(
    model: MACAWModel,
    optimizers: Sequence[torch.optim.Optimizer],
    batch: Mapping[str, torch.Tensor],
    config: InnerLoopConfig,
) -> None:
    """One Adam value step on MC targets, then one Adam AWR policy step with advantages from the
    updated value network (test-time fine-tuning, spec §7.2, §7.3)."""
    value_opt, policy_opt = optimizers
    value_opt.zero_grad()
    losses.value_loss(model.value(batch[OBS]), batch[MC_RETURN]).backward()
    value_opt.step()
    with torch.no_grad():
        advantages = losses.advantages(
            batch[MC_RETURN],
            batch[TERMINAL_DISCOUNT],
            model.value(batch[TERMINAL_OBS]),
            model.value(batch[OBS]),
        )
    weights = losses.awr_weights(
        advantages, config.temperature, config.max_weight, config.normalize_advantages
    )
    policy_opt.zero_grad()
    log_probs = gaussian_log_prob(
        model.policy.mean_action(batch[OBS]), batch[ACTIONS], model.config.action_sigma
    )
    losses.awr_policy_loss(log_probs, weights).backward()
    policy_opt.step()


def fine_tune(
    model: MACAWModel,
    batch: Batch,
    config: InnerLoopConfig,
    steps: int,
    value_lr: float,
    policy_lr: float,
) -> MACAWModel:
    """A copy of `model` after `steps` value + AWR Adam steps on the fixed `batch` (spec §7.2)."""
    tuned = copy.deepcopy(model)
    optimizers = (
        torch.optim.Adam(tuned.value.parameters(), lr=value_lr),
        torch.optim.Adam(tuned.policy.parameters(), lr=policy_lr),
    )
    for _ in range(steps):
        value_and_awr_step(tuned, optimizers, batch, config)
    return tuned
