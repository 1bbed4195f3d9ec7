"""Learning evidence (slow): MACAW adapts to held-out point-robot tasks and beats Meta-BC."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ray_macaw import MACAWConfig
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.run import collect

TRAIN = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 39]
TEST = [3, 11, 19, 27, 35]
META_STEPS = 400
PEARL_STEPS = 2000


@pytest.fixture(scope="module")
def sac_root(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> str:
    """SAC, 3000 steps on each training and held-out task (shared by this module's tests)."""
    root = tmp_path_factory.mktemp("sac-data")
    collect(
        CollectConfig(
            family="point-robot",
            root=str(root),
            tasks=",".join(map(str, TRAIN + TEST)),
            steps=3000,
        ),
        show_progress=False,
    )
    return str(root)


def train_and_evaluate(root: str, **training: object) -> dict:
    config = (
        MACAWConfig()
        .environment(family="point-robot", train_tasks=TRAIN, test_tasks=TEST)
        .offline_data(root=root)
        .training(
            hidden=(64, 64, 64),
            latent_dim=32,
            inner_batch_size=128,
            outer_batch_size=128,
            **training,
        )
        .evaluation(
            evaluation_interval=10**9,
            adaptation_batch_size=128,
            episodes_per_task=5,
            at_start=False,
        )
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        for _ in range(META_STEPS):
            algo.training_step()
        return algo.evaluate_held_out()
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_macaw_adapts_and_beats_meta_bc(sac_root: str) -> None:
    macaw = train_and_evaluate(sac_root)
    meta_bc = train_and_evaluate(sac_root, objective="meta_bc", advantage_head=False)
    figures = {
        "macaw_pre": macaw["pre_adaptation_return_mean"],
        "macaw_post": macaw["post_adaptation_return_mean"],
        "meta_bc_post": meta_bc["post_adaptation_return_mean"],
    }
    print(json.dumps(figures))
    assert np.isfinite(list(figures.values())).all()
    assert figures["macaw_post"] > figures["macaw_pre"]
    assert figures["macaw_post"] > figures["meta_bc_post"]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_offline_pearl_infers_held_out_tasks(sac_root: str) -> None:
    """Offline PEARL's posterior from the adaptation batch beats its prior on held-out tasks."""
    from ray_macaw.algorithms.pearl.config import PEARLConfig

    config = (
        PEARLConfig()
        .environment(family="point-robot", train_tasks=TRAIN, test_tasks=TEST)
        .offline_data(root=sac_root, buffer_stride=1)
        .training(hidden=(64, 64, 64), encoder_hidden=(64, 64), task_batch_size=5, batch_size=128)
        .evaluation(
            evaluation_interval=10**9,
            adaptation_batch_size=128,
            episodes_per_task=5,
            at_start=False,
        )
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        for _ in range(PEARL_STEPS):
            algo.training_step()
        result = algo.evaluate_held_out()
    finally:
        algo.stop()
    figures = {k: result[k] for k in ("pre_adaptation_return_mean", "post_adaptation_return_mean")}
    print(json.dumps(figures))
    assert np.isfinite(list(figures.values())).all()
    assert figures["post_adaptation_return_mean"] > figures["pre_adaptation_return_mean"]
