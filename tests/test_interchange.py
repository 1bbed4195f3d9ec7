"""Import the authors' HDF5 layout and Minari datasets; export to Minari; round trips."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import write_root

from ray_macaw.cli.main import main
from ray_macaw.data import columns as C
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.interchange.macaw_hdf5 import import_hdf5, task_files
from ray_macaw.data.interchange.minari_io import export_minari, import_minari
from ray_macaw.data.manifest import Manifest
from ray_macaw.errors import DataError, SchemaError
from ray_macaw.tasks import get_task_family

GAMMA = 0.5
OBS_DIM, ACT_DIM = 20, 6


def authors_file(path: Path, backwards: bool = True) -> dict[str, np.ndarray]:
    """Two episodes as the authors' writer stores them (spec §6.1), and their time-order truth.

    Episode A: 3 steps, rewards 1, 2, 4, truncated. R = 3, 4, 4; g = 0.125, 0.25, 0.5.
    Episode B: 2 steps, rewards -1, 2, ends in a true terminal. R = 0, 2; g = 0.25, 0.5 (the
    authors keep gamma^(L-t) after terminations).
    """
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(5, OBS_DIM)).astype(np.float32)
    truth = {
        "obs": obs,
        "actions": rng.uniform(-1, 1, size=(5, ACT_DIM)).astype(np.float32),
        "next_obs": rng.normal(size=(5, OBS_DIM)).astype(np.float32),
        "rewards": np.array([1, 2, 4, -1, 2], dtype=np.float32),
        "mc_rewards": np.array([3, 4, 4, 0, 2], dtype=np.float32),
        "terminal_discounts": np.array([0.125, 0.25, 0.5, 0.25, 0.5], dtype=np.float32),
        "terminals": np.array([0, 0, 0, 0, 1], dtype=bool),
    }
    truth["terminal_obs"] = truth["next_obs"][[2, 2, 2, 4, 4]]
    order = [2, 1, 0, 4, 3] if backwards else [0, 1, 2, 3, 4]
    with h5py.File(path, "w") as f:
        for name, values in truth.items():
            column = values[order]
            f.create_dataset(name, data=column if column.ndim == 2 else column[:, None])
        f.create_dataset("discount_factor", data=GAMMA)
    return truth


@pytest.mark.parametrize("backwards", [True, False])
def test_import_authors_hdf5_restores_time_order(tmp_path: Path, backwards: bool) -> None:
    path = tmp_path / "buffers_cheetah_vel_train_7_sub_task_0.hdf5"
    truth = authors_file(path, backwards)
    rows = import_hdf5(task_files([str(path)]), get_task_family("cheetah-vel"), tmp_path / "root")
    assert rows == {7: 5}
    cols = TaskDatasets(tmp_path / "root").load(7).columns
    np.testing.assert_array_equal(cols[C.EPISODE_ID], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(cols[C.T], [0, 1, 2, 0, 1])
    for ours, theirs in [
        (C.OBS, "obs"),
        (C.ACTIONS, "actions"),
        (C.NEXT_OBS, "next_obs"),
        (C.REWARDS, "rewards"),
        (C.MC_RETURN, "mc_rewards"),
        (C.TERMINAL_DISCOUNT, "terminal_discounts"),
        (C.TERMINAL_OBS, "terminal_obs"),
    ]:
        np.testing.assert_array_equal(cols[ours], truth[theirs], err_msg=ours)
    np.testing.assert_array_equal(cols[C.TERMINATED], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(cols[C.TRUNCATED], [0, 0, 1, 0, 0])
    manifest = Manifest.load(tmp_path / "root" / "cheetah-vel")
    assert manifest.gamma == GAMMA and manifest.collector["source"] == "macaw-hdf5"


def test_hdf5_task_specs_are_read_without_unpickling_code(tmp_path: Path) -> None:
    path = tmp_path / "buffers_cheetah_vel_train_2_sub_task_0.hdf5"
    authors_file(path)
    specs = tmp_path / "specs"
    specs.mkdir()
    with open(specs / "env_cheetah_vel_train_task2.pkl", "wb") as f:
        pickle.dump([{"velocity": np.float64(0.225), "extra": np.arange(3)}], f)
    out = tmp_path / "root"
    assert (
        main(
            [
                "dataset",
                "import",
                "--format",
                "macaw-hdf5",
                "--family",
                "cheetah-vel",
                "--out",
                str(out),
                "--task-specs",
                str(specs),
                str(path),
            ]
        )
        == 0
    )
    info = Manifest.load(out / "cheetah-vel").tasks[2].info
    assert info["source_task_params"] == {"velocity": 0.225, "extra": [0, 1, 2]}

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(specs / "env_cheetah_vel_train_task2.pkl", "wb") as f:
        pickle.dump([Evil()], f)
    with pytest.raises(DataError, match="not allowed in a task-spec file"):
        import_hdf5(
            {2: path},
            get_task_family("cheetah-vel"),
            tmp_path / "root2",
            {2: specs / "env_cheetah_vel_train_task2.pkl"},
        )


def test_hdf5_import_errors(tmp_path: Path) -> None:
    path = tmp_path / "buffers_x_train_0_sub_task_0.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("obs", data=np.zeros((3, 20)))
    with pytest.raises(SchemaError, match="lacks datasets"):
        import_hdf5({0: path}, get_task_family("cheetah-vel"), tmp_path / "r")
    with pytest.raises(DataError, match="cannot tell the task id"):
        task_files([str(tmp_path / "buffer.hdf5")])


def test_minari_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_root(tmp_path / "root", task_ids=(0, 3), episodes=5)
    minari_root = tmp_path / "minari"
    ids = export_minari(tmp_path / "root", minari_root=minari_root)
    assert ids == ["ray-macaw/point-robot-task0-v0", "ray-macaw/point-robot-task3-v0"]
    rows = import_minari(tmp_path / "back", ids, minari_root=minari_root)  # ids from metadata
    assert rows == {0: 100, 3: 100}
    before, after = TaskDatasets(tmp_path / "root"), TaskDatasets(tmp_path / "back")
    for task_id in (0, 3):
        a, b = before.load(task_id).columns, after.load(task_id).columns
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # explicit task ids and the CLI
    assert (
        main(
            [
                "dataset",
                "import",
                "--format",
                "minari",
                "--family",
                "point-robot",
                "--out",
                str(tmp_path / "cli"),
                "--minari-root",
                str(minari_root),
                "--json",
                f"5={ids[1]}",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["rows"] == {"5": 100}
    assert (
        main(
            [
                "dataset",
                "export",
                str(tmp_path / "cli"),
                "--to",
                "minari",
                "--namespace",
                "mine",
                "--minari-root",
                str(minari_root),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == "mine/point-robot-task5-v0"
