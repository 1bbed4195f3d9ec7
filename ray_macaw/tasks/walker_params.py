"""Walker-Params: Walker2d with 50 seeded dynamics sets (spec §8.4, appendix D.1).

rand_param_envs needs MuJoCo 1.31; this family re-creates it with the `mujoco` bindings on
gymnasium's `walker2d.xml` (the v2-v4 model), whose feet have friction 0.9 (right) and 1.9 (left)
as the authors' model does; the v5 model has 1.9 on both feet (the right foot's friction 2.1x
theirs before the per-task scaling). The timestep stays overridden (below). Each element of
body_mass, body_inertia and geom_friction is scaled by 1.5^u and each element of dof_damping by
1.3^u, u ~ U(-3, 3) (log-uniform, rand_param_envs/base.py:79-107).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv, expand_model_path

from ray_macaw.tasks.base import Split, Task, TaskFamily, complement

NUM_TASKS = 50
TEST_TASKS = (2, 12, 15, 39, 43)
MODEL_FILE = "walker2d.xml"  # right foot 0.9, left 1.9: the authors' frictions
OBS_DIM = 17
# Spec §8.4: RandomEnv hard-codes frame_skip 4 on a 0.004 s timestep, so dt = 0.016.
FRAME_SKIP = 4
TIMESTEP = 0.004
LOG_SCALE_LIMIT = 3.0
# Which model arrays are randomised, and the base of each one's log-uniform multiplier.
PARAM_BASES: Mapping[str, float] = {
    "body_mass": 1.5,
    "body_inertia": 1.5,
    "dof_damping": 1.3,
    "geom_friction": 1.5,
}
CTRL_COST = 1e-3
ALIVE_BONUS = 1.0
HEALTHY_Z = (0.8, 2.0)
HEALTHY_ANGLE = 1.0
QVEL_CLIP = 10.0
RESET_NOISE = 0.005


class WalkerParamsEnv(MujocoEnv):
    """Walker2d with scaled dynamics; r = dx/dt + 1 - 1e-3 ||a||^2.

    Terminated unless 0.8 < z < 2 and |angle| < 1. Observation: qpos[1:] and clip(qvel, +-10).

    Args:
        multipliers: For each key of `PARAM_BASES`, an array shaped like that model array.
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array", "depth_array"]}  # noqa: RUF012

    def __init__(self, multipliers: Mapping[str, Any]) -> None:
        obs_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)
        self.metadata = {**self.metadata, "render_fps": 125}
        super().__init__(MODEL_FILE, FRAME_SKIP, observation_space=obs_space)
        self.model.opt.timestep = TIMESTEP
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.dt)}
        self.default_params = {k: getattr(self.model, k).copy() for k in PARAM_BASES}
        for key, default in self.default_params.items():
            scale = np.asarray(multipliers[key], dtype=np.float64).reshape(default.shape)
            getattr(self.model, key)[:] = default * scale

    def step(  # type: ignore[override]
        self, action: np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Simulate 4 frames; forward reward is the change of qpos[0] over dt."""
        x_before = float(self.data.qpos[0])
        self.do_simulation(action, self.frame_skip)
        x_after, height, angle = (float(v) for v in self.data.qpos[0:3])
        forward_vel = (x_after - x_before) / self.dt
        ctrl_cost = CTRL_COST * float(np.sum(np.square(action)))
        reward = forward_vel + ALIVE_BONUS - ctrl_cost
        healthy = HEALTHY_Z[0] < height < HEALTHY_Z[1] and -HEALTHY_ANGLE < angle < HEALTHY_ANGLE
        info = {"forward_vel": forward_vel, "ctrl_cost": ctrl_cost, "x_position": x_after}
        return self._get_obs(), reward, not healthy, False, info

    def _get_obs(self) -> np.ndarray:
        qvel = np.clip(self.data.qvel, -QVEL_CLIP, QVEL_CLIP)
        return np.concatenate([self.data.qpos[1:], qvel]).astype(np.float64)

    def reset_model(self) -> np.ndarray:
        """rand_param_envs' Walker reset: qpos and qvel + U(-0.005, 0.005)."""
        qpos = self.init_qpos + self.np_random.uniform(-RESET_NOISE, RESET_NOISE, self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-RESET_NOISE, RESET_NOISE, self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()


def sample_multipliers(rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """One dynamics set: base^u per element, u ~ U(-3, 3), as nested lists (JSON-ready)."""
    return {
        key: (PARAM_BASES[key] ** rng.uniform(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT, shape)).tolist()
        for key, shape in shapes.items()
    }


class WalkerParamsFamily(TaskFamily):
    """50 dynamics sets from the family seed; test = {2, 12, 15, 39, 43}."""

    name = "walker-params"
    max_episode_steps = 200

    def _build_tasks(self) -> Sequence[Task]:
        model = mujoco.MjModel.from_xml_path(expand_model_path(MODEL_FILE))
        shapes = {key: getattr(model, key).shape for key in PARAM_BASES}
        rng = np.random.default_rng(self.seed)
        return [Task(i, sample_multipliers(rng, shapes)) for i in range(NUM_TASKS)]

    def _build_splits(self) -> Sequence[Split]:
        return [Split("default", complement(NUM_TASKS, TEST_TASKS), TEST_TASKS)]

    def _make_task_env(self, task: Task) -> gym.Env:
        return WalkerParamsEnv(task.params)

    def condition(self, task_id: int) -> np.ndarray:
        """Every multiplier's exponent u (multiplier = base^u, u in [-3, 3]), flattened."""
        params = self.task(task_id).params
        exponents = [
            np.log(np.asarray(params[key], dtype=np.float64)).ravel() / np.log(base)
            for key, base in PARAM_BASES.items()
        ]
        return np.concatenate(exponents).astype(np.float32)

    def environment(self) -> dict[str, Any]:
        """The model file and the timestep override, recorded in manifests."""
        return {"model": MODEL_FILE, "timestep": TIMESTEP, "frame_skip": FRAME_SKIP}
