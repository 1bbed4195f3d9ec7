"""Test set-up: make `helpers` importable and give tests a local Ray when they ask for one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A real local Ray instance on 127.0.0.1 (2 CPUs, no dashboard), shared by a test module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
