"""Test set-up: make `helpers` importable and give tests a local Ray when they ask for one."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Keep every Ray address on 127.0.0.1: with clusters "enabled", Ray resolves 127.0.0.1 to the
# host's network address. Read when ray is imported, so set before any test imports it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A real local Ray instance on 127.0.0.1 (2 CPUs, no dashboard), shared by a test module."""
    import ray

    # address="local": always a fresh instance, never a cluster another process started.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Point-robot data as tune_configs/smoke expects (train 0, 1, 2, 4; held out 3): 400
    random transitions per task."""
    from helpers import write_root

    root = tmp_path_factory.mktemp("smoke-data")
    write_root(root, "point-robot", task_ids=(0, 1, 2, 3, 4), episodes=20, rows_per_part=200)
    return str(root)
