"""The embedded local Ray listens on loopback only, with token authentication on (issue 19,
item 19; docs/security.md)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

from sockets import is_loopback

SCRIPT = """
import json, os, sys
sys.path.insert(0, {tests!r})
import ray
from sockets import descendants, listening
from ray_macaw.runtime.ray_setup import ensure_ray

ensure_ray(num_cpus=1)

@ray.remote
def pid():
    return os.getpid()

worker = ray.get(pid.remote())  # a worker process, listening too
print(json.dumps({{"sockets": listening(descendants(os.getpid())), "worker": worker}}))
ray.shutdown()
"""


def test_no_socket_of_the_embedded_ray_listens_beyond_loopback(tmp_path: Path) -> None:
    """Start Ray the way every command does, in a clean process (none of the test suite's Ray
    settings), and read every listening socket of it and its children from /proc."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)  # a fresh token under $HOME/.ray
    script = SCRIPT.format(tests=str(Path(__file__).parent))
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    sockets = doc["sockets"]
    assert len(sockets) >= 4, sockets  # GCS, raylet, dashboard, agents, workers
    assert doc["worker"] in {pid for pid, _, _ in sockets}
    exposed = [s for s in sockets if not is_loopback(ipaddress.ip_address(s[1]))]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert "Token authentication is enabled" in run.stderr  # and nobody turned it off


REPLICAS_SCRIPT = """
import json, os, sys
sys.path.insert(0, {tests!r})
import ray
import torch
import torch.distributed as dist
from sockets import descendants, listening
from ray_macaw.algorithms.common import replicas
from ray_macaw.runtime.ray_setup import ensure_ray

ensure_ray(num_cpus=2)

@ray.remote(num_cpus=0.5)
class Replica:  # joins the group as InnerLoopWorker does (address on rank 0, then join)
    def address(self):
        self.listener = replicas.open_rendezvous()
        return self.listener.getsockname()[:2]

    def join(self, rank, address, port):
        replicas.join_group(rank, 2, address, port, "gloo", self.listener if rank == 0 else None)
        ones = torch.ones(2)
        dist.all_reduce(ones)
        return ones.tolist()

    def pid(self):
        return os.getpid()

pair = [Replica.remote() for _ in range(2)]
address, port = ray.get(pair[0].address.remote())
sums = ray.get([r.join.remote(rank, address, port) for rank, r in enumerate(pair)])
pids = ray.get([r.pid.remote() for r in pair])
sockets = listening(descendants(os.getpid()))
print(json.dumps({{"sums": sums, "sockets": sockets, "pids": pids}}))
ray.shutdown()
"""


def test_the_replicas_group_listens_on_loopback_only(tmp_path: Path) -> None:
    """Issue 16: the inner-loop replicas' gloo group (its store on rank 0, every pair's socket)
    listens on the embedded Ray's loopback address, not on every interface."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)
    script = REPLICAS_SCRIPT.format(tests=str(Path(__file__).parent))
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    assert doc["sums"] == [[2.0, 2.0]] * 2  # the group works
    replica_sockets = [s for s in doc["sockets"] if s[0] in doc["pids"]]
    assert len(replica_sockets) >= 3, doc  # the store and each replica's gloo pair
    exposed = [s for s in doc["sockets"] if not is_loopback(ipaddress.ip_address(s[1]))]
    assert not exposed, f"listening beyond loopback: {exposed}"
