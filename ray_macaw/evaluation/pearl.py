"""Offline PEARL on held-out tasks: task inference from the offline adaptation batch (spec §7.1,
the same rows MACAW adapts on), and Offline PEARL + FT (appendix C.2).

- Pre-adaptation: the policy conditioned on the prior mean, z = 0.
- Post-adaptation: z = the posterior mean of q(z | adaptation batch); deterministic actions
  tanh(mu(s, z)). (PEARL samples z for exploration; the mean makes evaluation deterministic.)
- PEARL + FT: z stays the inferred posterior mean; each round collects one trajectory with the
  stochastic policy pi(a | s, z) (SAC's own exploration) and, on the rounds `FineTuneConfig`
  schedules (burn-in, FIFO buffer), takes `policy_steps` SAC updates of the policy, Q and V
  networks on fresh batches, at PEARL's training learning rates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import ray
import torch

from ray_macaw.data import columns as C
from ray_macaw.evaluation.finetune import FineTuneConfig, fine_tune_buffer, online_rounds
from ray_macaw.evaluation.held_out import Adaptation, HeldOutTask, Policy, prepare, rollout
from ray_macaw.pearl import PEARLModel, context, sac_step
from ray_macaw.pearl.losses import TRANSITION_COLUMNS


def infer_task(model: PEARLModel, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The posterior mean of z given the rows of `batch` (one task): (latent_dim,)."""
    with torch.no_grad():
        mean, _ = model.encoder(context(model, batch)[None])
    return mean[0]


class PEARLAdaptation(Adaptation):
    """Infer z from the batch; act with tanh(mu(s, z)) (before adaptation: the prior mean)."""

    model_class: ClassVar[type[torch.nn.Module]] = PEARLModel
    columns: ClassVar[tuple[str, ...]] = TRANSITION_COLUMNS

    def prior_policy(self, model: PEARLModel, task: HeldOutTask) -> Policy:
        prior = torch.zeros(task.model_config.latent_dim)
        return lambda obs: model.mean_env_action(obs, prior)

    def adapt(
        self, model: PEARLModel, batch: Mapping[str, torch.Tensor], task: HeldOutTask
    ) -> torch.Tensor:
        return infer_task(model, batch)

    def adapted_policy(self, model: PEARLModel, z: torch.Tensor, task: HeldOutTask) -> Policy:
        return lambda obs: model.mean_env_action(obs, z)


def explore(
    env: gym.Env, model: PEARLModel, z: torch.Tensor, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One trajectory of the stochastic policy pi(a | s, z), as transition columns."""
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    steps: dict[str, list] = {c: [] for c in TRANSITION_COLUMNS}
    terminated = truncated = False
    while not (terminated or truncated):
        with torch.no_grad():
            unit = model.act(torch.as_tensor(obs, dtype=torch.float32), z).action
            action = model.to_env_actions(unit).numpy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for column, value in zip(
            TRANSITION_COLUMNS, (obs, action, reward, next_obs, terminated), strict=True
        ):
            steps[column].append(value)
        obs = next_obs
    return {c: np.asarray(v, dtype=np.float32) for c, v in steps.items()}


@ray.remote
class PEARLFineTuneActor:
    """Offline PEARL + FT on one held-out task, in its own process (appendix C.2)."""

    def run(
        self, task: HeldOutTask, weights: Mapping[str, torch.Tensor], settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Task inference, then the online rounds; returns per-budget figures."""
        cfg = FineTuneConfig(**settings)
        torch.manual_seed(task.seed)  # the policy's exploration noise
        held_out = prepare(task, weights, PEARLAdaptation())
        model, env, z, sac_config = held_out.model, held_out.env, held_out.adapted, task.loss_config

        def measure() -> float:
            return float(np.mean(rollout(env, held_out.policy, cfg.eval_episodes, task.seed)))

        offline = measure()
        buffer, rng = fine_tune_buffer(cfg, held_out.batch), np.random.default_rng(task.seed)
        initial_rows = buffer.rows
        lrs = task.options["learning_rates"]
        optimizers = {
            name: torch.optim.Adam(getattr(model, name).parameters(), lr=lrs[name])
            for name in ("policy", "qf1", "qf2", "vf")  # z is fixed: no encoder update
        }

        def update_round() -> None:
            for _ in range(cfg.policy_steps):
                rows = buffer.sample(cfg.batch_size, rng)
                sac_step(model, optimizers, rows, z.expand(len(rows[C.OBS]), -1), sac_config)

        results = online_rounds(
            cfg,
            buffer,
            explore=lambda: explore(env, model, z, rng),
            update_round=update_round,
            measure=measure,
        )
        return {
            "task_id": task.task_id,
            "offline_return": offline,
            "budgets": results,
            "initial_rows": initial_rows,
            "pid": os.getpid(),
        }
