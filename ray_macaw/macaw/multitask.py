"""The multi-task + fine-tune baseline (spec §9 `multitask_standard.json`, §7.2).

Training: no meta-learning. The networks see the observation with a one-hot task id appended (all
zeros at test time); per task, an MC value regression and an AWR policy loss whose advantages use
the current value network. Test time: fine-tune copies of both networks with Adam for a few steps
on the adaptation batch. The network is the spec's: bias-transform layers, no advantage head.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ray_macaw.data.columns import MC_RETURN, OBS
from ray_macaw.macaw import losses
from ray_macaw.macaw.inner_loop import (
    Adapted,
    Batch,
    GradFn,
    InnerLoopConfig,
    TensorDict,
    outer_awr_loss,
    policy_state,
    value_state,
)
from ray_macaw.macaw.model import MACAWModel, Params
from ray_macaw.macaw.objective import AdaptationSettings, Objective


class MultitaskObjective(Objective):
    """Multi-task training on every task's uniform batch; Adam fine-tuning at test time."""

    name: ClassVar[str] = "multitask"
    network: ClassVar[Mapping[str, Any]] = {
        "policy_layer": "bias_transform",
        "value_layer": "bias_transform",
        "advantage_head": False,
    }
    one_hot_tasks: ClassVar[bool] = True
    adapted_networks: ClassVar[tuple[str, ...]] = ()  # the learned lrs are never used (spec §3)

    def inner_adapt(
        self,
        model: MACAWModel,
        params: Params,
        batch: Batch,
        config: InnerLoopConfig,
        grad_fn: GradFn,
    ) -> Adapted:
        """No inner loop: the networks as they are."""
        del batch, grad_fn
        value = value_state(model, params, config)
        return Adapted(value, value, policy_state(model, params, config), {})

    def outer_losses(
        self, model: MACAWModel, adapted: Adapted, outer: Batch, config: InnerLoopConfig
    ) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
        """(MC value loss, AWR policy loss, stats) of one task on its uniform batch (`outer`)."""
        values = model.value.forward_effective(adapted.value.effective(), outer[OBS])
        value_loss = losses.value_loss(values, outer[MC_RETURN])
        policy_loss, stats = outer_awr_loss(
            model, adapted.value, adapted.policy, outer, config, values
        )
        return value_loss, policy_loss, {"outer_value_loss": value_loss.detach(), **stats}

    def adapt(
        self, model: MACAWModel, batch: Batch, config: InnerLoopConfig, settings: AdaptationSettings
    ) -> MACAWModel:
        """A copy of `model` after `settings.finetune_steps` iterations of one value and one AWR
        Adam step on the fixed `batch` (spec §7.2)."""
        tuned = copy.deepcopy(model)
        value_opt = torch.optim.Adam(tuned.value.parameters(), lr=settings.finetune_value_lr)
        policy_opt = torch.optim.Adam(tuned.policy.parameters(), lr=settings.finetune_policy_lr)
        for _ in range(settings.finetune_steps):
            self.value_update(tuned, value_opt, batch)
            self.policy_update(tuned, policy_opt, batch, config)
        return tuned
