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
