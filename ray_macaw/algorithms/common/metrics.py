"""Logging of the training metrics (standard RLlib keys plus ours, named in `ray_macaw.outputs`)."""

from __future__ import annotations

from collections.abc import Mapping

from ray.rllib.utils.metrics import LEARNER_RESULTS, NUM_ENV_STEPS_TRAINED_LIFETIME
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

from ray_macaw.outputs import (
    ADV_COEF,
    GRAD_NORMS,
    HELD_OUT_KEYS,
    INNER_LRS,
    LOSSES,
    META_STEPS,
    SKIPPED_STEPS,
    TIMINGS,
)


def no_held_out_yet() -> dict[str, float]:
    """The `held_out` entry before any evaluation."""
    return {**dict.fromkeys(HELD_OUT_KEYS, float("nan")), "meta_step": 0}


def log_step(
    metrics: MetricsLogger,
    stats: Mapping[str, float],
    norms: Mapping[str, float],
    inner_lrs: Mapping[str, Mapping[str, float]],
    adv_coef: float | None,
    timings: Mapping[str, float],
    rows: int,
    meta_steps: int,
    skipped: int = 0,
) -> None:
    """Log one meta-step's figures; exact values (`reduce="item"`), not moving averages.
    `inner_lrs` and `adv_coef` are the model's after the step (`MACAWModel.inner_lrs()`,
    `.adv_coef()`; with replicas, rank 0's)."""
    for name, value in stats.items():
        metrics.log_value((LEARNER_RESULTS, LOSSES, name), value, reduce="item")
    for name, value in norms.items():
        metrics.log_value((LEARNER_RESULTS, GRAD_NORMS, name), value, reduce="item")
    for net, lrs in inner_lrs.items():
        for name, value in lrs.items():
            metrics.log_value((LEARNER_RESULTS, INNER_LRS, net, name), value, reduce="item")
    if adv_coef is not None:
        metrics.log_value((LEARNER_RESULTS, ADV_COEF), adv_coef, reduce="item")
    for name, value in timings.items():
        metrics.log_value((LEARNER_RESULTS, TIMINGS, name), value, reduce="item")
    metrics.log_value(NUM_ENV_STEPS_TRAINED_LIFETIME, rows, reduce="lifetime_sum")
    metrics.log_value(META_STEPS, meta_steps, reduce="item")
    metrics.log_value((LEARNER_RESULTS, SKIPPED_STEPS), skipped, reduce="item")
