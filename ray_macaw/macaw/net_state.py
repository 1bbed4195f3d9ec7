"""A network's parameters during the inner loop, layer by layer, for the functional MACAW step.

Two representations of a layer:
- `ParamLayer`: the layer's own tensors, adapted by autograd like any parameter (all layer kinds).
- `LowRankWTLayer`: a weight-transform layer adapted in closed form. With theta = M z + m and
  g = dL/dtheta, the inner gradients are dL/dz = M^T g, dL/dM = g z^T (rank 1), dL/dm = g, so
  after a step theta' = M z' + m' - alpha_M g (z . z') with z' = z - alpha_z M^T g: exact, with no
  per-task copy of the (d_in d_out + d_out) x c matrix M (architecture.md, "how to beat the
  reference"). After k steps M_k = M - sum_i u_i v_i^T is kept as that list of rank-1 terms.
The inner loss is differentiated with respect to `grad_inputs()` (raw tensors, or theta).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn.functional import softplus

from ray_macaw.nn.layers import Effective, WeightTransformLinear
from ray_macaw.nn.transform_products import transform_matvec, transform_rmatvec

TensorDict = dict[str, torch.Tensor]
THETA = "theta"
Z, M, MB = "z", "transform.weight", "transform.bias"


@dataclass(frozen=True)
class ParamLayer:
    """A layer as its raw parameter tensors (local names), of which `adapted` are stepped."""

    layer: nn.Module
    params: TensorDict
    raw_lrs: TensorDict  # local name -> rho, for the adapted tensors only

    def grad_inputs(self) -> TensorDict:
        """Adapted tensors: the inner gradient is taken with respect to these."""
        return {n: self.params[n] for n in self.raw_lrs}

    def effective(self, inputs: Mapping[str, torch.Tensor]) -> Effective:
        """(W, b) with the adapted tensors taken from `inputs`."""
        return self.layer.effective({**self.params, **inputs})  # type: ignore[operator]

    def stepped(self, grads: Mapping[str, torch.Tensor], first_order: bool = False) -> ParamLayer:
        """One SGD step: p - softplus(rho) grad for each adapted tensor (first order: the
        caller's gradients are already constants)."""
        del first_order
        new = {n: self.params[n] - softplus(rho) * grads[n] for n, rho in self.raw_lrs.items()}
        return replace(self, params={**self.params, **new})

    def mixed(self, other: ParamLayer, keep: float) -> ParamLayer:
        """keep * other + (1 - keep) * self, detached (the soft value target phi_bar)."""
        return replace(
            self,
            params={
                n: (keep * other.params[n] + (1 - keep) * p).detach()
                for n, p in self.params.items()
            },
        )

    def materialize(self) -> TensorDict:
        """Local parameter tensors."""
        return dict(self.params)


@dataclass(frozen=True)
class LowRankWTLayer:
    """A weight-transform layer as (M, z, m) plus rank-1 corrections: M_k = M - sum u_i v_i^T."""

    layer: WeightTransformLinear
    matrix: torch.Tensor  # M, never copied per task
    z: torch.Tensor
    bias: torch.Tensor  # m
    raw_lrs: TensorDict  # subset of {z, transform.weight, transform.bias}
    corrections: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    # M z with the base matrix, when it follows from products already formed (`mixed`);
    # computed otherwise. Give None whenever z changes.
    base_product: torch.Tensor | None = None
    theta: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        base = self.base_product
        if base is None:  # the product with M batches tasks itself: `transform_products`
            base = transform_matvec(self.matrix, self.z)
            object.__setattr__(self, "base_product", base)
        object.__setattr__(self, "theta", self._corrected(base, self.z) + self.bias)

    def _corrected(self, base_product: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """M_k v from M v: minus each rank-1 correction's u (w . v)."""
        out = base_product
        for u, w in self.corrections:
            out = out - u * (w @ v)
        return out

    def _rmatvec(self, g: torch.Tensor) -> torch.Tensor:
        """M_k^T g."""
        out = transform_rmatvec(self.matrix, g)
        for u, w in self.corrections:
            out = out - w * (u @ g)
        return out

    def grad_inputs(self) -> TensorDict:
        """The layer's effective parameter vector theta = M_k z + m."""
        return {THETA: self.theta}

    def effective(self, inputs: Mapping[str, torch.Tensor]) -> Effective:
        """(W, b) from theta."""
        return self.layer.split_theta(inputs[THETA])

    def stepped(
        self, grads: Mapping[str, torch.Tensor], first_order: bool = False
    ) -> LowRankWTLayer:
        """One SGD step on (z, M, m) from g = dL/dtheta, in closed form.

        The inner gradients of z and M are M_k^T g and g z^T. First order (plain first-order
        MAML) treats every inner gradient as a constant, so M_k^T g and the z in g z^T are
        detached as well as g: otherwise the outer pass still differentiates through M and z.
        """
        g = grads[THETA]
        z, bias, corrections = self.z, self.bias, self.corrections
        if Z in self.raw_lrs:
            grad_z = self._rmatvec(g)
            z = z - softplus(self.raw_lrs[Z]) * (grad_z.detach() if first_order else grad_z)
        if M in self.raw_lrs:
            z_factor = self.z.detach() if first_order else self.z
            corrections = (*corrections, (softplus(self.raw_lrs[M]) * g, z_factor))
        if MB in self.raw_lrs:
            bias = bias - softplus(self.raw_lrs[MB]) * g
        return replace(self, z=z, bias=bias, corrections=corrections, base_product=None)

    def mixed(self, other: LowRankWTLayer, keep: float) -> LowRankWTLayer:
        """keep * other + (1 - keep) * self, detached. Both share the base M, so
        M_bar = M - sum keep u v^T (other's terms) - sum (1 - keep) u v^T (own terms), and
        M z_bar = keep M z_other + (1 - keep) M z_self needs no new product with M (issue 21)."""
        mine, theirs = self.base_product, other.base_product
        assert mine is not None and theirs is not None  # set by __post_init__
        corrections = tuple(
            [(keep * u.detach(), v.detach()) for u, v in other.corrections]
            + [((1 - keep) * u.detach(), v.detach()) for u, v in self.corrections]
        )
        return replace(
            self,
            matrix=self.matrix.detach(),
            z=(keep * other.z + (1 - keep) * self.z).detach(),
            bias=(keep * other.bias + (1 - keep) * self.bias).detach(),
            corrections=corrections,
            base_product=(keep * theirs + (1 - keep) * mine).detach(),
        )

    def materialize(self) -> TensorDict:
        """Explicit (z, M_k, m): one copy of M, for test-time adaptation and checks."""
        matrix = self.matrix
        for u, v in self.corrections:
            matrix = matrix - torch.outer(u, v)
        return {Z: self.z, M: matrix, MB: self.bias}


LayerState = ParamLayer | LowRankWTLayer


@dataclass(frozen=True)
class NetworkState:
    """All adaptable layers of one network, in `net.layer_names()` order."""

    names: tuple[str, ...]
    layers: tuple[LayerState, ...]

    @classmethod
    def build(
        cls,
        net: nn.Module,
        params: Mapping[str, torch.Tensor],
        raw_lrs: Mapping[str, torch.Tensor],
        low_rank_wt: bool,
    ) -> NetworkState:
        """Split flat `params` / `raw_lrs` (full names) by layer."""
        names = tuple(net.layer_names())  # type: ignore[operator]
        layers: list[LayerState] = []
        for name in names:
            layer = net.get_submodule(name)
            local = {n: params[f"{name}.{n}"] for n, _ in layer.named_parameters()}
            lrs = {n: raw_lrs[f"{name}.{n}"] for n in local if f"{name}.{n}" in raw_lrs}
            if low_rank_wt and isinstance(layer, WeightTransformLinear):
                layers.append(LowRankWTLayer(layer, local[M], local[Z], local[MB], lrs))
            else:
                layers.append(ParamLayer(layer, local, lrs))
        return cls(names, tuple(layers))

    def grad_inputs(self) -> TensorDict:
        """Flat `{layer.tensor: tensor}` of everything the inner gradient is taken against."""
        return {
            f"{name}.{k}": v
            for name, layer in zip(self.names, self.layers, strict=True)
            for k, v in layer.grad_inputs().items()
        }

    def effective(self, inputs: Mapping[str, torch.Tensor] | None = None) -> list[Effective]:
        """Every layer's (W, b), with grad inputs replaced by `inputs` when given."""
        flat = self.grad_inputs() if inputs is None else inputs
        return [
            layer.effective(_local(flat, name))
            for name, layer in zip(self.names, self.layers, strict=True)
        ]

    def stepped(self, grads: Mapping[str, torch.Tensor], first_order: bool = False) -> NetworkState:
        """One SGD step of every layer (first order: inner gradients are constants)."""
        return replace(
            self,
            layers=tuple(
                layer.stepped(_local(grads, name), first_order)
                for name, layer in zip(self.names, self.layers, strict=True)
            ),
        )

    def mixed(self, other: NetworkState, keep: float) -> NetworkState:
        """Soft target keep * other + (1 - keep) * self, detached."""
        return replace(
            self,
            layers=tuple(
                layer.mixed(first, keep)  # type: ignore[arg-type]
                for layer, first in zip(self.layers, other.layers, strict=True)
            ),
        )

    def materialize(self) -> TensorDict:
        """Flat full-name parameter dict (for `functional_call` on the module)."""
        return {
            f"{name}.{k}": v
            for name, layer in zip(self.names, self.layers, strict=True)
            for k, v in layer.materialize().items()
        }


def _local(flat: Mapping[str, torch.Tensor], prefix: str) -> TensorDict:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in flat.items() if k.startswith(prefix + ".")}
