"""`ray job submit` of a smoke Tune experiment to a `ray start --head` cluster on 127.0.0.1, with
Ray token authentication: with the token it runs, without it (or with a wrong one) it is refused."""

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

from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.run import collect

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
    # Every agent port of its own: another Ray on this machine (a test's local Ray, a user's
    # job) holding a default port would leave the job agent down ("No available agent").
    agent_ports = [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]
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
            *agent_ports,
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
            process.wait(timeout=10)  # Ray shuts down gracefully for ~30 s; the test is over
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait_for_job_agent(env: dict[str, str], timeout: float = 300.0) -> None:
    """The job server answers before its per-node agent is up; wait for a trivial job to run.
    On a busy 2-core machine the agent can take minutes."""
    deadline = time.monotonic() + timeout
    while True:
        probe = submit(env, "true")
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the job agent never came up: {probe.stderr[-2000:]}")
        time.sleep(2)


def submit(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    """`ray job submit --working-dir REPO -- COMMAND` with the given environment."""
    return subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--working-dir", str(REPO), "--", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_job_submit_runs_a_smoke_tune_config(head: dict[str, str], tmp_path: Path) -> None:
    root, storage = tmp_path / "data", tmp_path / "runs"
    collect(
        CollectConfig(
            family="point-robot",
            root=str(root),
            tasks="0-4",
            steps=400,
            algo="random",
            rows_per_part=400,
        ),
        address="local",
        show_progress=False,
    )
    import ray

    ray.shutdown()
    job = submit(
        head,
        "ray-macaw", "tune", "tune_configs/smoke/grid.yaml",  # relative to the working dir
        "--set", f"data_root={root}", "--storage-path", str(storage),
    )  # fmt: skip
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    trials = sorted((storage / "smoke-grid").glob("macaw_seed*"))
    assert len(trials) == 2
    assert all(sorted(t.glob("checkpoint_*")) for t in trials)


@pytest.mark.parametrize(
    "credentials",
    [{"RAY_AUTH_MODE": None}, {"RAY_AUTH_TOKEN": "0" * 64}],
    ids=["no-token", "wrong-token"],
)
def test_job_submit_without_the_token_is_refused(
    head: dict[str, str], credentials: dict[str, str | None]
) -> None:
    env = {k: v for k, v in {**head, **credentials}.items() if v is not None}
    job = submit(env, "true")
    assert job.returncode != 0
    assert "auth" in (job.stdout + job.stderr).lower()
