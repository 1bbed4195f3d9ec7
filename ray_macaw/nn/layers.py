"""Linear layers MACAW adapts in its inner loop (spec §2; appendix B).

- `WeightTransformLinear`: the layer's weight and bias are `M z + m`, a linear function of a latent
  z, so one inner step changes the effective weight by a matrix of rank up to dim(z).
- `BiasTransformLinear`: `W x + b + beta^T B`, the bias transform of Finn et al. (2017b), used by
  the no-WT ablation.
- `PlainLinear`: `torch.nn.Linear`.

Every layer maps its parameters to an effective (W (d_in, d_out), b (d_out,)) with
`effective(params)`, a pure function the functional inner loop calls with adapted parameters, and
names its latent parameters in `latent_names` (what `adapt="latent"` adapts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import torch
from torch import nn

LayerKind = Literal["weight_transform", "bias_transform", "linear"]
LAYER_KINDS: tuple[LayerKind, ...] = ("weight_transform", "bias_transform", "linear")
Effective = tuple[torch.Tensor, torch.Tensor]


def apply_effective(x: torch.Tensor, effective: Effective) -> torch.Tensor:
    """x (..., d_in) @ W + b."""
    weight, bias = effective
    return x @ weight + bias


class WeightTransformLinear(nn.Module):
    """y = x W + b with [flatten(W); b] = M z + m (authors' `WLinear`, nn.py:102-128).

    Parameters, in the authors' order [z, M, m] (spec §2.1):
    - `z` (c,): latent, N(0, (1/d_out)^2);
    - `transform.weight` = M (d_in d_out + d_out, c) and `transform.bias` = m: PyTorch's
      `nn.Linear` default, U(-1/sqrt(c), 1/sqrt(c)).
    W is the first d_in d_out entries reshaped row-major to (d_in, d_out); b the last d_out.

    Args:
        in_features: d_in.
        out_features: d_out.
        latent_dim: c (100 in the paper).
    """

    latent_names: ClassVar[tuple[str, ...]] = ("z",)

    def __init__(self, in_features: int, out_features: int, latent_dim: int = 100) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.z = nn.Parameter(torch.randn(latent_dim) / out_features)
        self.transform = nn.Linear(latent_dim, in_features * out_features + out_features)

    def split_theta(self, theta: torch.Tensor) -> Effective:
        """theta = M z + m -> (W (d_in, d_out), b)."""
        split = self.in_features * self.out_features
        return theta[:split].view(self.in_features, self.out_features), theta[split:]

    def effective(self, params: Mapping[str, torch.Tensor]) -> Effective:
        """(W, b) from {'z', 'transform.weight', 'transform.bias'}."""
        theta = params["transform.weight"] @ params["z"] + params["transform.bias"]
        return self.split_theta(theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_in) -> (..., d_out)."""
        return apply_effective(x, self.effective(dict(self.named_parameters())))

    def extra_repr(self) -> str:
        """Sizes, for `print(module)`."""
        return f"{self.in_features}, {self.out_features}, latent_dim={self.z.numel()}"


class BiasTransformLinear(nn.Module):
    """y = W x + b + beta^T B (authors' `BiasLinear`, nn.py:161-176; spec §2.3).

    Parameters, in the authors' adaptation order: `beta` (d_out,) ~ N(0, (1/d_out)^2), `transform`
    B (d_out, d_out) Xavier-normal, then `linear.weight` W and `linear.bias` b (PyTorch default).
    """

    latent_names: ClassVar[tuple[str, ...]] = ("beta",)

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.beta = nn.Parameter(torch.randn(out_features) / out_features)
        self.transform = nn.Parameter(torch.empty(out_features, out_features))
        nn.init.xavier_normal_(self.transform)
        self.linear = nn.Linear(in_features, out_features)

    def effective(self, params: Mapping[str, torch.Tensor]) -> Effective:
        """(W^T, b + beta^T B)."""
        bias = params["linear.bias"] + params["beta"] @ params["transform"]
        return params["linear.weight"].T, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_in) -> (..., d_out)."""
        return apply_effective(x, self.effective(dict(self.named_parameters())))

    def extra_repr(self) -> str:
        """Sizes, for `print(module)`."""
        return f"{self.in_features}, {self.out_features}"


class PlainLinear(nn.Linear):
    """`torch.nn.Linear` with the `effective` interface (no latent)."""

    latent_names: ClassVar[tuple[str, ...]] = ()

    def effective(self, params: Mapping[str, torch.Tensor]) -> Effective:
        """(W^T, b)."""
        return params["weight"].T, params["bias"]


AdaptableLayer = WeightTransformLinear | BiasTransformLinear | PlainLinear


def make_layer(kind: LayerKind, in_features: int, out_features: int, latent_dim: int) -> nn.Module:
    """One layer of the given kind."""
    if kind == "weight_transform":
        return WeightTransformLinear(in_features, out_features, latent_dim)
    if kind == "bias_transform":
        return BiasTransformLinear(in_features, out_features)
    if kind == "linear":
        return PlainLinear(in_features, out_features)
    raise ValueError(f"unknown layer kind {kind!r}; use one of {LAYER_KINDS}")


def latent_parameter_names(module: nn.Module) -> list[str]:
    """Full names of the latent parameters of every layer in `module` (for adapt='latent')."""
    names = []
    for prefix, layer in module.named_modules():
        for latent in getattr(layer, "latent_names", ()):
            names.append(f"{prefix}.{latent}" if prefix else latent)
    return names
