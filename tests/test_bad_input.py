"""Bad input gets a clear error naming the path and the fix, never a deep library traceback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from helpers import write_root

from ray_macaw.cli.main import main
from ray_macaw.data import schema as S
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import Manifest
from ray_macaw.data.shards import DatasetWriter
from ray_macaw.errors import (
    ChecksumError,
    DataError,
    MissingDataError,
    NonFiniteDataError,
    SchemaError,
    SchemaVersionError,
    UnknownNameError,
)
from ray_macaw.tasks import get_task_family


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_root(tmp_path, task_ids=(0, 1), episodes=4, rows_per_part=1000)
    return tmp_path


def part_path(root: Path, task_id: int = 0) -> Path:
    return root / "point-robot" / f"task_id={task_id}" / "part-00000.parquet"


def replace_part(root: Path, table: pa.Table, task_id: int = 0) -> None:
    """Overwrite a part and record its new sha256, so only the content is wrong."""
    path = part_path(root, task_id)
    pq.write_table(table, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = Manifest.load(root / "point-robot")
    manifest.tasks[task_id].parts[0].sha256 = digest
    manifest.save(root / "point-robot")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="data root does not exist") as info:
        TaskDatasets(tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "ray-macaw collect" in str(info.value)


def test_missing_family_in_root(root: Path) -> None:
    with pytest.raises(MissingDataError, match=r"no data for family 'ant-dir'.*found: point-robot"):
        TaskDatasets(root, "ant-dir")


def test_unknown_task_id_in_data(root: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown task id '7'.*use one of: 0, 1"):
        TaskDatasets(root).load(7)


def test_missing_task_directory(root: Path) -> None:
    shutil.rmtree(root / "point-robot" / "task_id=1")
    with pytest.raises(MissingDataError, match="part listed in the manifest is missing") as info:
        TaskDatasets(root).load(1)
    assert "task_id=1" in str(info.value)
    assert TaskDatasets(root).load(0).n_rows == 80  # other tasks still load


def test_checksum_mismatch(root: Path) -> None:
    path = part_path(root)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256 does not match") as info:
        TaskDatasets(root).load(0)
    assert str(path) in str(info.value)


def test_truncated_part_without_verification_is_unreadable(root: Path) -> None:
    path = part_path(root)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ChecksumError):
        TaskDatasets(root).load(0)
    with pytest.raises(DataError, match="not a readable Parquet file") as info:
        TaskDatasets(root, verify=False).load(0)
    assert "--recollect 0" in str(info.value)  # the supported way (issue 19, item 4)


def test_missing_column(root: Path) -> None:
    table = pq.read_table(part_path(root)).drop_columns([S.MC_RETURN])
    replace_part(root, table)
    with pytest.raises(SchemaError, match="missing column 'mc_return'") as info:
        TaskDatasets(root).load(0)
    assert str(part_path(root)) in str(info.value)


def test_mistyped_column(root: Path) -> None:
    table = pq.read_table(part_path(root))
    index = table.schema.get_field_index(S.REWARDS)
    table = table.set_column(index, S.REWARDS, table.column(S.REWARDS).cast(pa.float64()))
    replace_part(root, table)
    with pytest.raises(SchemaError, match="column 'rewards' is double, expected float"):
        TaskDatasets(root).load(0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_in_a_part(root: Path, bad: float) -> None:
    table = pq.read_table(part_path(root))
    rewards = table.column(S.REWARDS).to_numpy().copy()
    rewards[5] = bad
    index = table.schema.get_field_index(S.REWARDS)
    replace_part(root, table.set_column(index, S.REWARDS, pa.array(rewards, pa.float32())))
    with pytest.raises(NonFiniteDataError, match="column 'rewards' holds 1 NaN or inf"):
        TaskDatasets(root).load(0)


def test_non_finite_values_in_a_vector_column(root: Path) -> None:
    table = pq.read_table(part_path(root))
    obs = table.column(S.OBS).combine_chunks().flatten().to_numpy().copy()
    obs[3] = np.nan
    column = pa.FixedSizeListArray.from_arrays(pa.array(obs, pa.float32()), 2)
    replace_part(root, table.set_column(table.schema.get_field_index(S.OBS), S.OBS, column))
    with pytest.raises(NonFiniteDataError, match="column 'obs'"):
        TaskDatasets(root).load(0)


def test_rows_moved_between_task_directories(root: Path) -> None:
    table = pq.read_table(part_path(root))
    ids = pc.add(table.column(S.TASK_ID), pa.scalar(1, pa.int32()))
    replace_part(root, table.set_column(0, S.TASK_ID, ids))
    with pytest.raises(DataError, match="carry task_id values"):
        TaskDatasets(root).load(0)


def test_manifest_from_a_newer_format(root: Path) -> None:
    path = root / "point-robot" / "manifest.json"
    doc = json.loads(path.read_text())
    doc["schema_version"] = S.SCHEMA_VERSION + 1
    path.write_text(json.dumps(doc))
    with pytest.raises(SchemaVersionError, match=r"data format v2.*reads up to v1") as info:
        TaskDatasets(root)
    assert "upgrade ray-macaw" in str(info.value) and str(path) in str(info.value)


def test_corrupt_manifest(root: Path) -> None:
    path = root / "point-robot" / "manifest.json"
    path.write_text(path.read_text()[:50])
    with pytest.raises(DataError, match="not valid JSON"):
        TaskDatasets(root)


def test_manifest_with_missing_fields(root: Path) -> None:
    path = root / "point-robot" / "manifest.json"
    doc = json.loads(path.read_text())
    del doc["obs_dim"]
    path.write_text(json.dumps(doc))
    with pytest.raises(SchemaError, match="missing or unexpected fields"):
        TaskDatasets(root)


def test_writer_refuses_other_settings_and_keeps_data(root: Path) -> None:
    before = part_path(root).read_bytes()
    family = get_task_family("point-robot")
    with pytest.raises(DataError, match=r"gamma: 0.99 there, 0.9 now"):
        DatasetWriter(root, family, obs_dim=2, act_dim=2, gamma=0.9, collector={"algo": "random"})
    assert part_path(root).read_bytes() == before
    assert TaskDatasets(root).load(0).n_rows == 80


def test_writer_refuses_non_finite_episode(tmp_path: Path) -> None:
    family = get_task_family("point-robot")
    writer = DatasetWriter(tmp_path, family, obs_dim=2, act_dim=2).task_writer(0)
    obs = np.zeros((3, 2))
    rewards = np.array([0.0, np.nan, 1.0])
    with pytest.raises(NonFiniteDataError, match="NaN or inf in 'rewards'"):
        writer.add_episode(obs, obs, rewards, obs, terminated=False)
    assert writer.flush() is None and writer.rows_written == 0


def test_writer_refuses_wrong_shapes(tmp_path: Path) -> None:
    family = get_task_family("point-robot")
    writer = DatasetWriter(tmp_path, family, obs_dim=2, act_dim=2).task_writer(0)
    with pytest.raises(ValueError, match=r"actions has shape \(3, 3\), expected \(3, 2\)"):
        writer.add_episode(
            np.zeros((3, 2)), np.zeros((3, 3)), np.zeros(3), np.zeros((3, 2)), terminated=False
        )


def test_cli_reports_data_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dataset", "inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ray-macaw: error: data root does not exist") and "Traceback" not in err


def test_inspect_reports_a_bad_part_and_keeps_going(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = part_path(root, task_id=1)
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["dataset", "inspect", str(root), "--json"]) == 2  # damage is no success
    captured = capsys.readouterr()
    assert "1 task(s) have missing or damaged parts" in captured.err  # issue 19, item 15
    tasks = json.loads(captured.out)["families"][0]["tasks"]
    assert tasks[0]["checksum"] == "ok" and tasks[0]["mean_return"] is not None
    assert tasks[1]["checksum"] == "mismatch: task_id=1/part-00000.parquet"


def test_empty_task(root: Path) -> None:
    replace_part(root, pq.read_table(part_path(root)).slice(0, 0))
    with pytest.raises(DataError, match="Fix:") as error:
        TaskDatasets(root).load(0)
    assert "task 0" in str(error.value) and "rows" in str(error.value)


def test_ray_dataset_refuses_non_finite_rows_with_a_matching_checksum(root: Path) -> None:
    """The sha256 matches (the file was rewritten and recorded), the rows hold NaN: refused
    before Ray reads them, as `load` does (issue 19, item 16)."""
    table = pq.read_table(part_path(root))
    rewards = table.column(S.REWARDS).to_numpy().copy()
    rewards[2] = np.nan
    index = table.schema.get_field_index(S.REWARDS)
    replace_part(root, table.set_column(index, S.REWARDS, pa.array(rewards, pa.float32())))
    for verify in (True, False):
        with pytest.raises(NonFiniteDataError, match="column 'rewards' holds 1 NaN"):
            TaskDatasets(root, verify=verify).ray_dataset(0)


def test_inspect_fails_on_missing_parts_and_on_an_empty_directory(
    root: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dataset inspect` reports everything, then exits 2 when a part is missing; an empty
    directory is no data root (issue 19, item 15)."""
    part_path(root, task_id=0).unlink()
    assert main(["dataset", "inspect", str(root)]) == 2
    captured = capsys.readouterr()
    assert "missing: task_id=0/part-00000.parquet" in captured.out
    assert "task 0 (missing" in captured.err and len(captured.err.splitlines()) == 1
    empty = tmp_path_factory.mktemp("empty")
    assert main(["dataset", "inspect", str(empty)]) == 2
    assert "no family directory with a manifest.json" in capsys.readouterr().err
