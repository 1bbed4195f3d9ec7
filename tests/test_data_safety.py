"""Nothing already written is lost: concurrent collections, appends out of turn, `train` on an
existing output, relative paths, and re-collecting a broken task (issue 19, items 1-4, 17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import rollout, write_root

from ray_macaw.cli.main import main
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.run import collect
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import Manifest
from ray_macaw.data.shards import ConcurrentWriteError, DatasetWriter
from ray_macaw.errors import ChecksumError
from ray_macaw.tasks import get_task_family

CLI = [sys.executable, "-m", "ray_macaw.cli.main"]


def check_rows(root: Path, task_id: int, rows: int) -> None:
    """The task holds exactly `rows` rows, steps 0..rows-1 once each, every part verified."""
    data = TaskDatasets(root, "point-robot").load(task_id)
    assert np.array_equal(data.columns["step"], np.arange(rows))


def test_two_collect_commands_on_one_root_never_mix(tmp_path: Path) -> None:
    """Two real `collect` processes on one root: one collects, the other is refused with the
    running one's pid; every task then holds exactly --steps rows (item 1)."""
    command = [*CLI, "collect", "--family", "point-robot", "--tasks", "0-2", "--algo", "random",
               "--steps", "2000", "--rows-per-part", "500", "--out", str(tmp_path),
               "--no-progress"]  # fmt: skip
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    procs = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    if codes == [0, 0]:  # the second started after the first finished: it skipped every task
        assert any("skipped 3 finished task(s)" in out for out, _ in outs), outs
    else:
        assert codes == [0, 2], outs
        loser = next(i for i, p in enumerate(procs) if p.returncode == 2)
        err = outs[loser][1]
        assert "in use by a running command: pid" in err and len(err.strip().splitlines()) == 1
        assert f"pid {procs[1 - loser].pid} " in err  # names the running command
    for task_id in range(3):
        check_rows(tmp_path, task_id, 2000)


APPEND = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from helpers import rollout
from ray_macaw.data.shards import DatasetWriter
from ray_macaw.tasks import get_task_family
family = get_task_family("point-robot")
env = family.make_env(0)
writer = DatasetWriter({root!r}, family, obs_dim=2, act_dim=2, collector={{"algo": "random"}})
task = writer.task_writer(0, rows_per_part=10**6)
ep = rollout(env, np.random.default_rng(1), seed=1)
task.add_episode(ep["obs"], ep["actions"], ep["rewards"], ep["next_obs"], terminated=False)
task.flush()
"""


def test_an_append_that_does_not_start_at_the_tasks_row_count_is_refused(tmp_path: Path) -> None:
    """A writer opened before another process appended to its task cannot record its part: the
    other's rows stay the task's only rows (item 1)."""
    family = get_task_family("point-robot")
    env = family.make_env(0)
    writer = DatasetWriter(tmp_path, family, obs_dim=2, act_dim=2, collector={"algo": "random"})
    stale = writer.task_writer(0, rows_per_part=10**6)  # reads the task's row count (0) now
    script = APPEND.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    other_rows = Manifest.load(tmp_path / "point-robot").tasks[0].rows
    assert other_rows > 0
    ep = rollout(env, np.random.default_rng(2), seed=2)
    stale.add_episode(ep["obs"], ep["actions"], ep["rewards"], ep["next_obs"], terminated=False)
    with pytest.raises(ConcurrentWriteError, match=r"another writer appended to task 0.*Fix:"):
        stale.flush()
    record = Manifest.load(tmp_path / "point-robot").tasks[0]
    assert record.rows == other_rows and len(record.parts) == 1
    check_rows(tmp_path, 0, other_rows)
    assert sorted(p.name for p in (tmp_path / "point-robot" / "task_id=0").iterdir()) == [
        "part-00000.parquet"
    ]  # the refused part left nothing behind


def run_file(tmp_path: Path, root: Path, out: str, steps: int = 2) -> Path:
    settings = {"family": "point-robot", "data_root": str(root), "train_tasks": [0, 1],
                "test_tasks": [3], "hidden": [16, 16], "latent_dim": 4, "task_batch_size": 2,
                "inner_batch_size": 16, "outer_batch_size": 16, "buffer_stride": 1,
                "eval_adaptation_batch_size": 16, "evaluation_interval": 1000,
                "eval_at_start": False, "stop_meta_steps": steps, "checkpoint_every": 1,
                "out": out}  # fmt: skip
    path = tmp_path / f"run-{steps}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("safety-data")
    write_root(path, "point-robot", task_ids=(0, 1, 3), episodes=4, rows_per_part=100)
    return path


def test_relative_out_and_checkpoint_paths_work(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_local: None
) -> None:
    """A relative `out` is checkpointed, and `evaluate` opens a relative checkpoint (item 3)."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(run_file(tmp_path, data_root, "runs/rel"))]) == 0
    assert (tmp_path / "runs/rel/latest/rllib_checkpoint.json").is_file()
    assert main(["evaluate", "runs/rel/latest", "--episodes", "1", "--json"]) == 0


def test_train_refuses_an_existing_output_without_resume(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], ray_local: None
) -> None:
    """A second `train` into a run's output, without --resume, is refused and loses nothing
    (item 2); with --resume it continues."""
    out = tmp_path / "run"
    assert main(["train", str(run_file(tmp_path, data_root, str(out), steps=3))]) == 0
    before = (out / "metrics.jsonl").read_text()
    checkpoint = (out / "latest" / "rllib_checkpoint.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", str(run_file(tmp_path, data_root, str(out), steps=5))]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and len(err.splitlines()) == 1
    assert (out / "metrics.jsonl").read_text() == before
    assert (out / "latest" / "rllib_checkpoint.json").stat().st_mtime_ns == checkpoint
    assert main(["train", str(run_file(tmp_path, data_root, str(out), steps=5)), "--resume"]) == 0
    steps = [json.loads(line)["meta_step"] for line in (out / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5]


HOLD = """
import sys, time
from pathlib import Path
from ray_macaw.runtime.ownership import OwnerLock
lock = OwnerLock(Path(sys.argv[1]), "x", "y")
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_train_on_a_running_output_is_refused(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While a process owns a train output, another `train` on it is refused with that
    process's pid and touches nothing (item 17)."""
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out / ".owner.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        from ray_macaw.runtime.ownership import OwnedError
        from ray_macaw.training.run_file import load_run_file
        from ray_macaw.training.train import train

        config, options = load_run_file(run_file(tmp_path, data_root, str(out)))
        with pytest.raises(OwnedError, match=f"in use by a running command: pid {holder.pid} "):
            train(config, options, resume=True)
        assert sorted(p.name for p in out.iterdir()) == [".owner.lock"]
    finally:
        holder.kill()
        holder.wait()


def test_a_broken_task_is_recollected_with_recollect(tmp_path: Path, ray_local: None) -> None:
    """The fix-it message of a damaged task names `--recollect`, which discards the task's data
    and collects it again from scratch: the same rows as the first time (item 4)."""
    config = CollectConfig(family="point-robot", root=str(tmp_path), tasks="0-1", steps=300,
                           algo="random", rows_per_part=100)  # fmt: skip
    collect(config, show_progress=False)
    first = TaskDatasets(tmp_path, "point-robot").load(1).columns
    part = tmp_path / "point-robot" / "task_id=1" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(ChecksumError, match=r"--recollect 1") as caught:
        TaskDatasets(tmp_path, "point-robot").load(1)
    assert f"--out {tmp_path}" in caught.value.fix
    summary = collect(config, show_progress=False)  # a plain re-run skips the finished task
    assert summary["skipped"] == [0, 1]
    summary = collect(config, show_progress=False, recollect="1")
    assert summary["skipped"] == [0] and list(summary["collected"]) == [1]
    again = TaskDatasets(tmp_path, "point-robot").load(1).columns
    for name in ("obs", "actions", "rewards", "step"):
        np.testing.assert_array_equal(first[name], again[name])
    assert Manifest.load(tmp_path / "point-robot").tasks[1].complete


def test_every_recollect_fix_names_the_command(tmp_path: Path) -> None:
    """The data errors that say to re-collect give the supported command (item 4)."""
    write_root(tmp_path, "point-robot", task_ids=(0,), episodes=2)
    part = next((tmp_path / "point-robot" / "task_id=0").glob("part-*.parquet"))
    part.write_bytes(b"not parquet")
    data = TaskDatasets(tmp_path, "point-robot", verify=False)
    with pytest.raises(Exception, match="--recollect 0") as caught:
        data.load(0)
    assert "re-run the collection (it resumes" not in str(caught.value)


def test_a_task_another_command_owns_is_refused_naming_it(tmp_path: Path) -> None:
    """While another process owns task 1, `collect` of tasks 0-1 is refused in one line with
    that process's pid, before Ray starts or anything is written for task 0 (item 1)."""
    config = CollectConfig(family="point-robot", root=str(tmp_path), tasks="0-1", steps=100,
                           algo="random", rows_per_part=100)  # fmt: skip
    lock = tmp_path / "point-robot" / "_owners" / "task_id=1.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        from ray_macaw.runtime.ownership import OwnedError

        with pytest.raises(OwnedError, match=f"task 1 of .* in use by .*pid {holder.pid} "):
            collect(config, show_progress=False)
        assert Manifest.load(tmp_path / "point-robot").tasks[0].rows == 0
        assert not (tmp_path / "point-robot" / "_owners" / "task_id=0.lock").read_text()
    finally:
        holder.kill()
        holder.wait()
