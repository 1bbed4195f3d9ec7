"""MACAW's own checks in `MACAWConfig.validate()`: impossible settings, with the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_macaw.algorithms.common.config import ConfigError
from ray_macaw.algorithms.common.devices import gpu_request_problem

if TYPE_CHECKING:
    from ray_macaw.algorithms.macaw.config import MACAWConfig


class MACAWConfigError(ConfigError):
    """A MACAW setting that cannot work, and how to fix it."""


# Beyond the shared ones (OfflineMetaConfig.POSITIVE).
POSITIVE = (
    "inner_batch_size",
    "outer_batch_size",
    "inner_steps",
    "outer_value_lr",
    "outer_policy_lr",
    "inner_policy_lr",
    "inner_value_lr",
    "adv_coef",
    "eval_adaptation_steps",
)


def _check_numbers(config: MACAWConfig) -> None:
    interval = config.evaluation_interval
    if not (interval is None or (isinstance(interval, int) and interval >= 0)):
        raise MACAWConfigError(
            f"evaluation_interval must be a non-negative integer, got {interval!r}",
            "set .evaluation(evaluation_interval=250) (meta-steps between held-out "
            "evaluations; 0 or None: none)",
        )
    stride = config.inner_buffer_stride
    if stride is not None and not (isinstance(stride, int) and stride > 0):
        raise MACAWConfigError(
            f"inner_buffer_stride must be a positive integer or None, got {stride!r}",
            "leave it unset to use buffer_stride, or give e.g. 1 (the quality ablation)",
        )
    if config.lrlr < 0:
        raise MACAWConfigError("lrlr cannot be negative", "use 0 to freeze the learned lrs")
    if config.inner_batch_size % config.inner_steps:
        raise MACAWConfigError(
            f"inner_batch_size {config.inner_batch_size} does not split into "
            f"{config.inner_steps} equal inner steps",
            "choose inner_batch_size divisible by inner_steps",
        )
    if config.num_inner_loop_workers < 0:
        raise MACAWConfigError(
            "num_inner_loop_workers cannot be negative",
            "use 0 to compute meta-gradients in the driver",
        )
    if config.max_inner_worker_restarts < 0:
        raise MACAWConfigError(
            "max_inner_worker_restarts cannot be negative", "use 0 to fail on the first loss"
        )
    if config.loss_scale not in ("num_train_tasks", "task_batch"):
        raise MACAWConfigError(
            f"unknown loss_scale {config.loss_scale!r}",
            "use 'num_train_tasks' (authors) or 'task_batch'",
        )


def _check_device(config: MACAWConfig) -> None:
    """A GPU that is asked for must exist: fail here, not at the first meta-step."""
    problem = gpu_request_problem(config.device, config.num_gpus_per_inner_worker)
    if problem is not None:
        raise MACAWConfigError(
            problem,
            "train on the CPU: .training(device='auto') or 'cpu' and "
            ".inner_loop_workers(num_gpus_per_worker=0); or run where torch sees a CUDA GPU",
        )


def check_macaw_settings(config: MACAWConfig) -> None:
    """Raise `MACAWConfigError` for MACAW settings that cannot work (the shared checks and the
    data's are `OfflineMetaConfig.validate`'s)."""
    _check_numbers(config)
    _check_device(config)
    try:
        config.model_config(obs_dim=1, act_dim=1)
        config.inner_loop_config()
    except ValueError as e:
        raise MACAWConfigError(str(e), "fix the setting named above") from e
