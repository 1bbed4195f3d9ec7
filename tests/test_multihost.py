"""A Ray head and a worker as two hosts: own network namespaces and addresses, own disks.

The head (with the job's driver and the S3 server) and the worker each live in a network
namespace of their own, joined by a veth pair; the worker also gets private /tmp and /dev/shm
(a mount namespace with fresh tmpfs), so the two share nothing but the network and the S3
server. Collection and training with 2 inner-loop workers run across them with the data root on
S3; a local data root is refused with the shared-storage error. Skipped, with the reason, where
namespaces cannot be made.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from netns import Host, NamespacesUnavailable, two_hosts
from s3_server import S3Server, s3_server

RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # this interpreter, whatever bin/ray's #! says
RAY_PORT = 6379
CLI = [sys.executable, "-m", "ray_macaw.cli.main"]


def _kill_marked(marker: str) -> None:
    """SIGKILL every process this test started (they carry `marker` in their environment)."""
    needle = f"RAY_MACAW_TEST_NODE={marker}".encode()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def code_under_tmp() -> list[str]:
    """The checkout and the interpreter's environment, where they lie under /tmp (outermost
    only): what the worker node must still see once its /tmp is a fresh tmpfs."""
    paths = {Path(__file__).resolve().parent.parent, Path(sys.prefix).resolve()}
    under = sorted(str(p) for p in paths if p.is_relative_to("/tmp"))
    return [p for p in under if not any(p != q and p.startswith(q + "/") for q in under)]


class Cluster:
    """The two hosts, the S3 server in the head's namespace, and the environment of each node."""

    def __init__(self, head: Host, worker: Host, server: S3Server, bucket: str) -> None:
        self.head, self.worker, self.server, self.bucket = head, worker, server, bucket
        self.marker = secrets.token_hex(8)
        self.token = secrets.token_hex(32)
        self.secret = secrets.token_hex(16)  # the S3 server takes any key; none may be printed
        self.head_dir = Path(tempfile.mkdtemp(prefix="rmh"))  # the head's own disk
        self.processes: list[subprocess.Popen] = []

    def env(self, home: str) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": home,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_MACAW_TEST_NODE": self.marker,
            **self.server.env,
            "AWS_SECRET_ACCESS_KEY": self.secret,
        }

    def start(self) -> None:
        head = [*RAY, "start", "--head", "--block", f"--node-ip-address={self.head.address}",
                f"--port={RAY_PORT}", "--num-cpus=1", "--include-dashboard=false",
                "--disable-usage-stats", f"--temp-dir={self.head_dir / 'ray'}"]  # fmt: skip
        self._spawn([*self.head.prefix, *head], self.env(str(self.head_dir)), self.head_dir)
        worker_dir = f"/tmp/rmw-{self.marker}"  # on the worker's private tmpfs
        worker = [*RAY, "start", "--block", f"--address={self.head.address}:{RAY_PORT}",
                  f"--node-ip-address={self.worker.address}", "--num-cpus=1",
                  "--disable-usage-stats", f"--temp-dir={worker_dir}/ray"]  # fmt: skip
        # A disk of its own: fresh tmpfs over /tmp and /dev/shm, seen by this node only. The code
        # and interpreter stay visible where they live under /tmp (a CI clone there): each is
        # held open as a descriptor before the tmpfs hides it, then bound back to its path.
        keep = code_under_tmp()
        hold = " ".join(f"exec {3 + i}<{shlex.quote(p)};" for i, p in enumerate(keep))
        rebind = "".join(  # mount must not resolve the descriptor's path (now the tmpfs's)
            f"mkdir -p {q} && mount --no-canonicalize --bind /proc/self/fd/{3 + i} {q} && "
            for i, q in enumerate(map(shlex.quote, keep))
        )
        private = (
            f"{hold} mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /dev/shm && {rebind}"
            f'mkdir -p {worker_dir} && cd {worker_dir} && HOME={worker_dir} exec "$@"'
        )
        command = [*self.worker.prefix, "unshare", "--mount", "--propagation", "private",
                   "sh", "-c", private, "sh", *worker]  # fmt: skip
        self._spawn(command, self.env("/"), Path("/"))
        self._wait_for_two_nodes()

    def _spawn(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        log = open(self.head_dir / f"node-{len(self.processes)}.log", "w")
        self.processes.append(
            subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=log,
                             start_new_session=True)
        )  # fmt: skip

    def _wait_for_two_nodes(self) -> None:
        probe = "import ray; ray.init(); print(sum(n['Alive'] for n in ray.nodes()))"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = self.on_head([sys.executable, "-c", probe], timeout=60, check=False)
            if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == ["2"]:
                return
            time.sleep(1)
        logs = "\n".join(p.read_text()[-1500:] for p in self.head_dir.glob("node-*.log"))
        raise AssertionError(f"the two nodes never joined: {logs}")

    def on_head(
        self, command: list[str], timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run a command on the head host (as a job's driver runs), joined to the cluster."""
        env = {**self.env(str(self.head_dir)), "RAY_ADDRESS": f"{self.head.address}:{RAY_PORT}"}
        done = subprocess.run(
            [*self.head.prefix, *command], env=env, cwd=self.head_dir,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    def stop(self) -> None:
        for process in self.processes:
            with_group = process.pid
            try:
                os.killpg(with_group, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(2)
        _kill_marked(self.marker)
        for process in self.processes:
            process.wait(timeout=30)
        shutil.rmtree(self.head_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    try:
        hosts = two_hosts()
        head, worker = hosts.__enter__()
    except NamespacesUnavailable as e:
        print(f"skipped: {e}")
        pytest.skip(f"cannot make network namespaces: {e}")
    try:
        reason = _private_disk_unavailable(worker)
        if reason:
            print(f"skipped: {reason}")
            pytest.skip(reason)
        with s3_server(host=head.address, port=9000, prefix=head.prefix) as server:
            bucket = _create_bucket(head, server)
            nodes = Cluster(head, worker, server, bucket)
            try:
                nodes.start()
                yield nodes
            finally:
                nodes.stop()
    finally:
        hosts.__exit__(None, None, None)


def _private_disk_unavailable(worker: Host) -> str | None:
    """Why the worker cannot get a /tmp of its own (a mount namespace with a fresh tmpfs)."""
    probe = [*worker.prefix, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", "mount -t tmpfs tmpfs /tmp"]  # fmt: skip
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as e:
        return f"cannot give the worker a disk of its own: {e}"
    if done.returncode != 0:
        return f"cannot give the worker a disk of its own: {done.stderr.strip()}"
    return None


def _create_bucket(head: Host, server: S3Server) -> str:
    """The bucket, made from the head's namespace (the only place the server is reachable)."""
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from s3_server import S3Server; "
        f"print(S3Server({server.endpoint!r}, 0).create_bucket('hosts'))"
    )
    done = subprocess.run([*head.prefix, sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_collect_and_train_across_hosts_with_the_data_on_s3(cluster: Cluster) -> None:
    root = f"{cluster.bucket}/data"
    collected = cluster.on_head([*CLI, "collect", "--family", "point-robot", "--tasks", "0-5",
                                 "--algo", "random", "--steps", "400", "--rows-per-part", "200",
                                 "--out", root, "--no-progress", "--json"])  # fmt: skip
    summary = json.loads(collected.stdout[collected.stdout.index("{") :])
    nodes = {result["node_id"] for result in summary["collected"].values()}
    assert len(nodes) == 2  # collectors ran on both hosts and wrote to the one bucket

    run_file = cluster.head_dir / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "family": "point-robot", "data_root": root, "train_tasks": [0, 1, 2, 4, 5],
        "test_tasks": [3], "hidden": [32, 32], "latent_dim": 8, "task_batch_size": 4,
        "inner_batch_size": 32, "outer_batch_size": 32, "eval_adaptation_batch_size": 32,
        "num_inner_loop_workers": 2, "num_cpus_per_inner_worker": 0.5,
        "eval_num_cpus_per_task": 0.5, "evaluation_interval": 2, "stop_meta_steps": 4,
        "checkpoint_every": 2, "out": str(cluster.head_dir / "run"),
    }))  # fmt: skip
    trained = cluster.on_head([*CLI, "train", str(run_file), "--json"])
    result = json.loads(trained.stdout[trained.stdout.index("{") :])
    assert sorted(set(result["inner_worker_nodes"])) == sorted(nodes)  # one worker per host
    assert result["meta_step"] == 4 and "post_adaptation_return_mean" in result
    assert (
        cluster.secret not in collected.stdout + collected.stderr + trained.stdout + trained.stderr
    )


def test_a_local_data_root_is_refused_across_hosts(cluster: Cluster) -> None:
    local = cluster.head_dir / "local-data"  # on the head's disk only
    refused = cluster.on_head([*CLI, "collect", "--family", "point-robot", "--tasks", "0",
                               "--algo", "random", "--steps", "100", "--out", str(local),
                               "--no-progress"], check=False)  # fmt: skip
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    line = refused.stderr.strip().splitlines()[-1]
    assert "is not the same on 1 of 2 nodes" in line and "shared" in line, line


_UNREACHABLE = """
import ray
from ray_macaw.runtime.shared_storage import StorageNotSharedError, check_shared
# Every worker of this job gets an endpoint where no S3 server listens; the driver keeps its own.
ray.init(runtime_env={{"env_vars": {{"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}}}})
try:
    check_shared("{root}")
except StorageNotSharedError as e:
    print(e)
"""


def test_a_store_the_nodes_cannot_reach_is_refused_naming_the_fix(cluster: Cluster) -> None:
    script = _UNREACHABLE.format(root=f"{cluster.bucket}/unreachable")
    done = cluster.on_head([sys.executable, "-c", script], timeout=120)
    line = done.stdout.strip().splitlines()[-1]
    assert "cannot be read from 2 of 2 nodes" in line and "AWS_ENDPOINT_URL" in line, line
