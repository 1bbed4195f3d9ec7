"""The three MLPs of appendix C.1 (Figure 6), all with 4 hidden layers and ReLU between layers.

1. `weight_transform`: every layer a `WeightTransformLinear` (128 hidden units, latent dim 32).
2. `no_wt_equal_width`: `PlainLinear` layers of the same width (128).
3. `no_wt_equal_params`: `PlainLinear` layers wide enough that the whole model has about as many
   parameters as model 1 (the paper's 1150 units for Omniglot; computed here, not hard-coded).

The layers are the project's own (`ray_macaw.nn.layers`); the network runs on each layer's
effective (W, b) from `effective(params)`, so MAML's inner loop can call it with adapted
parameters (`forward_params`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import cast

import torch
from torch import nn

from ray_macaw.errors import unknown_name
from ray_macaw.nn.layers import AdaptableLayer, LayerKind, apply_effective, make_layer

WEIGHT_TRANSFORM = "weight_transform"
EQUAL_WIDTH = "no_wt_equal_width"
EQUAL_PARAMS = "no_wt_equal_params"
MODELS = (WEIGHT_TRANSFORM, EQUAL_WIDTH, EQUAL_PARAMS)
LABELS = {  # as in the legend of Figure 6
    WEIGHT_TRANSFORM: "Weight Transform",
    EQUAL_WIDTH: "No WT - Equal Width",
    EQUAL_PARAMS: "No WT - Equal Params",
}

Params = dict[str, torch.Tensor]


def layer_sizes(in_dim: int, out_dim: int, width: int, hidden_layers: int) -> list[int]:
    """[in, width x hidden_layers, out]: 4 hidden layers means 5 linear layers."""
    return [in_dim, *([width] * hidden_layers), out_dim]


def plain_parameter_count(sizes: list[int]) -> int:
    """Weights and biases of plain linear layers: sum of (d_in + 1) d_out."""
    return sum((d_in + 1) * d_out for d_in, d_out in itertools.pairwise(sizes))


def wt_parameter_count(sizes: list[int], latent_dim: int) -> int:
    """Weight-transform layers: M ((d_in + 1) d_out, c), its bias m and the latent z (c) each.

    The paper's 4,866,048 for Omniglot is exactly c * sum(d_in d_out), i.e. M without the bias
    rows, m or z; this project's layer (the authors' `WLinear`) has all three, hence ~3.5% more.
    """
    return sum(
        (d_in + 1) * d_out * (latent_dim + 1) + latent_dim
        for d_in, d_out in itertools.pairwise(sizes)
    )


def equal_params_width(in_dim: int, out_dim: int, hidden_layers: int, target: int) -> int:
    """The hidden width whose plain MLP has the parameter count closest to `target`.

    With h hidden layers of width w the count is (h - 1) w^2 + (in + h + out) w + out; solve the
    quadratic, then take the better of the two neighbouring integers.
    """
    a = hidden_layers - 1
    b = in_dim + hidden_layers + out_dim
    c = out_dim - target
    root = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a) if a else -c / b
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(
        candidates,
        key=lambda w: abs(
            plain_parameter_count(layer_sizes(in_dim, out_dim, w, hidden_layers)) - target
        ),
    )


def model_layout(
    model: str, in_dim: int, out_dim: int, hidden: int, hidden_layers: int, latent_dim: int
) -> tuple[LayerKind, list[int]]:
    """(layer kind, layer sizes) of one of `MODELS`."""
    if model == WEIGHT_TRANSFORM:
        return "weight_transform", layer_sizes(in_dim, out_dim, hidden, hidden_layers)
    if model == EQUAL_WIDTH:
        return "linear", layer_sizes(in_dim, out_dim, hidden, hidden_layers)
    if model == EQUAL_PARAMS:
        wt_sizes = layer_sizes(in_dim, out_dim, hidden, hidden_layers)
        target = wt_parameter_count(wt_sizes, latent_dim)
        width = equal_params_width(in_dim, out_dim, hidden_layers, target)
        return "linear", layer_sizes(in_dim, out_dim, width, hidden_layers)
    raise unknown_name("model", model, MODELS)


def parameter_count(
    model: str,
    in_dim: int,
    out_dim: int,
    hidden: int = 128,
    hidden_layers: int = 4,
    latent: int = 32,
) -> int:
    """Parameters of one of `MODELS`, without building it."""
    kind, sizes = model_layout(model, in_dim, out_dim, hidden, hidden_layers, latent)
    if kind == "weight_transform":
        return wt_parameter_count(sizes, latent)
    return plain_parameter_count(sizes)


class FewShotMLP(nn.Module):
    """MLP of adaptable layers with ReLU between them and no output activation.

    Args:
        sizes: Layer widths [in, hidden..., out].
        kind: Layer kind of every layer ('weight_transform' or 'linear').
        latent_dim: Latent size c of weight-transform layers.
    """

    def __init__(self, sizes: list[int], kind: LayerKind, latent_dim: int = 32) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.kind = kind
        self.layers = nn.ModuleList(
            make_layer(kind, d_in, d_out, latent_dim) for d_in, d_out in itertools.pairwise(sizes)
        )
        # (full name, name inside the layer) per layer, so the functional pass slices a flat dict.
        self._keys = [
            [(f"layers.{i}.{name}", name) for name, _ in layer.named_parameters()]
            for i, layer in enumerate(self.layers)
        ]

    def forward_params(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The network at `params` (keyed as `named_parameters`): x (..., in) -> (..., out)."""
        for i, (layer, keys) in enumerate(zip(self.layers, self._keys, strict=True)):
            effective = cast(AdaptableLayer, layer).effective(
                {local: params[full] for full, local in keys}
            )
            x = apply_effective(x, effective)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network at its own parameters."""
        return self.forward_params(dict(self.named_parameters()), x)


def build_model(
    model: str,
    in_dim: int,
    out_dim: int,
    hidden: int = 128,
    hidden_layers: int = 4,
    latent: int = 32,
) -> FewShotMLP:
    """One of `MODELS` for a family's input and output sizes (appendix C.1)."""
    kind, sizes = model_layout(model, in_dim, out_dim, hidden, hidden_layers, latent)
    return FewShotMLP(sizes, kind, latent)
