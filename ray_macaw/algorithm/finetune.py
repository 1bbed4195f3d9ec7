"""Online fine-tuning on held-out tasks (appendix C.2, Table 1; spec §7.3).

After the offline adaptation step, each held-out task alternates one exploration trajectory of the
adapted policy (mean action plus N(0, sigma^2) noise, clipped) and `gradient_steps` Adam updates on
the aggregate buffer: the offline adaptation batch plus every online transition so far. Returns
are measured at each budget of extra environment steps. Tasks run in parallel Ray actors.
Offline PEARL + FT runs the same rounds (`online_rounds`) in its own actor
(`pearl_evaluation.PEARLFineTuneActor`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import ray
import torch

from ray_macaw.algorithm import evaluation as ev
from ray_macaw.data import columns as C
from ray_macaw.data.returns import episode_returns
from ray_macaw.macaw import InnerLoopConfig, ModelConfig
from ray_macaw.macaw.multitask import value_and_awr_step


@dataclass(frozen=True)
class FineTuneConfig:
    """Online fine-tuning settings.

    Attributes:
        budgets: Extra environment steps at which returns are measured (Table 1: 20k, 200k).
        gradient_steps: Adam value + policy updates after each trajectory (appendix C.2: 100).
        batch_size: Uniform rows of the aggregate buffer per update.
        value_lr: Adam lr of the value network (spec §7.3: 1e-5). MACAW and MT+FT only:
            Offline PEARL + FT updates at its training lrs.
        policy_lr: Adam lr of the policy (spec §7.3: 1e-5); likewise.
        exploration_sigma: Action noise of the exploration trajectories, in units of the action
            half-range (0.2: spec §7.3 for actions in [-1, 1]). PEARL explores with its own
            stochastic policy instead.
        eval_episodes: Deterministic episodes per measurement (spec §7.3: 3).
        gamma: Discount of the online transitions' MC returns (the data's gamma).
        num_cpus_per_task: CPUs of each held-out task's actor.
    """

    budgets: tuple[int, ...] = (20_000, 200_000)
    gradient_steps: int = 100
    batch_size: int = 256
    value_lr: float = 1e-5
    policy_lr: float = 1e-5
    exploration_sigma: float = 0.2
    eval_episodes: int = 3
    gamma: float = 0.99
    num_cpus_per_task: float = 1.0

    def __post_init__(self) -> None:
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError("budgets must be positive numbers of environment steps")
        for name in ("gradient_steps", "batch_size", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


class AggregateBuffer:
    """The offline adaptation batch plus all online transitions (columns as numpy arrays)."""

    def __init__(self, batch: Mapping[str, torch.Tensor]) -> None:
        self.columns = {k: v.numpy().copy() for k, v in batch.items()}

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))

    def add(self, steps: Mapping[str, np.ndarray]) -> None:
        for name in self.columns:
            self.columns[name] = np.concatenate([self.columns[name], steps[name]])

    def sample(self, size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        rows = rng.choice(self.rows, size=min(size, self.rows), replace=False)
        return {k: torch.as_tensor(v[rows]) for k, v in self.columns.items()}


def explore(
    env: gym.Env,
    policy: Callable[[torch.Tensor], torch.Tensor],
    sigma: float,
    gamma: float,
    rng: np.random.Generator,
    transform: Callable[[np.ndarray], np.ndarray],
) -> dict[str, np.ndarray]:
    """One noisy trajectory, as buffer columns with its MC returns (spec §7.3 step 4).

    The noise is `sigma` times the action half-range: exactly sigma for MuJoCo's [-1, 1] actions
    (the spec), and proportionally less for point-robot's [-0.1, 0.1], where sigma 0.2 would
    drown every action in clipped noise."""
    space = env.action_space
    assert isinstance(space, gym.spaces.Box)
    sigma = sigma * (space.high - space.low) / 2
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    steps: dict[str, list] = {"obs": [], "actions": [], "rewards": [], "next_obs": []}
    terminated = truncated = False
    while not (terminated or truncated):
        with torch.no_grad():
            mean = policy(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        action = np.clip(mean + sigma * rng.standard_normal(mean.shape), space.low, space.high)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(steps, (obs, action, reward, next_obs), strict=True):
            steps[key].append(value)
        obs = next_obs
    rewards = np.asarray(steps["rewards"], dtype=np.float32)
    ret = episode_returns(rewards, steps["next_obs"][-1], gamma, terminated)
    length = len(rewards)
    return {
        C.OBS: transform(np.asarray(steps["obs"], dtype=np.float32)),
        C.ACTIONS: np.asarray(steps["actions"], dtype=np.float32),
        C.MC_RETURN: ret.mc_return,
        C.TERMINAL_OBS: transform(np.tile(ret.terminal_obs, (length, 1))),
        C.TERMINAL_DISCOUNT: ret.terminal_discount,
    }


def online_rounds(
    cfg: FineTuneConfig,
    buffer: AggregateBuffer,
    explore: Callable[[], Mapping[str, np.ndarray]],
    update: Callable[[], Any],
    measure: Callable[[], float],
) -> list[dict[str, Any]]:
    """Appendix C.2's loop: one exploration trajectory into the aggregate buffer, then
    `cfg.gradient_steps` updates, until each budget of extra steps; the return at each budget."""
    online, results = 0, []
    for budget in sorted(cfg.budgets):
        while online < budget:
            steps = explore()
            buffer.add(steps)
            online += len(next(iter(steps.values())))
            for _ in range(cfg.gradient_steps):
                update()
        results.append(
            {
                "budget": budget,
                "online_steps": online,
                "buffer_rows": buffer.rows,
                "return": measure(),
            }
        )
    return results


@ray.remote
class FineTuneActor:
    """Fine-tunes one held-out task in its own process."""

    def run(
        self,
        model_config: ModelConfig,
        inner_config: InnerLoopConfig,
        weights: Mapping[str, torch.Tensor],
        root: str,
        family: str,
        family_seed: int,
        task_id: int,
        options: Mapping[str, Any],
        settings: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Offline adaptation, then the online rounds; returns per-budget figures."""
        cfg = FineTuneConfig(**settings)
        model, env = ev.load_task(model_config, weights, family, family_seed, task_id)
        seed, one_hot = options["seed"], int(options.get("one_hot_tasks", 0))
        batch = ev.adaptation_batch(root, family, task_id, options)
        adapted = ev.offline_adapt(model, batch, inner_config, options)

        def policy(obs: torch.Tensor) -> torch.Tensor:
            return adapted.policy.mean_action(ev.with_zero_task_id(obs, one_hot))

        def transform(obs: np.ndarray) -> np.ndarray:
            return ev.with_zero_task_id(torch.as_tensor(obs), one_hot).numpy()

        offline = float(np.mean(ev.rollout(env, policy, cfg.eval_episodes, seed)))
        buffer, rng = AggregateBuffer(batch), np.random.default_rng(seed)
        optimizers = (
            torch.optim.Adam(adapted.value.parameters(), lr=cfg.value_lr),
            torch.optim.Adam(adapted.policy.parameters(), lr=cfg.policy_lr),
        )
        results = online_rounds(
            cfg,
            buffer,
            explore=lambda: explore(env, policy, cfg.exploration_sigma, cfg.gamma, rng, transform),
            update=lambda: value_and_awr_step(
                adapted, optimizers, buffer.sample(cfg.batch_size, rng), inner_config
            ),
            measure=lambda: float(np.mean(ev.rollout(env, policy, cfg.eval_episodes, seed))),
        )
        return {
            "task_id": task_id,
            "offline_return": offline,
            "budgets": results,
            "initial_rows": len(batch[C.MC_RETURN]),
            "pid": os.getpid(),
        }


def summarise(results: list[dict[str, Any]], config: FineTuneConfig) -> dict[str, Any]:
    """Table 1 layout: per budget, mean return and improvement over offline, with std errors."""
    offline = np.array([r["offline_return"] for r in results])
    rows = [
        {
            "budget": 0,
            "mean_return": float(offline.mean()),
            "stderr": _stderr(offline),
            "improvement": 0.0,
            "improvement_stderr": 0.0,
        }
    ]
    for i, budget in enumerate(sorted(config.budgets)):
        returns = np.array([r["budgets"][i]["return"] for r in results])
        rows.append(
            {
                "budget": budget,
                "mean_return": float(returns.mean()),
                "stderr": _stderr(returns),
                "improvement": float((returns - offline).mean()),
                "improvement_stderr": _stderr(returns - offline),
            }
        )
    return {
        "settings": asdict(config),
        "table": rows,
        "per_task": {str(r["task_id"]): r for r in results},
    }


def _stderr(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def finetune(algo: Any, config: FineTuneConfig) -> dict[str, Any]:
    """Fine-tune every held-out task of a trained `MACAW` or `PEARL` in parallel actors (the
    algorithm's `fine_tune_actor`); Table 1 summary.

    Each finished actor is stopped at once, so its CPUs go to the tasks still waiting.
    """
    options = algo.adaptation_options(episodes=config.eval_episodes)
    settings = asdict(config)
    running: dict[Any, Any] = {}
    for args in algo.held_out_arguments(options):
        actor = algo.fine_tune_actor.options(num_cpus=config.num_cpus_per_task).remote()
        running[actor.run.remote(*args, settings)] = actor
    results = []
    try:
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            results.append(ray.get(done[0]))
            ray.kill(running.pop(done[0]))
    finally:
        for actor in running.values():
            ray.kill(actor)
    return summarise(sorted(results, key=lambda r: r["task_id"]), config)
