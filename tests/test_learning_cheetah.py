"""The MuJoCo learning gate (slow, issue 18): on Cheetah-Dir, one offline adaptation step makes
MACAW run the right way in both directions.

A policy that has not adapted cannot know the direction: its rewards for the two tasks are
d * v_x - 0.05 |a|^2 with d = +1 and -1, so (up to the tasks' slightly different start states)
the two returns sum to minus twice its control cost, and the worse one is at most about zero.
Clearing `THRESHOLD` on *each* direction after adaptation is therefore something only
adaptation can do. Data and meta-steps are sized to run in about 15 minutes on 2 cores
(docs/results.md gives the measured time and figures).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ray_macaw import MACAWConfig
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.run import collect

# The data and settings of tune_configs/results/cheetah_dir_value_lr.yaml, where both directions
# adapt by step 2,000: 60k SAC steps per direction (at 30k the forward agent is still near a
# return of 100), adaptation on each buffer's last 21k rows, macaw-min's outer value lr (1e-4).
STEPS_PER_DIRECTION = 60_000
ADAPTATION_ROWS = 21_000
OUTER_VALUE_LR = 1e-4
META_STEPS = 3_000
THRESHOLD = 100.0  # return per 200-step episode; running forward at ~0.5 m/s clears it


@pytest.fixture(scope="module")
def cheetah_dir_root(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> str:
    """SBX SAC per direction, its whole lifetime buffer (as `ray-macaw collect` writes it)."""
    root = tmp_path_factory.mktemp("cheetah-dir")
    collect(
        CollectConfig(
            family="cheetah-dir",
            root=str(root),
            tasks="all",
            steps=STEPS_PER_DIRECTION,
            algo="sbx-sac",
            rows_per_part=10_000,
        ),
        show_progress=False,
    )
    return str(root)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_macaw_adapts_to_each_cheetah_direction(cheetah_dir_root: str) -> None:
    config = (
        MACAWConfig()  # spec §10 settings; task batch 5 covers both tasks at every step
        .environment(family="cheetah-dir")
        .training(outer_value_lr=OUTER_VALUE_LR)
        .offline_data(root=cheetah_dir_root, inner_buffer_size=ADAPTATION_ROWS)
        .evaluation(
            evaluation_interval=10**9, adaptation_batches=2, episodes_per_task=3, at_start=False
        )
        .debugging(seed=0)
    )
    algo = config.build_algo()
    start = time.perf_counter()
    try:
        for _ in range(META_STEPS):
            algo.training_step()
        result = algo.evaluate_held_out()
    finally:
        algo.stop()
    tasks = result["per_task"]
    pre = {t: tasks[t]["pre_adaptation_return"] for t in ("0", "1")}
    post = {t: tasks[t]["post_adaptation_return"] for t in ("0", "1")}
    print(json.dumps({"pre": pre, "post": post, "train_s": time.perf_counter() - start}))
    assert np.isfinite([*pre.values(), *post.values()]).all()
    assert min(pre.values()) < THRESHOLD  # holds for any unadapted policy (module docstring)
    assert min(post.values()) > THRESHOLD, f"post-adaptation returns {post}"
