"""Names and logging of MACAW's training metrics (standard RLlib keys plus MACAW's own)."""

from __future__ import annotations

from collections.abc import Mapping

from ray.rllib.utils.metrics import LEARNER_RESULTS, NUM_ENV_STEPS_TRAINED_LIFETIME
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

from ray_macaw.macaw import MACAWModel

META_STEPS = "num_meta_steps_lifetime"
LOSSES = "macaw"  # inner/outer losses and AWR weight statistics, by name
GRAD_NORMS = "grad_norm"
INNER_LRS = "inner_lr"
ADV_COEF = "adv_coef"
TIMINGS = "timing"
SKIPPED_STEPS = "num_non_finite_steps_skipped"  # updates skipped for a non-finite loss/gradient
# The latest held-out evaluation, repeated in every result so that Tune schedulers and reports
# always find it (NaN before the first evaluation); "meta_step" says when it was measured.
HELD_OUT = "held_out"
HELD_OUT_KEYS = ("pre_adaptation_return_mean", "post_adaptation_return_mean")
# The held-out evaluation of the untrained model (meta-step 0), in the first result only, so that
# learning curves start where training starts (the authors evaluate at step 0, spec §7.1).
EVALUATION_AT_START = "evaluation_at_start"


def no_held_out_yet() -> dict[str, float]:
    """The `held_out` entry before any evaluation."""
    return {**dict.fromkeys(HELD_OUT_KEYS, float("nan")), "meta_step": 0}


def log_step(
    metrics: MetricsLogger,
    stats: Mapping[str, float],
    norms: Mapping[str, float],
    model: MACAWModel,
    timings: Mapping[str, float],
    rows: int,
    meta_steps: int,
    skipped: int = 0,
) -> None:
    """Log one meta-step's figures; exact values (`reduce="item"`), not moving averages."""
    for name, value in stats.items():
        metrics.log_value((LEARNER_RESULTS, LOSSES, name), value, reduce="item")
    for name, value in norms.items():
        metrics.log_value((LEARNER_RESULTS, GRAD_NORMS, name), value, reduce="item")
    for net, lrs in model.inner_lrs().items():
        for name, value in lrs.items():
            metrics.log_value((LEARNER_RESULTS, INNER_LRS, net, name), value, reduce="item")
    coef = model.adv_coef()
    if coef is not None:
        metrics.log_value((LEARNER_RESULTS, ADV_COEF), coef, reduce="item")
    for name, value in timings.items():
        metrics.log_value((LEARNER_RESULTS, TIMINGS, name), value, reduce="item")
    metrics.log_value(NUM_ENV_STEPS_TRAINED_LIFETIME, rows, reduce="lifetime_sum")
    metrics.log_value(META_STEPS, meta_steps, reduce="item")
    metrics.log_value((LEARNER_RESULTS, SKIPPED_STEPS), skipped, reduce="item")
