"""A write that fails part-way (the disk fills up) gives a clear error and keeps earlier parts.

The child process lowers its file-size limit (RLIMIT_FSIZE) after two parts, so the third part's
write fails with a real OS error (EFBIG), as a full disk fails with ENOSPC.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ray_macaw.data.datasets import TaskDatasets

CHILD = """
import resource, signal, sys
sys.path.insert(0, {tests!r})
import numpy as np
from helpers import rollout
from ray_macaw.data.shards import DatasetWriter
from ray_macaw.errors import DataError
from ray_macaw.tasks import get_task_family

family = get_task_family("point-robot")
env = family.make_env(0)
writer = DatasetWriter({root!r}, family, obs_dim=2, act_dim=2, gamma=0.99,
                       collector={{"algo": "random"}})
task = writer.task_writer(0, rows_per_part=40)
rng = np.random.default_rng(0)
for episode in range(6):
    if episode == 4:  # after two parts of two episodes: at most 1 kB per file from now on
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
    ep = rollout(env, rng, seed=episode)
    try:
        task.add_episode(ep["obs"], ep["actions"], ep["rewards"], ep["next_obs"],
                         terminated=bool(ep["terminated"]))
    except DataError as e:
        print(e)
        sys.exit(3)
"""


def test_a_failed_part_write_is_reported_and_earlier_parts_survive(tmp_path: Path) -> None:
    child = CHILD.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert run.returncode == 3, run.stdout + run.stderr
    message = run.stdout.strip()
    assert message.startswith("could not write part-") and "File too large" in message
    assert "Fix: free disk space" in message and "intact" in message
    assert not list(tmp_path.rglob(".*.tmp-*"))  # no half-written file left behind
    task = TaskDatasets(tmp_path, "point-robot").load(0)  # checksums verified on read
    assert task.n_rows == 80  # the two parts written before the failure, whole
