"""Helpers shared by the benchmark scripts (`sampling.py`, `scale.py`, `evaluation.py`).

Not a benchmark itself (`make bench` skips files starting with an underscore). The scripts run as
`python benchmarks/<name>.py`, which puts this folder on `sys.path`, so they import it as
`from _common import ...` (and so do the child processes a script starts of itself).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import numpy as np

from ray_macaw.data.shards import DatasetWriter
from ray_macaw.tasks import get_task_family

# Family (task ids, split, manifest) and (obs, act) sizes of each data shape.
SHAPES = {"point-robot": ("point-robot", 2, 2), "cheetah": ("cheetah-vel", 20, 6)}
EPISODE_LENGTH = 200  # the benchmarks do not look at episodes; long ones make writing faster


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the JSON line."""
    print(message, file=sys.stderr, flush=True)


def machine(packages: tuple[str, ...]) -> dict:
    """Where the figures were taken, with the versions of `packages`."""
    import torch

    return {
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        # Other processes' load when the run ended: on a shared machine, timings are noisy.
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        **{name: metadata.version(name) for name in packages},
    }


def write_root(root: str, shape: str, task_rows: dict[int, int]) -> None:
    """Random transitions (whole episodes) in the real format: `task_rows[task]` rows for each
    task, written in that order, each task marked complete."""
    family, obs_dim, act_dim = SHAPES[shape]
    writer = DatasetWriter(
        root,
        get_task_family(family),
        obs_dim=obs_dim,
        act_dim=act_dim,
        collector={"algo": "synthetic"},
    )
    rng = np.random.default_rng(0)
    for task_id, rows in task_rows.items():
        task_writer = writer.task_writer(task_id)
        for _ in range(rows // EPISODE_LENGTH):
            obs = rng.normal(size=(EPISODE_LENGTH + 1, obs_dim)).astype(np.float32)
            actions = rng.uniform(-1, 1, (EPISODE_LENGTH, act_dim))
            rewards = rng.normal(size=EPISODE_LENGTH)
            task_writer.add_episode(obs[:-1], actions, rewards, obs[1:], terminated=False)
        task_writer.flush()
        writer.mark_complete(task_id)
