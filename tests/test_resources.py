"""Requests larger than the cluster fail in one line instead of hanging (issue 19, item 5).

Each test runs under a bounded wait (pytest-timeout): the old behaviour, waiting forever, fails.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from helpers import write_root

from ray_macaw.cli.main import main
from ray_macaw.runtime import ray_setup


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resources-data")
    write_root(path, "point-robot", task_ids=(0, 1, 3), episodes=4, rows_per_part=100)
    return path


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.timeout(60)
def test_collect_asking_for_more_cpus_than_the_local_ray_fails_at_once(
    tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["collect", "--family", "point-robot", "--tasks", "0", "--steps", "50",
            "--algo", "random", "--out", str(tmp_path), "--num-cpus-per-task", "4",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = error_line(capsys)
    assert "cannot run on the local Ray" in err and "4 CPU" in err and "largest node has 2" in err


@pytest.mark.timeout(60)
def test_finetune_asking_for_more_cpus_than_the_local_ray_fails_at_once(
    tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["finetune", str(tmp_path), "--num-cpus-per-task", "8"]) == 2
    assert "--num-cpus-per-task" in error_line(capsys)


@pytest.mark.timeout(60)
def test_more_inner_loop_workers_than_cpus_fail_at_once(
    root: Path, tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {"family": "point-robot", "data_root": str(root), "train_tasks": [0, 1],
                "test_tasks": [3], "hidden": [16, 16], "latent_dim": 4, "task_batch_size": 2,
                "inner_batch_size": 16, "outer_batch_size": 16, "buffer_stride": 1,
                "eval_adaptation_batch_size": 16, "num_inner_loop_workers": 4,
                "stop_meta_steps": 1, "out": str(tmp_path / "run")}  # fmt: skip
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    assert main(["train", str(path)]) == 2
    err = error_line(capsys)
    assert "together they need 5 CPU; the cluster has 2" in err
    assert "num_inner_loop_workers" in err


@pytest.mark.timeout(60)
def test_on_a_cluster_a_request_waits_the_configured_time_then_fails(
    ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A joined cluster may grow (autoscaler): say what is pending, wait the configured time."""
    monkeypatch.setattr(ray_setup, "started_here", lambda: False)
    monkeypatch.setattr(ray_setup, "POLL_S", 0.2)
    monkeypatch.setenv(ray_setup.RESOURCE_WAIT_ENV, "1")
    lines: list[str] = []
    start = time.monotonic()
    with pytest.raises(ray_setup.ResourceError, match=r"within 1 s \(RAY_MACAW_RESOURCE_WAIT_S"):
        ray_setup.check_resources("a test actor", [{"CPU": 64}], "ask for less", log=lines.append)
    assert 0.9 < time.monotonic() - start < 10
    assert lines and lines[0].startswith("pending: a test actor")
    ray_setup.check_resources("a small actor", [{"CPU": 1}], "-", log=lines.append)  # fits
