"""Faults during meta-training: a lost inner-loop worker, non-finite losses, a killed driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import ray
import torch
import yaml
from helpers import write_root

from ray_macaw import MACAWConfig
from ray_macaw.errors import NonFiniteLossError

TRAIN, TEST = [0, 1, 2, 4], [3]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Iterator[str]:
    path = tmp_path_factory.mktemp("faults-data")
    write_root(path, "point-robot", task_ids=(0, 1, 2, 3, 4), episodes=20, rows_per_part=200)
    yield str(path)


def config(root: str, workers: int = 0, **training: object) -> MACAWConfig:
    return (
        MACAWConfig()
        .environment(family="point-robot", train_tasks=TRAIN, test_tasks=TEST)
        .offline_data(root=root, buffer_stride=1)
        .training(hidden=(32, 32), latent_dim=8, task_batch_size=3, inner_batch_size=32,
                  outer_batch_size=32, **training)
        .inner_loop_workers(num_workers=workers, num_cpus_per_worker=0.5)
        .evaluation(evaluation_interval=10**6, adaptation_batch_size=32, num_cpus_per_task=0.5,
                    at_start=False)
        .debugging(seed=5)
    )  # fmt: skip


def weights(algo: object) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in algo.model.state_dict().items()}  # type: ignore[attr-defined]


def test_a_lost_inner_loop_worker_is_replaced_and_the_step_retried_exactly(root: str) -> None:
    undisturbed, disturbed = config(root, 2).build_algo(), config(root, 2).build_algo()
    try:
        for _ in range(2):
            undisturbed.train()
            disturbed.train()
        lost = disturbed.inner_workers[0]
        ray.kill(lost, no_restart=True)  # its node is gone, say
        undisturbed.train()
        disturbed.train()  # the step that meets the dead worker
        assert disturbed.pool.restarts == 1 and disturbed.inner_workers[0] != lost
        expected, got = weights(undisturbed), weights(disturbed)
        assert all(torch.equal(expected[k], got[k]) for k in expected)
        assert len(set(disturbed.inner_worker_nodes())) == 1  # the replacement answers
    finally:
        undisturbed.stop()
        disturbed.stop()


def test_workers_lost_too_often_stop_the_run_with_the_fix(root: str) -> None:
    from ray_macaw.algorithms.macaw.worker_pool import WorkerLostError

    algo = config(root, 1).inner_loop_workers(max_restarts=0).build_algo()
    try:
        ray.kill(algo.inner_workers[0], no_restart=True)
        with pytest.raises(WorkerLostError, match="--resume"):
            algo.training_step()
    finally:
        algo.stop()


def poison(algo: object) -> None:
    """A NaN in the policy's first weights: the next meta-step's losses are NaN."""
    first = next(algo.model.policy.parameters())  # type: ignore[attr-defined]
    with torch.no_grad():
        first.view(-1)[0] = float("nan")


def test_a_non_finite_step_is_skipped_and_counted(root: str) -> None:
    algo = config(root).build_algo()
    try:
        algo.train()
        poison(algo)
        before = weights(algo)
        adam_steps = algo.optimizers["value"].state_dict()["state"][0]["step"].item()
        result = algo.train()
        assert result["num_meta_steps_lifetime"] == 2
        assert result["learners"]["num_non_finite_steps_skipped"] == 1
        after = weights(algo)
        same = [torch.equal(before[k].nan_to_num(7.0), after[k].nan_to_num(7.0)) for k in before]
        assert all(same)  # no parameter moved
        assert algo.optimizers["value"].state_dict()["state"][0]["step"].item() == adam_steps
    finally:
        algo.stop()


def test_a_non_finite_step_stops_the_run_when_asked(root: str) -> None:
    algo = config(root, non_finite_loss="stop").build_algo()
    try:
        poison(algo)
        with pytest.raises(NonFiniteLossError, match=r"meta-step 1.*Fix:"):
            algo.training_step()
    finally:
        algo.stop()


def test_train_resumes_after_the_driver_is_killed(root: str, tmp_path: Path) -> None:
    """SIGKILL `ray-macaw train` after a checkpoint; `--resume` continues from it to the end."""
    out = tmp_path / "run"
    run_file = tmp_path / "run.yaml"
    settings = {"family": "point-robot", "data_root": root, "train_tasks": TRAIN,
                "test_tasks": TEST, "hidden": [32, 32], "latent_dim": 8, "task_batch_size": 3,
                "inner_batch_size": 32, "outer_batch_size": 32, "buffer_stride": 1,
                "eval_adaptation_batch_size": 32, "evaluation_interval": 1000,
                "stop_meta_steps": 400, "checkpoint_every": 20, "out": str(out)}  # fmt: skip
    run_file.write_text(yaml.safe_dump(settings))
    command = [sys.executable, "-m", "ray_macaw.cli.main", "train", str(run_file)]
    with open(tmp_path / "log", "w") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not (out / "latest" / "rllib_checkpoint.json").exists():
                assert driver.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "log"
                ).read_text()[-2000:]
                time.sleep(0.05)
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        finally:
            driver.wait()
    steps_before = [json.loads(x)["meta_step"] for x in (out / "metrics.jsonl").open()]
    assert steps_before[-1] < 400
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    steps = [json.loads(x)["meta_step"] for x in (out / "metrics.jsonl").open()]
    assert steps[-1] == 400
    resumed_at = int(resumed.stdout.split("at meta-step ")[1].split()[0])
    assert resumed_at >= 20 and resumed_at % 20 == 0  # from the last checkpoint, not scratch
    # each meta-step logged once, after the evaluation of the untrained model (meta-step 0)
    assert steps == list(range(401))


def test_checkpoints_of_another_shape_or_a_newer_format_are_refused(
    root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ray_macaw.algorithms.common import checkpoints
    from ray_macaw.cli.main import main

    algo = config(root).build_algo()
    other = config(root).training(hidden=(16, 16)).build_algo()
    try:
        algo.save_to_path(str(tmp_path / "ckpt"))
        with pytest.raises(checkpoints.CheckpointError, match=r"hidden \[32, 32\]"):
            other.restore_from_path(str(tmp_path / "ckpt"))
        state = algo.get_state()
        state["stamp"]["format"] = checkpoints.FORMAT + 1
        with pytest.raises(checkpoints.CheckpointError, match="upgrade ray-macaw"):
            algo.set_state(state)
    finally:
        algo.stop()
        other.stop()
    assert main(["evaluate", str(tmp_path)]) == 2  # a directory that is not a checkpoint
    assert "no checkpoint here" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [0, 2])
def test_the_same_seed_gives_identical_metrics(root: str, workers: int) -> None:
    def first_steps() -> list[dict]:
        algo = config(root, workers).build_algo()
        try:
            return [algo.train()["learners"]["macaw"] for _ in range(4)]
        finally:
            algo.stop()

    first, second = first_steps(), first_steps()
    assert first == second and len({json.dumps(m, sort_keys=True) for m in first}) == 4


def test_a_tune_trial_that_raises_is_retried_from_its_checkpoint(
    root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.rllib.callbacks.callbacks import RLlibCallback

    from ray_macaw.tune.run import build_tuner, param_space
    from ray_macaw.tune.spec import load_tune_spec

    marker = tmp_path / "failed-once"
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "3600")

    class FailOnceAtStep3(RLlibCallback):  # pickled by value into the trial's process
        def on_train_result(self, *, algorithm, result, **kwargs):  # type: ignore[no-untyped-def]
            if algorithm.num_meta_steps == 3 and not marker.exists():
                marker.touch()
                # Tune copies the trial's log to storage only now and then (none more in this
                # test: TUNE_GLOBAL_CHECKPOINT_S); make its last copy one from before any result.
                (trial_dir,) = (tmp_path / "runs" / "smoke-grid").glob("macaw_seed0_*")
                (trial_dir / "result.json").write_text("")
                raise RuntimeError("injected trial failure")

    grid = Path(__file__).parents[1] / "tune_configs/smoke/grid.yaml"
    spec = load_tune_spec(grid, {"data_root": root, "train_tasks": TRAIN, "test_tasks": TEST})
    spec = replace(spec, seeds=(0,), stop_meta_steps=6, checkpoint_every=2,
                   storage_path=str(tmp_path / "runs"))  # fmt: skip
    space = {**param_space(spec), "callbacks_class": FailOnceAtStep3}
    results = build_tuner(spec, space).fit()
    assert marker.exists() and not results.errors
    (result,) = results
    steps = [json.loads(x)["training_iteration"] for x in open(Path(result.path) / "result.json")]
    # Step 3 failed before it was reported; the retry restored the step-2 checkpoint (from
    # scratch, the log would repeat steps 1 and 2) and kept steps 1-2 (tune/result_log.py).
    assert steps == [1, 2, 3, 4, 5, 6]
