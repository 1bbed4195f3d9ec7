"""Environments as the authors built them: Walker-Params' foot frictions, ML45's goal
observability and fixed stick goals, and the versions every manifest records (issue 19, items
20 and 21)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import mujoco
import numpy as np
import pytest

from ray_macaw.data.manifest import Manifest
from ray_macaw.data.shards import DatasetWriter
from ray_macaw.errors import DataError
from ray_macaw.tasks import get_task_family


def foot_frictions(model: mujoco.MjModel) -> tuple[float, float]:
    """(right, left) sliding friction of the feet."""
    right = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "foot_geom")
    left = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "foot_left_geom")
    return float(model.geom_friction[right, 0]), float(model.geom_friction[left, 0])


def test_walker_params_feet_have_the_authors_frictions() -> None:
    """Before scaling: right foot 0.9, left 1.9 (the v5 model has 1.9 on both); each task's
    frictions are those times its multipliers; the 0.004 s timestep override stays (item 20)."""
    family = get_task_family("walker-params")
    for task_id in (0, 12):
        inner = family.make_env(task_id).unwrapped
        assert foot_frictions(inner.model) != (1.9, 1.9)
        np.testing.assert_allclose(
            [inner.default_params["geom_friction"][i, 0] for i in foot_ids(inner.model)],
            [0.9, 1.9],
        )
        scale = np.asarray(family.task(task_id).params["geom_friction"])
        right, left = foot_ids(inner.model)
        assert foot_frictions(inner.model) == pytest.approx(
            (0.9 * scale[right, 0], 1.9 * scale[left, 0])
        )
        assert inner.model.opt.timestep == pytest.approx(0.004) and inner.dt == pytest.approx(0.016)
    assert family.environment()["model"] == "walker2d.xml"


def foot_ids(model: mujoco.MjModel) -> tuple[int, int]:
    return (
        mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "foot_geom"),
        mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "foot_left_geom"),
    )


def task_of(family_name: str, env_name: str) -> tuple[object, int]:
    family = get_task_family(family_name)
    return family, next(t.id for t in family.tasks if t.params["env_name"] == env_name)


@pytest.mark.parametrize(
    ("family_name", "reach_observed", "stick_observed", "stick_fixed"),
    [
        ("ml45", False, False, False),
        ("ml45-goal", True, True, False),
        ("ml45-fixed-stick", False, False, True),
        ("ml45-authors", True, False, True),
    ],
)
def test_ml45_goal_observability_and_fixed_stick_goals(
    family_name: str, reach_observed: bool, stick_observed: bool, stick_fixed: bool
) -> None:
    """The goal is in the last 3 observation entries only where the option says, and the stick
    tasks' goal stays put across task instances only with fixed stick goals (item 21)."""
    family, reach = task_of(family_name, "reach-v3")
    obs, _ = family.make_env(reach).reset(seed=1)  # type: ignore[attr-defined]
    assert bool(np.any(obs[-3:] != 0)) == reach_observed
    _, stick = task_of(family_name, "stick-push-v3")
    env = family.make_env(stick)  # type: ignore[attr-defined]
    goals, observed = [], []
    for seed in (1, 2, 3):
        obs, _ = env.reset(seed=seed)
        goals.append(env.unwrapped._target_pos[:2].copy())
        observed.append(bool(np.any(obs[-3:] != 0)))
    assert all(o == stick_observed for o in observed)
    same = all(np.allclose(goals[0], g) for g in goals[1:])
    assert same == stick_fixed


def test_ml45_manifests_record_metaworld_and_reward_versions(tmp_path: Path) -> None:
    """Every ML45 manifest records Meta-World's version, the reward-function version and the
    options; a root written with other options refuses to be resumed with these (item 21)."""
    for name in ("ml45", "ml45-authors"):
        family = get_task_family(name)
        DatasetWriter(tmp_path, family, obs_dim=39, act_dim=4)
        environment = Manifest.load(tmp_path / name).environment
        assert environment["metaworld_version"] == metadata.version("metaworld")
        assert environment["reward_function_version"] == "v2"
        assert environment["goal_observable"] == (name == "ml45-authors")
    manifest = Manifest.load(tmp_path / "ml45")
    manifest.environment["reward_function_version"] = "v1"
    manifest.save(tmp_path / "ml45")
    with pytest.raises(DataError, match=r"environment\.reward_function_version: 'v1' there"):
        DatasetWriter(tmp_path, get_task_family("ml45"), obs_dim=39, act_dim=4)
