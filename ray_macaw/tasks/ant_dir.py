"""Ant-Dir: run in one of 50 seeded 2-D directions (spec §8.3, appendix D.1).

Ant-v5 MuJoCo model (gear 150, RK4, timestep 0.01, frame_skip 5, dt 0.05), 27-d observation
qpos[2:] and qvel, no contact forces in the observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from ray_macaw.tasks.base import Split, Task, TaskFamily, complement

NUM_TASKS = 50
TEST_TASKS = (6, 17, 23, 30, 41)
OBS_DIM = 27
FRAME_SKIP = 5
CTRL_COST = 0.5
CONTACT_COST = 0.5e-3
SURVIVE_REWARD = 1.0
HEALTHY_Z = (0.2, 1.0)
RESET_NOISE = 0.1


class AntDirEnv(MujocoEnv):
    """Ant rewarded for torso velocity along (cos theta, sin theta).

    r = v_xy . (cos theta, sin theta) - 0.5 ||a||^2 - 0.5e-3 ||clip(cfrc_ext, -1, 1)||^2 + 1;
    terminated when the torso height leaves [0.2, 1.0] or the state is not finite.

    Args:
        goal_angle: Direction theta in radians.
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array", "depth_array"]}  # noqa: RUF012

    def __init__(self, goal_angle: float) -> None:
        self.goal_angle = goal_angle
        self.goal_direction = np.array([np.cos(goal_angle), np.sin(goal_angle)])
        obs_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)
        self.metadata = {**self.metadata, "render_fps": 20}
        super().__init__("ant.xml", FRAME_SKIP, observation_space=obs_space)

    def step(  # type: ignore[override]
        self, action: np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Simulate 5 frames and score the torso's displacement along the goal direction."""
        xy_before = self.get_body_com("torso")[:2].copy()
        self.do_simulation(action, self.frame_skip)
        xy_velocity = (self.get_body_com("torso")[:2] - xy_before) / self.dt
        forward_reward = float(xy_velocity @ self.goal_direction)
        ctrl_cost = CTRL_COST * float(np.sum(np.square(action)))
        contact_cost = CONTACT_COST * float(np.sum(np.square(np.clip(self.data.cfrc_ext, -1, 1))))
        reward = forward_reward - ctrl_cost - contact_cost + SURVIVE_REWARD
        state = self.state_vector()
        healthy = bool(np.isfinite(state).all() and HEALTHY_Z[0] <= state[2] <= HEALTHY_Z[1])
        info = {
            "forward_reward": forward_reward,
            "ctrl_cost": ctrl_cost,
            "contact_cost": contact_cost,
            "xy_velocity": xy_velocity,
        }
        return self._get_obs(), reward, not healthy, False, info

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[2:], self.data.qvel]).astype(np.float64)

    def reset_model(self) -> np.ndarray:
        """gym's Ant reset: qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1)."""
        qpos = self.init_qpos + self.np_random.uniform(-RESET_NOISE, RESET_NOISE, self.model.nq)
        qvel = self.init_qvel + RESET_NOISE * self.np_random.standard_normal(self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()


class AntDirFamily(TaskFamily):
    """50 directions uniform in [0, 2 pi) from the family seed; test = {6, 17, 23, 30, 41}."""

    name = "ant-dir"
    max_episode_steps = 200

    def _build_tasks(self) -> Sequence[Task]:
        angles = np.random.default_rng(self.seed).uniform(0.0, 2.0 * np.pi, size=NUM_TASKS)
        return [Task(i, {"goal_angle": float(a)}) for i, a in enumerate(angles)]

    def _build_splits(self) -> Sequence[Split]:
        return [Split("default", complement(NUM_TASKS, TEST_TASKS), TEST_TASKS)]

    def _make_task_env(self, task: Task) -> gym.Env:
        return AntDirEnv(task.params["goal_angle"])

    def condition(self, task_id: int) -> np.ndarray:
        """The goal direction as a unit vector (cos, sin): no jump at 2 pi."""
        angle = self.task(task_id).params["goal_angle"]
        return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)
