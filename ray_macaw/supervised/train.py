"""The meta-training loop of one run: MAML outer steps, with train and validation evaluations.

Figure 6 plots post-adaptation performance on meta-training tasks and on held-out (validation)
tasks against meta-training steps; every `eval_every` steps (and at step 0) this loop scores the
same fixed `eval_tasks` tasks of each split and hands the figures, with the state to resume from,
to a `report` callback (Ray Tune's in `tune_run`, a list in tests).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ray_macaw.supervised.config import OMNIGLOT, SupervisedConfig
from ray_macaw.supervised.maml import MetaLearner
from ray_macaw.supervised.models import build_model
from ray_macaw.supervised.omniglot import OmniglotTasks
from ray_macaw.supervised.tasks import SPLITS, SinusoidTasks, TaskFamily

META_STEP = "meta_step"
SECONDS = "seconds"  # wall-clock seconds of this run so far (excluding restarts' earlier time)
BATCH_PREFIX = "batch/"  # mean figures of the meta-training batches since the last report
# numpy SeedSequence stream ids: training batches and the fixed evaluation tasks never overlap.
_TRAIN_STREAM, _EVAL_STREAM = 10, 20

# report(metrics, state): `state` (a snapshot) is what `train(..., state=)` resumes from.
Report = Callable[[dict[str, Any], dict[str, Any]], None]


def make_family(config: SupervisedConfig) -> TaskFamily:
    """The config's task family."""
    assert config.shots is not None and config.query is not None  # filled by from_dict
    if config.family == OMNIGLOT:
        assert config.data_dir is not None
        return OmniglotTasks(
            config.data_dir, config.ways, config.shots, config.query, config.rotations
        )
    return SinusoidTasks(
        config.shots, config.query, config.train_functions, config.val_functions, config.task_seed
    )


def make_learner(config: SupervisedConfig, family: TaskFamily) -> MetaLearner:
    """The config's model (seeded by `seed`) and its MAML learner."""
    assert config.inner_lr is not None
    torch.manual_seed(config.seed)
    model = build_model(
        config.model,
        family.in_dim,
        family.out_dim,
        config.hidden,
        config.hidden_layers,
        config.latent_dim,
    )
    return MetaLearner(
        model,
        family.loss_kind,
        config.inner_lr,
        config.inner_steps,
        config.learn_inner_lr,
        config.first_order,
        config.outer_lr,
    )


def evaluate(
    learner: MetaLearner, family: TaskFamily, config: SupervisedConfig
) -> dict[str, float]:
    """Mean pre/post-adaptation figures on `eval_tasks` fixed tasks per split ('train/...')."""
    assert config.meta_batch_size is not None
    out: dict[str, float] = {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([config.task_seed, _EVAL_STREAM, index])  # same tasks always
        totals: dict[str, float] = {}
        done = 0
        while done < config.eval_tasks:
            n = min(config.meta_batch_size, config.eval_tasks - done)
            tasks = family.evaluation_tasks(split, done, n, rng)
            for name, value in learner.evaluate(tasks).items():
                totals[name] = totals.get(name, 0.0) + value * n
            done += n
        out.update({f"{split}/{name}": total / done for name, total in totals.items()})
    return out


def train(config: SupervisedConfig, report: Report, state: dict[str, Any] | None = None) -> None:
    """Meta-train from scratch, or from `state` (what an earlier `report` received)."""
    assert config.meta_batch_size is not None
    torch.set_num_threads(config.torch_threads)
    family = make_family(config)
    learner = make_learner(config, family)
    rng = np.random.default_rng([config.seed, _TRAIN_STREAM])
    step = 0
    if state is not None:
        learner.load_state_dict(state["learner"])
        rng.bit_generator.state = state["rng"]
        step = int(state[META_STEP])
    start = time.monotonic()

    def send(step: int, batch: dict[str, list[float]]) -> None:
        metrics: dict[str, Any] = {META_STEP: step, **evaluate(learner, family, config)}
        metrics.update({BATCH_PREFIX + k: float(np.mean(v)) for k, v in batch.items()})
        metrics[SECONDS] = time.monotonic() - start
        # A copy: the live tensors keep training after `report` returns.
        learner_state = copy.deepcopy(learner.state_dict())
        report(metrics, {META_STEP: step, "rng": rng.bit_generator.state, "learner": learner_state})

    if step == 0:
        send(0, {})  # the curves start from the initialisation
    batch: dict[str, list[float]] = {}
    while step < config.meta_steps:
        stats = learner.meta_step(family.sample("train", config.meta_batch_size, rng))
        for name, value in stats.items():
            batch.setdefault(name, []).append(value)
        step += 1
        if step % config.eval_every == 0 or step == config.meta_steps:
            send(step, batch)
            batch = {}
