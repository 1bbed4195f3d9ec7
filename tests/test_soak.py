"""Soak (slow): 1,000 meta-steps with 2 inner-loop workers and periodic evaluation; the memory of
the driver and of the workers must level off, not grow with the number of steps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import ray
from helpers import write_root

from ray_macaw import MACAWConfig

STEPS, SAMPLE_EVERY = 1000, 50


def rss_mb(pid: int) -> float:
    """Resident memory of a process on this machine (the workers run locally), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.mark.slow
def test_memory_levels_off_over_1000_meta_steps(tmp_path: Path, ray_local: None) -> None:
    write_root(tmp_path, "point-robot", task_ids=tuple(range(8)), episodes=50, rows_per_part=500)
    algo = (
        MACAWConfig()
        .environment(family="point-robot", train_tasks=[0, 1, 2, 4, 5, 6, 7], test_tasks=[3])
        .offline_data(root=str(tmp_path))
        .training(hidden=(64, 64), latent_dim=16, inner_batch_size=64, outer_batch_size=64)
        .inner_loop_workers(num_workers=2, num_cpus_per_worker=0.5)
        .evaluation(evaluation_interval=100, adaptation_batch_size=64, num_cpus_per_task=0.5)
        .debugging(seed=0)
        .build_algo()
    )
    try:
        workers = algo.inner_workers
        pids = ray.get([w.__ray_call__.remote(lambda self: os.getpid()) for w in workers])
        samples = []
        for step in range(1, STEPS + 1):
            algo.train()
            if step % SAMPLE_EVERY == 0:
                samples.append([rss_mb(os.getpid()), *(rss_mb(p) for p in pids)])
    finally:
        algo.stop()
    (tmp_path / "rss.json").write_text(json.dumps(samples))
    quarter = len(samples) // 4
    for column, name in enumerate(["driver", "worker 0", "worker 1"]):
        early = max(s[column] for s in samples[quarter : 2 * quarter])
        late = max(s[column] for s in samples[-quarter:])
        # Allocator noise is a few MB; a leak of even 50 kB per step would add 25 MB here.
        assert late - early < 25, f"{name} RSS grew from {early:.0f} to {late:.0f} MB"
