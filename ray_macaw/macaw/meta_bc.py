"""Meta-BC, the paper's imitation baseline (spec §9, `overrides/imitation.json`).

Inner and outer losses are both the Gaussian negative log-likelihood -mean(log pi(a|s)); the value
network is never used or updated. Same inner machinery (learned lrs, k steps, second order) as
MACAW, so the comparison isolates the losses.
"""

from __future__ import annotations

import torch

from ray_macaw.data.columns import MC_RETURN
from ray_macaw.macaw.inner_loop import (
    Batch,
    GradFn,
    InnerLoopConfig,
    LossFn,
    TensorDict,
    log_probs_and_head,
    sgd_steps,
    policy_state,
)
from ray_macaw.macaw.model import MACAWModel, Params
from ray_macaw.macaw.net_state import NetworkState


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


def task_meta_bc_loss(
    model: MACAWModel,
    params: Params,
    inner: Batch,
    outer: Batch,
    config: InnerLoopConfig,
    grad_fn: GradFn,
) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
    """(zero value loss, outer BC loss, stats) of one task."""
    theta, stats = adapt_policy_bc(
        model, policy_state(model, params, config), inner, config, grad_fn
    )
    log_probs, _ = log_probs_and_head(model, theta, outer)
    policy_loss = -log_probs.mean()
    no_value_loss = outer[MC_RETURN].sum() * 0.0  # the value network takes no part
    return no_value_loss, policy_loss, {**stats, "outer_policy_loss": policy_loss.detach()}
