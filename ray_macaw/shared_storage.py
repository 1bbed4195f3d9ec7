"""Check that a directory is the same on every node of the Ray cluster, before relying on it.

Collector actors write their task's parts under ROOT, inner-loop workers and evaluation tasks
read their tasks from it, wherever Ray places them. On one machine that always holds; on a cluster
ROOT must be storage that every node mounts at the same path (NFS, EFS, the compose file's
/shared volume). Rather than assume it, the driver writes a marker file and asks every alive node
whether it sees it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ray_macaw.errors import RayMacawError


class StorageNotSharedError(RayMacawError, RuntimeError):
    """A directory the run relies on is not visible from every node."""


@ray.remote(num_cpus=0)
def _sees(path: str) -> bool:
    return Path(path).is_file()


def check_shared(root: str | Path, what: str = "the data root") -> None:
    """Raise `StorageNotSharedError` unless every alive node sees `root` (a no-op on one node)."""
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    if len(nodes) < 2:
        return
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".ray-macaw-probe-{uuid.uuid4().hex}"
    marker.write_text("written by the ray-macaw driver to check that every node sees this path\n")
    try:
        probes = [
            _sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            ).remote(str(marker))
            for node in nodes
        ]
        blind = [node for node, seen in zip(nodes, ray.get(probes), strict=True) if not seen]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise StorageNotSharedError(
            f"{what} {root} is not visible from {len(blind)} of {len(nodes)} nodes "
            f"({', '.join(n[:8] for n in blind)})",
            "put it on storage every node mounts at the same path (NFS, EFS, the compose "
            "file's /shared volume; see cluster/README.md)",
            root,
        )
