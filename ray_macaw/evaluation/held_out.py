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


def evaluation_seed(run_seed: int, task_id: int) -> int:
    """The seed of a held-out task's adaptation batches and episode start states in a run
    with seed `run_seed`: the same at every evaluation, for every algorithm (paired)."""
    return int(np.random.SeedSequence([run_seed, task_id]).generate_state(1)[0] % 2**31)


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

    @property
    def batches(self) -> int:
        """Adaptation batches to evaluate (`eval_adaptation_batches`)."""
        return int(self.options.get("batches", 1))

    def adaptation_batch(self, columns: tuple[str, ...], index: int = 0) -> dict[str, torch.Tensor]:
        """Offline batch `index` to adapt on (spec §7.1): `options["batch_size"]` uniform rows
        of the task's test buffer (cut like the inner buffers), drawn with the task's seed (and
        the index, for the batches after the first)."""
        data = TaskDatasets(self.root, self.family).load(self.task_id)
        buffer = data.buffer(**self.options.get("test_buffer", {}))
        rng = np.random.default_rng(self.seed if index == 0 else [self.seed, index])
        rows = data.sample_uniform(self.options["batch_size"], rng, buffer)
        return {c: torch.as_tensor(rows[c], dtype=torch.float32) for c in columns}


class Adaptation(ABC):
    """How one algorithm adapts a meta-trained model to a held-out task."""

    model_class: ClassVar[type[torch.nn.Module]]
    columns: ClassVar[tuple[str, ...]]  # of the adaptation batch

    def batch(self, task: HeldOutTask, index: int = 0) -> dict[str, torch.Tensor]:
        return task.adaptation_batch(self.columns, index)

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
    """Pre- and post-adaptation returns of one held-out task (spec §7.1): the same episode
    start states before adaptation and after adapting on each of `task.batches` batches."""
    model = load(task, weights, adaptation)
    env = task.environment()
    episodes = task.options["episodes"]
    pre = rollout(env, adaptation.prior_policy(model, task), episodes, task.seed)
    post = []  # [batch][episode]
    for index in range(task.batches):
        adapted = adaptation.adapt(model, adaptation.batch(task, index), task)
        policy = adaptation.adapted_policy(model, adapted, task)
        post.append(rollout(env, policy, episodes, task.seed))
    # Paired by start state: per episode, the batches' mean return after minus the one before.
    gains = np.mean(post, axis=0) - np.asarray(pre)
    return {
        "task_id": task.task_id,
        "pre_adaptation_return": float(np.mean(pre)),
        "post_adaptation_return": float(np.mean(post)),
        "pre_adaptation_returns": pre,
        "post_adaptation_returns": post,
        "pre_adaptation_return_stderr": stderr(np.asarray(pre)),
        "post_adaptation_return_stderr": stderr(np.mean(post, axis=0)),
        "adaptation_gain_stderr": stderr(gains),
    }


def mean_stderr(errors: list[float]) -> float:
    """Standard error of a mean over tasks from each task's own (the tasks held fixed)."""
    return float(np.sqrt((np.asarray(errors) ** 2).sum()) / len(errors))


def stderr(values: np.ndarray) -> float:
    """Standard error of the mean of `values` (NaN for fewer than two)."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


evaluate_task_remote = ray.remote(num_cpus=1)(evaluate_task)


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over tasks, their standard errors over episodes (and adaptation batches) with the
    tasks held fixed, and the per-task figures (RLlib puts this under `evaluation`)."""
    summary: dict[str, Any] = {}
    for name in ("pre_adaptation_return", "post_adaptation_return", "adaptation_gain"):
        summary[f"{name}_stderr"] = mean_stderr([r[f"{name}_stderr"] for r in results])
    pre = [r["pre_adaptation_return"] for r in results]
    post = [r["post_adaptation_return"] for r in results]
    return {
        "pre_adaptation_return_mean": float(np.mean(pre)),
        "post_adaptation_return_mean": float(np.mean(post)),
        "adaptation_gain_mean": float(np.mean(post) - np.mean(pre)),
        **summary,
        "per_task": {str(r["task_id"]): r for r in results},
    }
