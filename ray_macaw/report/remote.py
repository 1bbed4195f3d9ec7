"""Reports of experiments on object storage (`ray-macaw tune --storage-path s3://...`).

The report reads a handful of small files per trial (params, results, errors, fine-tuning), so an
experiment on object storage is copied to a temporary directory without its checkpoints, read
there like a local one, and the table and plot are uploaded beside it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ray_macaw.data.storage import ObjectPath, download_tree, root_path
from ray_macaw.errors import MissingDataError


def _is_checkpoint(name: str) -> bool:
    return name.startswith("checkpoint_")


@contextlib.contextmanager
def readable_run_dir(run_dir: str) -> Iterator[Path]:
    """A local directory holding `run_dir`'s results: itself when local, else a temporary copy
    (same name, no checkpoints) that is deleted afterwards."""
    remote = root_path(run_dir)
    if isinstance(remote, Path):
        yield remote
        return
    with tempfile.TemporaryDirectory(prefix="ray-macaw-report-") as tmp:
        local = Path(tmp) / remote.name
        if download_tree(remote, local, skip=_is_checkpoint) == 0:
            raise MissingDataError(
                "no such run directory", "give the URI ray-macaw tune printed", remote
            )
        yield local


def publish(files: list[Path], run_dir: str) -> list[str]:
    """Upload report files beside a remote experiment; local ones are already in place."""
    remote = root_path(run_dir)
    if not isinstance(remote, ObjectPath):
        return [str(f) for f in files]
    targets = []
    for file in files:
        target = remote / file.name
        target.write_bytes(file.read_bytes())
        targets.append(str(target))
    return targets
