"""Half-Cheetah families: Cheetah-Dir and Cheetah-Vel (spec §8.1, §8.2; appendix D.1, D.3, C.2).

Both run the HalfCheetah-v5 MuJoCo model (frame_skip 5, dt 0.05) with the authors' 20-d
observation: qpos[1:], qvel and the torso's centre of mass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from ray_macaw.tasks.base import Split, Task, TaskFamily, complement

CTRL_COST = 0.05
OBS_DIM = 20
FRAME_SKIP = 5
RESET_NOISE = 0.1


class HalfCheetahTaskEnv(MujocoEnv):
    """HalfCheetah whose reward is `task_reward(v_x) - 0.05 ||a||^2`; never terminates.

    Args:
        direction: +1 / -1 for Cheetah-Dir (reward d * v_x), or None.
        velocity: Target velocity v* for Cheetah-Vel (reward -|v_x - v*|), or None.
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array", "depth_array"]}  # noqa: RUF012

    def __init__(self, *, direction: float | None = None, velocity: float | None = None) -> None:
        if (direction is None) == (velocity is None):
            raise ValueError("give exactly one of direction or velocity")
        self.direction = direction
        self.velocity = velocity
        obs_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)
        self.metadata = {**self.metadata, "render_fps": 20}
        super().__init__("half_cheetah.xml", FRAME_SKIP, observation_space=obs_space)

    def task_reward(self, forward_vel: float) -> float:
        """The task part of the reward (spec §8.1 / §8.2)."""
        if self.direction is not None:
            return self.direction * forward_vel
        assert self.velocity is not None
        return -abs(forward_vel - self.velocity)

    def step(  # type: ignore[override]
        self, action: np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Simulate 5 frames; v_x is the change of qpos[0] over dt."""
        x_before = float(self.data.qpos[0])
        self.do_simulation(action, self.frame_skip)
        x_after = float(self.data.qpos[0])
        forward_vel = (x_after - x_before) / self.dt
        ctrl_cost = CTRL_COST * float(np.sum(np.square(action)))
        reward = self.task_reward(forward_vel) - ctrl_cost
        info = {"forward_vel": forward_vel, "ctrl_cost": ctrl_cost, "x_position": x_after}
        return self._get_obs(), reward, False, False, info

    def _get_obs(self) -> np.ndarray:
        return np.concatenate(
            [self.data.qpos[1:], self.data.qvel, self.get_body_com("torso")]
        ).astype(np.float64)

    def reset_model(self) -> np.ndarray:
        """gym's HalfCheetah reset: qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1)."""
        qpos = self.init_qpos + self.np_random.uniform(-RESET_NOISE, RESET_NOISE, self.model.nq)
        qvel = self.init_qvel + RESET_NOISE * self.np_random.standard_normal(self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()


class CheetahDirFamily(TaskFamily):
    """Two tasks, run forward (+1) or backward (-1); train = test = {0, 1} (no held-out task)."""

    name = "cheetah-dir"
    max_episode_steps = 200

    def _build_tasks(self) -> Sequence[Task]:
        return [Task(0, {"direction": 1.0}), Task(1, {"direction": -1.0})]

    def _build_splits(self) -> Sequence[Split]:
        return [Split("default", (0, 1), (0, 1))]

    def _make_task_env(self, task: Task) -> gym.Env:
        return HalfCheetahTaskEnv(direction=task.params["direction"])

    def condition(self, task_id: int) -> np.ndarray:
        """The direction, +1 or -1."""
        return np.array([self.task(task_id).params["direction"]], dtype=np.float32)


VEL_NUM_TASKS = 40
VEL_STEP = 0.075
VEL_TEST = (2, 7, 15, 23, 26)
# Appendix D.3: train on every 2nd / 4th / 8th / 16th velocity, test on the rest.
VEL_STRIDED_SPLITS = {"half": 2, "quarter": 4, "eighth": 8, "sixteenth": 16}
# Appendix C.2: train v* in [0, 2], test v* in (2, 3].
VEL_OOD_MAX_TRAIN = 2.0


class CheetahVelFamily(TaskFamily):
    """40 target velocities v*_i = 0.075 (i + 1); default test = {2, 7, 15, 23, 26}."""

    name = "cheetah-vel"
    max_episode_steps = 200

    def _build_tasks(self) -> Sequence[Task]:
        return [Task(i, {"velocity": round(VEL_STEP * (i + 1), 10)}) for i in range(VEL_NUM_TASKS)]

    def _build_splits(self) -> Sequence[Split]:
        splits = [Split("default", complement(VEL_NUM_TASKS, VEL_TEST), VEL_TEST)]
        for name, every in VEL_STRIDED_SPLITS.items():
            train = tuple(range(0, VEL_NUM_TASKS, every))
            splits.append(Split(name, train, complement(VEL_NUM_TASKS, train)))
        ood_train = tuple(t.id for t in self.tasks if t.params["velocity"] <= VEL_OOD_MAX_TRAIN)
        splits.append(Split("ood", ood_train, complement(VEL_NUM_TASKS, ood_train)))
        return splits

    def _make_task_env(self, task: Task) -> gym.Env:
        return HalfCheetahTaskEnv(velocity=task.params["velocity"])

    def condition(self, task_id: int) -> np.ndarray:
        """The target velocity v*."""
        return np.array([self.task(task_id).params["velocity"]], dtype=np.float32)
