"""Held-out evaluation (spec §7.1): per test task, the unadapted policy's return, one adaptation
step on uniform rows of the task's offline data, then the adapted policy's return. Tasks run in
parallel Ray tasks; each loads its own task's data, so the driver holds none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import ray
import torch

from ray_macaw.data import columns as C
from ray_macaw.data.batches import BATCH_COLUMNS
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.macaw import InnerLoopConfig, MACAWModel, ModelConfig
from ray_macaw.macaw.objective import AdaptationSettings
from ray_macaw.macaw.objectives import get_objective
from ray_macaw.tasks import get_task_family

Policy = Callable[[torch.Tensor], torch.Tensor]


def rollout(env: gym.Env, policy: Policy, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of deterministic episodes: the mean action, clipped to the bounds."""
    space = env.action_space
    assert isinstance(space, gym.spaces.Box)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                mean = policy(torch.as_tensor(obs, dtype=torch.float32)).numpy()
            obs, reward, terminated, truncated, _ = env.step(np.clip(mean, space.low, space.high))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def with_zero_task_id(obs: torch.Tensor, one_hot: int) -> torch.Tensor:
    """Append the multi-task baseline's all-zero task id (nothing when `one_hot` is 0)."""
    return torch.cat([obs, torch.zeros(*obs.shape[:-1], one_hot)], dim=-1) if one_hot else obs


def adaptation_batch(
    root: str,
    family: str,
    task_id: int,
    options: Mapping[str, Any],
    columns: Sequence[str] = BATCH_COLUMNS,
) -> dict[str, torch.Tensor]:
    """`options["batch_size"]` uniform rows of a held-out task's test buffer (cut like the inner
    buffers, `options["test_buffer"]`; spec §6.2, §7.1), as float tensors of `columns`."""
    data = TaskDatasets(root, family).load(task_id)
    buffer = data.buffer(**options.get("test_buffer", {}))
    rows = data.sample_uniform(
        options["batch_size"], np.random.default_rng(options["seed"]), buffer
    )
    batch = {c: torch.as_tensor(rows[c], dtype=torch.float32) for c in columns}
    for column in {C.OBS, C.TERMINAL_OBS} & set(columns):
        batch[column] = with_zero_task_id(batch[column], int(options.get("one_hot_tasks", 0)))
    return batch


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


def load_task(
    model_config: Any,
    weights: Mapping[str, torch.Tensor],
    family: str,
    family_seed: int,
    task_id: int,
    model_class: Callable[[Any], torch.nn.Module] = MACAWModel,
) -> tuple[Any, gym.Env]:
    """The meta-trained model (`model_class(model_config)`: MACAW's by default, `PEARLModel`
    for Offline PEARL) and the held-out task's environment, in a Ray task or actor."""
    model = model_class(model_config)
    model.load_state_dict(weights)
    return model, get_task_family(family, seed=family_seed).make_env(task_id)


def evaluate_task(
    model_config: ModelConfig,
    inner_config: InnerLoopConfig,
    weights: Mapping[str, torch.Tensor],
    root: str,
    family: str,
    family_seed: int,
    task_id: int,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Pre- and post-adaptation returns of one held-out task."""
    model, env = load_task(model_config, weights, family, family_seed, task_id)
    seed, one_hot = options["seed"], int(options.get("one_hot_tasks", 0))
    pre = rollout(
        env,
        lambda o: model.policy.mean_action(with_zero_task_id(o, one_hot)),
        options["episodes"],
        seed,
    )
    batch = adaptation_batch(root, family, task_id, options)
    adapted = offline_adapt(model, batch, inner_config, options)
    post = rollout(
        env,
        lambda o: adapted.policy.mean_action(with_zero_task_id(o, one_hot)),
        options["episodes"],
        seed,
    )
    return {
        "task_id": task_id,
        "pre_adaptation_return": float(np.mean(pre)),
        "post_adaptation_return": float(np.mean(post)),
    }


evaluate_task_remote = ray.remote(num_cpus=1)(evaluate_task)


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over tasks plus the per-task figures (RLlib puts this under `evaluation`)."""
    pre = [r["pre_adaptation_return"] for r in results]
    post = [r["post_adaptation_return"] for r in results]
    return {
        "pre_adaptation_return_mean": float(np.mean(pre)),
        "post_adaptation_return_mean": float(np.mean(post)),
        "adaptation_gain_mean": float(np.mean(post) - np.mean(pre)),
        "per_task": {str(r["task_id"]): r for r in results},
    }
