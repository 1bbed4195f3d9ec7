"""Every bad input is one line and exit status 2, also from inside a Ray actor; Ctrl-C says what
was kept (issue 19, items 6-12)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml
from helpers import write_root

from ray_macaw.cli.main import main
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.run import collect
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import MANIFEST_NAME
from ray_macaw.errors import DataError, SchemaError
from ray_macaw.training.run_file import RunConfigError, load_run_file
from ray_macaw.tune.spec import load_tune_spec

TRAIN, TEST = [0, 1], [3]
SETTINGS = {"family": "point-robot", "train_tasks": TRAIN, "test_tasks": TEST,
            "hidden": [16, 16], "latent_dim": 4, "task_batch_size": 2, "inner_batch_size": 16,
            "outer_batch_size": 16, "buffer_stride": 1, "eval_adaptation_batch_size": 16,
            "evaluation_interval": 1000, "eval_at_start": False, "stop_meta_steps": 2,
            "checkpoint_every": 1}  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("errors-data")
    write_root(path, "point-robot", task_ids=(0, 1, 3), episodes=4, rows_per_part=100)
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ray-macaw: error:"), err
    return err


@ray.remote
def raise_in_a_task(path: str) -> None:
    raise DataError("a problem", "the fix", path)


def test_a_ray_macaw_error_survives_pickle_and_a_ray_actor(
    ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Subclasses round-trip through pickle, so an error raised in a real Ray worker reaches
    the caller as itself, and the CLI prints it as one line (item 6)."""
    from ray_macaw.collect.run import CollectionError

    error = pickle.loads(pickle.dumps(CollectionError("p", "f", "/x")))
    assert type(error) is CollectionError and (error.problem, error.fix) == ("p", "f")

    @ray.remote
    class Raiser:
        def run(self, path: str) -> None:
            raise SchemaError("bad columns", "re-collect", path)

    with pytest.raises(SchemaError) as caught:
        ray.get(Raiser.remote().run.remote("/data/part"))  # type: ignore[attr-defined]
    cause = getattr(caught.value, "cause", caught.value)
    assert (cause.problem, cause.fix, str(cause.path)) == (
        "bad columns",
        "re-collect",
        "/data/part",
    )
    with pytest.raises(DataError):
        ray.get(raise_in_a_task.remote("/p"))


def test_an_error_in_a_collector_actor_is_one_line(
    tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged part found by the collector actor when it resumes: one line, status 2."""
    config = CollectConfig(family="point-robot", root=str(tmp_path), tasks="0", steps=200,
                           algo="random", rows_per_part=100)  # fmt: skip
    collect(config, show_progress=False)
    manifest_path = tmp_path / "point-robot" / MANIFEST_NAME
    doc = json.loads(manifest_path.read_text())
    doc["tasks"]["0"]["complete"] = False  # so the collector resumes (and reads) the task
    manifest_path.write_text(json.dumps(doc))
    part = tmp_path / "point-robot" / "task_id=0" / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[:-5])
    argv = ["collect", "--family", "point-robot", "--tasks", "0", "--steps", "200",
            "--algo", "random", "--rows-per-part", "100", "--out", str(tmp_path),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "sha256 does not match" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("task_batch_size", [5]),
        ("task_batch_size", None),
        ("task_batch_size", True),
        ("task_batch_size", 1.5),
        ("task_batch_size", [2]),
        ("hidden", "abc"),
        ("seed", "abc"),
        ("train_tasks", "0-1"),
        ("first_order", "yes"),
        ("outer_value_lr", [1]),
        ("objective", 3),
        ("stop_meta_steps", True),
    ],
)
def test_wrong_types_in_a_run_file_are_refused(tmp_path: Path, key: str, value: object) -> None:
    """Non-string wrong types name the setting and the type it takes (item 7)."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**SETTINGS, "data_root": "/d", key: value}))
    with pytest.raises(RunConfigError, match=f"'?{key}'? must be") as caught:
        load_run_file(path)
    assert "Fix: " in str(caught.value)


@pytest.mark.parametrize(("key", "value"), [("seeds", "abc"), ("seeds", [1.5])])
def test_wrong_types_in_an_experiment_file_are_refused(
    tmp_path: Path, key: str, value: object
) -> None:
    """The experiment file's own keys are checked too (item 7)."""
    shared = {k: v for k, v in SETTINGS.items() if k not in ("stop_meta_steps", "checkpoint_every")}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"config": {**shared, "data_root": "/d"}, key: value}))
    with pytest.raises(RunConfigError, match="seeds must be integers"):
        load_tune_spec(path)


@pytest.mark.parametrize(
    ("setting", "needle"),
    [("net_arch=5", "net_arch=5"), ("learning_starts=abc", "learning_starts")],
)
def test_bad_collect_set_values_are_refused_before_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, needle: str
) -> None:
    """A bad --set value is refused before anything is written, so the corrected command is not
    refused as 'other settings' (item 8)."""
    argv = ["collect", "--family", "point-robot", "--tasks", "0", "--steps", "50", "--out",
            str(tmp_path), "--no-progress", "--set", setting]  # fmt: skip
    assert main(argv) == 2
    assert needle in one_line_error(capsys)
    assert not (tmp_path / "point-robot" / MANIFEST_NAME).exists()
    argv = ["collect", "--family", "point-robot", "--algo", "noisy-init", "--out",
            str(tmp_path), "--set", "action_sigma=-1"]  # fmt: skip
    assert main(argv) == 2
    assert "action_sigma=-1" in one_line_error(capsys)


@pytest.fixture(scope="module")
def checkpoints(root: Path, tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    """OUT/latest of a MACAW and of an Offline PEARL (saved untrained: enough to open)."""
    from ray_macaw import MACAWConfig
    from ray_macaw.algorithms.pearl.config import PEARLConfig

    base = tmp_path_factory.mktemp("checkpoints")
    pearl = (
        PEARLConfig()
        .environment(family="point-robot", train_tasks=TRAIN, test_tasks=TEST)
        .offline_data(root=str(root), buffer_stride=1)
        .training(hidden=(16, 16), encoder_hidden=(16,), latent_dim=3, task_batch_size=2,
                  batch_size=16, embedding_batch_size=16)
        .evaluation(adaptation_batch_size=16)
    )  # fmt: skip
    macaw, _ = load_run_file_from(base, {**SETTINGS, "data_root": str(root)})
    for name, config in (("macaw", macaw), ("pearl", pearl)):
        algo = config.build_algo()
        algo.save_to_path(str(base / name / "latest"))
        algo.stop()
    assert isinstance(macaw, MACAWConfig)
    return base


def load_run_file_from(base: Path, settings: dict) -> tuple:
    path = base / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_run_file(path)


def copy_checkpoint(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_broken_checkpoints_and_another_algorithms_output_are_one_line(
    checkpoints: Path, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing state file, a broken rllib_checkpoint.json, and `train --resume` of a MACAW run
    file into a PEARL output (item 9)."""
    no_state = copy_checkpoint(checkpoints / "macaw" / "latest", tmp_path / "a")
    (no_state / "algorithm_state.pkl").unlink()
    assert main(["evaluate", str(no_state)]) == 2
    assert "algorithm_state is missing" in one_line_error(capsys)
    broken = copy_checkpoint(checkpoints / "macaw" / "latest", tmp_path / "b")
    (broken / "rllib_checkpoint.json").write_text("{not json")
    assert main(["evaluate", str(broken)]) == 2
    assert "not valid JSON" in one_line_error(capsys)
    out = copy_checkpoint(checkpoints / "pearl", tmp_path / "pearl-run")
    path = tmp_path / "macaw.yaml"
    path.write_text(yaml.safe_dump({**SETTINGS, "data_root": str(root), "out": str(out)}))
    assert main(["train", str(path), "--resume"]) == 2
    assert "algorithm_name 'pearl' (not 'macaw')" in one_line_error(capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "CKPT", "--episodes", "0"],
        ["evaluate", "CKPT", "--adaptation-steps", "-1"],
        ["finetune", "CKPT", "--budgets", "0"],
        ["finetune", "CKPT", "--budgets", "abc"],
        ["finetune", "CKPT", "--batch-size", "0"],
        ["finetune", "CKPT", "--episodes", "0"],
    ],
)
def test_evaluate_and_finetune_arguments_are_checked(
    argv: list[str], checkpoints: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Impossible arguments for a real checkpoint: one line and status 2, before the checkpoint
    is opened (item 10)."""
    checkpoint = str(checkpoints / "macaw" / "latest")
    assert main([checkpoint if a == "CKPT" else a for a in argv]) == 2
    one_line_error(capsys)


def test_a_negative_evaluation_interval_is_refused(tmp_path: Path) -> None:
    """(item 10)"""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**SETTINGS, "data_root": "/d", "evaluation_interval": -5}))
    with pytest.raises(RunConfigError, match="evaluation_interval cannot be negative"):
        load_run_file(path)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda doc: [], "must be a JSON object"),
        (lambda doc: doc["tasks"]["0"]["parts"][0].update(rows="400") or doc, "'rows' must be"),
        (lambda doc: doc.update(obs_dim="2") or doc, "'obs_dim' must be"),
        (lambda doc: doc["tasks"]["0"]["parts"][0].update(file="/etc/passwd") or doc, "outside"),
        (lambda doc: doc["tasks"]["0"]["parts"][0].update(file="../../x") or doc, "outside"),
        (lambda doc: doc["tasks"].update({"0": []}) or doc, "unexpected fields"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_refused(
    tmp_path: Path, edit: object, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Valid JSON of the wrong shape, and part paths outside the family directory (item 11)."""
    write_root(tmp_path, "point-robot", task_ids=(0,), episodes=2)
    path = tmp_path / "point-robot" / MANIFEST_NAME
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))  # type: ignore[operator]
    with pytest.raises(SchemaError, match=needle):
        TaskDatasets(tmp_path, "point-robot")
    assert main(["dataset", "inspect", str(tmp_path)]) == 2
    one_line_error(capsys)


def test_ctrl_c_on_train_says_what_was_kept(root: Path, tmp_path: Path) -> None:
    """SIGINT during `train`: no traceback, status 130, the checkpoint kept and the --resume
    command (item 12)."""
    out = tmp_path / "run"
    path = tmp_path / "run.yaml"
    settings = {**SETTINGS, "data_root": str(root), "out": str(out), "stop_meta_steps": 10**6}
    path.write_text(yaml.safe_dump(settings))
    proc = subprocess.Popen([sys.executable, "-m", "ray_macaw.cli.main", "train", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "latest" / "rllib_checkpoint.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    assert f"ray-macaw train {path} --resume" in err.strip().splitlines()[-1]
    assert (out / "latest" / "rllib_checkpoint.json").is_file()
