"""The protocol every objective follows (MACAW, MAML+AWR, Meta-BC, multi-task + fine-tune).

An objective bundles everything that differs between the paper's methods (spec §9):
- its training losses: an inner adaptation (`inner_adapt`) and the outer losses on it;
- its test-time adaptation of a held-out task (`adapt`, spec §7.1 / §7.2);
- its online fine-tuning updates (`value_update`, `policy_update`, `finetune_round`, spec §7.3);
- its network defaults (`network`: layer kinds and the advantage head) and whether observations
  carry a one-hot task id (`one_hot_tasks`).
Training, evaluation and fine-tuning ask the configured objective (`objectives.get_objective`);
nothing else branches on which one it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ray_macaw.data.columns import ACTIONS, MC_RETURN, OBS, TERMINAL_DISCOUNT, TERMINAL_OBS
from ray_macaw.macaw import losses
from ray_macaw.macaw.inner_loop import (
    Adapted,
    AdaptedParams,
    Batch,
    GradFn,
    InnerLoopConfig,
    TensorDict,
    adapt_with,
)
from ray_macaw.macaw.model import MACAWModel, Params
from ray_macaw.nn.networks import gaussian_log_prob

# Network settings an objective decides unless the config sets them (MACAWConfig: None).
WEIGHT_TRANSFORM_NETWORKS: Mapping[str, Any] = {
    "policy_layer": "weight_transform",
    "value_layer": "weight_transform",
    "advantage_head": True,
}


@dataclass(frozen=True)
class AdaptationSettings:
    """How a held-out task is adapted from its offline batch.

    Attributes:
        steps: Inner steps over the batch split into equal parts (the authors: 1, spec §7.1).
        finetune_steps: Multi-task baseline: Adam iterations of one value and one policy step on
            the batch (spec §7.2: 20).
        finetune_value_lr: Their Adam lr of the value network (1e-5).
        finetune_policy_lr: Their Adam lr of the policy (1e-3).
    """

    steps: int = 1
    finetune_steps: int = 20
    finetune_value_lr: float = 1e-5
    finetune_policy_lr: float = 1e-3


def with_adapted(model: MACAWModel, adapted: AdaptedParams) -> MACAWModel:
    """A copy of `model` whose policy and value network hold `adapted`'s tensors."""
    copy = MACAWModel(model.config)
    copy.load_state_dict(model.state_dict())
    copy.policy.load_state_dict(adapted.policy)
    copy.value.load_state_dict(adapted.value)
    return copy


class Objective(ABC):
    """One method's losses, adaptation and fine-tuning updates (see the module docstring)."""

    name: ClassVar[str]
    network: ClassVar[Mapping[str, Any]] = WEIGHT_TRANSFORM_NETWORKS
    one_hot_tasks: ClassVar[bool] = False  # observations carry a one-hot task id (zeros at test)
    uses_value: ClassVar[bool] = True  # the value network is trained and used
    adapted_networks: ClassVar[tuple[str, ...]] = ("value", "policy")  # stepped in the inner loop

    @abstractmethod
    def inner_adapt(
        self,
        model: MACAWModel,
        params: Params,
        batch: Batch,
        config: InnerLoopConfig,
        grad_fn: GradFn,
    ) -> Adapted:
        """The inner loop on one task's `batch` (differentiable with a second-order `grad_fn`)."""

    @abstractmethod
    def outer_losses(
        self, model: MACAWModel, adapted: Adapted, outer: Batch, config: InnerLoopConfig
    ) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
        """(value loss, policy loss, stats) of the adapted networks on the outer batch."""

    def task_loss(
        self,
        model: MACAWModel,
        params: Params,
        inner: Batch,
        outer: Batch,
        config: InnerLoopConfig,
        grad_fn: GradFn,
    ) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
        """One task's meta-loss terms (Alg. 1 L6-L12): adapt on `inner`, losses on `outer`."""
        adapted = self.inner_adapt(model, params, inner, config, grad_fn)
        value_loss, policy_loss, stats = self.outer_losses(model, adapted, outer, config)
        return value_loss, policy_loss, {**adapted.stats, **stats}

    def adapt(
        self, model: MACAWModel, batch: Batch, config: InnerLoopConfig, settings: AdaptationSettings
    ) -> MACAWModel:
        """Test-time adaptation: this objective's own inner step(s) on `batch`, with the learned
        lrs, no meta-gradient (spec §7.1 step 3). Returns an adapted copy."""
        return with_adapted(
            model, adapt_with(self.inner_adapt, model, batch, config, settings.steps)
        )

    def value_update(
        self, model: MACAWModel, optimizer: torch.optim.Optimizer, batch: Batch
    ) -> None:
        """One Adam step of the value network on MC targets (spec §7.2, §7.3)."""
        optimizer.zero_grad()
        losses.value_loss(model.value(batch[OBS]), batch[MC_RETURN]).backward()
        optimizer.step()

    def policy_update(
        self,
        model: MACAWModel,
        optimizer: torch.optim.Optimizer,
        batch: Batch,
        config: InnerLoopConfig,
    ) -> None:
        """One Adam AWR step of the policy, advantages (bootstrapped) from the current value
        network (spec §7.3)."""
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
        optimizer.zero_grad()
        losses.awr_policy_loss(policy_log_probs(model, batch), weights).backward()
        optimizer.step()

    def finetune_round(
        self,
        model: MACAWModel,
        optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
        sample: Callable[[], Batch],
        config: InnerLoopConfig,
        value_steps: int,
        policy_steps: int,
        interleave: bool = False,
    ) -> tuple[int, int]:
        """One online fine-tuning round's updates (spec §7.3): `value_steps` value steps then
        `policy_steps` policy steps, each on a fresh batch from `sample()` (the authors); with
        `interleave`, pairs of one value and one policy step on a shared batch (the paper's
        reading, `value_steps` pairs). Objectives without a value network take only the policy
        steps. Returns the (value, policy) steps taken."""
        value_opt, policy_opt = optimizers
        if interleave:
            for _ in range(value_steps):
                batch = sample()
                if self.uses_value:
                    self.value_update(model, value_opt, batch)
                self.policy_update(model, policy_opt, batch, config)
            return (value_steps if self.uses_value else 0), value_steps
        value_steps = value_steps if self.uses_value else 0  # Meta-BC: no value network
        for _ in range(value_steps):
            self.value_update(model, value_opt, sample())
        for _ in range(policy_steps):
            self.policy_update(model, policy_opt, sample(), config)
        return value_steps, policy_steps


def policy_log_probs(model: MACAWModel, batch: Batch) -> torch.Tensor:
    """log pi(a|s) of the batch's actions under the model's own policy."""
    mean = model.policy.mean_action(batch[OBS])
    return gaussian_log_prob(mean, batch[ACTIONS], model.config.action_sigma)
