"""`ray-macaw tune` interrupted mid-experiment, then `--resume`, then `ray-macaw report`.

Runs the real CLI in a subprocess (its own embedded Ray), sends SIGINT while the second trial of
the smoke grid is training, and checks that `--resume` finishes that trial from its checkpoint
without re-running the first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import write_root
from PIL import Image

GRID = Path(__file__).parent.parent / "tune_configs" / "smoke" / "grid.yaml"
STOP = 60  # the grid's stop_meta_steps


def tune_command(root: Path, storage: Path, *extra: str) -> list[str]:
    # An evaluation every 4 steps (the file says 20) stretches the second trial to a few seconds,
    # a window in which to interrupt it after its first checkpoint.
    return [
        sys.executable, "-m", "ray_macaw.cli.main", "tune", str(GRID),
        "--set", f"data_root={root}", "--set", "evaluation_interval=4",
        "--storage-path", str(storage), *extra,
    ]  # fmt: skip


def iterations(trial: Path) -> list[int]:
    lines = (trial / "result.json").read_text().splitlines()
    return [json.loads(line)["training_iteration"] for line in lines if line.strip()]


def trial_dir(experiment: Path, seed: int) -> Path | None:
    found = [p for p in experiment.glob(f"macaw_seed{seed}_*") if p.is_dir()]
    return found[0] if found else None


def interrupt_after_first_checkpoint(command: list[str], experiment: Path, log: Path) -> int:
    """Start the experiment and SIGINT it once seed 1's trial has checkpointed at step 20."""
    with open(log, "w") as out:  # a file, not a pipe: nobody reads a pipe while we poll
        process = subprocess.Popen(command, start_new_session=True, stdout=out, stderr=out)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            second = trial_dir(experiment, 1)
            if second is not None and (second / "checkpoint_000000").exists():
                process.send_signal(signal.SIGINT)
                break
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        else:
            raise AssertionError("the second trial never checkpointed: " + log.read_text()[-3000:])
        return process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_interrupted_grid_resumes_and_reports(tmp_path: Path) -> None:
    root, storage = tmp_path / "data", tmp_path / "runs"
    write_root(root, "point-robot", task_ids=(0, 1, 2, 3, 4), episodes=20, rows_per_part=200)
    experiment = storage / "smoke-grid"
    log = tmp_path / "log"
    code = interrupt_after_first_checkpoint(tune_command(root, storage), experiment, log)
    first, second = trial_dir(experiment, 0), trial_dir(experiment, 1)
    assert first is not None and second is not None
    assert iterations(first) == list(range(1, STOP + 1))
    assert max(iterations(second)) < STOP, "the second trial finished before the interruption"
    # Not a success: status 2, naming the unfinished trial and --resume (issue 19, item 13).
    assert code == 2, log.read_text()[-3000:]
    error = log.read_text().strip().splitlines()[-1]
    assert f"{second.name} (" in error and f"/{STOP} meta-steps)" in error and "--resume" in error
    early = subprocess.run(
        [sys.executable, "-m", "ray_macaw.cli.main", "report", str(experiment)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert early.returncode == 0 and f"{second.name} (" in early.stderr, early.stderr

    refused = subprocess.run(tune_command(root, storage), capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run(
        tune_command(root, storage, "--resume"), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert iterations(first) == list(range(1, STOP + 1))  # not run again
    steps = iterations(second)
    assert steps[-1] == STOP and set(steps) == set(range(1, STOP + 1))
    # Continued from its checkpoint: never started over (step 1 once), at most a few steps
    # after the checkpoint redone.
    assert steps.count(1) == 1 and len(steps) - STOP < 20
    for trial in (first, second):
        assert sorted(p.name for p in trial.glob("checkpoint_*"))  # both trials checkpointed

    report = subprocess.run(
        [sys.executable, "-m", "ray_macaw.cli.main", "report", str(experiment)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    header, row = report.stdout.splitlines()[:2]
    assert header.split()[:3] == ["variant", "seeds", "meta-steps"]
    assert row.split()[:3] == ["smoke-grid", "2", str(STOP)]
    with Image.open(experiment / "learning_curves.png") as image:
        assert image.size == (700, 450)
