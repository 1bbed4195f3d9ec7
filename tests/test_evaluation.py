"""Held-out evaluation that can rank methods (issue 18, item 2): the same start states and
adaptation rows at every evaluation and for every algorithm, several adaptation batches per task,
and standard errors over episodes paired by start state."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_root

from ray_macaw.evaluation.held_out import HeldOutTask, evaluate_task, evaluation_seed, summarise
from ray_macaw.evaluation.offline import MACAWAdaptation
from ray_macaw.macaw import InnerLoopConfig, MACAWModel, ModelConfig
from ray_macaw.macaw.objective import AdaptationSettings


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "root"
    write_root(path, task_ids=(3,), episodes=10)
    return path


def held_out_task(root: Path, batches: int, episodes: int = 3) -> HeldOutTask:
    options = {
        "episodes": episodes,
        "batch_size": 32,
        "batches": batches,
        "seed": evaluation_seed(0, 3),
        "test_time": asdict(AdaptationSettings()),
    }
    config = ModelConfig(obs_dim=2, act_dim=2, hidden=(8, 8), latent_dim=4, inner_policy_lr=0.5)
    return HeldOutTask(config, InnerLoopConfig(), str(root), "point-robot", 0, 3, options)


def weights(task: HeldOutTask) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return MACAWModel(task.model_config).state_dict()


def test_the_seed_depends_on_the_run_and_the_task_only() -> None:
    assert evaluation_seed(0, 3) == evaluation_seed(0, 3)
    assert len({evaluation_seed(0, 3), evaluation_seed(1, 3), evaluation_seed(0, 4)}) == 3


def test_batches_differ_and_the_first_is_the_single_batch_one(root: Path) -> None:
    adaptation = MACAWAdaptation()
    task = held_out_task(root, batches=3)
    first, second = adaptation.batch(task, 0), adaptation.batch(task, 1)
    single = adaptation.batch(held_out_task(root, batches=1), 0)
    assert torch.equal(first["obs"], single["obs"])
    assert not torch.equal(first["obs"], second["obs"])


def test_every_batch_is_evaluated_from_the_same_start_states(root: Path) -> None:
    task = held_out_task(root, batches=3)
    result = evaluate_task(task, weights(task), MACAWAdaptation())
    post = np.array(result["post_adaptation_returns"])
    assert post.shape == (3, 3) and len(result["pre_adaptation_returns"]) == 3
    assert result["post_adaptation_return"] == pytest.approx(post.mean())
    assert len({tuple(row) for row in post}) > 1  # the batches adapt differently
    again = evaluate_task(task, weights(task), MACAWAdaptation())
    assert again["post_adaptation_returns"] == result["post_adaptation_returns"]
    single = evaluate_task(held_out_task(root, 1), weights(task), MACAWAdaptation())
    assert single["pre_adaptation_returns"] == result["pre_adaptation_returns"]
    assert single["post_adaptation_returns"][0] == result["post_adaptation_returns"][0]


def test_standard_errors_pair_episodes_by_start_state(root: Path) -> None:
    task = held_out_task(root, batches=2)
    result = evaluate_task(task, weights(task), MACAWAdaptation())
    pre = np.array(result["pre_adaptation_returns"])
    post = np.array(result["post_adaptation_returns"]).mean(axis=0)
    gains = post - pre
    assert result["adaptation_gain_stderr"] == pytest.approx(gains.std(ddof=1) / math.sqrt(3))
    assert result["pre_adaptation_return_stderr"] == pytest.approx(pre.std(ddof=1) / math.sqrt(3))
    one = evaluate_task(held_out_task(root, 1, episodes=1), weights(task), MACAWAdaptation())
    assert math.isnan(one["adaptation_gain_stderr"])  # one episode: no standard error


def test_summary_errors_combine_the_tasks_hand_worked() -> None:
    """Two tasks with per-task standard errors 3 and 4: the mean over tasks has (9 + 16)^0.5 / 2."""
    results = [
        {
            "task_id": t,
            "pre_adaptation_return": pre,
            "post_adaptation_return": post,
            "pre_adaptation_return_stderr": se,
            "post_adaptation_return_stderr": se,
            "adaptation_gain_stderr": se,
        }
        for t, pre, post, se in ((0, -10.0, -6.0, 3.0), (1, -20.0, -12.0, 4.0))
    ]
    summary = summarise(results)
    assert summary["adaptation_gain_mean"] == pytest.approx(6.0)
    for name in ("pre_adaptation_return", "post_adaptation_return", "adaptation_gain"):
        assert summary[f"{name}_stderr"] == pytest.approx(2.5)


def test_behaviour_level_is_the_last_agent_on_the_evaluation_start_states(
    tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ray-macaw dataset behaviour`: each task's final SAC agent, deterministic, from the start
    states a run with that seed evaluates on; data without agents is refused in one line."""
    import json

    from ray_macaw.cli.main import main
    from ray_macaw.collect.behaviour import load_checkpoint, make_agent
    from ray_macaw.collect.config import CollectConfig
    from ray_macaw.collect.run import collect
    from ray_macaw.data.manifest import Manifest
    from ray_macaw.evaluation.behaviour_level import last_checkpoint
    from ray_macaw.evaluation.held_out import rollout
    from ray_macaw.tasks import get_task_family

    root = tmp_path / "sac"
    config = CollectConfig(
        family="point-robot", root=str(root), tasks="3", steps=400, rows_per_part=100,
        hyperparameters={"learning_starts": 100},
    )  # fmt: skip
    collect(config, show_progress=False)
    capsys.readouterr()  # what collection printed
    assert main(["dataset", "behaviour", str(root), "--tasks", "3", "--seed", "1",
                 "--episodes", "2", "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    family_dir = root / "point-robot"
    assert last_checkpoint(family_dir, 3).name == "ckpt-000000000400.pt"  # the final agent
    env = get_task_family("point-robot").make_env(3)
    hyperparameters = Manifest.load(family_dir).collector["hyperparameters"]
    agent = make_agent("sac", env, hyperparameters, seed=0, device="cpu")
    load_checkpoint(agent, last_checkpoint(family_dir, 3))
    expected = rollout(
        env,
        lambda obs: torch.as_tensor(agent.predict(obs.numpy(), deterministic=True)[0]),
        2,
        evaluation_seed(1, 3),
    )
    assert doc["per_task"]["3"]["returns"] == pytest.approx(expected)
    assert doc["behaviour_return_mean"] == pytest.approx(np.mean(expected))
    write_root(tmp_path / "random", task_ids=(3,), episodes=2)
    assert main(["dataset", "behaviour", str(tmp_path / "random"), "--tasks", "3"]) == 2
    assert "has no behaviour agent" in capsys.readouterr().err
