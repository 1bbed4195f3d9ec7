"""Check that a directory is the same on every node of the Ray cluster, before relying on it.

Collector actors write their task's parts under ROOT, inner-loop workers and evaluation tasks
read their tasks from it, wherever Ray places them. On one machine that always holds; on a cluster
ROOT must be storage that every node mounts at the same path (NFS, EFS, the compose file's
/shared volume). Rather than assume it, the driver writes a marker file and asks every alive node
whether it sees it. A root on object storage (`s3://...`) is shared by nature; the same probe then
checks that every node can reach the store with its credentials and endpoint.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ray_macaw.data.storage import ObjectPath, root_path
from ray_macaw.errors import DataError, RayMacawError


class StorageNotSharedError(RayMacawError, RuntimeError):
    """A directory the run relies on is not visible from every node."""


def _sha256(path: str) -> str | None:
    file = root_path(path)
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
    except DataError:  # a store this node cannot reach (credentials, endpoint)
        return None


_digest = ray.remote(num_cpus=0)(_sha256)


def check_shared(
    root: str | Path | ObjectPath, what: str = "the data root", probe: str | None = None
) -> None:
    """Raise `StorageNotSharedError` unless every alive node sees the same `root` (a no-op on one
    node). With `probe` (a file under `root`, e.g. the manifest), its content is compared and
    nothing is written, so a read-only data mount works; otherwise a marker file is written."""
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    if len(nodes) < 2:
        return
    root = root_path(root)
    if probe is not None:
        target = root / probe
    else:
        root.mkdir(parents=True, exist_ok=True)
        target = root / f".ray-macaw-probe-{uuid.uuid4().hex}"
        target.write_text("written by the ray-macaw driver to check that every node sees it\n")
    try:
        expected = _sha256(str(target))
        probes = [
            _digest.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            ).remote(str(target))
            for node in nodes
        ]
        seen = ray.get(probes)
    finally:
        if probe is None:
            target.unlink(missing_ok=True)
    blind = [node for node, digest in zip(nodes, seen, strict=True) if digest != expected]
    if blind and isinstance(root, ObjectPath):
        raise StorageNotSharedError(
            f"{what} {root} cannot be read from {len(blind)} of {len(nodes)} nodes "
            f"({', '.join(n[:8] for n in blind)})",
            "give every node the store's credentials and endpoint (for S3: AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL in the environment of "
            "`ray start`; see cluster/README.md)",
            root,
        )
    if blind:
        raise StorageNotSharedError(
            f"{what} {root} is not the same on {len(blind)} of {len(nodes)} nodes "
            f"({', '.join(n[:8] for n in blind)})",
            "put it on storage every node mounts at the same path (NFS, EFS, the compose "
            "file's /shared volume; see cluster/README.md)",
            root,
        )
