"""Shared test helpers: write real offline data from real environment rollouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ray_macaw.data import columns as C
from ray_macaw.data.datasets import TaskDatasets
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


GAMMA = 0.99


def check_task_data(root: Path, task_id: int, steps: int) -> None:
    """Every invariant of a collected task's data, against the real point-robot dynamics."""
    data = TaskDatasets(root, "point-robot").load(task_id)
    cols = data.columns
    assert data.n_rows == steps
    np.testing.assert_array_equal(cols[C.STEP], np.arange(steps))  # nothing missing or doubled
    episodes = cols[C.EPISODE_ID]
    assert episodes[0] == 0 and set(np.diff(episodes)) <= {0, 1}  # contiguous episode ids
    pairs = set(zip(episodes.tolist(), cols[C.T].tolist(), strict=True))
    assert len(pairs) == steps  # no duplicated (episode_id, t)
    goal = np.array(get_task_family("point-robot").task(task_id).params["goal"])
    assert np.all(np.abs(cols[C.ACTIONS]) <= 0.1 + 1e-6)  # env units, not SB3's [-1, 1]
    np.testing.assert_allclose(cols[C.NEXT_OBS], cols[C.OBS] + cols[C.ACTIONS], atol=1e-5)
    np.testing.assert_allclose(
        cols[C.REWARDS], -np.linalg.norm(cols[C.NEXT_OBS] - goal, axis=1), atol=1e-5
    )
    for episode in np.unique(episodes)[:5]:
        rows = np.flatnonzero(episodes == episode)
        rewards = cols[C.REWARDS][rows].astype(np.float64)
        expected = [sum(GAMMA**k * r for k, r in enumerate(rewards[i:])) for i in range(len(rows))]
        np.testing.assert_allclose(cols[C.MC_RETURN][rows], expected, rtol=1e-5)
        np.testing.assert_array_equal(cols[C.T][rows], np.arange(len(rows)))
    full = np.flatnonzero(cols[C.TRUNCATED])
    assert len(full) == len(np.unique(episodes))  # every episode ends truncated (20-step cap)
