"""Real MuJoCo / Meta-World environments: rewards recomputed by hand from the simulator state."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from gymnasium.envs.mujoco.mujoco_env import expand_model_path

from ray_macaw.tasks import get_task_family

FIXED_ACTIONS = [0.5, -0.3, 0.8, -1.0, 0.2, 0.0, 0.7, -0.6]


def fixed_action(env, k: int) -> np.ndarray:
    dim = env.action_space.shape[0]
    return np.roll(np.asarray(FIXED_ACTIONS[:dim] * 2)[:dim], k).astype(np.float32)


def torso(env) -> np.ndarray:
    return env.unwrapped.data.body("torso").xpos.copy()


@pytest.mark.parametrize(
    ("family_name", "task_id"),
    [("cheetah-dir", 0), ("cheetah-dir", 1), ("cheetah-vel", 7), ("cheetah-vel", 30)],
)
def test_cheetah_reward_matches_formula(family_name: str, task_id: int) -> None:
    family = get_task_family(family_name)
    params = family.task(task_id).params
    env = family.make_env(task_id)
    env.reset(seed=0)
    assert env.unwrapped.dt == pytest.approx(0.05)
    for k in range(20):
        action = fixed_action(env, k)
        x_before = env.unwrapped.data.qpos[0]  # rootx slide joint
        obs, reward, terminated, truncated, _ = env.step(action)
        v_x = (env.unwrapped.data.qpos[0] - x_before) / 0.05
        task_term = (
            params["direction"] * v_x if "direction" in params else -abs(v_x - params["velocity"])
        )
        assert reward == pytest.approx(task_term - 0.05 * float(action @ action), abs=1e-6)
        assert not terminated and not truncated
    data = env.unwrapped.data
    np.testing.assert_allclose(obs, np.concatenate([data.qpos[1:], data.qvel, torso(env)]))
    assert obs.shape == (20,)


def test_cheetah_episodes_are_capped_at_200_steps() -> None:
    env = get_task_family("cheetah-vel").make_env(0)
    env.reset(seed=1)
    truncated_at = next(t for t in range(1, 300) if env.step(fixed_action(env, t))[3])
    assert truncated_at == 200


def test_ant_dir_reward_matches_formula() -> None:
    family = get_task_family("ant-dir")
    theta = family.task(17).params["goal_angle"]
    direction = np.array([np.cos(theta), np.sin(theta)])
    env = family.make_env(17)
    env.reset(seed=0)
    assert env.unwrapped.dt == pytest.approx(0.05)
    for k in range(15):
        action = fixed_action(env, k)
        xy_before = torso(env)[:2]
        obs, reward, terminated, _, _ = env.step(action)
        velocity = (torso(env)[:2] - xy_before) / 0.05
        contact = np.clip(env.unwrapped.data.cfrc_ext, -1, 1)
        expected = (
            velocity @ direction
            - 0.5 * float(action @ action)
            - 0.5e-3 * float(np.sum(contact**2))
            + 1.0
        )
        assert reward == pytest.approx(expected, abs=1e-6)
        if terminated:
            break
    data = env.unwrapped.data
    np.testing.assert_allclose(obs, np.concatenate([data.qpos[2:], data.qvel]))
    assert obs.shape == (27,)


def test_ant_dir_terminates_when_torso_leaves_height_range() -> None:
    env = get_task_family("ant-dir").make_env(0)
    env.reset(seed=0)
    inner = env.unwrapped
    qpos = inner.data.qpos.copy()
    qpos[2] = 1.5  # above the healthy range [0.2, 1.0]; falls ~1 cm in one step
    inner.set_state(qpos, np.zeros(inner.model.nv))
    assert env.step(np.zeros(8, dtype=np.float32))[2]


def test_walker_params_reward_dynamics_and_termination() -> None:
    family = get_task_family("walker-params")
    task = family.task(12)
    env = family.make_env(12)
    env.reset(seed=0)
    inner = env.unwrapped
    assert inner.dt == pytest.approx(0.016)
    default = mujoco.MjModel.from_xml_path(expand_model_path("walker2d.xml"))  # the authors'

    for key in ("body_mass", "body_inertia", "dof_damping", "geom_friction"):
        expected = getattr(default, key) * np.asarray(task.params[key])
        np.testing.assert_allclose(getattr(inner.model, key), expected)
    for k in range(10):
        action = fixed_action(env, k)
        x_before = inner.data.qpos[0]
        obs, reward, terminated, _, _ = env.step(action)
        expected = (inner.data.qpos[0] - x_before) / 0.016 + 1.0 - 1e-3 * float(action @ action)
        assert reward == pytest.approx(expected, abs=1e-6)
        height, angle = inner.data.qpos[1:3]
        assert terminated == (not (0.8 < height < 2.0 and -1.0 < angle < 1.0))
        if terminated:
            break
    np.testing.assert_allclose(
        obs, np.concatenate([inner.data.qpos[1:], np.clip(inner.data.qvel, -10, 10)])
    )
    qpos = inner.data.qpos.copy()
    qpos[1] = 0.5
    inner.set_state(qpos, inner.data.qvel)
    assert env.step(np.zeros(6, dtype=np.float32))[2]


def test_walker_tasks_have_different_dynamics() -> None:
    family = get_task_family("walker-params")
    masses = [family.make_env(i).unwrapped.model.body_mass.copy() for i in (0, 1)]
    assert not np.allclose(masses[0], masses[1])


def test_point_robot_reward_and_cap() -> None:
    family = get_task_family("point-robot")
    goal = np.array(family.task(11).params["goal"])
    env = family.make_env(11)
    state, _ = env.reset(seed=0)
    assert np.all(np.abs(state) <= 1.0)
    state = state.astype(np.float64)
    for t in range(1, 21):
        action = np.array([0.3, -0.05], dtype=np.float32)  # x is clipped to 0.1
        obs, reward, terminated, truncated, _ = env.step(action)
        state = state + np.array([0.1, -0.05])
        np.testing.assert_allclose(obs, state, atol=1e-5)
        assert reward == pytest.approx(-np.linalg.norm(state - goal), abs=1e-5)
        assert not terminated and truncated == (t == 20)


def test_ml45_env_hides_goal_caps_150_and_reseeds() -> None:
    family = get_task_family("ml45")
    env = family.make_env(family.split().test[0])
    first, _ = env.reset(seed=5)
    second, _ = env.reset(seed=5)
    np.testing.assert_array_equal(first, second)
    third, _ = env.reset()
    assert not np.array_equal(first, third)  # a new continuous task instance per episode
    assert first.shape == (39,) and np.all(first[-3:] == 0)  # goal not observed
    steps = 0
    while True:
        steps += 1
        if env.step(np.zeros(4, dtype=np.float32))[3]:
            break
    assert steps == 150


@pytest.mark.parametrize("family_name", ["cheetah-vel", "point-robot"])
def test_task_observation_only_when_asked(family_name: str) -> None:
    family = get_task_family(family_name)
    plain = family.make_env(2)
    tagged = family.make_env(2, task_obs=True)
    obs, _ = tagged.reset(seed=0)
    base = plain.observation_space.shape[0]
    assert tagged.observation_space.shape == (base + family.num_tasks,)
    one_hot = obs[base:]
    assert one_hot[2] == 1 and one_hot.sum() == 1
