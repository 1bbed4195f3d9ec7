"""Shared task-conditioned behaviour agents and the SBX (JAX) learners: scheduling, routing of rows
to their task, resume after a crash between two tasks' parts, checkpoints, the behaviour level."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import check_task_data

from ray_macaw.cli.main import main
from ray_macaw.collect.behaviour import (
    default_hyperparameters,
    load_checkpoint,
    make_agent,
    save_checkpoint,
)
from ray_macaw.collect.config import CollectConfig, CollectConfigError
from ray_macaw.collect.run import collect
from ray_macaw.collect.shared import SharedCollection, TaskConditionedEnv, checkpoint_rows
from ray_macaw.data.manifest import Manifest, PartRecord
from ray_macaw.evaluation.behaviour_level import last_checkpoint
from ray_macaw.evaluation.held_out import evaluation_seed, rollout
from ray_macaw.tasks import get_task_family

FAMILY = get_task_family("point-robot")


def test_conditioned_env_runs_the_task_with_fewest_steps_and_cuts_at_the_budget() -> None:
    """Hand-worked: task 1 holds 0 steps, task 4 holds 5, budget 30, 20-step episodes: the
    episodes run tasks 1, 4, 1, 4 for 20, 20, 10 and 5 steps."""
    env = TaskConditionedEnv(FAMILY, [1, 4], {1: 0, 4: 5}, budget=30, seeds={1: 0, 4: 1})
    assert env.observation_space.shape == (4,)  # position + the goal it is told
    ran = []
    for _ in range(4):
        obs, info = env.reset()
        task = info["task_id"]
        np.testing.assert_array_equal(obs[2:], FAMILY.condition(task))
        length, done = 0, False
        while not done:
            obs, _, terminated, truncated, _ = env.step(np.zeros(2))
            assert env.stepped == task
            np.testing.assert_array_equal(obs[2:], FAMILY.condition(task))
            length, done = length + 1, terminated or truncated
        ran.append((task, length))
    assert ran == [(1, 20), (4, 20), (1, 10), (4, 5)]
    assert env.steps == {1: 30, 4: 30}


def shared_config(root: Path, **changes: object) -> CollectConfig:
    settings = {
        "family": "point-robot",
        "root": str(root),
        "tasks": "0,3,5",
        "steps": 300,
        "algo": "sbx-sac",
        "shared_agents": 1,
        "rows_per_part": 100,
        "hyperparameters": {"learning_starts": 100},
    }
    return CollectConfig(**{**settings, **changes}).resolved()  # type: ignore[arg-type]


class Crash(RuntimeError):
    """Stands for the process dying."""


class CrashAfterSaving(SharedCollection):
    """Dies after saving the checkpoint of task 3's second part, before the manifest lists it."""

    def _checkpoint(self, task_id: int, part: PartRecord) -> None:
        super()._checkpoint(task_id, part)
        if task_id == 3 and part.first_step == 100:
            raise Crash


def test_shared_agent_writes_each_task_its_own_rows_and_resumes_after_a_crash(
    tmp_path: Path,
) -> None:
    """Rows reach the task they were collected on (rewards are each task's own goal distance,
    observations exclude the condition); a crash between two tasks' parts resumes from the
    newest checkpoint no task is behind, with nothing missing or doubled."""
    config = shared_config(tmp_path)
    obs_dim, act_dim = 2, 2
    with pytest.raises(Crash):
        CrashAfterSaving(config, [0, 3, 5], obs_dim, act_dim).run()
    family_dir = tmp_path / "point-robot"
    rows = {t: Manifest.load(family_dir).tasks[t].rows for t in (0, 3, 5)}
    assert rows == {0: 200, 3: 100, 5: 100}  # task 0's second part listed, task 3's not
    again = SharedCollection(config, [0, 3, 5], obs_dim, act_dim)
    agents = family_dir / "_agents" / "shared=0,3,5"
    newest = max(agents.glob("ckpt-*.pt"), key=lambda p: p.name)
    assert checkpoint_rows(newest) == {0: 200, 3: 200, 5: 100}  # saved, never listed
    chosen = again._checkpoint_for(rows)
    assert checkpoint_rows(chosen) == {0: 200, 3: 100, 5: 100}
    results = again.run()
    assert sorted(results) == [0, 3, 5]
    for task_id in (0, 3, 5):
        check_task_data(tmp_path, task_id, 300)
    manifest = Manifest.load(family_dir)
    assert manifest.collector["shared_agents"] == 1
    assert all(manifest.tasks[t].complete for t in (0, 3, 5))
    assert [r["start_rows"] for r in manifest.tasks[3].info["runs"]] == [0, 100]


@pytest.mark.parametrize("algo", ["sbx-sac", "sbx-td3"])
def test_jax_agent_checkpoint_restores_the_same_policy(tmp_path: Path, algo: str) -> None:
    hp = {**default_hyperparameters("point-robot", algo), "learning_starts": 50}
    agent = make_agent(algo, FAMILY.make_env(2), hp, seed=0, device="cpu")
    agent.learn(150)
    save_checkpoint(agent, tmp_path / "ckpt.pt", 150)
    fresh = make_agent(algo, FAMILY.make_env(2), hp, seed=1, device="cpu")
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 2)).astype(np.float32)
    before = agent.predict(obs, deterministic=True)[0]
    assert not np.allclose(fresh.predict(obs, deterministic=True)[0], before)
    assert load_checkpoint(fresh, tmp_path / "ckpt.pt") == 150
    np.testing.assert_array_equal(fresh.predict(obs, deterministic=True)[0], before)
    assert fresh.num_timesteps == agent.num_timesteps and fresh._n_updates == agent._n_updates
    np.testing.assert_array_equal(np.asarray(fresh.key), np.asarray(agent.key))


def test_shared_agent_settings_are_checked() -> None:
    with pytest.raises(CollectConfigError, match="shared agents need a learning"):
        CollectConfig(family="point-robot", root="r", algo="random", shared_agents=2).resolved()
    with pytest.raises(CollectConfigError, match="cannot be negative"):
        CollectConfig(family="point-robot", root="r", shared_agents=-1).resolved()
    config = CollectConfig(family="point-robot", root="r", shared_agents=2).resolved()
    assert config.units([5, 0, 3, 9]) == [[0, 5], [3, 9]]  # every 2nd task: spans the family
    with pytest.raises(CollectConfigError, match="more than the 1 selected"):
        config.units([4])
    assert CollectConfig(family="point-robot", root="r").resolved().units([3, 1]) == [[1], [3]]
    assert "shared_agents" not in CollectConfig(family="point-robot", root="r").collector_record()


def test_collect_with_shared_agents_and_their_behaviour_level(
    tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two shared agents through Ray actors; `dataset behaviour` tells each its task's condition."""
    config = shared_config(tmp_path, tasks="0-3", steps=200, shared_agents=2)
    summary = collect(config, show_progress=False)
    assert sorted(summary["collected"]) == [0, 1, 2, 3]
    for task_id in range(4):
        check_task_data(tmp_path, task_id, 200)
    agents = tmp_path / "point-robot" / "_agents"
    assert sorted(p.name for p in agents.iterdir()) == ["shared=0,2", "shared=1,3"]
    assert collect(config, show_progress=False)["skipped"] == [0, 1, 2, 3]  # finished: no rerun
    capsys.readouterr()
    args = ["dataset", "behaviour", str(tmp_path), "--tasks", "3", "--episodes", "2", "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    hp = Manifest.load(tmp_path / "point-robot").collector["hyperparameters"]
    agent = make_agent("sbx-sac", TaskConditionedEnv(FAMILY, [3], {}, 1, {3: 0}), hp, 0, "cpu")
    load_checkpoint(agent, last_checkpoint(tmp_path / "point-robot", 3))

    def policy(obs: torch.Tensor) -> torch.Tensor:
        told = np.concatenate([obs.numpy(), FAMILY.condition(3)])
        return torch.as_tensor(agent.predict(told, deterministic=True)[0])

    expected = rollout(FAMILY.make_env(3), policy, 2, evaluation_seed(0, 3))
    assert doc["per_task"]["3"]["returns"] == pytest.approx(expected)
