"""Online fine-tuning on held-out tasks (appendix C.2, Table 1; spec §7.3).

After the offline adaptation step, each held-out task runs rounds of one exploration trajectory of
the adapted policy (mean action plus N(0, sigma^2) noise, clipped) into a replay buffer, then the
objective's fine-tuning updates. The default is the authors' schedule (`macaw.py` `eval_macaw(ft=
'online')`): a 50k-transition FIFO that never holds the offline adaptation rows, no update in the
first 26 rounds (`k > 25`), then per round 100 value steps followed by 200 policy steps, each on a
fresh uniform batch, with the data's discount. `FineTuneConfig.preset("paper")` is the paper's text
instead: 100 (value, policy) step pairs per trajectory on the aggregate buffer (the adaptation batch
plus every online transition). Returns are measured at each budget of extra environment steps.
Tasks run in parallel Ray actors. Offline PEARL + FT runs the same rounds (`online_rounds`) in its
own actor (`evaluation/pearl.py` `PEARLFineTuneActor`), with `policy_steps` SAC updates per round.
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

from ray_macaw.data import columns as C
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.returns import episode_returns
from ray_macaw.evaluation.held_out import HeldOutTask, prepare, rollout
from ray_macaw.evaluation.offline import MACAWAdaptation, one_hot_width, with_zero_task_id
from ray_macaw.macaw.objectives import get_objective

# The paper's reading of appendix C.2 (the defaults are the authors' code, spec §7.3).
PAPER_SCHEDULE: dict[str, Any] = {
    "fifo_size": None,
    "keep_adaptation_rows": True,
    "burn_in_rounds": 0,
    "value_steps": 100,
    "policy_steps": 100,
    "interleave": True,
}
PRESETS: dict[str, dict[str, Any]] = {"authors": {}, "paper": PAPER_SCHEDULE}


@dataclass(frozen=True)
class FineTuneConfig:
    """Online fine-tuning settings; defaults are the authors' schedule (spec §7.3).

    Attributes:
        budgets: Extra environment steps at which returns are measured (Table 1: 20k, 200k).
        value_steps: Value-network Adam steps per round (authors: 100).
        policy_steps: Policy Adam steps per round, after the value steps (authors: 200).
            Offline PEARL + FT takes this many SAC updates per round.
        interleave: Take `value_steps` pairs of one value and one policy step on a shared
            batch instead (the paper's "100 gradient steps"; `policy_steps` is then ignored).
        burn_in_rounds: Rounds that only collect before updates start (authors: 26, rounds
            0-25, from `k > 25`). Updates also wait until the buffer holds `batch_size` rows.
        fifo_size: Transitions the replay buffer keeps, oldest dropped first (authors: 50,000);
            None keeps all.
        keep_adaptation_rows: Start the buffer with the offline adaptation batch (the paper's
            aggregate buffer). The authors' buffer never samples them (False).
        batch_size: Uniform rows per update, drawn afresh for every step (authors: 256).
        value_lr: Adam lr of the value network (spec §7.3: 1e-5). MACAW and MT+FT only:
            Offline PEARL + FT updates at its training lrs.
        policy_lr: Adam lr of the policy (spec §7.3: 1e-5); likewise.
        exploration_sigma: Action noise of the exploration trajectories, in units of the action
            half-range (0.2: spec §7.3 for actions in [-1, 1]). PEARL explores with its own
            stochastic policy instead.
        eval_episodes: Deterministic episodes per measurement (spec §7.3: 3).
        gamma: Discount of the online transitions' MC returns; None: the data's (manifest).
        num_cpus_per_task: CPUs of each held-out task's actor.
    """

    budgets: tuple[int, ...] = (20_000, 200_000)
    value_steps: int = 100
    policy_steps: int = 200
    interleave: bool = False
    burn_in_rounds: int = 26
    fifo_size: int | None = 50_000
    keep_adaptation_rows: bool = False
    batch_size: int = 256
    value_lr: float = 1e-5
    policy_lr: float = 1e-5
    exploration_sigma: float = 0.2
    eval_episodes: int = 3
    gamma: float | None = None
    num_cpus_per_task: float = 1.0

    def __post_init__(self) -> None:
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError("budgets must be positive numbers of environment steps")
        for name in ("batch_size", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        for name in ("value_steps", "policy_steps", "burn_in_rounds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")
        if self.fifo_size is not None and self.fifo_size < self.batch_size:
            raise ValueError(
                f"fifo_size {self.fifo_size} cannot serve batches of {self.batch_size}"
            )
        if self.gamma is not None and not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1], got {self.gamma}")

    @classmethod
    def preset(cls, name: str, **settings: Any) -> FineTuneConfig:
        """'authors' (the defaults, spec §7.3) or 'paper' (appendix C.2's text), with overrides."""
        if name not in PRESETS:
            from ray_macaw.errors import unknown_name

            raise unknown_name("fine-tuning preset", name, PRESETS)
        return cls(**{**PRESETS[name], **settings})


class ReplayFIFO:
    """A replay buffer of transitions (columns as numpy arrays) that keeps the newest
    `capacity` rows (all with None) and samples uniform rows without replacement."""

    def __init__(self, capacity: int | None, initial: Mapping[str, np.ndarray] | None = None):
        self.capacity = capacity
        self.columns: dict[str, np.ndarray] = {}
        if initial is not None:
            self.add(initial)

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def add(self, steps: Mapping[str, np.ndarray]) -> None:
        """Append `steps`, dropping the oldest rows beyond the capacity."""
        for name, values in steps.items():
            joined = (
                np.concatenate([self.columns[name], values]) if name in self.columns else values
            )
            self.columns[name] = joined if self.capacity is None else joined[-self.capacity :]

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
    buffer: ReplayFIFO,
    explore: Callable[[], Mapping[str, np.ndarray]],
    update_round: Callable[[], Any],
    measure: Callable[[], float],
) -> list[dict[str, Any]]:
    """Spec §7.3's loop: one exploration trajectory into the buffer, then (after the burn-in
    rounds, once a batch fits) one round of updates, until each budget of extra steps; the
    return at each budget."""
    online = rounds = updated = 0
    results = []
    for budget in sorted(cfg.budgets):
        while online < budget:
            steps = explore()
            buffer.add(steps)
            online += len(next(iter(steps.values())))
            if rounds >= cfg.burn_in_rounds and buffer.rows >= cfg.batch_size:
                update_round()
                updated += 1
            rounds += 1
        results.append(
            {
                "budget": budget,
                "online_steps": online,
                "rounds": rounds,
                "rounds_with_updates": updated,
                "buffer_rows": buffer.rows,
                "return": measure(),
            }
        )
    return results


def fine_tune_buffer(cfg: FineTuneConfig, batch: Mapping[str, torch.Tensor]) -> ReplayFIFO:
    """The replay buffer a task starts with: empty (the authors), or the adaptation batch."""
    initial = {k: v.numpy().copy() for k, v in batch.items()} if cfg.keep_adaptation_rows else None
    return ReplayFIFO(cfg.fifo_size, initial)


def data_gamma(cfg: FineTuneConfig, root: str, family: str) -> float:
    """The discount of online MC returns: the setting, else the data's (spec §4.1)."""
    return cfg.gamma if cfg.gamma is not None else TaskDatasets(root, family).manifest.gamma


@ray.remote
class FineTuneActor:
    """Fine-tunes one held-out task in its own process."""

    def run(
        self, task: HeldOutTask, weights: Mapping[str, torch.Tensor], settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Offline adaptation, then the online rounds; returns per-budget figures."""
        cfg = FineTuneConfig(**settings)
        held_out = prepare(task, weights, MACAWAdaptation())
        env, policy, adapted, seed = held_out.env, held_out.policy, held_out.adapted, task.seed
        inner_config, one_hot = task.loss_config, one_hot_width(task)

        def transform(obs: np.ndarray) -> np.ndarray:
            return with_zero_task_id(torch.as_tensor(obs), one_hot).numpy()

        offline = float(np.mean(rollout(env, policy, cfg.eval_episodes, seed)))
        buffer, rng = fine_tune_buffer(cfg, held_out.batch), np.random.default_rng(seed)
        initial_rows = buffer.rows
        objective = get_objective(inner_config.objective)
        optimizers = (
            torch.optim.Adam(adapted.value.parameters(), lr=cfg.value_lr),
            torch.optim.Adam(adapted.policy.parameters(), lr=cfg.policy_lr),
        )
        updates = np.zeros(2, dtype=int)  # value and policy steps taken

        def update_round() -> None:
            updates[:] += objective.finetune_round(
                adapted,
                optimizers,
                lambda: buffer.sample(cfg.batch_size, rng),
                inner_config,
                cfg.value_steps,
                cfg.policy_steps,
                cfg.interleave,
            )

        gamma = data_gamma(cfg, task.root, task.family)
        results = online_rounds(
            cfg,
            buffer,
            explore=lambda: explore(env, policy, cfg.exploration_sigma, gamma, rng, transform),
            update_round=update_round,
            measure=lambda: float(np.mean(rollout(env, policy, cfg.eval_episodes, seed))),
        )
        return {
            "task_id": task.task_id,
            "offline_return": offline,
            "budgets": results,
            "initial_rows": initial_rows,
            "value_updates": int(updates[0]),
            "policy_updates": int(updates[1]),
            "gamma": gamma,
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
    for task, weights in algo.held_out_arguments(options):
        actor = algo.fine_tune_actor.options(num_cpus=config.num_cpus_per_task).remote()
        running[actor.run.remote(task, weights, settings)] = actor
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
