"""Offline PEARL's networks (Rakelly et al. 2019, as configured in MACAW's appendix Table 2).

- `ContextEncoder`: an MLP over single transitions c = (s, a, r[, s']) giving a Gaussian factor
  per transition; the task posterior q(z | c_1..n) is their product (permutation invariant).
- `TanhGaussianPolicy`: SAC's squashed Gaussian policy pi(a | s, z).
- `critic`: Q(s, a, z) and V(s, z) MLPs (twin Qs, one V and its target copy).

Actions are in [-1, 1]^d inside the networks; `PEARLModel` maps to and from the environment's box.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # rlkit's clamp of the policy's log std
LAST_LAYER_INIT = 3e-3  # rlkit: output layers start at U(-3e-3, 3e-3), near-zero outputs
VAR_FLOOR = 1e-7  # rlkit's floor on each factor's variance before the product


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them; the last layer starts near zero (rlkit)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    last = layers[-1]
    assert isinstance(last, nn.Linear)
    nn.init.uniform_(last.weight, -LAST_LAYER_INIT, LAST_LAYER_INIT)
    nn.init.uniform_(last.bias, -LAST_LAYER_INIT, LAST_LAYER_INIT)
    return nn.Sequential(*layers)


def product_of_gaussians(
    means: torch.Tensor, variances: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Product of n Gaussian factors along dim -2: (..., n, d) -> (..., d) mean and variance.

    var = 1 / sum_i 1/var_i;  mu = var * sum_i mu_i / var_i (Rakelly et al. 2019, Eq. 5)."""
    variances = variances.clamp(min=VAR_FLOOR)
    variance = 1.0 / (1.0 / variances).sum(-2)
    return variance * (means / variances).sum(-2), variance


def kl_to_standard_normal(mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag var) || N(0, I)), summed over every dimension given (tasks and latents, as
    rlkit's `compute_kl_div` sums over the meta-batch): 0.5 sum(var + mu^2 - 1 - log var)."""
    return 0.5 * (variance + mean.pow(2) - 1.0 - variance.log()).sum()


@dataclass(frozen=True)
class PEARLModelConfig:
    """Shapes of the PEARL networks.

    Attributes:
        obs_dim: d_o.
        act_dim: d_a.
        action_low: The environment's lowest action per dimension.
        action_high: The highest.
        hidden: Hidden widths of the policy, Q and V networks (Table 2: 3 x 300; ML45 3 x 512).
        encoder_hidden: Hidden widths of the context encoder (Rakelly et al.: 3 x 200).
        latent_dim: Size of z (Table 2: 5; ML45 8).
        context_next_obs: Include s' in each context transition (PEARL's default: no).
    """

    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    hidden: tuple[int, ...] = (300, 300, 300)
    encoder_hidden: tuple[int, ...] = (200, 200, 200)
    latent_dim: int = 5
    context_next_obs: bool = False

    @property
    def context_dim(self) -> int:
        """Width of one context transition: s, a, r (and s')."""
        return self.obs_dim * (2 if self.context_next_obs else 1) + self.act_dim + 1


class ContextEncoder(nn.Module):
    """Transitions -> Gaussian factors -> the task posterior (product of the factors)."""

    def __init__(self, context_dim: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp([context_dim, *hidden, 2 * latent_dim])

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tasks, n, context_dim) -> posterior mean and variance, each (tasks, latent_dim)."""
        params = self.net(context)
        means = params[..., : self.latent_dim]
        variances = nn.functional.softplus(params[..., self.latent_dim :])
        return product_of_gaussians(means, variances)


@dataclass
class PolicyOutput:
    """A reparameterised sample of pi(. | s, z) and what SAC's losses need of it."""

    action: torch.Tensor  # tanh(u), in [-1, 1]^d
    mean: torch.Tensor  # mean of u
    log_std: torch.Tensor
    log_prob: torch.Tensor  # log pi(action | s, z), with tanh's change of variables
    pre_tanh: torch.Tensor  # u


class TanhGaussianPolicy(nn.Module):
    """a = tanh(u), u ~ N(mu(s, z), sigma(s, z)^2): SAC's policy."""

    def __init__(self, in_dim: int, hidden: Sequence[int], act_dim: int) -> None:
        super().__init__()
        self.trunk = mlp([in_dim, *hidden, 2 * act_dim])
        self.act_dim = act_dim

    def forward(self, x: torch.Tensor) -> PolicyOutput:
        """A reparameterised sample (gradients flow through it)."""
        out = self.trunk(x)
        mean, log_std = out[..., : self.act_dim], out[..., self.act_dim :]
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        std = log_std.exp()
        pre_tanh = mean + std * torch.randn_like(mean)
        action = torch.tanh(pre_tanh)
        gaussian = -0.5 * ((pre_tanh - mean) / std).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        # rlkit's tanh correction: log(1 - tanh(u)^2 + 1e-6) per dimension.
        log_prob = (gaussian - torch.log(1 - action.pow(2) + 1e-6)).sum(-1)
        return PolicyOutput(action, mean, log_std, log_prob, pre_tanh)

    def deterministic(self, x: torch.Tensor) -> torch.Tensor:
        """tanh(mu): the evaluation action."""
        return torch.tanh(self.trunk(x)[..., : self.act_dim])


class PEARLModel(nn.Module):
    """Encoder, policy, twin Q, V and the target V of Offline PEARL."""

    def __init__(self, config: PEARLModelConfig) -> None:
        super().__init__()
        self.config = config
        obs, act, z, hidden = config.obs_dim, config.act_dim, config.latent_dim, config.hidden
        self.encoder = ContextEncoder(config.context_dim, config.encoder_hidden, z)
        self.policy = TanhGaussianPolicy(obs + z, hidden, act)
        self.qf1 = mlp([obs + act + z, *hidden, 1])
        self.qf2 = mlp([obs + act + z, *hidden, 1])
        self.vf = mlp([obs + z, *hidden, 1])
        self.target_vf = copy.deepcopy(self.vf)
        self.target_vf.requires_grad_(False)
        low = torch.tensor(config.action_low, dtype=torch.float32)
        high = torch.tensor(config.action_high, dtype=torch.float32)
        self.action_centre: torch.Tensor
        self.action_scale: torch.Tensor
        self.register_buffer("action_centre", (high + low) / 2)
        self.register_buffer("action_scale", (high - low) / 2)

    def to_unit_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Environment actions -> [-1, 1]^d (what the networks see)."""
        return (actions - self.action_centre) / self.action_scale

    def to_env_actions(self, unit: torch.Tensor) -> torch.Tensor:
        """[-1, 1]^d -> the environment's action box."""
        return self.action_centre + self.action_scale * unit

    def q_values(
        self, obs: torch.Tensor, unit_actions: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Q1(s, a, z), Q2(s, a, z), each (rows,)."""
        x = torch.cat([obs, unit_actions, z], dim=-1)
        return self.qf1(x).squeeze(-1), self.qf2(x).squeeze(-1)

    def value(self, obs: torch.Tensor, z: torch.Tensor, target: bool = False) -> torch.Tensor:
        """V(s, z) (or the target network's), (rows,)."""
        net = self.target_vf if target else self.vf
        return net(torch.cat([obs, z], dim=-1)).squeeze(-1)

    def act(self, obs: torch.Tensor, z: torch.Tensor) -> PolicyOutput:
        """A reparameterised policy sample (unit actions)."""
        return self.policy(torch.cat([obs, z], dim=-1))

    def mean_env_action(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The deterministic evaluation action, in the environment's box."""
        return self.to_env_actions(self.policy.deterministic(torch.cat([obs, z], dim=-1)))

    def soft_update_target(self, tau: float) -> None:
        """target <- tau V + (1 - tau) target (SAC's Polyak averaging)."""
        with torch.no_grad():
            for target, source in zip(
                self.target_vf.parameters(), self.vf.parameters(), strict=True
            ):
                target.mul_(1 - tau).add_(source, alpha=tau)
