"""Data roots and Tune results on S3, against a real S3 server (`moto_server`) on 127.0.0.1.

Collection (killed mid-run and resumed), training, a Tune experiment (interrupted, resumed,
reported), corrupted and half-written parts, and concurrent writers, all through HTTP to the
server with credentials from the standard AWS variables: nothing is mocked inside any process.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as pads
import pytest
import ray
import yaml
from helpers import check_task_data, write_root
from s3_server import START_TIMEOUT_S, S3Server, aws_environment, s3_server
from test_collect import kill_when

from ray_macaw.cli.main import main
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.run import CollectionError, collect
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import Manifest
from ray_macaw.data.storage import ObjectPath, root_path
from ray_macaw.errors import ChecksumError

GRID = Path(__file__).parent.parent / "tune_configs" / "smoke" / "grid.yaml"
STOP = 30  # the smoke grid cut from 60 meta-steps to 30 (and checkpoints every 10, not 20)
SECRET = "do-not-log-this-secret-0123456789"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """The server, with this process's AWS variables pointing at it (Ray workers inherit them)."""
    with s3_server() as server:
        assert server.start_seconds < START_TIMEOUT_S
        print(f"moto_server answered after {server.start_seconds:.2f} s")
        with aws_environment({**server.env, "AWS_SECRET_ACCESS_KEY": SECRET}):
            yield server


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return s3.create_bucket("macaw-data")


@pytest.fixture(scope="module")
def ray_s3(s3: S3Server) -> Iterator[None]:
    """A local Ray started after the AWS variables are set, so its workers reach the server."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def part_objects(family_dir: ObjectPath, task_id: int) -> list[ObjectPath]:
    """Every object under a task's directory that pyarrow's discovery would read as a part."""
    return [p for p in (family_dir / f"task_id={task_id}").glob("*") if not p.name.startswith(".")]


def test_collect_killed_mid_run_resumes_then_trains(
    bucket: str, ray_s3: None, tmp_path: Path
) -> None:
    root = f"{bucket}/collect"
    config = CollectConfig(
        family="point-robot", root=root, tasks="0,1", steps=400, rows_per_part=100,
        max_retries=0, hyperparameters={"learning_starts": 100},
    )  # fmt: skip
    killed: list[int] = []
    killer = threading.Thread(target=kill_when, args=(config, 1, 200, killed))
    killer.start()
    with pytest.raises(CollectionError, match="collector of task 1 died"):
        collect(config, show_progress=False)
    killer.join()
    assert killed == [1]
    family_dir = root_path(root) / "point-robot"
    assert isinstance(family_dir, ObjectPath)
    partial = Manifest.load(family_dir).tasks[1]
    assert not partial.complete and 100 <= partial.rows < 400
    # Only recorded parts look like parts: a part cut off mid-write is a hidden staged object.
    recorded = {p.file.split("/")[1] for p in partial.parts}
    assert {p.name for p in part_objects(family_dir, 1)} == recorded

    summary = collect(config, show_progress=False)  # the same command resumes
    assert summary["root"] == f"{root}/point-robot"
    for task_id in (0, 1):
        check_task_data(root, task_id, 400)  # type: ignore[arg-type]
    assert [r["start_rows"] for r in Manifest.load(family_dir).tasks[1].info["runs"]] == [
        0,
        partial.rows,
    ]
    assert (family_dir / "_curves" / "task_id=1.png").read_bytes()[:4] == b"\x89PNG"
    assert TaskDatasets(root).ray_dataset(1).count() == 400  # Ray Data reads the parts from S3
    assert len(list((family_dir / "_agents" / "task_id=1").glob("ckpt-*.pt"))) == 2

    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "family": "point-robot", "data_root": root, "train_tasks": [0], "test_tasks": [1],
        "hidden": [16, 16], "latent_dim": 4, "task_batch_size": 1, "inner_batch_size": 32,
        "outer_batch_size": 32, "eval_adaptation_batch_size": 32, "eval_num_cpus_per_task": 0.5,
        "evaluation_interval": 5, "eval_at_start": False, "stop_meta_steps": 5,
        "checkpoint_every": 5, "out": str(tmp_path / "run"),
    }))  # fmt: skip
    assert main(["train", str(run_file), "--json"]) == 0
    assert (tmp_path / "run" / "latest" / "rllib_checkpoint.json").is_file()


def test_a_corrupted_part_is_detected_naming_its_key(
    bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = f"{bucket}/corrupt"
    write_root(root, task_ids=(0, 2), episodes=4, rows_per_part=40)  # type: ignore[arg-type]
    data = TaskDatasets(root)
    part = data.task_record(2).parts[0]
    key = data.family_dir / part.file
    assert str(key) == f"{root}/point-robot/task_id=2/part-00000.parquet"
    original = key.read_bytes()
    key.write_bytes(original[:-100] + bytes(100))  # changed on the server, same size
    with pytest.raises(ChecksumError, match=r"sha256 does not match") as error:
        TaskDatasets(root).load(2)
    assert str(key) in str(error.value)
    assert main(["dataset", "inspect", root]) == 2
    out, err = capsys.readouterr()
    assert "mismatch: task_id=2/part-00000.parquet" in out and str(root) in err
    assert TaskDatasets(root).load(0).n_rows > 0  # the other task still reads
    # Credentials stay in the client: never in output, never in what crosses to Ray workers.
    assert SECRET not in out + err and SECRET.encode() not in pickle.dumps(data)


_CRASHING_WRITER = """
import os, sys
sys.path.insert(0, {tests!r})
from helpers import rollout
from ray_macaw.data.shards import DatasetWriter
from ray_macaw.tasks import get_task_family
import numpy as np
family = get_task_family("point-robot")
writer = DatasetWriter({root!r}, family, obs_dim=2, act_dim=2, collector={{"algo": "random"}})
task = writer.task_writer(0, rows_per_part=1000)
ep = rollout(family.make_env(0), np.random.default_rng(0), seed=0)
task.add_episode(ep["obs"], ep["actions"], ep["rewards"], ep["next_obs"], terminated=False)
task.before_record = lambda part: os._exit(9)  # the process dies once the part is staged
task.flush()
"""


def test_a_writer_killed_mid_part_leaves_no_part_that_reads_as_complete(bucket: str) -> None:
    root = f"{bucket}/killed"
    script = _CRASHING_WRITER.format(tests=str(Path(__file__).parent), root=root)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    family_dir = root_path(root) / "point-robot"
    staged = list((family_dir / "task_id=0").glob("*"))
    assert [p.name.startswith(".") for p in staged] == [True]  # staged, hidden, not the part
    assert Manifest.load(family_dir).tasks[0].parts == []
    discovered = pads.dataset(
        str(family_dir), format="parquet", partitioning="hive", exclude_invalid_files=True
    )
    assert discovered.files == []  # other tools see no part either
    write_root(root, task_ids=(0,), episodes=3, rows_per_part=1000)  # type: ignore[arg-type]
    assert TaskDatasets(root).load(0).n_rows == 60  # writing resumes at part 0


_PART_WRITER = """
import sys
sys.path.insert(0, {tests!r})
from helpers import rollout
from ray_macaw.data.shards import DatasetWriter
from ray_macaw.tasks import get_task_family
import numpy as np
family = get_task_family("point-robot")
writer = DatasetWriter({root!r}, family, obs_dim=2, act_dim=2, collector={{"algo": "random"}})
task = writer.task_writer({task}, rows_per_part=1)
env, rng = family.make_env({task}), np.random.default_rng({task})
for episode in range(8):
    ep = rollout(env, rng, seed=episode)
    task.add_episode(ep["obs"], ep["actions"], ep["rewards"], ep["next_obs"], terminated=False)
    writer.record_run({task}, {{"episode": episode}})
writer.mark_complete({task})
"""


def test_concurrent_writers_of_one_root_keep_each_others_entries(
    bucket: str, tmp_path: Path
) -> None:
    """Two processes as on two hosts (their own temporary directories, so no lock file in
    common) append to different tasks of one root at once: every part and run of both stays."""
    root = f"{bucket}/concurrent"
    write_root(root, task_ids=(5,), episodes=1)  # type: ignore[arg-type]  # the root exists
    writers = []
    for task in (0, 1):
        (tmp_path / f"host{task}").mkdir()
        script = _PART_WRITER.format(tests=str(Path(__file__).parent), root=root, task=task)
        env = {**os.environ, "TMPDIR": str(tmp_path / f"host{task}")}
        writers.append(subprocess.Popen([sys.executable, "-c", script], env=env))
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    manifest = Manifest.load(root_path(root) / "point-robot")
    for task in (0, 1):
        record = manifest.tasks[task]
        assert record.complete and len(record.parts) == 8 and len(record.info["runs"]) == 8
        check_task_data(root, task, 160)  # type: ignore[arg-type]
    assert manifest.tasks[5].complete


def smoke_grid(tmp_path: Path) -> Path:
    """The smoke grid experiment (its trials, settings and name), only shorter."""
    path = tmp_path / "smoke-grid.yaml"
    path.write_text(yaml.safe_dump({"extends": str(GRID), "name": "smoke-grid",
                                    "stop_meta_steps": STOP, "checkpoint_every": 10}))  # fmt: skip
    return path


def tune_command(grid: Path, root: str, storage: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ray_macaw.cli.main", "tune", str(grid), "--set", f"data_root={root}",
        "--set", "evaluation_interval=5", "--storage-path", storage, *extra,
    ]  # fmt: skip


def iterations(trial: ObjectPath) -> list[int]:
    lines = (trial / "result.json").read_text().splitlines()
    return [json.loads(line)["training_iteration"] for line in lines if line.strip()]


def _trial(experiment: ObjectPath, seed: int) -> ObjectPath | None:
    found = list(experiment.glob(f"macaw_seed{seed}_*")) if experiment.is_dir() else []
    return found[0] if found else None


def test_tune_on_s3_is_interrupted_resumed_and_reported(bucket: str, tmp_path: Path) -> None:
    root = f"{bucket}/tune-data"
    write_root(root, task_ids=(0, 1, 2, 3, 4), episodes=20, rows_per_part=200)  # type: ignore[arg-type]
    storage, grid = f"{bucket}/runs", smoke_grid(tmp_path)
    experiment = root_path(storage) / "smoke-grid"
    assert isinstance(experiment, ObjectPath)
    log = tmp_path / "log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            tune_command(grid, root, storage), start_new_session=True, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            second = _trial(experiment, 1)
            if second is not None and list(second.glob("checkpoint_000000/*")):
                process.send_signal(signal.SIGINT)
                break
            time.sleep(0.25)
        assert process.wait(timeout=120) == 2, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    first, second = _trial(experiment, 0), _trial(experiment, 1)
    assert first is not None and second is not None
    assert iterations(first)[-1] == STOP and max(iterations(second)) < STOP
    assert (experiment / "ray_macaw_tune.yaml").is_file()  # saved beside the trials

    resumed = subprocess.run(
        tune_command(grid, root, storage, "--resume"), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    steps = iterations(second)
    assert steps[-1] == STOP and steps.count(1) == 1  # continued from its checkpoint
    assert SECRET not in resumed.stdout + resumed.stderr + log.read_text()

    report = subprocess.run(
        [sys.executable, "-m", "ray_macaw.cli.main", "report", str(experiment)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[1].split()[:3] == ["smoke-grid", "2", str(STOP)]
    assert (experiment / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((experiment / "report.json").read_text())


def test_dataset_export_and_import_with_roots_on_s3(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dataset export` reads a root on S3 and `dataset import` writes one; the rows survive."""
    source, back = f"{bucket}/export-source", f"{bucket}/import-target"
    write_root(source, task_ids=(0, 3), episodes=5)  # type: ignore[arg-type]
    minari = str(tmp_path / "minari")
    assert main(["dataset", "export", source, "--to", "minari", "--minari-root", minari]) == 0
    ids = capsys.readouterr().out.split()
    assert ids == ["ray-macaw/point-robot-task0-v0", "ray-macaw/point-robot-task3-v0"]
    command = ["dataset", "import", "--format", "minari", "--out", back, "--minari-root", minari]
    assert main([*command, "--json", *ids]) == 0
    assert json.loads(capsys.readouterr().out) == {"root": back, "rows": {"0": 100, "3": 100}}
    before, after = TaskDatasets(source), TaskDatasets(back)
    for task_id in (0, 3):
        a, b = before.load(task_id).columns, after.load(task_id).columns
        assert all((a[name] == b[name]).all() for name in a)
    assert main(["dataset", "inspect", back, "--json"]) == 0
    assert [t["checksum"] for t in json.loads(capsys.readouterr().out)["families"][0]["tasks"]] == [
        "ok",
        "ok",
    ]
