"""Offline PEARL's losses and its gradient step (rlkit's `PEARLSoftActorCritic._take_step`).

One step on a meta-batch, in rlkit's order:
1. z ~ q(z | context) per task (reparameterised); the encoder is trained by the KL penalty and the
   critic loss only (`kl_lambda` * KL + Q loss; Rakelly et al. 2019, section 4.2).
2. Q loss: sum over both Qs of mean (Q(s, a, z) - (scale r + (1 - d) gamma V_target(s', z)))^2.
3. V loss (z detached): mean (V(s, z) - (min_i Q_i(s, a~pi, z) - log pi(a~ | s, z)))^2.
4. Polyak update of V_target.
5. Policy loss (z detached): mean (log pi - min_i Q_i) + 1e-3 mean mu^2 + 1e-3 mean log_std^2.
Rows of a meta-batch are flattened to (tasks * rows, ...) with each task's z repeated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ray_macaw.data import columns as C
from ray_macaw.pearl.networks import PEARLModel, kl_to_standard_normal

TRANSITION_COLUMNS = (C.OBS, C.ACTIONS, C.REWARDS, C.NEXT_OBS, C.TERMINATED)
Batch = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class SACConfig:
    """PEARL's SAC settings (appendix Table 2; rlkit defaults for the rest).

    Attributes:
        reward_scale: Rewards are multiplied by this in the Q target (Table 2: 5).
        discount: gamma.
        kl_lambda: Weight of the KL penalty on the task posterior (Table 2: 0.1).
        soft_target_tau: Polyak rate of the target V.
        policy_mean_reg: Weight of mean(mu^2) in the policy loss.
        policy_std_reg: Weight of mean(log_std^2).
    """

    reward_scale: float = 5.0
    discount: float = 0.99
    kl_lambda: float = 0.1
    soft_target_tau: float = 0.005
    policy_mean_reg: float = 1e-3
    policy_std_reg: float = 1e-3


def context(model: PEARLModel, batch: Batch) -> torch.Tensor:
    """Context transitions (s, a, r[, s']) with unit actions and unscaled rewards: (..., dim)."""
    parts = [batch[C.OBS], model.to_unit_actions(batch[C.ACTIONS]), batch[C.REWARDS][..., None]]
    if model.config.context_next_obs:
        parts.append(batch[C.NEXT_OBS])
    return torch.cat(parts, dim=-1)


def q_target(
    rewards: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor, cfg: SACConfig
) -> torch.Tensor:
    """scale r + (1 - d) gamma V_target(s', z), with no gradient."""
    return (cfg.reward_scale * rewards + (1.0 - terminated) * cfg.discount * next_value).detach()


def q_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean (Q1 - y)^2 + mean (Q2 - y)^2 (rlkit sums the two critics' losses)."""
    return (q1 - target).pow(2).mean() + (q2 - target).pow(2).mean()


def critic_loss(
    model: PEARLModel, batch: Batch, z: torch.Tensor, cfg: SACConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The Q loss of flattened rows whose z (rows, latent) may carry the encoder's gradient; the
    target V sees z without gradient."""
    q1, q2 = model.q_values(batch[C.OBS], model.to_unit_actions(batch[C.ACTIONS]), z)
    with torch.no_grad():
        next_value = model.value(batch[C.NEXT_OBS], z.detach(), target=True)
    target = q_target(batch[C.REWARDS], batch[C.TERMINATED], next_value, cfg)
    loss = q_loss(q1, q2, target)
    return loss, {
        "qf_loss": loss.item(),
        "q1_mean": q1.mean().item(),
        "q_target_mean": target.mean().item(),
    }


def value_and_policy_losses(
    model: PEARLModel, obs: torch.Tensor, z: torch.Tensor, cfg: SACConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """V loss and policy loss at fresh policy samples (z detached, rlkit)."""
    z = z.detach()
    sample = model.act(obs, z)
    q1, q2 = model.q_values(obs, sample.action, z)
    min_q = torch.min(q1, q2)
    v_pred = model.value(obs, z)
    v_loss = (v_pred - (min_q - sample.log_prob).detach()).pow(2).mean()
    policy_loss = (
        (sample.log_prob - min_q).mean()
        + cfg.policy_mean_reg * sample.mean.pow(2).mean()
        + cfg.policy_std_reg * sample.log_std.pow(2).mean()
    )
    stats = {
        "vf_loss": v_loss.item(),
        "policy_loss": policy_loss.item(),
        "log_pi_mean": sample.log_prob.mean().item(),
        "v_mean": v_pred.mean().item(),
    }
    return v_loss, policy_loss, stats


Optimizers = Mapping[str, torch.optim.Optimizer]


def _apply(
    loss: torch.Tensor, optimizers: Optimizers, names: tuple[str, ...], model: PEARLModel
) -> bool:
    """Backward `loss` and step the named optimizers; False (nothing moved) if non-finite.

    Only the stepped networks' gradients are computed (`backward(inputs=...)`): the policy
    loss still backpropagates through both Qs to the actions, but not into their weights, which
    rlkit computes and discards (~10% of a step, `benchmarks/pearl_step.py`)."""
    if not torch.isfinite(loss):
        return False
    stepped = [optimizers[name] for name in names if name in optimizers]
    model.zero_grad(set_to_none=True)
    loss.backward(
        inputs=[p for opt in stepped for group in opt.param_groups for p in group["params"]]
    )
    for optimizer in stepped:
        optimizer.step()
    return True


def sac_step(
    model: PEARLModel,
    optimizers: Optimizers,
    batch: Batch,
    z: torch.Tensor,
    cfg: SACConfig,
    kl: torch.Tensor | None = None,
) -> tuple[dict[str, float], bool]:
    """Steps 2-5 above on flattened rows with per-row z; with `kl` (the posterior's KL), the
    encoder (optimizer "context") is trained by `kl_lambda * kl` plus the Q loss through z.
    Fine-tuning passes a fixed z and no "context" optimizer. Returns the stats and whether every
    update was finite (a non-finite loss moves nothing from that stage on)."""
    loss, stats = critic_loss(model, batch, z, cfg)
    if kl is not None:
        stats |= {"kl_div": kl.item(), "kl_loss": (cfg.kl_lambda * kl).item()}
        loss = loss + cfg.kl_lambda * kl
    finite = _apply(loss, optimizers, ("qf1", "qf2", "context"), model)
    v_loss, policy_loss, more = value_and_policy_losses(model, batch[C.OBS], z, cfg)
    stats |= more
    finite = finite and _apply(v_loss, optimizers, ("vf",), model)
    if finite:
        model.soft_update_target(cfg.soft_target_tau)
    finite = finite and _apply(policy_loss, optimizers, ("policy",), model)
    return stats, finite


def meta_batch_step(
    model: PEARLModel,
    optimizers: Optimizers,
    contexts: Batch,
    batch: Batch,
    cfg: SACConfig,
) -> tuple[dict[str, float], bool]:
    """One training step: `contexts` are (tasks, n, ...) columns the posterior is inferred from,
    `batch` (tasks, rows, ...) columns the SAC losses use (Alg. 1 of Rakelly et al., offline)."""
    mean, variance = model.encoder(context(model, contexts))
    z = mean + variance.sqrt() * torch.randn_like(mean)  # reparameterised sample per task
    rows = batch[C.OBS].shape[1]
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in batch.items()}
    stats, finite = sac_step(
        model,
        optimizers,
        flat,
        z.repeat_interleave(rows, dim=0),
        cfg,
        kl=kl_to_standard_normal(mean, variance),
    )
    stats |= {"z_mean_abs": mean.abs().mean().item(), "z_var_mean": variance.mean().item()}
    return stats, finite
