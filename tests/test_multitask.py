"""The multi-task + fine-tune baseline's pieces: one-hot batches and test-time fine-tuning."""

from __future__ import annotations

import numpy as np
import torch

from ray_macaw.data import columns as C
from ray_macaw.data.batches import TaskRequest, gather
from ray_macaw.data.task_data import TaskData
from ray_macaw.macaw import InnerLoopConfig, MACAWModel, ModelConfig
from ray_macaw.macaw.multitask import MultitaskObjective
from ray_macaw.macaw.objective import AdaptationSettings


def test_gather_appends_the_task_one_hot() -> None:
    rng = np.random.default_rng(0)
    data = {
        k: TaskData(
            k,
            {
                C.OBS: rng.normal(size=(10, 3)).astype(np.float32),
                C.ACTIONS: rng.normal(size=(10, 2)).astype(np.float32),
                C.MC_RETURN: rng.normal(size=10).astype(np.float32),
                C.TERMINAL_OBS: rng.normal(size=(10, 3)).astype(np.float32),
                C.TERMINAL_DISCOUNT: rng.random(10).astype(np.float32),
            },
        )
        for k in (1, 3)
    }
    requests = [
        TaskRequest(3, np.arange(4), np.arange(5)),
        TaskRequest(1, np.arange(4), np.arange(5)),
    ]
    inner, outer = gather(data, requests, one_hot_tasks=4)
    assert inner[C.OBS].shape == (2, 4, 7) and outer[C.TERMINAL_OBS].shape == (2, 5, 7)
    np.testing.assert_array_equal(inner[C.OBS][0, :, 3:], np.tile([0, 0, 0, 1], (4, 1)))
    np.testing.assert_array_equal(outer[C.OBS][1, :, 3:], np.tile([0, 1, 0, 0], (5, 1)))
    np.testing.assert_array_equal(inner[C.OBS][0, :, :3], data[3].columns[C.OBS][:4])


def test_gather_takes_inner_rows_from_a_separate_inner_root() -> None:
    def task(value: float) -> TaskData:
        return TaskData(
            0,
            {
                C.OBS: np.full((10, 3), value, np.float32),
                C.ACTIONS: np.zeros((10, 2), np.float32),
                C.MC_RETURN: np.zeros(10, np.float32),
                C.TERMINAL_OBS: np.zeros((10, 3), np.float32),
                C.TERMINAL_DISCOUNT: np.zeros(10, np.float32),
            },
        )

    requests = [TaskRequest(0, np.arange(4), np.arange(5))]
    inner, outer = gather({0: task(1.0)}, requests, inner_data={0: task(-1.0)})
    assert (inner[C.OBS] == -1).all() and (outer[C.OBS] == 1).all()


def test_fine_tune_fits_the_batch_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = MACAWModel(
        ModelConfig(
            obs_dim=3,
            act_dim=2,
            hidden=(16, 16),
            policy_layer="bias_transform",
            value_layer="bias_transform",
            advantage_head=False,
        )
    )
    batch = {
        C.OBS: torch.randn(64, 3),
        C.ACTIONS: torch.rand(64, 2) * 2 - 1,
        C.MC_RETURN: torch.randn(64) * 3,
        C.TERMINAL_OBS: torch.randn(64, 3),
        C.TERMINAL_DISCOUNT: torch.rand(64),
    }
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    settings = AdaptationSettings(
        finetune_steps=20, finetune_value_lr=1e-2, finetune_policy_lr=1e-2
    )
    tuned = MultitaskObjective().adapt(model, batch, InnerLoopConfig(), settings)
    loss = lambda m: (m.value(batch[C.OBS]) - batch[C.MC_RETURN]).pow(2).mean().item()  # noqa: E731
    assert loss(tuned) < loss(model)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, before[name])  # a copy was tuned
