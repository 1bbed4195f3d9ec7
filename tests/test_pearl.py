"""Offline PEARL as an RLlib Algorithm on real point-robot data: training, evaluation, checkpoints,
and the same `train` / `evaluate` / `finetune` commands as MACAW."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from ray_macaw import MACAW, MACAWConfig
from ray_macaw.algorithms.common.checkpoints import CheckpointError
from ray_macaw.algorithms.pearl.algorithm import PEARL
from ray_macaw.algorithms.pearl.config import PEARLConfig, PEARLConfigError
from ray_macaw.cli.main import main
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.run import collect
from ray_macaw.errors import RayMacawError
from ray_macaw.training.run_file import RunConfigError, config_from_dict

TRAIN, TEST = [0, 1, 2, 4], [3, 5]
SMALL = {
    "hidden": (16, 16),
    "encoder_hidden": (16,),
    "latent_dim": 3,
    "task_batch_size": 3,
    "batch_size": 32,
    "embedding_batch_size": 16,
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Iterator[str]:
    root = tmp_path_factory.mktemp("pearl-data")
    collect(
        CollectConfig(
            family="point-robot", root=str(root), tasks="0-5", steps=600, algo="noisy-init"
        ),
        show_progress=False,
    )
    yield str(root)


def small_config(root: str) -> PEARLConfig:
    return (
        PEARLConfig()
        .environment(family="point-robot", train_tasks=TRAIN, test_tasks=TEST)
        .offline_data(root=root, buffer_stride=1)
        .training(**SMALL)
        .evaluation(evaluation_interval=2, adaptation_batch_size=32, num_cpus_per_task=0.5)
        .debugging(seed=5)
    )


def small_macaw(root: str) -> MACAW:
    """A MACAW on the same tasks, data cuts and seed as `small_config`."""
    algo = (
        MACAWConfig()
        .environment(family="point-robot", train_tasks=TRAIN, test_tasks=TEST)
        .offline_data(root=root, buffer_stride=1)
        .training(hidden=(16, 16), inner_batch_size=32, outer_batch_size=32)
        .evaluation(adaptation_batch_size=32)
        .debugging(seed=5)
        .build_algo()
    )
    assert isinstance(algo, MACAW)
    return algo


def test_two_iterations_train_and_evaluate(data_root: str) -> None:
    algo = small_config(data_root).build_algo()
    try:
        assert isinstance(algo, PEARL)
        first = algo.train()
        pearl = first["learners"]["pearl"]
        for key in ("qf_loss", "vf_loss", "policy_loss", "kl_div", "kl_loss", "z_var_mean"):
            assert key in pearl
        assert first["num_meta_steps_lifetime"] == 1 and "evaluation" not in first
        second = algo.train()
        evaluation = second["evaluation"]
        assert set(evaluation["per_task"]) == {"3", "5"}
        for task in evaluation["per_task"].values():
            assert -200 < task["pre_adaptation_return"] < 0  # 20-step point-robot episodes
            assert -200 < task["post_adaptation_return"] < 0
        assert second["held_out"]["post_adaptation_return_mean"] == pytest.approx(
            evaluation["post_adaptation_return_mean"]
        )
        assert second["num_env_steps_trained_lifetime"] == 2 * 3 * 32
    finally:
        algo.stop()


def test_context_rows_come_from_inner_buffers_and_sac_rows_from_outer_ones(data_root: str) -> None:
    from ray_macaw.data.datasets import TaskDatasets

    config = small_config(data_root).offline_data(
        inner_buffer_size=40, inner_buffer_position="start", outer_buffer_size=40
    )
    algo = config.build_algo()
    try:
        contexts, batch = algo._sample()
    finally:
        algo.stop()
    data = TaskDatasets(data_root, "point-robot")

    def keys(obs: object, actions: object) -> set[tuple[float, ...]]:
        return {tuple(o) + tuple(a) for o, a in zip(obs, actions, strict=True)}  # type: ignore

    inner, outer = set(), set()
    for task_id in TRAIN:
        columns = data.load(task_id).columns
        inner |= keys(columns["obs"][:40], columns["actions"][:40])
        outer |= keys(columns["obs"][-40:], columns["actions"][-40:])
    assert contexts["obs"].shape == (3, 16, 2) and batch["obs"].shape == (3, 32, 2)
    assert (
        keys(contexts["obs"].reshape(-1, 2).tolist(), contexts["actions"].reshape(-1, 2).tolist())
        <= inner
    )
    assert (
        keys(batch["obs"].reshape(-1, 2).tolist(), batch["actions"].reshape(-1, 2).tolist())
        <= outer
    )


def test_inference_depends_on_the_adaptation_batch(data_root: str) -> None:
    """Task inference is a real posterior: different tasks' rows give different z."""
    from ray_macaw.evaluation.held_out import HeldOutTask
    from ray_macaw.evaluation.pearl import infer_task
    from ray_macaw.pearl.losses import TRANSITION_COLUMNS

    algo = small_config(data_root).build_algo()
    try:
        options = algo.adaptation_options() | {"seed": 0}
        zs = [
            infer_task(
                algo.model,
                HeldOutTask(None, None, data_root, "point-robot", 0, t, options).adaptation_batch(
                    TRANSITION_COLUMNS
                ),
            )
            for t in TEST
        ]
        assert zs[0].shape == (3,)
        assert not torch.allclose(zs[0], zs[1])
    finally:
        algo.stop()


def test_task_inference_uses_the_rows_macaw_adapts_on(data_root: str) -> None:
    """Spec §7.1: at the same seed and step, PEARL infers from MACAW's adaptation batch."""
    pearl = small_config(data_root).build_algo()
    macaw = small_macaw(data_root)
    try:
        batches = []
        for algo in (pearl, macaw):
            batches.append([])
            for task, _ in algo.held_out_arguments(algo.adaptation_options()):
                batches[-1].append(task.adaptation_batch(("obs", "actions")))
        for mine, theirs in zip(*batches, strict=True):
            assert torch.equal(mine["obs"], theirs["obs"])
            assert torch.equal(mine["actions"], theirs["actions"])
    finally:
        pearl.stop()
        macaw.stop()


def test_save_restore_continues_exactly(data_root: str, tmp_path: Path) -> None:
    algo = small_config(data_root).evaluation(evaluation_interval=0).build_algo()
    try:
        algo.train()
        algo.train()
        algo.save_to_path(str(tmp_path / "ckpt"))
        expected = algo.train()
    finally:
        algo.stop()
    restored = PEARL.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        assert isinstance(restored, PEARL) and restored.num_meta_steps == 2
        got = restored.train()
        assert got["learners"]["pearl"] == expected["learners"]["pearl"]
        assert got["training_iteration"] == expected["training_iteration"] == 3
    finally:
        restored.stop()
    # A MACAW refuses PEARL's state with the reason, not a torch traceback.
    macaw = small_macaw(data_root)
    try:
        assert isinstance(macaw, MACAW)
        with pytest.raises(CheckpointError, match="algorithm PEARL"):
            macaw.restore_from_path(str(tmp_path / "ckpt"))
    finally:
        macaw.stop()


def test_train_evaluate_and_finetune_commands(
    data_root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = {
        "algorithm": "pearl",
        "family": "point-robot",
        "data_root": data_root,
        "train_tasks": TRAIN,
        "test_tasks": TEST,
        "buffer_stride": 1,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in SMALL.items()},
        "eval_adaptation_batch_size": 32,
        "eval_num_cpus_per_task": 0.5,
        "evaluation_interval": 3,
        "stop_meta_steps": 6,
        "checkpoint_every": 3,
        "out": str(tmp_path / "run"),
    }
    (tmp_path / "pearl.yaml").write_text(yaml.safe_dump(run))
    main(["train", str(tmp_path / "pearl.yaml"), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("\n{") + 1 :])  # progress lines, then the JSON
    assert summary["meta_step"] == 6 and "qf_loss" in summary
    log = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [row["meta_step"] for row in log] == [0, 1, 2, 3, 4, 5, 6]  # 0: untrained model
    assert "post_adaptation_return_mean" in log[0] and "post_adaptation_return_mean" in log[3]
    checkpoint = str(tmp_path / "run" / "latest")

    main(["evaluate", checkpoint, "--json"])
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["meta_steps"] == 6 and set(evaluation["per_task"]) == {"3", "5"}

    # the paper's aggregate buffer: it starts with the 32 adaptation rows and keeps everything
    small = ["--preset", "paper", "--policy-steps", "2", "--batch-size", "16", "--episodes", "1"]
    main(
        [
            "finetune",
            checkpoint,
            "--budgets",
            "20,40",
            *small,
            "--num-cpus-per-task",
            "0.5",
            "--json",
        ]
    )
    tuned = json.loads(capsys.readouterr().out)
    assert [row["budget"] for row in tuned["table"]] == [0, 20, 40]
    tasks = tuned["per_task"]
    assert set(tasks) == {"3", "5"} and len({t["pid"] for t in tasks.values()}) == 2
    for task in tasks.values():
        assert task["initial_rows"] == 32
        for measured in task["budgets"]:  # the buffer grows by exactly the collected steps
            assert measured["buffer_rows"] == 32 + measured["online_steps"]
            assert measured["online_steps"] >= measured["budget"]


def test_run_files_name_the_algorithm_and_refuse_the_other_ones_settings() -> None:
    config, _ = config_from_dict({"algorithm": "pearl", "family": "cheetah-vel", "preset": "ml45"})
    assert isinstance(config, PEARLConfig)
    assert (config.hidden, config.latent_dim, config.embedding_batch_size) == ((512,) * 3, 8, 750)
    assert config.task_batch_size == 16  # Table 2's Meta-World column
    standard, _ = config_from_dict({"algorithm": "pearl"})
    assert (standard.kl_lambda, standard.reward_scale, standard.latent_dim) == (0.1, 5.0, 5)
    assert (standard.hidden, standard.policy_lr, standard.batch_size) == ((300,) * 3, 3e-4, 256)
    with pytest.raises(RunConfigError, match=r"inner_batch_size.*macaw has it, pearl does not"):
        config_from_dict({"algorithm": "pearl", "inner_batch_size": 64})
    with pytest.raises(RunConfigError, match="did you mean 'pearl'"):
        config_from_dict({"algorithm": "perl"})


def test_validate_gives_fix_it_errors(data_root: str) -> None:
    with pytest.raises(RayMacawError, match="use a smaller embedding_batch_size"):
        small_config(data_root).training(embedding_batch_size=10_000).validate()
    with pytest.raises(PEARLConfigError, match="kl_lambda"):
        small_config(data_root).training(kl_lambda=-1.0).validate()
    with pytest.raises(PEARLConfigError, match="latent_dim must be positive"):
        small_config(data_root).training(latent_dim=0).validate()
    with pytest.raises(TypeError, match="unexpected keyword argument 'inner_batch_size'"):
        PEARLConfig().training(inner_batch_size=3)
