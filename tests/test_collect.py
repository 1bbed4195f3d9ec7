"""Collection with real Ray actors, real environments, real Parquet: contents, resume, faults."""

from __future__ import annotations

import csv
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from helpers import check_task_data

from ray_macaw.cli.main import main
from ray_macaw.collect.behaviour import ScriptedBehaviour
from ray_macaw.collect.config import CollectConfig, CollectConfigError, parse_tasks
from ray_macaw.collect.curves import curve_paths
from ray_macaw.collect.run import CollectionError, actor_name, collect
from ray_macaw.data import columns as C
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import Manifest
from ray_macaw.errors import DataError, UnknownNameError
from ray_macaw.tasks import get_task_family


def test_collect_two_tasks_with_sac(tmp_path: Path, ray_local: None) -> None:
    config = CollectConfig(
        family="point-robot",
        root=str(tmp_path),
        tasks="0,3",
        steps=400,
        rows_per_part=100,
        hyperparameters={"learning_starts": 100},
    )
    sb3_dirs = set(Path(tempfile.gettempdir()).glob("SB3-*"))
    summary = collect(config, show_progress=False)
    assert sorted(summary["collected"]) == [0, 3] and summary["skipped"] == []
    assert set(Path(tempfile.gettempdir()).glob("SB3-*")) == sb3_dirs  # SB3 logs nowhere
    for task_id in (0, 3):
        check_task_data(tmp_path, task_id, 400)
        csv_path, png_path = curve_paths(tmp_path / "point-robot", task_id)
        with open(csv_path) as f:
            assert len(list(csv.DictReader(f))) == 20
        assert png_path.read_bytes()[:4] == b"\x89PNG"
    manifest = Manifest.load(tmp_path / "point-robot")
    assert manifest.collector["algo"] == "sac" and manifest.collector["steps"] == 400
    assert manifest.collector["hyperparameters"]["learning_starts"] == 100
    assert manifest.seeds["seed"] == 0 and manifest.library_versions["torch"].startswith("2.13")
    record = manifest.tasks[3]
    assert record.complete and len(record.parts) == 4
    assert len(record.info["behaviour_curve"]["mean_return"]) == 20
    checkpoints = sorted((tmp_path / "point-robot" / "_agents" / "task_id=3").glob("*.pt"))
    assert [p.name for p in checkpoints] == ["ckpt-000000000300.pt", "ckpt-000000000400.pt"]
    # finished tasks are skipped; other settings are refused
    assert collect(config, show_progress=False)["skipped"] == [0, 3]
    with pytest.raises(DataError, match=r"collector\.steps: 400 there, 500 now"):
        collect(
            CollectConfig(
                family="point-robot",
                root=str(tmp_path),
                tasks="0",
                steps=500,
                rows_per_part=100,
                hyperparameters={"learning_starts": 100},
            ),
            show_progress=False,
        )


def test_collect_with_td3(tmp_path: Path, ray_local: None) -> None:
    config = CollectConfig(
        family="point-robot",
        root=str(tmp_path),
        tasks="2",
        steps=300,
        algo="td3",
        rows_per_part=100,
        hyperparameters={"learning_starts": 100},
    )
    collect(config, show_progress=False)
    check_task_data(tmp_path, 2, 300)
    manifest = Manifest.load(tmp_path / "point-robot")
    assert manifest.collector["algo"] == "td3"
    assert manifest.collector["hyperparameters"]["action_noise_sigma"] == 0.1


def kill_when(config: CollectConfig, task_id: int, min_steps: int, killed: list[int]) -> None:
    """Kill the task's collector actor once it has recorded `min_steps` steps."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            actor = ray.get_actor(actor_name(config, task_id))
            if ray.get(actor.progress.remote(), timeout=5)["steps"] >= min_steps:
                ray.kill(actor, no_restart=True)
                killed.append(task_id)
                return
        except (ValueError, ray.exceptions.RayError):
            pass
        time.sleep(0.05)


def test_killed_collector_resumes_without_gaps_or_duplicates(
    tmp_path: Path, ray_local: None
) -> None:
    config = CollectConfig(
        family="point-robot",
        root=str(tmp_path),
        tasks="5",
        steps=1200,
        rows_per_part=200,
        max_retries=0,
        hyperparameters={"learning_starts": 100},
    )
    killed: list[int] = []
    killer = threading.Thread(target=kill_when, args=(config, 5, 500, killed))
    killer.start()
    with pytest.raises(CollectionError, match="collector of task 5 died"):
        collect(config, show_progress=False)
    killer.join()
    assert killed == [5]
    partial = Manifest.load(tmp_path / "point-robot").tasks[5]
    assert not partial.complete and 400 <= partial.rows < 1200
    summary = collect(config, show_progress=False)  # the same command resumes
    assert summary["collected"][5]["steps"] == 1200
    check_task_data(tmp_path, 5, 1200)
    runs = Manifest.load(tmp_path / "point-robot").tasks[5].info["runs"]
    assert [run["start_rows"] for run in runs] == [0, partial.rows]  # the resume is recorded


def test_dead_actor_is_restarted_within_the_run(tmp_path: Path, ray_local: None) -> None:
    config = CollectConfig(
        family="point-robot",
        root=str(tmp_path),
        tasks="7",
        steps=1000,
        rows_per_part=200,
        hyperparameters={"learning_starts": 100},
    )
    killed: list[int] = []
    killer = threading.Thread(target=kill_when, args=(config, 7, 400, killed))
    killer.start()
    summary = collect(config, show_progress=False)
    killer.join()
    assert killed == [7] and summary["collected"][7]["steps"] == 1000
    check_task_data(tmp_path, 7, 1000)


@pytest.mark.parametrize("algo", ["random", "noisy-init"])
def test_scripted_collection_is_deterministic(tmp_path: Path, ray_local: None, algo: str) -> None:
    tables = []
    for run in ("a", "b"):
        config = CollectConfig(
            family="point-robot",
            root=str(tmp_path / run),
            tasks="1-2",
            steps=1000,
            algo=algo,
            rows_per_part=300,
            seed=4,
        )
        collect(config, show_progress=False)
        check_task_data(tmp_path / run, 2, 1000)
        tables.append(TaskDatasets(tmp_path / run).load(2).columns)
    for name in (C.OBS, C.ACTIONS, C.REWARDS, C.MC_RETURN):
        np.testing.assert_array_equal(tables[0][name], tables[1][name])
    unit = tables[0][C.ACTIONS] / 0.1  # point-robot actions are in [-0.1, 0.1]
    if algo == "random":
        assert unit.std() == pytest.approx(1 / 3**0.5, rel=0.1)  # U(-1, 1)
    else:  # the seeded fresh policy's mean action plus N(0, 0.2^2) noise (spec §7.3)
        env = get_task_family("point-robot").make_env(2)
        policy = ScriptedBehaviour("noisy-init", env, config.resolved().task_seed(2)).policy
        assert policy is not None
        with torch.no_grad():
            mean = policy.mean_action(torch.as_tensor(tables[0][C.OBS])).numpy()
        residual = unit - mean
        assert residual.mean() == pytest.approx(0.0, abs=0.02)
        assert residual.std() == pytest.approx(0.2, rel=0.1)


def test_cli_collect_json(
    tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "collect",
        "--family",
        "point-robot",
        "--tasks",
        "0-1",
        "--steps",
        "60",
        "--algo",
        "random",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--json",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert '"collected"' in out
    assert TaskDatasets(tmp_path).task_ids == (0, 1)


def test_parse_tasks() -> None:
    family = get_task_family("cheetah-vel")
    assert parse_tasks("all", family) == list(range(40))
    assert parse_tasks("test", family) == [2, 7, 15, 23, 26]
    assert parse_tasks("train", family, "sixteenth") == [0, 16, 32]
    assert parse_tasks("0-3,7,2", family) == [0, 1, 2, 3, 7]
    with pytest.raises(CollectConfigError, match="cannot read task selection"):
        parse_tasks("3-1", family)
    with pytest.raises(UnknownNameError, match="unknown task id '40'"):
        parse_tasks("38-40", family)


def test_collect_config_defaults_and_errors() -> None:
    vel = CollectConfig(family="cheetah-vel", root="/tmp/x").resolved()
    assert vel.algo == "td3" and vel.steps == 2_500_000
    ant = CollectConfig(family="ant-dir", root="/tmp/x").resolved()
    assert ant.algo == "sac" and ant.steps == 2_000_000
    assert CollectConfig(family="ml45", root="/tmp/x").resolved().steps == 5_000_000
    assert CollectConfig(family="walker-params", root="/tmp/x").resolved().steps == 1_000_000
    with pytest.raises(UnknownNameError, match="did you mean 'learning_starts'"):
        CollectConfig(family="ant-dir", root="/x", hyperparameters={"learning_start": 5}).resolved()
    with pytest.raises(UnknownNameError, match="behaviour algorithm 'ppo'"):
        CollectConfig(family="ant-dir", root="/x", algo="ppo").resolved()
    with pytest.raises(CollectConfigError, match="steps must be positive"):
        CollectConfig(family="ant-dir", root="/x", steps=-5).resolved()
    with pytest.raises(CollectConfigError, match="max_concurrent must be positive"):
        CollectConfig(family="ant-dir", root="/x", max_concurrent=0).resolved()
