"""MACAW as an RLlib Algorithm on real point-robot data: workers, checkpoints, evaluation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
import yaml

from ray_macaw import MACAW, MACAWConfig
from ray_macaw.algorithms.macaw.validation import MACAWConfigError
from ray_macaw.cli.main import main
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.run import collect
from ray_macaw.errors import UnknownNameError
from ray_macaw.training.run_file import RunConfigError, load_run_file

TRAIN, TEST = [0, 1, 2, 4, 5], [3]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Iterator[str]:
    root = tmp_path_factory.mktemp("algo-data")
    collect(
        CollectConfig(
            family="point-robot",
            root=str(root),
            tasks="0-5",
            steps=1400,
            algo="noisy-init",
            rows_per_part=700,
            gamma=0.97,  # not the default: fine-tuning must read it from the data
        ),
        show_progress=False,
    )
    yield str(root)


def small_config(root: str, workers: int = 0) -> MACAWConfig:
    return (
        MACAWConfig()
        .environment(family="point-robot", train_tasks=TRAIN, test_tasks=TEST)
        .offline_data(root=root)
        .training(
            hidden=(32, 32),
            latent_dim=8,
            task_batch_size=3,
            inner_batch_size=64,
            outer_batch_size=64,
        )
        .inner_loop_workers(num_workers=workers, num_cpus_per_worker=0.5)
        .evaluation(evaluation_interval=2, adaptation_batch_size=64, num_cpus_per_task=0.5)
        .debugging(seed=3)
    )


def one_step_gradients(root: str, workers: int) -> dict[str, torch.Tensor | None]:
    algo = small_config(root, workers).build_algo()
    try:
        algo.training_step()
        return {
            n: None if p.grad is None else p.grad.clone() for n, p in algo.model.named_parameters()
        }
    finally:
        algo.stop()


def test_zero_one_and_two_workers_give_the_same_gradient(data_root: str) -> None:
    local = one_step_gradients(data_root, 0)
    for workers in (1, 2):
        remote = one_step_gradients(data_root, workers)
        for name, grad in local.items():
            assert (grad is None) == (remote[name] is None), name
            if grad is not None:
                torch.testing.assert_close(remote[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_workers_spread_and_results_carry_macaw_metrics(data_root: str) -> None:
    algo = small_config(data_root, workers=2).build_algo()
    try:
        result = algo.train()
        macaw = result["learners"]["macaw"]
        for key in (
            "inner_value_loss",
            "outer_value_loss",
            "outer_policy_loss",
            "inner_adv_head_loss",
            "outer_weight_mean",
            "outer_weight_max",
        ):
            assert key in macaw
        assert set(result["learners"]["grad_norm"]) == {"value", "policy", "value_lr", "policy_lr"}
        assert result["learners"]["adv_coef"] == pytest.approx(0.00995, rel=0.05)
        assert len(result["learners"]["inner_lr"]["policy"]) == 15  # 5 WT layers x (z, M, m)
        assert result["training_iteration"] == 1 and result["num_meta_steps_lifetime"] == 1
        nodes = ray.get([w.node_id.remote() for w in algo.inner_workers])
        assert len(nodes) == 2
    finally:
        algo.stop()


def test_every_evaluation_adapts_on_the_same_rows_from_the_same_states(data_root: str) -> None:
    """Evaluations of one run are paired (issue 18): the held-out tasks' seeds (adaptation rows,
    episode start states) do not change with the meta-step."""
    algo = small_config(data_root).evaluation(evaluation_interval=0).build_algo()
    try:
        before = [task.options["seed"] for task, _ in algo.held_out_arguments({})]
        algo.train()
        after = [task.options["seed"] for task, _ in algo.held_out_arguments({})]
    finally:
        algo.stop()
    assert algo.num_meta_steps == 1 and before == after and len(set(before)) == len(TEST)


def test_save_restore_continues_exactly(data_root: str, tmp_path: Path) -> None:
    algo = small_config(data_root).build_algo()
    try:
        algo.train()
        algo.train()
        algo.save_to_path(str(tmp_path / "ckpt"))
        expected = algo.train()
    finally:
        algo.stop()
    restored = MACAW.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        assert restored.num_meta_steps == 2
        got = restored.train()
        assert got["learners"]["macaw"] == expected["learners"]["macaw"]
        assert got["training_iteration"] == expected["training_iteration"] == 3
    finally:
        restored.stop()


def test_evaluation_adapts_each_held_out_task(data_root: str) -> None:
    algo = small_config(data_root).build_algo()
    try:
        result = algo.evaluate()
        assert set(result["per_task"]) == {"3"}
        task = result["per_task"]["3"]
        assert task["pre_adaptation_return"] < 0 and task["post_adaptation_return"] < 0
        assert result["adaptation_gain_mean"] == pytest.approx(
            task["post_adaptation_return"] - task["pre_adaptation_return"]
        )
        assert "evaluation" in algo.train() or algo.training_iteration == 1
    finally:
        algo.stop()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda c: c.offline_data(root=None), "no data root"),
        (lambda c: c.environment(test_tasks=[3, 4]), r"held-out tasks \[4\] are also training"),
        (lambda c: c.environment(train_tasks=[0, 1, 9]), r"no data for tasks \[9\]"),
        (lambda c: c.training(outer_batch_size=10_000), "fewer than the outer batch"),
        (lambda c: c.training(inner_steps=3), "does not split into 3 equal inner steps"),
        (lambda c: c.training(task_batch_size=0), "task_batch_size must be positive"),
        (lambda c: c.environment(family_seed=5), "collected with family seed 0"),
    ],
)
def test_validate_gives_fix_it_errors(data_root: str, change, needle: str) -> None:
    config = small_config(data_root)
    change(config)
    with pytest.raises(MACAWConfigError, match=needle):
        config.validate()


def write_run_file(path: Path, root: str, **extra: object) -> Path:
    settings = {
        "family": "point-robot",
        "data_root": root,
        "train_tasks": TRAIN,
        "test_tasks": TEST,
        "hidden": [32, 32],
        "latent_dim": 8,
        "task_batch_size": 3,
        "inner_batch_size": 64,
        "outer_batch_size": 64,
        "eval_adaptation_batch_size": 64,
        "eval_num_cpus_per_task": 0.5,
        "evaluation_interval": 3,
        "checkpoint_every": 2,
        "log_every": 1,
        "stop_meta_steps": 4,
        "out": str(path.parent / "run"),
        **extra,
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def test_train_command_checkpoints_and_resumes(
    data_root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_file = write_run_file(tmp_path / "run.yaml", data_root)
    assert main(["train", str(run_file), "--json"]) == 0
    out = capsys.readouterr().out
    assert "eval pre" in out  # evaluation ran at meta-step 3
    summary = json.loads(out[out.index("{") :])
    assert summary["meta_step"] == 4 and Path(summary["checkpoint"]).is_dir()
    assert main(["train", str(run_file), "--stop-steps", "6", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["meta_step"] for line in lines] == [0, 1, 2, 3, 4, 5, 6]
    assert main(["evaluate", summary["checkpoint"], "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["meta_steps"] == 6 and set(evaluation["per_task"]) == {"3"}


def test_run_file_refuses_unknown_keys(tmp_path: Path) -> None:
    run_file = write_run_file(tmp_path / "run.yaml", "/nowhere", task_batch=5)
    with pytest.raises(
        RunConfigError, match=r"unknown setting 'task_batch'.*did you mean 'task_batch_size'"
    ):
        load_run_file(run_file)


def test_run_file_sets_the_drivers_cpus(tmp_path: Path) -> None:
    """RLlib's `num_cpus_for_main_process` sizes a Tune trial's first bundle."""
    run_file = write_run_file(tmp_path / "run.yaml", "/nowhere", num_cpus_for_main_process=0.5)
    config, _ = load_run_file(run_file)
    assert config.num_cpus_for_main_process == 0.5
    assert MACAW.default_resource_request(config).bundles[0] == {"CPU": 0.5}
    zero = write_run_file(tmp_path / "zero.yaml", "/nowhere", num_cpus_for_main_process=0)
    with pytest.raises(RunConfigError, match="num_cpus_for_main_process must be positive"):
        load_run_file(zero)


ABLATIONS = {
    "meta_bc": {"objective": "meta_bc", "advantage_head": False},  # paper baselines
    "multitask_finetune": {
        "objective": "multitask",
        "advantage_head": False,
        "policy_layer": "bias_transform",
        "value_layer": "bias_transform",
    },
    "maml_awr_no_adv_head": {"advantage_head": False},
    "no_weight_transform": {"policy_layer": "bias_transform", "value_layer": "bias_transform"},
    "no_weight_transform_wide": {
        "policy_layer": "bias_transform",
        "value_layer": "bias_transform",
        "hidden": (725, 725),
    },
    "first_order": {"first_order": True},
    "latent_only": {"adapt": "latent"},
    "paper_value_target": {"outer_value_target": "mc"},
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_baselines_and_ablations_train_and_evaluate(data_root: str, name: str) -> None:
    config = small_config(data_root).training(**ABLATIONS[name])
    algo = config.build_algo()
    try:
        for _ in range(2):
            result = algo.train()
        assert result["num_meta_steps_lifetime"] == 2
        assert np.isfinite(result["learners"]["macaw"]["outer_policy_loss"])
        evaluation = algo.evaluate()
        assert np.isfinite(evaluation["post_adaptation_return_mean"])
        if name == "meta_bc":  # the value network is never updated
            assert all(p.grad is None for p in algo.model.value.parameters())
        if name == "multitask_finetune":  # one-hot task ids widen the input; no learned lrs used
            assert algo.model_config.obs_dim == 2 + 40
            assert all(p.grad is None for p in algo.model.policy_lr.parameters())
    finally:
        algo.stop()


def test_ml45_preset_is_table_4_meta_world_column() -> None:
    config = MACAWConfig().preset("ml45")
    assert (
        config.adv_coef,
        config.outer_value_lr,
        config.inner_policy_lr,
        config.inner_value_lr,
        config.hidden,
        config.task_batch_size,
    ) == (1e-3, 1e-6, 1e-2, 1e-4, (300, 300, 300), 10)
    assert config.outer_policy_lr == 1e-4 and config.inner_batch_size == 256  # unchanged
    default = MACAWConfig()
    assert (
        default.adv_coef,
        default.outer_value_lr,
        default.inner_policy_lr,
        default.hidden,
        default.task_batch_size,
        default.buffer_stride,
    ) == (0.01, 1e-5, 1e-3, (100, 100, 100), 5, 7)
    with pytest.raises(UnknownNameError, match="did you mean 'ml45'"):
        MACAWConfig().preset("ml4")


@pytest.mark.timeout(300)
def test_online_finetuning_grows_the_buffer_by_the_collected_steps(
    data_root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # three held-out tasks of one CPU each on a 2-CPU Ray: finished actors must free their CPUs
    config = small_config(data_root).environment(train_tasks=[0, 1, 2], test_tasks=[3, 4, 5])
    algo = config.build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    argv = [
        "finetune",
        str(tmp_path / "ckpt"),
        "--budgets",
        "40,80",
        "--value-steps",
        "3",
        "--policy-steps",
        "4",
        "--burn-in-rounds",
        "1",
        "--batch-size",
        "32",
        "--episodes",
        "1",
        "--num-cpus-per-task",
        "0.5",
        "--json",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [row["budget"] for row in summary["table"]] == [0, 40, 80]
    tasks = summary["per_task"]
    assert set(tasks) == {"3", "4", "5"}
    assert len({task["pid"] for task in tasks.values()}) == 3  # one actor per held-out task
    for task in tasks.values():
        for measured in task["budgets"]:  # 20-step point-robot episodes
            assert measured["online_steps"] == measured["budget"]
            assert measured["buffer_rows"] == task["initial_rows"] + measured["online_steps"]
        # the authors' schedule: no adaptation rows, 1 burn-in round, 3 value + 4 policy steps
        assert task["initial_rows"] == 0
        last = task["budgets"][-1]
        assert (last["rounds"], last["rounds_with_updates"]) == (4, 3)
        assert (task["value_updates"], task["policy_updates"]) == (3 * 3, 4 * 3)
        assert task["gamma"] == pytest.approx(0.97)  # the data's (manifest)
    first = summary["table"][1]
    assert first["improvement"] == pytest.approx(
        np.mean([t["budgets"][0]["return"] - t["offline_return"] for t in tasks.values()])
    )


def test_test_buffer_is_cut_like_the_inner_buffer(data_root: str) -> None:
    """Spec §6.2: held-out adaptation data comes from the test buffer, cut with the inner
    buffers' size, stride and position (the data-quality ablation relies on it)."""
    from ray_macaw.data.datasets import TaskDatasets
    from ray_macaw.evaluation.held_out import HeldOutTask
    from ray_macaw.evaluation.offline import MACAWAdaptation

    config = small_config(data_root).offline_data(
        inner_buffer_size=100, inner_buffer_stride=1, inner_buffer_position="start"
    )
    assert config.inner_buffer() == {
        "size": 100, "stride": 1, "position": "start", "middle_centre": "half"
    }  # fmt: skip
    assert config.outer_buffer() == {"size": -1, "stride": 7}  # outer keeps its own stride
    options = {"batch_size": 64, "seed": 0, "test_buffer": config.inner_buffer()}
    held_out = HeldOutTask(None, None, data_root, "point-robot", 0, TEST[0], options)
    batch = MACAWAdaptation().batch(held_out)
    task = TaskDatasets(data_root, "point-robot").load(TEST[0])
    first = {tuple(row) for row in task.columns["obs"][:100].tolist()}
    later = {tuple(row) for row in task.columns["obs"][100:].tolist()}
    drawn = {tuple(row) for row in batch["obs"].numpy().astype(np.float32).tolist()}
    assert len(drawn) > 1 and drawn <= first and not drawn & (later - first)


def test_a_separate_inner_root_serves_the_inner_and_test_buffers(
    data_root: str, tmp_path: Path
) -> None:
    """The authors' `standard_rand_inner` (spec §7.3): inner and held-out test batches from one
    root (random-policy data), outer batches from the behaviour data."""
    from tests.helpers import write_root

    inner_root = tmp_path / "inner"
    write_root(inner_root, task_ids=tuple(range(6)), episodes=8)  # 160 random-policy rows each
    config = small_config(data_root).offline_data(inner_root=str(inner_root), inner_buffer_stride=1)
    algo = config.build_algo()
    try:
        assert max(len(rows) for rows in algo.layout.inner.values()) == 160
        assert min(len(rows) for rows in algo.layout.outer.values()) == 1400 // 7
        assert algo.local is not None and algo.local.inner_data is not None
        random_obs = algo.local.inner_data[0].columns["obs"]
        # only the outer buffer's rows are held (issue 16): stride 7 of 1400
        assert len(random_obs) == 160 and len(algo.local.data[0].columns["obs"]) == 1400 // 7
        (task, _), *_ = algo.held_out_arguments({})
        assert task.root == str(inner_root)  # test buffers come from the inner root
        algo.train()
    finally:
        algo.stop()
    partial = tmp_path / "partial"
    write_root(partial, task_ids=(0, 1, 2), episodes=8)
    with pytest.raises(MACAWConfigError, match=r"no data for tasks \[3, 4, 5\].*--out .*partial"):
        small_config(data_root).offline_data(inner_root=str(partial)).validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("saved_on", "loaded_on"), [("cpu", "cuda"), ("cuda", "cpu")])
def test_checkpoints_load_on_the_other_device(
    data_root: str, tmp_path: Path, saved_on: str, loaded_on: str
) -> None:
    """A checkpoint saved on one device restores onto the other (issue 21) and continues: the
    next step's weights agree with the saving algorithm's own next step."""

    def build(device: str) -> MACAW:
        return (
            small_config(data_root)
            .evaluation(evaluation_interval=0)
            .training(device=device)
            .build_algo()
        )

    saving = build(saved_on)
    try:
        saving.train()
        saving.save_to_path(str(tmp_path / "ckpt"))
        saving.train()
        expected = {n: p.detach().cpu() for n, p in saving.model.named_parameters()}
    finally:
        saving.stop()
    loading = build(loaded_on)
    try:
        loading.restore_from_path(str(tmp_path / "ckpt"))
        assert all(p.device.type == loaded_on for p in loading.model.parameters())
        loading.train()
        for name, param in loading.model.named_parameters():
            torch.testing.assert_close(param.detach().cpu(), expected[name], rtol=1e-4, atol=1e-5)
    finally:
        loading.stop()
