"""Write a small offline data root of uniform-random point-robot episodes with the Python API.

Usage: python examples/write_random_root.py ROOT [--episodes N]
"""

from __future__ import annotations

import argparse

import numpy as np

from ray_macaw.data import DatasetWriter
from ray_macaw.tasks import get_task_family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per task")
    args = parser.parse_args()

    family = get_task_family("point-robot")
    writer = DatasetWriter(args.root, family, obs_dim=2, act_dim=2, collector={"algo": "random"})
    rng = np.random.default_rng(0)
    for task_id in range(family.num_tasks):
        env = family.make_env(task_id)
        task_writer = writer.task_writer(task_id)
        for episode in range(args.episodes):
            obs, _ = env.reset(seed=task_id * 100_000 + episode)
            steps: dict[str, list] = {"obs": [], "actions": [], "rewards": [], "next_obs": []}
            terminated = truncated = False
            while not (terminated or truncated):
                action = rng.uniform(-0.1, 0.1, size=2).astype(np.float32)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                for key, value in zip(steps, (obs, action, reward, next_obs), strict=True):
                    steps[key].append(value)
                obs = next_obs
            task_writer.add_episode(
                **{k: np.asarray(v) for k, v in steps.items()}, terminated=terminated
            )
        task_writer.flush()
        writer.mark_complete(task_id)
    print(f"wrote {family.num_tasks} tasks x {args.episodes} episodes to {args.root}")


if __name__ == "__main__":
    main()
