"""MACAW's losses as pure functions of tensors (spec §4, §5). Each returns a scalar to minimise.

Batches are means over samples. Notation: R = `mc_return`, g = `terminal_discount`,
s^T = `terminal_obs`, V' the adapted value network, A the advantage.
"""

from __future__ import annotations

import math

import torch


def bootstrapped_targets(
    mc_return: torch.Tensor, terminal_discount: torch.Tensor, terminal_values: torch.Tensor
) -> torch.Tensor:
    """G = R + g V(s^T) (spec §4.1); `terminal_values` are V at each row's s^T."""
    return mc_return + terminal_discount * terminal_values


def value_loss(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error (V(s) - target)^2.

    The inner value loss uses target R (pure Monte Carlo, spec §4.3); the outer one uses
    R + g V_target(s^T) with the soft target V_target = V_{0.9 phi + 0.1 phi'} (spec §5). Targets
    are constants: pass them detached.
    """
    return (values - targets).pow(2).mean()


def advantages(
    mc_return: torch.Tensor,
    terminal_discount: torch.Tensor,
    terminal_values: torch.Tensor,
    values: torch.Tensor,
) -> torch.Tensor:
    """A = R + g V'(s^T) - V'(s), always bootstrapped (spec §4.4 step 1).

    Callers pass V' of the *adapted* value network and detach the result: no policy loss sends
    gradient into the value network.
    """
    return bootstrapped_targets(mc_return, terminal_discount, terminal_values) - values


def awr_weights(
    advantages: torch.Tensor,
    temperature: float = 1.0,
    max_weight: float = 20.0,
    normalize: bool = True,
) -> torch.Tensor:
    """Advantage weights w = exp(min(A_hat, ln max_weight)) (spec §4.4 steps 2-3).

    With `normalize`, A_hat = (A - mean(A)) / std(A) / T over the batch, with the unbiased
    (N - 1) std, clipped above only. Without it (the authors' `no_norm` variant), A_hat = A
    clipped to [-ln max_weight, ln max_weight]: the authors' code divides by T only on the
    normalised path (macaw.py:372-373), so T has no effect there.

    Args:
        advantages: (N,) advantages; treated as constants (detach them).
        temperature: T (`adaptation_temp`, 1).
        max_weight: Largest weight (20).
        normalize: Normalise over the batch first.

    Returns:
        (N,) weights in (0, max_weight].
    """
    log_max = math.log(max_weight)
    if normalize:
        scaled = (advantages - advantages.mean()) / advantages.std() / temperature
        return torch.exp(scaled.clamp(max=log_max))
    return torch.exp(advantages.clamp(min=-log_max, max=log_max))


def awr_policy_loss(log_probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-mean(w log pi(a|s)): the AWR loss (outer policy loss, spec §5)."""
    return -(weights * log_probs).mean()


def advantage_head_loss(
    predicted_advantages: torch.Tensor, advantages: torch.Tensor
) -> torch.Tensor:
    """mean((A_theta(s, a) - A)^2), regressing the head on the raw, un-normalised A (spec §4.4)."""
    return (predicted_advantages - advantages).pow(2).mean()


def policy_adaptation_loss(
    log_probs: torch.Tensor,
    predicted_advantages: torch.Tensor | None,
    advantages: torch.Tensor,
    adv_coef: torch.Tensor | float,
    temperature: float = 1.0,
    max_weight: float = 20.0,
    normalize: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The inner policy loss: AWR plus lambda times the advantage regression (spec §4.4 step 4).

    L = mean(-w log pi(a|s) + lambda (A_theta(s, a) - A)^2). Without a head
    (`predicted_advantages` None) it is the AWR loss alone.

    Args:
        log_probs: (N,) log pi(a|s) of the batch's actions.
        predicted_advantages: (N,) the head's A_theta(s, a), or None.
        advantages: (N,) A from the adapted value network (constants).
        adv_coef: lambda = softplus(c) (learned, spec §3).
        temperature: AWR temperature.
        max_weight: Largest AWR weight.
        normalize: Normalise advantages over the batch before weighting.

    Returns:
        (loss, stats): stats hold the AWR and head terms and the weights' mean and max.
    """
    weights = awr_weights(advantages, temperature, max_weight, normalize)
    awr = awr_policy_loss(log_probs, weights)
    stats = {"awr_loss": awr.detach(), "weight_mean": weights.mean(), "weight_max": weights.max()}
    if predicted_advantages is None:
        return awr, stats
    head = advantage_head_loss(predicted_advantages, advantages)
    stats["adv_head_loss"] = head.detach()
    return awr + adv_coef * head, stats
