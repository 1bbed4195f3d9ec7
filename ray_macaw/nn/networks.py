"""MACAW's policy (tanh-Gaussian mean, fixed sigma, advantage head) and value network (spec §1)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from ray_macaw.nn.layers import Effective, LayerKind, apply_effective, make_layer

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _build_layers(sizes: Sequence[int], kind: LayerKind, latent_dim: int) -> nn.ModuleList:
    return nn.ModuleList(
        make_layer(kind, d_in, d_out, latent_dim) for d_in, d_out in itertools.pairwise(sizes)
    )


class ValueNetwork(nn.Module):
    """V(s): widths [d_o, h, ..., h, 1], ReLU between layers, no output activation (spec §1.3).

    Args:
        obs_dim: d_o.
        hidden: Hidden widths (3 x 100 by default; 3 x 300 for ML45).
        layer: Layer kind of every layer.
        latent_dim: Latent size c of weight-transform layers.
    """

    def __init__(
        self,
        obs_dim: int,
        hidden: Sequence[int] = (100, 100, 100),
        layer: LayerKind = "weight_transform",
        latent_dim: int = 100,
    ) -> None:
        super().__init__()
        self.layers = _build_layers([obs_dim, *hidden, 1], layer, latent_dim)

    def layer_names(self) -> list[str]:
        """Prefixes of the adaptable layers, in the order `forward_effective` takes them."""
        return [f"layers.{i}" for i in range(len(self.layers))]

    def forward_effective(self, layers: Sequence[Effective], obs: torch.Tensor) -> torch.Tensor:
        """V(s) with each layer's effective (W, b) given (the functional inner loop's path)."""
        x = obs
        for i, effective in enumerate(layers):
            x = apply_effective(x, effective)
            if i < len(layers) - 1:
                x = torch.relu(x)
        return x.squeeze(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (..., d_o) -> values (...,)."""
        return self.forward_effective(own_effective(self), obs)


class MACAWPolicy(nn.Module):
    """Gaussian policy with tanh mean, fixed sigma and an advantage head (spec §1.1, §1.2).

    mu(s) = tanh(f(s)); pi(a|s) = N(mu(s), sigma^2 I). With the head, h(s) is the pre-ReLU output
    of the last hidden layer and A(s, a) = W2 ReLU(W1 ReLU([h(s); a]) + b1) + b2 (the ReLU on the
    concatenation zeroes negative action components: the authors' quirk, kept).

    Args:
        obs_dim: d_o.
        act_dim: d_a.
        hidden: Hidden widths of the trunk.
        layer: Layer kind of every trunk and head layer.
        latent_dim: Latent size c of weight-transform layers.
        advantage_head: Build the advantage head (off for the no-adv-head ablation and baselines).
        head_width: Hidden width of the head (32).
        action_sigma: Fixed standard deviation sigma (0.2).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (100, 100, 100),
        layer: LayerKind = "weight_transform",
        latent_dim: int = 100,
        advantage_head: bool = True,
        head_width: int = 32,
        action_sigma: float = 0.2,
    ) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.action_sigma = action_sigma
        self.trunk = _build_layers([obs_dim, *hidden, act_dim], layer, latent_dim)
        self.head = (
            _build_layers([hidden[-1] + act_dim, head_width, 1], layer, latent_dim)
            if advantage_head
            else None
        )

    @property
    def has_advantage_head(self) -> bool:
        """Whether the advantage head exists."""
        return self.head is not None

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """mu(s), the deterministic action of evaluation rollouts (spec §1.1)."""
        return self(obs)[0]

    def layer_names(self) -> list[str]:
        """Prefixes of the adaptable layers, in the order `forward_effective` takes them."""
        names = [f"trunk.{i}" for i in range(len(self.trunk))]
        return names + ([f"head.{i}" for i in range(len(self.head))] if self.head else [])

    def forward_effective(
        self, layers: Sequence[Effective], obs: torch.Tensor, actions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward` with each layer's effective (W, b) given (the functional inner loop's path)."""
        trunk = layers[: len(self.trunk)]
        x = obs
        for effective in trunk[:-2]:
            x = torch.relu(apply_effective(x, effective))
        h = apply_effective(x, trunk[-2])  # h(s): the last hidden layer before its ReLU
        mean = torch.tanh(apply_effective(torch.relu(h), trunk[-1]))
        if self.head is None or actions is None:
            return mean, None
        head = layers[len(self.trunk) :]
        x = torch.relu(torch.cat([h, actions], dim=-1))
        advantage = apply_effective(torch.relu(apply_effective(x, head[0])), head[1])
        return mean, advantage.squeeze(-1)

    def forward(
        self, obs: torch.Tensor, actions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu(s), A(s, a)): the mean action in (-1, 1)^d_a and, when `actions` are given and the
        head exists, the predicted advantage (else None)."""
        return self.forward_effective(own_effective(self), obs, actions)


def own_effective(net: ValueNetwork | MACAWPolicy) -> list[Effective]:
    """Each layer's effective (W, b) from the network's own parameters."""
    layers = [net.get_submodule(name) for name in net.layer_names()]
    return [layer.effective(dict(layer.named_parameters())) for layer in layers]  # type: ignore[operator]


def gaussian_log_prob(mean: torch.Tensor, actions: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(a; mu, sigma^2 I), summed over action dimensions, with its constants (spec §1.1)."""
    z = (actions - mean) / sigma
    return (-0.5 * z.pow(2) - math.log(sigma) - LOG_SQRT_2PI).sum(-1)
