"""The objectives by name: MACAW, MAML+AWR, Meta-BC and the multi-task + fine-tune baseline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ray_macaw.macaw import inner_loop as il
from ray_macaw.macaw.inner_loop import (
    OBJECTIVE_NAMES,
    Adapted,
    Batch,
    GradFn,
    InnerLoopConfig,
    TensorDict,
)
from ray_macaw.macaw.meta_bc import MetaBCObjective
from ray_macaw.macaw.model import MACAWModel, Params
from ray_macaw.macaw.multitask import MultitaskObjective
from ray_macaw.macaw.objective import WEIGHT_TRANSFORM_NETWORKS, Objective


class MACAWObjective(Objective):
    """MACAW (spec §4, §5): value then policy adaptation (AWR + advantage regression); outer
    losses are the bootstrapped value regression and AWR with the adapted value network."""

    name: ClassVar[str] = "macaw"

    def inner_adapt(
        self,
        model: MACAWModel,
        params: Params,
        batch: Batch,
        config: InnerLoopConfig,
        grad_fn: GradFn,
    ) -> Adapted:
        return il.adapt_value_then_policy(model, params, batch, config, grad_fn)

    def outer_losses(
        self, model: MACAWModel, adapted: Adapted, outer: Batch, config: InnerLoopConfig
    ) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
        return il.macaw_outer_losses(model, adapted, outer, config)


class MAMLAWRObjective(MACAWObjective):
    """The paper's MAML+AWR (spec §9, `mamlawr.json`): MACAW's losses without the advantage
    head, so the inner policy loss is AWR alone; weight transform kept, as the authors ran it."""

    name: ClassVar[str] = "maml_awr"
    network: ClassVar[Mapping[str, Any]] = {**WEIGHT_TRANSFORM_NETWORKS, "advantage_head": False}


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (MACAWObjective(), MAMLAWRObjective(), MetaBCObjective(), MultitaskObjective())
}
assert tuple(OBJECTIVES) == OBJECTIVE_NAMES


def get_objective(name: str) -> Objective:
    """The objective called `name` (one of `OBJECTIVE_NAMES`)."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"objective must be one of {OBJECTIVE_NAMES}, got {name!r}") from None
