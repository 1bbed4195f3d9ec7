"""Meta-World ML45: 45 training and 5 test manipulation classes (appendix C.3, D.1).

One task per class. As in the paper ("continuous space randomization for each task setup"), every
episode draws a new object/goal configuration; `seeded_rand_vec` makes those draws come from the
environment's RNG, which is seeded from (family seed, task id), so task instances are reproducible.
Episodes are 150 steps (appendix D.1), not Meta-World's default 500.

Goal observability and the stick tasks' goals are family options, chosen by the family's name:

- `ml45`: the goal hidden in all 50 classes (Meta-World's ML benchmarks are partially
  observable); stick-push / stick-pull goals random per episode.
- `ml45-goal`: the goal observed in all 50 classes; stick goals random.
- `ml45-fixed-stick`: the goal hidden; stick goals fixed (the middle of their goal space).
- `ml45-authors`: as the authors built them: the goal observed, except in stick-push and
  stick-pull, whose goals are fixed (and hidden).

`ml45` keeps ray-macaw's earlier data valid; `ml45-authors` matches the authors' environments.
Every manifest records the option, Meta-World's version and the reward-function version ('v2',
Meta-World's default: 'v1' rewards change published results a lot).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import metadata
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from ray_macaw.tasks.base import Split, Task, TaskFamily

# Meta-World raises once its own step counter reaches max_path_length; the family's TimeLimit
# is the only cap, so this is set out of reach.
_NO_INTERNAL_LIMIT = 2**62
REWARD_FUNCTION_VERSION = "v2"  # Meta-World's default, passed explicitly and recorded
STICK_CLASSES = ("stick-push-v3", "stick-pull-v3")


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


def make_ml45_env(
    env_name: str,
    split: str,
    seed: int,
    *,
    goal_observable: bool = False,
    fixed_goal: bool = False,
) -> gym.Env:
    """Build one ML45 class with per-episode seeded task instances.

    Args:
        env_name: Meta-World class name.
        split: 'train' or 'test' (which ML45 dictionary holds the class).
        seed: Seed of the task instances.
        goal_observable: Keep the goal position in the last 3 observation entries (else zeros).
        fixed_goal: The goal part of every task instance is the middle of the goal space.
    """
    env = _ml45_classes()[split][env_name](reward_function_version=REWARD_FUNCTION_VERSION)
    if env._partially_observable != (not goal_observable):
        env._partially_observable = not goal_observable
        del env.sawyer_observation_space  # cached property: recompute with the new setting
    env._set_task_called = True
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env.max_path_length = _NO_INTERNAL_LIMIT
    if fixed_goal:
        _fix_goal(env)
    env.seed(seed)
    return SeededMetaWorldEnv(env)


def _fix_goal(env: Any) -> None:
    """Replace the goal part (the last 3 entries) of each drawn task vector by the middle of
    the class's goal space; the object positions stay random."""
    draw = env._get_state_rand_vec
    middle = (env.goal_space.low + env.goal_space.high) / 2

    def fixed() -> np.ndarray:
        vec = np.array(draw(), dtype=np.float64)
        vec[-3:] = middle
        env._last_rand_vec = vec
        return vec

    env._get_state_rand_vec = fixed


class ML45Family(TaskFamily):
    """Task ids 0-44 are ML45's training classes (in Meta-World's order), 45-49 its test classes.

    The goal is hidden and the stick tasks' goals random; see the module docstring for the
    variants.
    """

    name = "ml45"
    max_episode_steps = 150
    GOAL_OBSERVABLE: ClassVar[bool] = False
    FIXED_STICK_GOALS: ClassVar[bool] = False
    # The authors' stick tasks keep the goal out of the observation (it is fixed there).
    HIDE_STICK_GOALS: ClassVar[bool] = False

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
        stick = p["env_name"] in STICK_CLASSES
        return make_ml45_env(
            p["env_name"],
            p["ml45_split"],
            p["instance_seed"],
            goal_observable=self.GOAL_OBSERVABLE and not (stick and self.HIDE_STICK_GOALS),
            fixed_goal=stick and self.FIXED_STICK_GOALS,
        )

    def environment(self) -> dict[str, Any]:
        """Meta-World's version, the reward-function version and the family's options."""
        return {
            "metaworld_version": metadata.version("metaworld"),
            "reward_function_version": REWARD_FUNCTION_VERSION,
            "goal_observable": self.GOAL_OBSERVABLE,
            "fixed_stick_goals": self.FIXED_STICK_GOALS,
            "stick_goals_observable": self.GOAL_OBSERVABLE and not self.HIDE_STICK_GOALS,
        }


class ML45GoalFamily(ML45Family):
    """ML45 with the goal in every class's observation."""

    name = "ml45-goal"
    GOAL_OBSERVABLE = True


class ML45FixedStickFamily(ML45Family):
    """ML45 with hidden goals and fixed stick-push / stick-pull goals."""

    name = "ml45-fixed-stick"
    FIXED_STICK_GOALS = True


class ML45AuthorsFamily(ML45Family):
    """ML45 as the authors built it: goals observed, except stick-push and stick-pull, whose
    goals were fixed."""

    name = "ml45-authors"
    GOAL_OBSERVABLE = True
    FIXED_STICK_GOALS = True
    HIDE_STICK_GOALS = True
