"""`ray job submit` of `ray-macaw train` to a `ray start --head` cluster on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ray_macaw.data.collect import collect
from ray_macaw.data.collect_config import CollectConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A one-node cluster from `ray start --head --block`, token auth on, all on 127.0.0.1.

    Started in its own process group and stopped by signalling that group: `ray stop` would
    also stop every other Ray instance on the machine.
    """
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    port, dashboard = free_port(), free_port()
    temp = tmp_path_factory.mktemp("ray-head")
    process = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    env = {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dashboard}"}
    try:
        wait_for_job_agent(env)
        yield env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait_for_job_agent(env: dict[str, str], timeout: float = 90.0) -> None:
    """The job server answers before its per-node agent is up; wait for a trivial job to run."""
    deadline = time.monotonic() + timeout
    while True:
        probe = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--", "true"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if probe.returncode == 0 or time.monotonic() > deadline:
            return
        time.sleep(2)


def test_job_submit_runs_train_to_completion(head: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "data"
    collect(
        CollectConfig(
            family="point-robot",
            root=str(root),
            tasks="0-3",
            steps=600,
            algo="random",
            rows_per_part=600,
        ),
        address="local",
        show_progress=False,
    )
    import ray

    ray.shutdown()
    run_file = tmp_path / "run.yaml"
    out = tmp_path / "run"
    run_file.write_text(
        yaml.safe_dump(
            {
                "family": "point-robot",
                "data_root": str(root),
                "train_tasks": [0, 1, 2],
                "test_tasks": [3],
                "hidden": [32, 32],
                "latent_dim": 8,
                "task_batch_size": 2,
                "inner_batch_size": 32,
                "outer_batch_size": 32,
                "eval_adaptation_batch_size": 32,
                "stop_meta_steps": 3,
                "checkpoint_every": 3,
                "evaluation_interval": 3,
                "eval_num_cpus_per_task": 0.5,
                "out": str(out),
            }
        )
    )
    job = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--working-dir",
            str(REPO),
            "--",
            "ray-macaw",
            "train",
            str(run_file),
        ],
        env=head,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    assert (out / "latest" / "rllib_checkpoint.json").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
