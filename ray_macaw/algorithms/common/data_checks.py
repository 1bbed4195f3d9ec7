"""Checks every offline meta-algorithm's config makes: its split resolves, and its data roots
hold every task of it, collected with its family seed, with rows for every batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.samplers import select_rows
from ray_macaw.tasks import Split, get_task_family

if TYPE_CHECKING:
    from ray_macaw.algorithms.common.config import OfflineMetaConfig


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
        raise config.error(
            f"held-out tasks {overlap} are also training tasks",
            "remove them from train_tasks (only cheetah-dir's own split shares its two tasks)",
        )
    return Split(split.name, train, test)


def check_data_serves(
    config: OfflineMetaConfig, split: Split, batches: Mapping[str, tuple[str, int]]
) -> None:
    """The data root holds every task of `split`, collected with the config's family seed, and
    each task's inner / outer / test buffer has rows for its batch (`batches`: buffer -> (the
    setting that sizes its batch, that size)). Shared by MACAW and Offline PEARL."""
    if config.data_root is None:
        raise config.error(
            "no data root", "set .offline_data(root=...) to a root written by `ray-macaw collect`"
        )
    data = _open_root(config, config.data_root, split)
    inner_root = config.inner_data_root
    inner = data if inner_root is None else _open_root(config, inner_root, split)
    _check_buffer_sizes(config, data, split, batches, inner)


def _open_root(config: OfflineMetaConfig, root: str, split: Split) -> TaskDatasets:
    """A root's family data, refused unless it holds every task of `split` with the config's
    family seed."""
    data = TaskDatasets(root, config.family)
    if data.manifest.family_seed != config.family_seed:
        raise config.error(
            f"the data in {root} was collected with family seed {data.manifest.family_seed}, "
            f"the config says {config.family_seed}",
            "set .environment(family_seed=...) to match the data",
        )
    missing = sorted((set(split.train) | set(split.test)) - set(data.task_ids))
    if missing:
        raise config.error(
            f"no data for tasks {missing} in {data.family_dir}",
            f"collect them: ray-macaw collect --family {config.family} --tasks "
            f"{','.join(map(str, missing))} --out {root}",
        )
    return data


def _check_buffer_sizes(
    config: OfflineMetaConfig,
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
            raise config.error(
                f"task {task_id}'s {what} buffer cannot be cut from its {rows} rows ({e})",
                "change the inner_buffer_* / outer_buffer_* settings or collect more data",
            ) from None
        if have < batch:
            raise config.error(
                f"task {task_id}'s {what} buffer has {have} rows (of {rows}, stride "
                f"{settings['stride']}), fewer than the {what} batch of {batch}",
                f"use a smaller {setting} or buffer stride, or collect more data",
            )
