"""MACAW's meta-gradient in plain autograd, one task at a time: the oracle of the conformance tests.

Read top to bottom like Algorithm 1 and spec §5's pseudo-code. Every adapted tensor gets its own
adapted copy (the reference structure: no closed forms, no vmap), and the networks run through
`torch.func.functional_call` on those copies. Only tests use it; training uses `meta_gradient`.
"""

from __future__ import annotations

import math

import torch
from torch.func import functional_call
from torch.nn.functional import softplus

from ray_macaw.data.columns import ACTIONS, MC_RETURN, OBS, TERMINAL_DISCOUNT, TERMINAL_OBS
from ray_macaw.macaw.inner_loop import Batch, InnerLoopConfig
from ray_macaw.macaw.model import MACAWModel

Tensors = dict[str, torch.Tensor]


def value(model: MACAWModel, phi: Tensors, obs: torch.Tensor) -> torch.Tensor:
    return functional_call(model.value, phi, (obs,))


def policy(
    model: MACAWModel, theta: Tensors, batch: Batch
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log pi(a|s), predicted advantage or None) with the Gaussian constants (spec §1.1)."""
    mean, head = functional_call(model.policy, theta, (batch[OBS], batch[ACTIONS]))
    sigma = model.config.action_sigma
    z = (batch[ACTIONS] - mean) / sigma
    log_prob = (-0.5 * z**2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)
    return log_prob, head


def advantages(model: MACAWModel, phi: Tensors, batch: Batch) -> torch.Tensor:
    """A = R + g V(s^T) - V(s), a constant (spec §4.4 step 1)."""
    with torch.no_grad():
        terminal = value(model, phi, batch[TERMINAL_OBS])
        return (
            batch[MC_RETURN] + batch[TERMINAL_DISCOUNT] * terminal - value(model, phi, batch[OBS])
        )


def awr_weights(a: torch.Tensor, config: InnerLoopConfig) -> torch.Tensor:
    """exp(min(normalised A / T, ln max)), or exp(clip(A, +-ln max)) without normalising."""
    log_max = math.log(config.max_weight)
    if not config.normalize_advantages:
        return torch.exp(a.clamp(-log_max, log_max))
    return torch.exp(((a - a.mean()) / a.std() / config.temperature).clamp(max=log_max))


def sgd_step(loss: torch.Tensor, params: Tensors, lrs: Tensors, first_order: bool) -> Tensors:
    """p' = p - softplus(rho) dL/dp for every adapted tensor (the ones with a learned lr)."""
    names = list(lrs)
    grads = torch.autograd.grad(
        loss, [params[n] for n in names], create_graph=not first_order, allow_unused=True
    )
    new = dict(params)
    for name, grad in zip(names, grads, strict=True):
        if grad is not None:
            new[name] = params[name] - softplus(lrs[name]) * (
                grad.detach() if first_order else grad
            )
    return new


def chunks(batch: Batch, k: int) -> list[Tensors]:
    size = len(batch[OBS]) // k
    return [{c: v[i * size : (i + 1) * size] for c, v in batch.items()} for i in range(k)]


def task_losses(
    model: MACAWModel, inner: Batch, outer: Batch, config: InnerLoopConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """One task's (outer value loss, outer policy loss) after its inner loop."""
    phi: Tensors = dict(model.value.named_parameters())
    theta: Tensors = dict(model.policy.named_parameters())
    value_lrs, policy_lrs = model.value_lr.raw_by_name(), model.policy_lr.raw_by_name()
    k, fo = config.steps, config.first_order

    if config.objective == "multitask":  # no inner loop (spec §9)
        value_loss = ((value(model, phi, outer[OBS]) - outer[MC_RETURN]) ** 2).mean()
        log_prob, _ = policy(model, theta, outer)
        return value_loss, -(awr_weights(advantages(model, phi, outer), config) * log_prob).mean()

    if config.objective == "meta_bc":  # BC inside and out, no value network
        for chunk in chunks(inner, k):
            theta = sgd_step(-policy(model, theta, chunk)[0].mean(), theta, policy_lrs, fo)
        return outer[MC_RETURN].sum() * 0.0, -policy(model, theta, outer)[0].mean()

    # Alg. 1 L7: value steps on the MC loss; soft target phi_bar = 0.9 phi_bar + 0.1 phi_i
    phi_bar = {n: p.detach() for n, p in phi.items()}
    for chunk in chunks(inner, k):
        phi = sgd_step(
            ((value(model, phi, chunk[OBS]) - chunk[MC_RETURN]) ** 2).mean(), phi, value_lrs, fo
        )
        mix = config.target_mix
        phi_bar = {n: (mix * phi_bar[n] + (1 - mix) * phi[n]).detach() for n in phi}
    # Alg. 1 L8-L9: policy steps on AWR + lambda * advantage regression, A from phi'
    coef = softplus(model.adv_coef_raw) if model.adv_coef_raw is not None else 0.0
    for chunk in chunks(inner, k):
        a = advantages(model, phi, chunk)
        log_prob, head = policy(model, theta, chunk)
        loss = -(awr_weights(a, config) * log_prob).mean()
        if head is not None:
            loss = loss + coef * ((head.squeeze(-1) - a) ** 2).mean()
        theta = sgd_step(loss, theta, policy_lrs, fo)
    # Alg. 1 L10-L11: outer value loss on the bootstrapped (or MC) target
    target = outer[MC_RETURN]
    if config.outer_value_target == "bootstrap":
        with torch.no_grad():
            target = target + outer[TERMINAL_DISCOUNT] * value(model, phi_bar, outer[TERMINAL_OBS])
    value_loss = ((value(model, phi, outer[OBS]) - target) ** 2).mean()
    # Alg. 1 L12: outer policy loss, AWR with the adapted value network's weights
    log_prob, _ = policy(model, theta, outer)
    return value_loss, -(awr_weights(advantages(model, phi, outer), config) * log_prob).mean()


def meta_gradient(
    model: MACAWModel, inner: Batch, outer: Batch, config: InnerLoopConfig, divisor: float
) -> dict[str, torch.Tensor | None]:
    """d/d(meta-parameters) of sum_i (value loss_i + policy loss_i) / divisor over the tasks of
    (tasks, rows, ...) batches; None where no gradient reaches a parameter."""
    total = torch.zeros((), dtype=next(model.parameters()).dtype)
    for i in range(len(inner[OBS])):
        value_loss, policy_loss = task_losses(
            model, {c: v[i] for c, v in inner.items()}, {c: v[i] for c, v in outer.items()}, config
        )
        total = total + (value_loss + policy_loss) / divisor
    names, params = zip(*model.named_parameters(), strict=True)
    grads = torch.autograd.grad(total, params, allow_unused=True)
    return dict(zip(names, grads, strict=True))
