"""Writer -> Parquet -> reader round trip on real point-robot rollouts, Ray Datasets, inspect."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from helpers import rollout, write_root

from ray_macaw.cli.main import main
from ray_macaw.data import schema as S
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import Manifest
from ray_macaw.data.shards import DatasetWriter
from ray_macaw.tasks import get_task_family


def test_round_trip_preserves_every_value(tmp_path: Path) -> None:
    family = get_task_family("cheetah-vel")
    env = family.make_env(4)
    writer = DatasetWriter(tmp_path, family, obs_dim=20, act_dim=6, gamma=0.9)
    task_writer = writer.task_writer(4, rows_per_part=300)
    rng = np.random.default_rng(0)
    episodes = [rollout(env, rng, seed=s) for s in range(3)]
    for ep in episodes:
        task_writer.add_episode(
            ep["obs"], ep["actions"], ep["rewards"], ep["next_obs"], terminated=False
        )
    task_writer.flush()

    data = TaskDatasets(tmp_path, "cheetah-vel").load(4)
    assert data.n_rows == 600
    for name, key in [(S.OBS, "obs"), (S.ACTIONS, "actions"), (S.NEXT_OBS, "next_obs")]:
        expected = np.concatenate([ep[key] for ep in episodes]).astype(np.float32)
        np.testing.assert_array_equal(data.columns[name], expected)
    np.testing.assert_array_equal(data.columns[S.STEP], np.arange(600))
    np.testing.assert_array_equal(data.columns[S.EPISODE_ID], np.repeat([0, 1, 2], 200))
    np.testing.assert_array_equal(data.columns[S.T], np.tile(np.arange(200), 3))
    assert (data.columns[S.TASK_ID] == 4).all()
    # flags: only each episode's last step is truncated; nothing terminated
    assert data.columns[S.TRUNCATED].sum() == 3 and data.columns[S.TRUNCATED][199]
    assert not data.columns[S.TERMINATED].any()
    # terminal obs is the episode's last next_obs; R and g follow the per-episode recursion
    first = episodes[0]
    np.testing.assert_array_equal(
        data.columns[S.TERMINAL_OBS][:200],
        np.broadcast_to(first["next_obs"][-1].astype(np.float32), (200, 20)),
    )
    r = first["rewards"].astype(np.float32).astype(np.float64)
    assert data.columns[S.MC_RETURN][198] == pytest.approx(r[198] + 0.9 * r[199], rel=1e-5)
    assert data.columns[S.TERMINAL_DISCOUNT][197] == pytest.approx(0.9**3)


def test_parts_end_on_episodes_and_checksums_match(tmp_path: Path) -> None:
    write_root(tmp_path, rows_per_part=50)  # 20-step episodes: parts of 60 rows (3 episodes)
    manifest = Manifest.load(tmp_path / "point-robot")
    record = manifest.tasks[0]
    assert [p.rows for p in record.parts] == [60, 60]
    assert [p.episodes for p in record.parts] == [3, 3]
    assert [p.first_step for p in record.parts] == [0, 60]
    assert record.complete and not manifest.tasks[2].parts
    for part in record.parts:
        data = (tmp_path / "point-robot" / part.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part.sha256
    assert manifest.library_versions["ray"] == "2.60.0"
    leftovers = [p for p in (tmp_path / "point-robot").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_writer_resumes_after_last_complete_part(tmp_path: Path) -> None:
    writer = write_root(tmp_path, task_ids=(5,), episodes=3, rows_per_part=1000)
    family = get_task_family("point-robot")
    env = family.make_env(5)
    resumed = writer.task_writer(5, rows_per_part=1000)
    assert resumed.rows_written == 60
    ep = rollout(env, np.random.default_rng(9), seed=9)
    resumed.add_episode(ep["obs"], ep["actions"], ep["rewards"], ep["next_obs"], terminated=False)
    resumed.flush()
    data = TaskDatasets(tmp_path).load(5)
    np.testing.assert_array_equal(data.columns[S.STEP], np.arange(80))
    np.testing.assert_array_equal(np.unique(data.columns[S.EPISODE_ID]), np.arange(4))
    assert (tmp_path / "point-robot" / "task_id=5" / "part-00001.parquet").is_file()


def test_sampling_from_loaded_task(tmp_path: Path) -> None:
    write_root(tmp_path, task_ids=(1,), episodes=20)
    data = TaskDatasets(tmp_path).load(1)
    rng = np.random.default_rng(0)
    rows = data.buffer(stride=7)
    batch = data.sample_contiguous(16, rng, rows)
    assert set(batch) == set(S.arrow_schema(2, 2).names)
    assert (np.diff(batch[S.STEP]) == 7).all()
    uniform = data.sample_uniform(32, rng)
    assert len(np.unique(uniform[S.STEP])) == 32 and uniform[S.OBS].shape == (32, 2)


def test_whole_root_reads_as_hive_partitioned_parquet(tmp_path: Path) -> None:
    write_root(tmp_path)
    dataset = pads.dataset(
        tmp_path / "point-robot", format="parquet", partitioning="hive", exclude_invalid_files=True
    )
    table = dataset.to_table()
    assert table.num_rows == 360
    assert sorted(set(table.column(S.TASK_ID).to_pylist())) == [0, 1, 3]


def test_ray_dataset_per_task(tmp_path: Path, ray_local: None) -> None:
    write_root(tmp_path)
    datasets = TaskDatasets(tmp_path)
    ds = datasets.ray_dataset(3)
    assert ds.count() == 120
    batch = ds.take_batch(8, batch_format="numpy")
    assert batch[S.OBS].shape == (8, 2) and (batch[S.TASK_ID] == 3).all()
    assert set(ds.schema().names) == set(S.arrow_schema(2, 2).names)


def test_dataset_inspect_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_root(tmp_path)
    assert main(["dataset", "inspect", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (family,) = doc["families"]
    assert family["family"] == "point-robot"
    tasks = {t["task_id"]: t for t in family["tasks"]}
    assert set(tasks) == {0, 1, 3}
    returns = TaskDatasets(tmp_path).load(1).episode_returns()
    assert tasks[1]["rows"] == 120 and tasks[1]["episodes"] == 6
    assert tasks[1]["mean_return"] == pytest.approx(returns.mean(), rel=1e-6)
    assert tasks[1]["max_return"] == pytest.approx(returns.max(), rel=1e-6)
    assert all(t["checksum"] == "ok" for t in tasks.values())
    assert main(["dataset", "inspect", str(tmp_path)]) == 0
    assert "checksum" in capsys.readouterr().out
