"""Held-out tasks (spec §7.1), for MACAW and Offline PEARL alike: the job a Ray task or actor
receives (`HeldOutTask`), the prelude every evaluation and fine-tuning starts with (`prepare`:
load the meta-trained model and the task's environment, draw the adaptation batch, adapt),
deterministic rollouts, and the pre/post-adaptation evaluation and its summary.

The algorithm-specific part is an `Adaptation` (`MACAWAdaptation` in offline.py,
`PEARLAdaptation` in pearl.py): the model class, the batch columns, the policy before adaptation
and the adapted policy. Tasks run in parallel Ray tasks; each loads its own task's data, so the
driver holds none.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import ray
import torch

from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.tasks import get_task_family

Policy = Callable[[torch.Tensor], torch.Tensor]  # observation -> mean action


@dataclass(frozen=True)
class HeldOutTask:
    """One held-out task's job, as a Ray task or actor receives it (the weights travel beside
    it, as an object-store reference that Ray resolves).

    Attributes:
        model_config: The meta-trained model's config.
        loss_config: The algorithm's loss settings (MACAW's inner loop, PEARL's SAC).
        root: The root of the task's test buffer.
        family: The task family.
        family_seed: The seed of the family's task parameters.
        task_id: The held-out task.
        options: How to adapt and evaluate (`adaptation_options()`), with the task's seed.
    """

    model_config: Any
    loss_config: Any
    root: str
    family: str
    family_seed: int
    task_id: int
    options: Mapping[str, Any]

    @property
    def seed(self) -> int:
        """The seed of this evaluation's adaptation batch and episodes."""
        return int(self.options["seed"])

    def environment(self) -> gym.Env:
        return get_task_family(self.family, seed=self.family_seed).make_env(self.task_id)

    def adaptation_batch(self, columns: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The offline batch to adapt on (spec §7.1): `options["batch_size"]` uniform rows of
        the task's test buffer (cut like the inner buffers), drawn with the task's seed."""
        data = TaskDatasets(self.root, self.family).load(self.task_id)
        buffer = data.buffer(**self.options.get("test_buffer", {}))
        rows = data.sample_uniform(
            self.options["batch_size"], np.random.default_rng(self.seed), buffer
        )
        return {c: torch.as_tensor(rows[c], dtype=torch.float32) for c in columns}


class Adaptation(ABC):
    """How one algorithm adapts a meta-trained model to a held-out task."""

    model_class: ClassVar[type[torch.nn.Module]]
    columns: ClassVar[tuple[str, ...]]  # of the adaptation batch

    def batch(self, task: HeldOutTask) -> dict[str, torch.Tensor]:
        return task.adaptation_batch(self.columns)

    @abstractmethod
    def prior_policy(self, model: Any, task: HeldOutTask) -> Policy:
        """The deterministic policy before adaptation."""

    @abstractmethod
    def adapt(self, model: Any, batch: Mapping[str, torch.Tensor], task: HeldOutTask) -> Any:
        """What adaptation produces: MACAW's adapted model copy, PEARL's posterior mean z."""

    @abstractmethod
    def adapted_policy(self, model: Any, adapted: Any, task: HeldOutTask) -> Policy:
        """The deterministic policy after adaptation."""


@dataclass
class Prepared:
    """A held-out task after the prelude."""

    model: Any  # the meta-trained model
    env: gym.Env
    batch: dict[str, torch.Tensor]  # the adaptation batch
    adapted: Any  # `Adaptation.adapt`'s result
    policy: Policy  # the adapted deterministic policy


def load(task: HeldOutTask, weights: Mapping[str, torch.Tensor], adaptation: Adaptation) -> Any:
    model = adaptation.model_class(task.model_config)
    model.load_state_dict(weights)
    return model


def prepare(
    task: HeldOutTask, weights: Mapping[str, torch.Tensor], adaptation: Adaptation
) -> Prepared:
    """Load the model and the environment, draw the adaptation batch and adapt."""
    model = load(task, weights, adaptation)
    batch = adaptation.batch(task)
    adapted = adaptation.adapt(model, batch, task)
    return Prepared(
        model, task.environment(), batch, adapted, adaptation.adapted_policy(model, adapted, task)
    )


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


def evaluate_task(
    task: HeldOutTask, weights: Mapping[str, torch.Tensor], adaptation: Adaptation
) -> dict[str, Any]:
    """Pre- and post-adaptation returns of one held-out task (spec §7.1), from the same start
    states."""
    model = load(task, weights, adaptation)
    env = task.environment()
    episodes = task.options["episodes"]
    pre = rollout(env, adaptation.prior_policy(model, task), episodes, task.seed)
    adapted = adaptation.adapt(model, adaptation.batch(task), task)
    post = rollout(env, adaptation.adapted_policy(model, adapted, task), episodes, task.seed)
    return {
        "task_id": task.task_id,
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
