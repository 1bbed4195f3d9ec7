"""Meta-BC, the paper's imitation baseline (spec §9, `overrides/imitation.json`).

Inner and outer losses are both the Gaussian negative log-likelihood -mean(log pi(a|s)); the value
network is never used or updated, in training, at test time or in online fine-tuning. Same inner
machinery (learned lrs, k steps, second order) as MACAW, so the comparison isolates the losses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ray_macaw.data.columns import MC_RETURN
from ray_macaw.macaw.inner_loop import (
    Adapted,
    Batch,
    GradFn,
    InnerLoopConfig,
    LossFn,
    TensorDict,
    log_probs_and_head,
    policy_state,
    sgd_steps,
    value_state,
)
from ray_macaw.macaw.model import MACAWModel, Params
from ray_macaw.macaw.net_state import NetworkState
from ray_macaw.macaw.objective import WEIGHT_TRANSFORM_NETWORKS, Objective, policy_log_probs


def adapt_policy_bc(
    model: MACAWModel, state: NetworkState, batch: Batch, config: InnerLoopConfig, grad_fn: GradFn
) -> tuple[NetworkState, TensorDict]:
    """theta' after k SGD steps on the behaviour-cloning loss."""

    def chunk_loss(state: NetworkState, chunk: TensorDict) -> LossFn:
        def loss_fn(inputs: TensorDict) -> tuple[torch.Tensor, TensorDict]:
            log_probs, _ = log_probs_and_head(model, state, chunk, inputs)
            loss = -log_probs.mean()
            return loss, {"inner_policy_loss": loss.detach()}

        return loss_fn

    return sgd_steps(state, batch, config, grad_fn, chunk_loss)[-1]


class MetaBCObjective(Objective):
    """Meta-BC: BC inner steps on the policy, BC outer loss, no value network. The advantage
    head would take no part in any loss, so it is off by default."""

    name: ClassVar[str] = "meta_bc"
    network: ClassVar[Mapping[str, Any]] = {**WEIGHT_TRANSFORM_NETWORKS, "advantage_head": False}
    uses_value: ClassVar[bool] = False
    adapted_networks: ClassVar[tuple[str, ...]] = ("policy",)

    def inner_adapt(
        self,
        model: MACAWModel,
        params: Params,
        batch: Batch,
        config: InnerLoopConfig,
        grad_fn: GradFn,
    ) -> Adapted:
        theta, stats = adapt_policy_bc(
            model, policy_state(model, params, config), batch, config, grad_fn
        )
        value = value_state(model, params, config)  # untouched
        return Adapted(value, value, theta, stats)

    def outer_losses(
        self, model: MACAWModel, adapted: Adapted, outer: Batch, config: InnerLoopConfig
    ) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
        log_probs, _ = log_probs_and_head(model, adapted.policy, outer)
        policy_loss = -log_probs.mean()
        no_value_loss = outer[MC_RETURN].sum() * 0.0  # the value network takes no part
        return no_value_loss, policy_loss, {"outer_policy_loss": policy_loss.detach()}

    def policy_update(
        self,
        model: MACAWModel,
        optimizer: torch.optim.Optimizer,
        batch: Batch,
        config: InnerLoopConfig,
    ) -> None:
        """One Adam step on the BC loss -mean(log pi(a|s))."""
        del config
        optimizer.zero_grad()
        (-policy_log_probs(model, batch).mean()).backward()
        optimizer.step()
