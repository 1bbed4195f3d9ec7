"""MACAW's inner loop and per-task meta-loss, written functionally with `torch.func` (spec §4, §5).

Parameters are held layer by layer (`NetworkState`) and the networks run on each layer's effective
(W, b) (`forward_effective`), so the same code runs
- per task with `torch.autograd.grad(create_graph=True)` (`autograd_grad`), and
- vectorised across tasks under `torch.func.vmap` with `torch.func.grad` (`func_grad`).
Either way the adapted parameters stay differentiable functions of the meta-parameters, so the
outer backward pass gives the exact second-order meta-gradient (first-order: detach the inner
gradients).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import torch
from torch.nn.functional import softplus

from ray_macaw.data.columns import ACTIONS, MC_RETURN, OBS, TERMINAL_DISCOUNT, TERMINAL_OBS
from ray_macaw.macaw import losses
from ray_macaw.macaw.model import MACAWModel, Params
from ray_macaw.macaw.net_state import NetworkState
from ray_macaw.nn.networks import gaussian_log_prob

TensorDict = dict[str, torch.Tensor]
Batch = Mapping[str, torch.Tensor]
LossFn = Callable[[TensorDict], tuple[torch.Tensor, TensorDict]]
# The objectives (`objectives.py`): MACAW, MACAW without the advantage head (the paper's
# MAML+AWR), Meta-BC and the multi-task + fine-tune baseline (spec §9).
ObjectiveName = Literal["macaw", "maml_awr", "meta_bc", "multitask"]
OBJECTIVE_NAMES: tuple[ObjectiveName, ...] = ("macaw", "maml_awr", "meta_bc", "multitask")


class GradFn(Protocol):
    """Gradient of `loss_fn` at `params`: (grads by name, aux stats)."""

    def __call__(
        self, loss_fn: LossFn, params: TensorDict, create_graph: bool
    ) -> tuple[TensorDict, TensorDict]: ...


@dataclass(frozen=True)
class InnerLoopConfig:
    """How the inner loop adapts and how the outer losses are formed (spec §4, §5, §10).

    Attributes:
        steps: Inner gradient steps k; the inner batch is split into k equal parts, one per step.
        first_order: Drop second-order terms (detach inner gradients). Off: MACAW is second order.
        temperature: AWR temperature T (1).
        max_weight: Largest AWR weight (20: normalised advantages clipped at ln 20).
        normalize_advantages: Normalise advantages per batch (unbiased std) before weighting.
        target_mix: phi_bar = target_mix * phi + (1 - target_mix) * phi' for the outer value
            target (0.9, `target_vf_alpha`).
        outer_value_target: 'bootstrap' (R + g V_phi_bar(s^T), the authors' code) or 'mc'
            (pure R, the paper's description).
        objective: What is meta-learned and how a task is adapted: one of `OBJECTIVE_NAMES`
            (`objectives.get_objective` gives its losses, test-time adaptation and fine-tuning).
        low_rank_wt: Adapt weight-transform layers in closed form (rank-1 updates of M, no
            per-task copy of it; see `net_state`). Exact: same result as plain autograd.
    """

    steps: int = 1
    first_order: bool = False
    temperature: float = 1.0
    max_weight: float = 20.0
    normalize_advantages: bool = True
    target_mix: float = 0.9
    outer_value_target: Literal["bootstrap", "mc"] = "bootstrap"
    objective: ObjectiveName = "macaw"
    low_rank_wt: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not self.temperature > 0 or not self.max_weight > 1:
            raise ValueError("temperature must be > 0 and max_weight > 1")
        if not 0.0 <= self.target_mix <= 1.0:
            raise ValueError(f"target_mix must lie in [0, 1], got {self.target_mix}")
        if self.outer_value_target not in ("bootstrap", "mc"):
            raise ValueError("outer_value_target must be 'bootstrap' or 'mc'")
        if self.objective not in OBJECTIVE_NAMES:
            raise ValueError(f"objective must be one of {OBJECTIVE_NAMES}, got {self.objective!r}")


def autograd_grad(
    loss_fn: LossFn, params: TensorDict, create_graph: bool
) -> tuple[TensorDict, TensorDict]:
    """Per-task path: `torch.autograd.grad`; unused parameters get zero gradients."""
    loss, aux = loss_fn(params)
    names = list(params)
    grads = torch.autograd.grad(
        loss, [params[n] for n in names], create_graph=create_graph, allow_unused=True
    )
    return {
        n: torch.zeros_like(params[n]) if g is None else g
        for n, g in zip(names, grads, strict=True)
    }, aux


def func_grad(
    loss_fn: LossFn, params: TensorDict, create_graph: bool
) -> tuple[TensorDict, TensorDict]:
    """Vectorisable path: `torch.func.grad`, differentiable by the outer autograd pass."""
    grads, aux = torch.func.grad(loss_fn, has_aux=True)(params)
    if not create_graph:
        grads = {n: g.detach() for n, g in grads.items()}
    return grads, aux


def split_batch(batch: Batch, parts: int) -> list[TensorDict]:
    """`parts` equal consecutive slices of a batch (one per inner step, spec §4.2)."""
    size = next(iter(batch.values())).shape[0]
    if size % parts:
        raise ValueError(f"inner batch of {size} rows cannot be split into {parts} equal steps")
    chunk = size // parts
    return [{k: v[i * chunk : (i + 1) * chunk] for k, v in batch.items()} for i in range(parts)]


def _values(model: MACAWModel, state: NetworkState, obs: torch.Tensor) -> torch.Tensor:
    return model.value.forward_effective(state.effective(), obs)


def value_state(model: MACAWModel, params: Params, config: InnerLoopConfig) -> NetworkState:
    """The value network's parameters, layer by layer, ready for adaptation."""
    return NetworkState.build(
        model.value,
        params["value"],
        params["value_lr"],
        config.low_rank_wt,
    )


def policy_state(model: MACAWModel, params: Params, config: InnerLoopConfig) -> NetworkState:
    """The policy's parameters, layer by layer, ready for adaptation."""
    return NetworkState.build(
        model.policy,
        params["policy"],
        params["policy_lr"],
        config.low_rank_wt,
    )


def sgd_steps(
    state: NetworkState,
    batch: Batch,
    config: InnerLoopConfig,
    grad_fn: GradFn,
    chunk_loss: Callable[[NetworkState, TensorDict], LossFn],
) -> list[tuple[NetworkState, TensorDict]]:
    """k differentiable SGD steps, one per equal slice of the inner batch (spec §4.2).

    Returns:
        (state, stats) after each step.
    """
    steps = []
    for chunk in split_batch(batch, config.steps):
        grads, stats = grad_fn(
            chunk_loss(state, chunk), state.grad_inputs(), create_graph=not config.first_order
        )
        state = state.stepped(grads, config.first_order)
        steps.append((state, stats))
    return steps


def adapt_value(
    model: MACAWModel,
    state: NetworkState,
    batch: Batch,
    config: InnerLoopConfig,
    grad_fn: GradFn,
) -> tuple[NetworkState, NetworkState, TensorDict]:
    """phi' after k SGD steps on the pure-MC value loss (spec §4.3; Alg. 1 inner value step).

    Returns:
        (phi', phi_bar, stats). phi_bar is the soft target, updated after every step as the
        authors do: phi_bar <- target_mix * phi_bar + (1 - target_mix) * phi_i from phi_bar = phi,
        so 0.9 phi + 0.1 phi' for one step (detached).
    """

    def chunk_loss(state: NetworkState, chunk: TensorDict) -> LossFn:
        def loss_fn(inputs: TensorDict) -> tuple[torch.Tensor, TensorDict]:
            values = model.value.forward_effective(state.effective(inputs), chunk[OBS])
            loss = losses.value_loss(values, chunk[MC_RETURN])
            return loss, {"inner_value_loss": loss.detach()}

        return loss_fn

    steps = sgd_steps(state, batch, config, grad_fn, chunk_loss)
    target = state
    for stepped, _ in steps:
        target = stepped.mixed(target, config.target_mix)
    adapted, stats = steps[-1]
    return adapted, target, stats


def batch_advantages(
    model: MACAWModel, value: NetworkState, batch: Batch, values: torch.Tensor | None = None
) -> torch.Tensor:
    """A = R + g V(s^T) - V(s) under the `value` parameters, detached (spec §4.4 step 1).

    `values`, when given, are V(s) already computed (the outer value loss's), reused rather than
    recomputed. The forwards run without autograd recording: A is a constant. Without `values`,
    s and s^T go through the network as one batch (one product per layer, not two).
    """
    with torch.no_grad():
        if values is None:
            rows = batch[OBS].shape[0]
            both = _values(model, value, torch.cat([batch[OBS], batch[TERMINAL_OBS]]))
            values, terminal = both[:rows], both[rows:]
        else:
            terminal = _values(model, value, batch[TERMINAL_OBS])
        return losses.advantages(
            batch[MC_RETURN], batch[TERMINAL_DISCOUNT], terminal, values.detach()
        )


def log_probs_and_head(
    model: MACAWModel, state: NetworkState, batch: Batch, inputs: TensorDict | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    mean, predicted = model.policy.forward_effective(
        state.effective(inputs), batch[OBS], batch[ACTIONS]
    )
    return gaussian_log_prob(mean, batch[ACTIONS], model.config.action_sigma), predicted


def adapt_policy(
    model: MACAWModel,
    state: NetworkState,
    adv_coef: torch.Tensor | float,
    adapted_value: NetworkState,
    batch: Batch,
    config: InnerLoopConfig,
    grad_fn: GradFn,
) -> tuple[NetworkState, TensorDict]:
    """theta' after k SGD steps on AWR + lambda * advantage regression (spec §4.4).

    Advantages come from the adapted value network phi' and are constants.
    """

    def chunk_loss(state: NetworkState, chunk: TensorDict) -> LossFn:
        advantages = batch_advantages(model, adapted_value, chunk)

        def loss_fn(inputs: TensorDict) -> tuple[torch.Tensor, TensorDict]:
            log_probs, predicted = log_probs_and_head(model, state, chunk, inputs)
            loss, stats = losses.policy_adaptation_loss(
                log_probs,
                predicted,
                advantages,
                adv_coef,
                config.temperature,
                config.max_weight,
                config.normalize_advantages,
            )
            return loss, {
                "inner_policy_loss": loss.detach(),
                **{f"inner_{k}": v.detach() for k, v in stats.items()},
            }

        return loss_fn

    return sgd_steps(state, batch, config, grad_fn, chunk_loss)[-1]


def adv_coef(params: Params) -> torch.Tensor | float:
    """lambda = softplus(c); 0 without the advantage head."""
    return softplus(params["adv_coef"]) if "adv_coef" in params else 0.0


@dataclass(frozen=True)
class Adapted:
    """Networks after the inner loop of one task (spec §4): phi', the soft target phi_bar and
    theta'. Objectives without value adaptation leave `value` and `value_target` at phi."""

    value: NetworkState
    value_target: NetworkState
    policy: NetworkState
    stats: TensorDict


def adapt_value_then_policy(
    model: MACAWModel, params: Params, batch: Batch, config: InnerLoopConfig, grad_fn: GradFn
) -> Adapted:
    """MACAW's inner loop (Alg. 1 L7-L9): value steps on the MC loss, then policy steps on AWR +
    advantage regression with advantages from the adapted value network (spec §4.3, §4.4).

    Used for the meta-gradient and, with a first-order `grad_fn`, at test time: the one place
    value-then-policy adaptation is written.
    """
    phi_adapted, phi_bar, value_stats = adapt_value(
        model, value_state(model, params, config), batch, config, grad_fn
    )
    theta_adapted, policy_stats = adapt_policy(
        model,
        policy_state(model, params, config),
        adv_coef(params),
        phi_adapted,
        batch,
        config,
        grad_fn,
    )
    return Adapted(phi_adapted, phi_bar, theta_adapted, {**value_stats, **policy_stats})


def outer_value_loss(
    model: MACAWModel, adapted: Adapted, outer: Batch, config: InnerLoopConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE of V_phi'(s) on R + g V_phi_bar(s^T) (or R with 'mc'), targets constant (spec §5).

    Returns:
        (loss, V_phi'(s) of the outer batch): the outer AWR weights reuse those values.
    """
    if config.outer_value_target == "bootstrap":
        with torch.no_grad():  # the soft target phi_bar is a constant (spec §5)
            terminal = _values(model, adapted.value_target, outer[TERMINAL_OBS])
        targets = losses.bootstrapped_targets(outer[MC_RETURN], outer[TERMINAL_DISCOUNT], terminal)
    else:
        targets = outer[MC_RETURN]
    values = _values(model, adapted.value, outer[OBS])
    return losses.value_loss(values, targets.detach()), values


def outer_awr_loss(
    model: MACAWModel,
    value: NetworkState,
    policy: NetworkState,
    outer: Batch,
    config: InnerLoopConfig,
    values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, TensorDict]:
    """-mean(w log pi_theta'(a|s)) with w from `value`'s detached advantages (spec §5);
    `values`, when given, are `value`'s V(s) of the batch, already computed."""
    advantages = batch_advantages(model, value, outer, values)
    weights = losses.awr_weights(
        advantages, config.temperature, config.max_weight, config.normalize_advantages
    )
    log_probs, _ = log_probs_and_head(model, policy, outer)
    loss = losses.awr_policy_loss(log_probs, weights)
    return loss, {
        "outer_policy_loss": loss.detach(),
        "outer_weight_mean": weights.mean(),
        "outer_weight_max": weights.max(),
        "outer_advantage_mean": advantages.mean(),
    }


def task_meta_loss(
    model: MACAWModel,
    params: Params,
    inner: Batch,
    outer: Batch,
    config: InnerLoopConfig,
    grad_fn: GradFn,
) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
    """One task's outer value and policy losses after adapting on `inner` (spec §5 pseudo-code).

    Returns:
        (outer value loss, outer policy loss, stats). The value loss depends on phi and rho_V
        only; the policy loss on theta, rho_pi and c only (advantages are detached).
    """
    adapted = adapt_value_then_policy(model, params, inner, config, grad_fn)
    value_loss, policy_loss, stats = macaw_outer_losses(model, adapted, outer, config)
    return value_loss, policy_loss, {**adapted.stats, **stats}


def macaw_outer_losses(
    model: MACAWModel, adapted: Adapted, outer: Batch, config: InnerLoopConfig
) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
    """(bootstrapped outer value loss, outer AWR loss, stats) of adapted networks (spec §5)."""
    value_loss, values = outer_value_loss(model, adapted, outer, config)
    policy_loss, stats = outer_awr_loss(model, adapted.value, adapted.policy, outer, config, values)
    return value_loss, policy_loss, {"outer_value_loss": value_loss.detach(), **stats}


@dataclass(frozen=True)
class AdaptedParams:
    """Test-time adapted networks: pass to `functional_call(model.policy, adapted.policy, obs)`."""

    policy: TensorDict
    value: TensorDict

    @classmethod
    def of(cls, adapted: Adapted) -> AdaptedParams:
        """Detached explicit tensors of an inner loop's result."""
        return cls(
            policy={n: t.detach() for n, t in adapted.policy.materialize().items()},
            value={n: t.detach() for n, t in adapted.value.materialize().items()},
        )


def adapt(
    model: MACAWModel, batch: Batch, config: InnerLoopConfig, steps: int = 1
) -> AdaptedParams:
    """Test-time adaptation: inner value then policy steps on `batch`, no meta-gradient.

    The same step as training (learned lrs and lambda, spec §7.1 step 3); the result is detached.

    Args:
        model: The meta-trained model.
        batch: The adaptation batch (256 uniform rows of the test task in the paper).
        config: Inner-loop settings (temperature, weights, ...).
        steps: Adaptation steps over `batch` split into equal parts. The authors always take
            one step on the whole batch, whatever the training `steps` (spec §7.1, §10).
    """
    return adapt_with(adapt_value_then_policy, model, batch, config, steps)


def adapt_with(
    inner_adapt: Callable[..., Adapted],
    model: MACAWModel,
    batch: Batch,
    config: InnerLoopConfig,
    steps: int,
) -> AdaptedParams:
    """`inner_adapt(model, params, batch, config, grad_fn)` run for test time: `steps` steps,
    first order (no graph of the gradients), the result detached."""
    config = replace(config, steps=steps)
    with torch.enable_grad():
        adapted = inner_adapt(model, model.params(), batch, config, autograd_grad_first_order)
    return AdaptedParams.of(adapted)


def autograd_grad_first_order(
    loss_fn: LossFn, params: TensorDict, create_graph: bool
) -> tuple[TensorDict, TensorDict]:
    """`autograd_grad` that never builds a graph of the gradient (test-time adaptation)."""
    del create_graph
    return autograd_grad(loss_fn, params, create_graph=False)


def mean_stats(stats: Mapping[str, Any]) -> dict[str, float]:
    """Average per-task stats (tensors with a task dimension, or lists of scalars) to floats."""
    return {k: float(torch.as_tensor(v, dtype=torch.float64).mean()) for k, v in stats.items()}
