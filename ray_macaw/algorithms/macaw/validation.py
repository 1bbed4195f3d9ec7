"""`MACAWConfig.validate()`: impossible settings and data that cannot serve them, with the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ray_macaw.algorithms.common.devices import gpu_request_problem
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.samplers import select_rows
from ray_macaw.errors import RayMacawError
from ray_macaw.tasks import Split, get_task_family

if TYPE_CHECKING:
    from ray_macaw.algorithms.macaw.config import MACAWConfig
    from ray_macaw.algorithms.common.config import OfflineMetaConfig


class MACAWConfigError(RayMacawError, ValueError):
    """A MACAW setting that cannot work, and how to fix it."""


def resolve_split(config: OfflineMetaConfig) -> Split:
    """The training / held-out task ids: the family's split unless overridden."""
    family = get_task_family(config.family, seed=config.family_seed)
    split = family.split(config.split)
    train = tuple(config.train_tasks) if config.train_tasks is not None else split.train
    test = tuple(config.test_tasks) if config.test_tasks is not None else split.test
    for task_id in (*train, *test):
        family.task(task_id)
    overlap = sorted(set(train) & set(test))
    if overlap and (config.train_tasks is not None or config.test_tasks is not None):
        raise MACAWConfigError(
            f"held-out tasks {overlap} are also training tasks",
            "remove them from train_tasks (only cheetah-dir's own split shares its two tasks)",
        )
    return Split(split.name, train, test)


def _check_numbers(config: MACAWConfig) -> None:
    positive = (
        "task_batch_size",
        "inner_batch_size",
        "outer_batch_size",
        "inner_steps",
        "outer_value_lr",
        "outer_policy_lr",
        "inner_policy_lr",
        "inner_value_lr",
        "adv_coef",
        "buffer_stride",
        "eval_adaptation_batch_size",
        "eval_adaptation_steps",
        "eval_episodes_per_task",
    )
    for name in positive:
        if not getattr(config, name) > 0:
            raise MACAWConfigError(
                f"{name} must be positive, got {getattr(config, name)}",
                f"set a positive {name} in .training() / .evaluation()",
            )
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
    if config.non_finite_loss not in ("skip", "stop"):
        raise MACAWConfigError(
            f"unknown non_finite_loss {config.non_finite_loss!r}",
            "use 'skip' (skip the update and count it) or 'stop' (raise an error)",
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


def validate_macaw_config(config: MACAWConfig, check_data: bool = True) -> None:
    """Raise `MACAWConfigError` for settings or data that cannot work; `check_data=False` checks
    the settings alone (a config written before its data exists)."""
    _check_numbers(config)
    _check_device(config)
    try:
        config.model_config(obs_dim=1, act_dim=1)
        config.inner_loop_config()
    except ValueError as e:
        raise MACAWConfigError(str(e), "fix the setting named above") from e
    split = resolve_split(config)
    if check_data:
        check_data_serves(
            config,
            split,
            {
                "inner": ("inner_batch_size", config.inner_batch_size),
                "outer": ("outer_batch_size", config.outer_batch_size),
                "test": ("eval_adaptation_batch_size", config.eval_adaptation_batch_size),
            },
        )


def check_data_serves(config: Any, split: Split, batches: Mapping[str, tuple[str, int]]) -> None:
    """The data root holds every task of `split`, collected with the config's family seed, and
    each task's inner / outer / test buffer has rows for its batch (`batches`: buffer -> (the
    setting that sizes its batch, that size)). Shared by MACAW and Offline PEARL."""
    if config.data_root is None:
        raise MACAWConfigError(
            "no data root", "set .offline_data(root=...) to a root written by `ray-macaw collect`"
        )
    data = _open_root(config, config.data_root, split)
    inner_root = getattr(config, "inner_data_root", None)
    inner = data if inner_root is None else _open_root(config, inner_root, split)
    _check_buffer_sizes(config, data, split, batches, inner)


def _open_root(config: Any, root: str, split: Split) -> TaskDatasets:
    """A root's family data, refused unless it holds every task of `split` with the config's
    family seed."""
    data = TaskDatasets(root, config.family)
    if data.manifest.family_seed != config.family_seed:
        raise MACAWConfigError(
            f"the data in {root} was collected with family seed {data.manifest.family_seed}, "
            f"the config says {config.family_seed}",
            "set .environment(family_seed=...) to match the data",
        )
    missing = sorted((set(split.train) | set(split.test)) - set(data.task_ids))
    if missing:
        raise MACAWConfigError(
            f"no data for tasks {missing} in {data.family_dir}",
            f"collect them: ray-macaw collect --family {config.family} --tasks "
            f"{','.join(map(str, missing))} --out {root}",
        )
    return data


def _check_buffer_sizes(
    config: Any,
    data: TaskDatasets,
    split: Split,
    batches: Mapping[str, tuple[str, int]],
    inner_data: TaskDatasets,
) -> None:
    inner, outer = config.inner_buffer(), config.outer_buffer()
    checks = [
        (task_id, what, settings, source)
        for task_id in split.train
        for what, settings, source in (("inner", inner, inner_data), ("outer", outer, data))
    ]
    checks += [(t, "test", inner, inner_data) for t in split.test]
    for task_id, what, settings, source in checks:
        setting, batch = batches[what]
        rows = source.task_record(task_id).rows
        try:
            have = len(select_rows(rows, **settings))
        except ValueError as e:
            raise MACAWConfigError(
                f"task {task_id}'s {what} buffer cannot be cut from its {rows} rows ({e})",
                "change the inner_buffer_* / outer_buffer_* settings or collect more data",
            ) from None
        if have < batch:
            raise MACAWConfigError(
                f"task {task_id}'s {what} buffer has {have} rows (of {rows}, stride "
                f"{settings['stride']}), fewer than the {what} batch of {batch}",
                f"use a smaller {setting} or buffer stride, or collect more data",
            )
