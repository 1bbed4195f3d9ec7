"""MAML (Finn et al. 2017) with an exact second-order meta-gradient, written functionally.

Per task: adapt on the support set with `steps` SGD steps (Finn et al. eq. 1),
    theta' = theta - alpha * grad_theta L_support(theta),
then score theta' on the query set. `torch.func.grad` computes the inner gradient as a function of
theta, so the outer backward pass differentiates through it (the Hessian-vector term of the
meta-gradient); `first_order=True` detaches it (FOMAML). `torch.func.vmap` runs the tasks of a
meta-batch in parallel. The outer loop is Adam on the mean query loss (appendix C.1 follows the
MAML setup of Deleu et al. 2019).

The inner learning rate alpha is fixed by default, as in Finn et al. and Deleu et al.; with
`learn_inner_lr` it is one learned scalar per parameter tensor (initialised at `inner_lr`) that the
outer Adam trains along with theta.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch.nn import functional

from ray_macaw.errors import NonFiniteLossError
from ray_macaw.supervised.models import FewShotMLP, Params

LossKind = Literal["mse", "cross_entropy"]
Task = Mapping[str, torch.Tensor]  # x_support, y_support, x_query, y_query (one task or stacked)

X_SUPPORT, Y_SUPPORT, X_QUERY, Y_QUERY = "x_support", "y_support", "x_query", "y_query"
PRE_LOSS, POST_LOSS = "pre_adaptation_loss", "post_adaptation_loss"
PRE_ACCURACY, POST_ACCURACY = "pre_adaptation_accuracy", "post_adaptation_accuracy"


def loss_and_accuracy(
    pred: torch.Tensor, target: torch.Tensor, kind: LossKind
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean squared error (regression) or cross-entropy with accuracy (classification)."""
    if kind == "mse":
        return functional.mse_loss(pred, target), None
    loss = functional.cross_entropy(pred, target)
    return loss, (pred.argmax(-1) == target).float().mean()


def adapt(
    model: FewShotMLP,
    params: Params,
    lrs: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    kind: LossKind,
    steps: int = 1,
    first_order: bool = False,
) -> Params:
    """The inner loop: `steps` SGD steps on one task's support set (x, y) from `params`.

    The result stays a differentiable function of `params` and `lrs` (unless `first_order`).
    """

    def support_loss(p: Params) -> torch.Tensor:
        return loss_and_accuracy(model.forward_params(p, x), y, kind)[0]

    for _ in range(steps):
        grads = torch.func.grad(support_loss)(params)
        if first_order:
            grads = {name: g.detach() for name, g in grads.items()}
        params = {name: p - lrs[name] * grads[name] for name, p in params.items()}
    return params


def task_outcome(
    model: FewShotMLP,
    params: Params,
    lrs: Mapping[str, torch.Tensor],
    task: Task,
    kind: LossKind,
    steps: int = 1,
    first_order: bool = False,
) -> dict[str, torch.Tensor]:
    """Query loss (and accuracy) of one task before and after adaptation on its support set."""
    pre_loss, pre_acc = loss_and_accuracy(
        model.forward_params(params, task[X_QUERY]), task[Y_QUERY], kind
    )
    adapted = adapt(model, params, lrs, task[X_SUPPORT], task[Y_SUPPORT], kind, steps, first_order)
    post_loss, post_acc = loss_and_accuracy(
        model.forward_params(adapted, task[X_QUERY]), task[Y_QUERY], kind
    )
    out = {PRE_LOSS: pre_loss.detach(), POST_LOSS: post_loss}
    if pre_acc is not None and post_acc is not None:
        out[PRE_ACCURACY], out[POST_ACCURACY] = pre_acc, post_acc
    return out


def batch_outcomes(
    model: FewShotMLP,
    params: Params,
    lrs: Mapping[str, torch.Tensor],
    tasks: Task,
    kind: LossKind,
    steps: int = 1,
    first_order: bool = False,
) -> dict[str, torch.Tensor]:
    """`task_outcome` of every task of a meta-batch (tensors stacked on dim 0), under vmap."""

    def one(task: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return task_outcome(model, params, lrs, task, kind, steps, first_order)

    return torch.func.vmap(one)(dict(tasks))


class MetaLearner:
    """Meta-parameters theta, inner learning rates and the outer Adam optimiser.

    Args:
        model: The network (its parameters are theta).
        kind: 'mse' (regression) or 'cross_entropy' (classification).
        inner_lr: alpha, the inner SGD step size (initial value when learned).
        inner_steps: SGD steps per adaptation.
        learn_inner_lr: Learn one alpha per parameter tensor with the outer optimiser.
        first_order: Drop the second-order term of the meta-gradient (FOMAML).
        outer_lr: Adam learning rate beta of the outer loop.
    """

    def __init__(
        self,
        model: FewShotMLP,
        kind: LossKind,
        inner_lr: float,
        inner_steps: int = 1,
        learn_inner_lr: bool = False,
        first_order: bool = False,
        outer_lr: float = 1e-3,
    ) -> None:
        self.model, self.kind = model, kind
        self.inner_steps, self.first_order = inner_steps, first_order
        self.lrs = {
            name: torch.tensor(float(inner_lr), requires_grad=learn_inner_lr)
            for name, _ in model.named_parameters()
        }
        trained: list[torch.Tensor] = list(model.parameters())
        if learn_inner_lr:
            trained += list(self.lrs.values())
        self.optimizer = torch.optim.Adam(trained, lr=outer_lr)

    def params(self) -> Params:
        """theta by full parameter name."""
        return dict(self.model.named_parameters())

    def meta_step(self, tasks: Task) -> dict[str, float]:
        """One outer Adam step on the mean post-adaptation query loss of a meta-batch."""
        outcomes = batch_outcomes(
            self.model,
            self.params(),
            self.lrs,
            tasks,
            self.kind,
            self.inner_steps,
            self.first_order,
        )
        meta_loss = outcomes[POST_LOSS].mean()
        if not torch.isfinite(meta_loss):
            raise NonFiniteLossError(
                f"the meta-loss is {meta_loss.item()}",
                "lower inner_lr or outer_lr (a large inner step can diverge), or use fewer "
                "inner_steps",
            )
        self.optimizer.zero_grad()
        meta_loss.backward()
        self.optimizer.step()
        return {name: value.detach().mean().item() for name, value in outcomes.items()}

    def evaluate(self, tasks: Task) -> dict[str, float]:
        """Mean pre/post-adaptation query loss (and accuracy) of tasks, without meta-gradients."""
        params = {name: p.detach() for name, p in self.params().items()}
        lrs = {name: lr.detach() for name, lr in self.lrs.items()}
        outcomes = batch_outcomes(self.model, params, lrs, tasks, self.kind, self.inner_steps, True)
        return {name: value.detach().mean().item() for name, value in outcomes.items()}

    def state_dict(self) -> dict[str, Any]:
        """theta, the inner learning rates and Adam's state (for checkpoints)."""
        return {
            "model": self.model.state_dict(),
            "lrs": {name: lr.detach().clone() for name, lr in self.lrs.items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            for name, lr in self.lrs.items():
                lr.copy_(state["lrs"][name])
        self.optimizer.load_state_dict(state["optimizer"])
