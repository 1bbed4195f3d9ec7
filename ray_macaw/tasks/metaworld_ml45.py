"""Meta-World ML45: 45 training and 5 test manipulation classes (appendix C.3, D.1).

One task per class. As in the paper ("continuous space randomization for each task setup"), every
episode draws a new object/goal configuration; `seeded_rand_vec` makes those draws come from the
environment's RNG, which is seeded from (family seed, task id), so task instances are reproducible.
The goal is hidden from the observation (ML benchmarks are partially observable). Episodes are 150
steps (appendix D.1), not Meta-World's default 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from ray_macaw.tasks.base import Split, Task, TaskFamily

# Meta-World raises once its own step counter reaches max_path_length; the family's TimeLimit
# is the only cap, so this is set out of reach.
_NO_INTERNAL_LIMIT = 2**62


@cache
def _ml45_classes() -> dict[str, dict[str, type]]:
    """ML45's train and test classes by name (imported lazily: metaworld takes ~1 s to import)."""
    from metaworld.env_dict import ML45_V3

    return {split: dict(ML45_V3[split]) for split in ("train", "test")}


class SeededMetaWorldEnv(gym.Wrapper):
    """Make `reset(seed=s)` reseed a Meta-World env, whose own `reset` ignores the seed."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reseed the underlying env (task instance RNG included) when a seed is given."""
        if seed is not None:
            self.env.unwrapped.seed(seed)  # type: ignore[attr-defined]
        return self.env.reset(options=options)


def make_ml45_env(env_name: str, split: str, seed: int) -> gym.Env:
    """Build one ML45 class with hidden goal and per-episode seeded task instances."""
    env = _ml45_classes()[split][env_name]()
    if not env._partially_observable:
        env._partially_observable = True
        del env.sawyer_observation_space  # cached property: recompute with the goal hidden
    env._set_task_called = True
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env.max_path_length = _NO_INTERNAL_LIMIT
    env.seed(seed)
    return SeededMetaWorldEnv(env)


class ML45Family(TaskFamily):
    """Task ids 0-44 are ML45's training classes (in Meta-World's order), 45-49 its test classes."""

    name = "ml45"
    max_episode_steps = 150

    def _build_tasks(self) -> Sequence[Task]:
        classes = _ml45_classes()
        names = [(n, "train") for n in classes["train"]] + [(n, "test") for n in classes["test"]]
        seeds = np.random.default_rng(self.seed).integers(0, 2**31 - 1, size=len(names))
        return [
            Task(i, {"env_name": name, "ml45_split": split, "instance_seed": int(seed)})
            for i, ((name, split), seed) in enumerate(zip(names, seeds, strict=True))
        ]

    def _build_splits(self) -> Sequence[Split]:
        train = tuple(t.id for t in self.tasks if t.params["ml45_split"] == "train")
        test = tuple(t.id for t in self.tasks if t.params["ml45_split"] == "test")
        return [Split("default", train, test)]

    def _make_task_env(self, task: Task) -> gym.Env:
        p = task.params
        return make_ml45_env(p["env_name"], p["ml45_split"], p["instance_seed"])
