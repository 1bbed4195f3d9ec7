"""MACAW's (and its baselines') offline adaptation to a held-out task (spec §7.1): the objective's
own test-time adaptation on uniform rows of the task's test buffer; the evaluation around it is
the shared one (`held_out.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ray_macaw.data import columns as C
from ray_macaw.data.batches import BATCH_COLUMNS
from ray_macaw.evaluation.held_out import Adaptation, HeldOutTask, Policy
from ray_macaw.macaw import InnerLoopConfig, MACAWModel
from ray_macaw.macaw.objective import AdaptationSettings
from ray_macaw.macaw.objectives import get_objective


def with_zero_task_id(obs: torch.Tensor, one_hot: int) -> torch.Tensor:
    """Append the multi-task baseline's all-zero task id (nothing when `one_hot` is 0)."""
    return torch.cat([obs, torch.zeros(*obs.shape[:-1], one_hot)], dim=-1) if one_hot else obs


def offline_adapt(
    model: MACAWModel,
    batch: Mapping[str, torch.Tensor],
    inner_config: InnerLoopConfig,
    options: Mapping[str, Any],
) -> MACAWModel:
    """An adapted copy of `model`: the configured objective's own test-time adaptation (MACAW's
    value-then-policy step, Meta-BC's BC step, the multi-task baseline's Adam fine-tuning)."""
    objective = get_objective(inner_config.objective)
    return objective.adapt(model, batch, inner_config, AdaptationSettings(**options["test_time"]))


def one_hot_width(task: HeldOutTask) -> int:
    return int(task.options.get("one_hot_tasks", 0))


class MACAWAdaptation(Adaptation):
    """Adapt a copy of the model on the batch (`offline_adapt`); act with its policy's mean. The
    multi-task baseline's inputs carry an all-zero task id (a held-out task has none)."""

    model_class: ClassVar[type[torch.nn.Module]] = MACAWModel
    columns: ClassVar[tuple[str, ...]] = BATCH_COLUMNS

    def batch(self, task: HeldOutTask, index: int = 0) -> dict[str, torch.Tensor]:
        batch = task.adaptation_batch(self.columns, index)
        for column in (C.OBS, C.TERMINAL_OBS):
            batch[column] = with_zero_task_id(batch[column], one_hot_width(task))
        return batch

    def prior_policy(self, model: MACAWModel, task: HeldOutTask) -> Policy:
        return lambda obs: model.policy.mean_action(with_zero_task_id(obs, one_hot_width(task)))

    def adapt(
        self, model: MACAWModel, batch: Mapping[str, torch.Tensor], task: HeldOutTask
    ) -> MACAWModel:
        return offline_adapt(model, batch, task.loss_config, task.options)

    def adapted_policy(self, model: MACAWModel, adapted: MACAWModel, task: HeldOutTask) -> Policy:
        return self.prior_policy(adapted, task)
