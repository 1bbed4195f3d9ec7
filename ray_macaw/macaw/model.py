"""What MACAW meta-learns: policy, value network, learned inner lrs and lambda (spec §3)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

import torch
from torch import nn

from ray_macaw.nn.layers import LAYER_KINDS, LayerKind, latent_parameter_names
from ray_macaw.nn.networks import MACAWPolicy, ValueNetwork

Adapt = Literal["all", "latent"]


class Params(TypedDict):
    """The meta-parameters as the pytree the functional inner loop takes (tensors by full name)."""

    policy: dict[str, torch.Tensor]
    value: dict[str, torch.Tensor]
    policy_lr: dict[str, torch.Tensor]  # rho by adapted policy parameter name
    value_lr: dict[str, torch.Tensor]
    adv_coef: NotRequired[torch.Tensor]  # c, only with the advantage head


@dataclass(frozen=True)
class ModelConfig:
    """Networks and learned inner-loop hyperparameters (spec §1-§3, §10).

    Attributes:
        obs_dim: Observation size d_o.
        act_dim: Action size d_a.
        hidden: Hidden widths (3 x 100; 3 x 300 for ML45).
        policy_layer: Layer kind of the policy ('weight_transform', 'bias_transform', 'linear').
        value_layer: Layer kind of the value network.
        latent_dim: Latent size c of weight-transform layers (100).
        advantage_head: Policy advantage head and its inner-loop loss (spec §1.2).
        head_width: Hidden width of the advantage head (32).
        action_sigma: Fixed policy std sigma (0.2).
        inner_policy_lr: Initial inner policy lr; learned as softplus(rho), rho_0 = log(lr).
        inner_value_lr: Initial inner value lr, likewise.
        adv_coef: Initial lambda, learned as softplus(c), c_0 = log(adv_coef) (0.01).
        adapt: 'all' adapts every parameter tensor (as the authors ran it, spec §2.2);
            'latent' adapts only the latents (z / beta), the paper's framing.
    """

    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...] = (100, 100, 100)
    policy_layer: LayerKind = "weight_transform"
    value_layer: LayerKind = "weight_transform"
    latent_dim: int = 100
    advantage_head: bool = True
    head_width: int = 32
    action_sigma: float = 0.2
    inner_policy_lr: float = 1e-3
    inner_value_lr: float = 1e-3
    adv_coef: float = 0.01
    adapt: Adapt = "all"

    def __post_init__(self) -> None:
        problems = []
        if self.obs_dim < 1 or self.act_dim < 1:
            problems.append("obs_dim and act_dim must be positive")
        if not self.hidden or min(self.hidden) < 1:
            problems.append("hidden needs at least one positive width")
        for name in ("policy_layer", "value_layer"):
            if getattr(self, name) not in LAYER_KINDS:
                problems.append(f"{name} must be one of {LAYER_KINDS}")
        for name in ("inner_policy_lr", "inner_value_lr", "adv_coef", "action_sigma"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 (it is learned through softplus(log x))")
        if self.adapt not in ("all", "latent"):
            problems.append("adapt must be 'all' or 'latent'")
        if self.adapt == "latent" and "linear" in (self.policy_layer, self.value_layer):
            problems.append(
                "adapt='latent' needs weight- or bias-transform layers (plain linear "
                "layers have no latent); use adapt='all'"
            )
        if problems:
            raise ValueError("invalid MACAW model config: " + "; ".join(problems))


def _key(name: str) -> str:
    """ParameterDict key of a parameter name ('.' is not allowed in module names)."""
    return name.replace(".", "__")


class LearnedRates(nn.Module):
    """A learned inner lr per adapted tensor: alpha_k = softplus(rho_k), rho_0 = log lr (spec §3).

    Note the init: softplus(log lr) = log(1 + lr), e.g. 9.995e-4 for lr = 1e-3.
    """

    def __init__(self, names: list[str], init_lr: float) -> None:
        super().__init__()
        self.names = list(names)
        self.raw = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.tensor(math.log(init_lr))) for n in self.names}
        )

    def raw_by_name(self) -> dict[str, torch.Tensor]:
        """rho by adapted parameter name."""
        return {n: self.raw[_key(n)] for n in self.names}


class MACAWModel(nn.Module):
    """Policy, value network, learned inner lrs and lambda: everything the outer Adam steps update.

    Args:
        config: Network and inner-loop hyperparameters.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.policy = MACAWPolicy(
            config.obs_dim,
            config.act_dim,
            config.hidden,
            config.policy_layer,
            config.latent_dim,
            config.advantage_head,
            config.head_width,
            config.action_sigma,
        )
        self.value = ValueNetwork(
            config.obs_dim, config.hidden, config.value_layer, config.latent_dim
        )
        self.policy_lr = LearnedRates(self._adapted(self.policy), config.inner_policy_lr)
        self.value_lr = LearnedRates(self._adapted(self.value), config.inner_value_lr)
        self.adv_coef_raw = (
            nn.Parameter(torch.tensor(math.log(config.adv_coef))) if config.advantage_head else None
        )

    def _adapted(self, net: nn.Module) -> list[str]:
        if self.config.adapt == "latent":
            return latent_parameter_names(net)
        return [name for name, _ in net.named_parameters()]

    def params(self) -> Params:
        """The model's parameters as the pytree the functional inner loop takes."""
        tree: Params = {
            "policy": dict(self.policy.named_parameters()),
            "value": dict(self.value.named_parameters()),
            "policy_lr": self.policy_lr.raw_by_name(),
            "value_lr": self.value_lr.raw_by_name(),
        }
        if self.adv_coef_raw is not None:
            tree["adv_coef"] = self.adv_coef_raw
        return tree

    def inner_lrs(self) -> dict[str, dict[str, float]]:
        """Current effective inner lrs softplus(rho), for logging."""
        soft = torch.nn.functional.softplus
        return {
            "policy": {n: float(soft(r.detach())) for n, r in self.policy_lr.raw_by_name().items()},
            "value": {n: float(soft(r.detach())) for n, r in self.value_lr.raw_by_name().items()},
        }

    def adv_coef(self) -> float | None:
        """Current lambda = softplus(c), or None without the head."""
        if self.adv_coef_raw is None:
            return None
        return float(torch.nn.functional.softplus(self.adv_coef_raw.detach()))


# Devices with torch's fused (one kernel over every tensor) Adam. On CPU the default per-tensor
# Adam was 22% of a standard meta-step; fused computes the same update (issue 21).
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with default betas and eps (spec §5), fused where the parameters' device has it."""
    params = list(params)
    fused = bool(params) and all(
        p.device.type in FUSED_ADAM_DEVICES and p.dtype.is_floating_point for p in params
    )
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def build_optimizers(
    model: MACAWModel, value_lr: float, policy_lr: float, lrlr: float
) -> dict[str, torch.optim.Optimizer]:
    """Spec §5: Adam on phi (`value_lr`), on theta (`policy_lr`), on the learned lrs and c
    (`lrlr`); build them after the model is on its device."""
    learned = [*model.value_lr.parameters(), *model.policy_lr.parameters()]
    if model.adv_coef_raw is not None:
        learned.append(model.adv_coef_raw)
    return {
        "value": make_adam(model.value.parameters(), value_lr),
        "policy": make_adam(model.policy.parameters(), policy_lr),
        "learned": make_adam(learned, lrlr),
    }
