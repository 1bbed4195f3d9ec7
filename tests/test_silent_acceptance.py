"""No silent acceptance: `train --resume` with changed settings, and the next run after a
`collect` killed with SIGKILL (issue 19, items 14 and 18)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import write_root

from ray_macaw.cli.main import main
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import Manifest


def test_train_resume_names_each_changed_setting(
    tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint's settings are kept, and the warning names each one the run file
    changed (item 14)."""
    write_root(tmp_path / "data", "point-robot", task_ids=(0, 1, 3), episodes=4)
    settings = {"family": "point-robot", "data_root": str(tmp_path / "data"),
                "train_tasks": [0, 1], "test_tasks": [3], "hidden": [16, 16], "latent_dim": 4,
                "task_batch_size": 2, "inner_batch_size": 16, "outer_batch_size": 16,
                "buffer_stride": 1, "eval_adaptation_batch_size": 16,
                "evaluation_interval": 1000, "eval_at_start": False, "stop_meta_steps": 2,
                "checkpoint_every": 1,
                "out": str(tmp_path / "run")}  # fmt: skip
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    assert main(["train", str(path)]) == 0
    changed = {**settings, "task_batch_size": 1, "outer_policy_lr": 3e-4, "stop_meta_steps": 3}
    path.write_text(yaml.safe_dump(changed))
    capsys.readouterr()
    assert main(["train", str(path), "--resume"]) == 0
    out = capsys.readouterr().out
    warning = next(line for line in out.splitlines() if line.startswith("warning:"))
    assert "task_batch_size 2 (checkpoint) -> 1 (run file)" in warning
    assert "outer_policy_lr 0.0001 (checkpoint) -> 0.0003 (run file)" in warning
    assert "stop_meta_steps" not in warning  # a run option, which --resume does apply


@pytest.mark.slow  # ~3 min; the append check of item 1 (test_data_safety) is what proves the fix
def test_the_run_after_a_killed_collect_never_mixes_its_rows(tmp_path: Path) -> None:
    """SIGKILL only the driver of `collect` (its actors keep writing for a few seconds), then
    re-run at once: every run ends in success or a one-line refusal, and the task ends with
    exactly --steps rows, steps 0..N-1 once each (item 18)."""
    steps = 3000
    command = [sys.executable, "-m", "ray_macaw.cli.main", "collect", "--family", "point-robot",
               "--tasks", "0", "--algo", "random", "--steps", str(steps), "--rows-per-part",
               "200", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_part = tmp_path / "point-robot" / "task_id=0" / "part-00000.parquet"
    deadline = time.monotonic() + 180
    while not first_part.exists():
        assert driver.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)  # the driver only: Ray's processes live on a while
    driver.wait()
    assert not Manifest.load(tmp_path / "point-robot").tasks[0].complete
    for _attempt in range(4):
        run = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert run.returncode in (0, 2), run.stderr[-3000:]
        if run.returncode == 0:
            break
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr[-3000:]
        time.sleep(3)
    else:
        raise AssertionError("collect never finished after the kill")
    data = TaskDatasets(tmp_path, "point-robot").load(0)
    assert np.array_equal(data.columns["step"], np.arange(steps))
