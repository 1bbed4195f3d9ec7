"""Shared test helpers: write real offline data from real environment rollouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ray_macaw.data.shards import DatasetWriter
from ray_macaw.tasks import get_task_family


def rollout(env, rng: np.random.Generator, seed: int) -> dict[str, np.ndarray | bool]:
    """One episode of uniform random actions: obs, actions, rewards, next_obs, terminated."""
    obs, _ = env.reset(seed=seed)
    steps: dict[str, list] = {"obs": [], "actions": [], "rewards": [], "next_obs": []}
    while True:
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(steps, (obs, action, reward, next_obs), strict=True):
            steps[key].append(value)
        obs = next_obs
        if terminated or truncated:
            return {**{k: np.asarray(v) for k, v in steps.items()}, "terminated": terminated}


def write_root(
    root: Path,
    family_name: str = "point-robot",
    task_ids: tuple[int, ...] = (0, 1, 3),
    episodes: int = 6,
    rows_per_part: int = 50,
    gamma: float = 0.99,
) -> DatasetWriter:
    """Write `episodes` random-policy episodes for each task; parts of ~`rows_per_part` rows."""
    family = get_task_family(family_name)
    env = family.make_env(task_ids[0])
    writer = DatasetWriter(
        root,
        family,
        obs_dim=env.observation_space.shape[0],
        act_dim=env.action_space.shape[0],
        gamma=gamma,
        collector={"algo": "random"},
    )
    for task_id in task_ids:
        env = family.make_env(task_id)
        rng = np.random.default_rng(task_id)
        task_writer = writer.task_writer(task_id, rows_per_part=rows_per_part)
        for episode in range(episodes):
            ep = rollout(env, rng, seed=1000 * task_id + episode)
            task_writer.add_episode(
                ep["obs"],
                ep["actions"],
                ep["rewards"],
                ep["next_obs"],
                terminated=bool(ep["terminated"]),
            )
        task_writer.flush()
        writer.mark_complete(task_id)
    return writer
