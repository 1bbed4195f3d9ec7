"""Point-Robot: 2-D navigation to a goal on the unit upper half-circle (PEARL's, spec §8.5).

The fast family for tests and the demo: 20-step episodes, 40 goals, 5 held out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from ray_macaw.tasks.base import Split, Task, TaskFamily, complement

NUM_TASKS = 40
TEST_TASKS = (3, 11, 19, 27, 35)
MAX_ACTION = 0.1


class PointRobotEnv(gym.Env[np.ndarray, np.ndarray]):
    """A point in R^2 moved by actions in [-0.1, 0.1]^2; reward -||s - g|| after the move.

    Episodes start uniformly in [-1, 1]^2 (spec §8.5) and never terminate; the family caps them.

    Args:
        goal: The goal position (2,).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(self, goal: Sequence[float]) -> None:
        self.goal = np.asarray(goal, dtype=np.float64)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-MAX_ACTION, MAX_ACTION, shape=(2,), dtype=np.float32)
        self._state = np.zeros(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start at a uniform point of [-1, 1]^2."""
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-1.0, 1.0, size=2)
        return self._state.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move by the (clipped) action; reward is minus the distance to the goal afterwards."""
        move = np.clip(np.asarray(action, dtype=np.float64), -MAX_ACTION, MAX_ACTION)
        self._state = self._state + move
        distance = float(np.linalg.norm(self._state - self.goal))
        return self._state.astype(np.float32), -distance, False, False, {"distance": distance}


class PointRobotFamily(TaskFamily):
    """40 goals evenly spaced on the unit upper half-circle; test = {3, 11, 19, 27, 35}."""

    name = "point-robot"
    max_episode_steps = 20

    def _build_tasks(self) -> Sequence[Task]:
        angles = np.linspace(0.0, np.pi, NUM_TASKS)
        return [
            Task(i, {"goal": [float(np.cos(a)), float(np.sin(a))], "angle": float(a)})
            for i, a in enumerate(angles)
        ]

    def _build_splits(self) -> Sequence[Split]:
        return [Split("default", complement(NUM_TASKS, TEST_TASKS), TEST_TASKS)]

    def _make_task_env(self, task: Task) -> gym.Env:
        return PointRobotEnv(task.params["goal"])

    def condition(self, task_id: int) -> np.ndarray:
        """The goal position."""
        return np.asarray(self.task(task_id).params["goal"], dtype=np.float32)
