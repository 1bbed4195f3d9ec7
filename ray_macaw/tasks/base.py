"""Task families: a fixed, seeded list of tasks, named train/test splits and `make_env(task_id)`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TimeLimit

from ray_macaw.errors import unknown_name


@dataclass(frozen=True)
class Task:
    """One task of a family.

    Attributes:
        id: Index of the task in its family (spec §8: "task index i").
        params: JSON-serialisable parameters that define the task (goal, velocity, dynamics, ...).
    """

    id: int
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Split:
    """Which task ids are used for meta-training and which are held out for testing."""

    name: str
    train: tuple[int, ...]
    test: tuple[int, ...]


class OneHotTaskObservation(gym.ObservationWrapper):
    """Appends a one-hot task id to the observation (spec §8: only when asked for)."""

    def __init__(self, env: gym.Env, task_id: int, num_tasks: int) -> None:
        super().__init__(env)
        base = env.observation_space
        assert isinstance(base, gym.spaces.Box) and len(base.shape) == 1
        self._one_hot = np.zeros(num_tasks, dtype=base.dtype)
        self._one_hot[task_id] = 1
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([base.low, np.zeros(num_tasks, dtype=base.dtype)]),
            high=np.concatenate([base.high, np.ones(num_tasks, dtype=base.dtype)]),
            dtype=base.dtype,  # type: ignore[arg-type]
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """Return the observation with the task's one-hot appended."""
        return np.concatenate([observation, self._one_hot])


class TaskFamily(ABC):
    """A family of related tasks with the paper's splits.

    Subclasses define `name`, `max_episode_steps`, `_build_tasks`, `_build_splits` and
    `_make_task_env`. A family is deterministic given its seed: the same seed gives the same task
    parameters, on any machine.

    Args:
        seed: Seed of the task parameters (directions, dynamics, environment RNGs).
    """

    name: ClassVar[str]
    max_episode_steps: ClassVar[int]
    default_split: ClassVar[str] = "default"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._tasks = tuple(self._build_tasks())
        self._splits = {s.name: s for s in self._build_splits()}
        for split in self._splits.values():
            self._check_split(split)

    @abstractmethod
    def _build_tasks(self) -> Sequence[Task]:
        """Every task of the family, with `Task.id` equal to its position."""

    @abstractmethod
    def _build_splits(self) -> Sequence[Split]:
        """The named splits; one of them is named `default_split`."""

    @abstractmethod
    def _make_task_env(self, task: Task) -> gym.Env:
        """The environment of one task, without time limit or task observation."""

    def condition(self, task_id: int) -> np.ndarray:
        """What a task-conditioned behaviour agent is told about a task (never stored in data).

        A one-hot task id by default; families with numeric task parameters give those, so one
        agent can share what it learns between neighbouring tasks.
        """
        one_hot = np.zeros(self.num_tasks, dtype=np.float32)
        one_hot[self.task(task_id).id] = 1.0
        return one_hot

    @property
    def tasks(self) -> tuple[Task, ...]:
        """All tasks, indexed by id."""
        return self._tasks

    @property
    def num_tasks(self) -> int:
        """Number of tasks in the family."""
        return len(self._tasks)

    @property
    def split_names(self) -> tuple[str, ...]:
        """Names of the available splits."""
        return tuple(self._splits)

    def split(self, name: str | None = None) -> Split:
        """The split called `name` (the family's default when None)."""
        key = self.default_split if name is None else name
        if key not in self._splits:
            raise unknown_name("split", key, self._splits, f" for family '{self.name}'")
        return self._splits[key]

    def task(self, task_id: int) -> Task:
        """The task with this id; a clear error for ids outside the family."""
        valid = isinstance(task_id, int | np.integer) and not isinstance(task_id, bool)
        if not valid or not 0 <= int(task_id) < self.num_tasks:
            raise unknown_name(
                "task id", task_id, range(self.num_tasks), f" for family '{self.name}'"
            )
        return self._tasks[int(task_id)]

    def make_env(
        self,
        task_id: int,
        *,
        task_obs: bool = False,
        max_episode_steps: int | None = None,
    ) -> gym.Env:
        """Build the environment of one task.

        Args:
            task_id: Which task.
            task_obs: Append a one-hot task id to observations (multi-task baseline, spec §9).
                Off by default: observations carry no task information (spec §8).
            max_episode_steps: Episode cap; the family's default (200, Meta-World 150) when None.

        Returns:
            A gymnasium environment wrapped in `TimeLimit`.
        """
        task = self.task(task_id)
        env = self._make_task_env(task)
        if task_obs:
            env = OneHotTaskObservation(env, task.id, self.num_tasks)
        return TimeLimit(env, max_episode_steps or self.max_episode_steps)

    def environment(self) -> dict[str, Any]:
        """What shapes the family's dynamics beyond its task parameters (model file, library
        and reward versions, options), recorded in every manifest; must match on resume."""
        return {}

    def describe(self, split: str | None = None) -> dict[str, Any]:
        """The JSON document printed by `ray-macaw tasks`."""
        chosen = self.split(split)
        return {
            "family": self.name,
            "split": chosen.name,
            "seed": self.seed,
            "train": list(chosen.train),
            "test": list(chosen.test),
            "tasks": [{"id": t.id, "params": dict(t.params)} for t in self._tasks],
        }

    def _check_split(self, split: Split) -> None:
        ids = set(split.train) | set(split.test)
        if not ids <= set(range(self.num_tasks)):
            raise ValueError(f"split '{split.name}' of '{self.name}' names unknown task ids")


def complement(num_tasks: int, ids: Sequence[int]) -> tuple[int, ...]:
    """The task ids of a family that are not in `ids`, ascending."""
    chosen = set(ids)
    return tuple(i for i in range(num_tasks) if i not in chosen)
