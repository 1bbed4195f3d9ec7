"""Export tasks to Minari datasets (one per task) and import Minari datasets as tasks.

An exported dataset's description carries the family, task id and task parameters as JSON, so an
import needs no mapping for datasets ray-macaw wrote; others take `TASK_ID=DATASET_ID` pairs.
Minari reads and writes under `MINARI_DATASETS_PATH` (default `~/.minari/datasets`); nothing is
downloaded.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ray_macaw.data import columns as C
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.shards import DatasetWriter
from ray_macaw.errors import DataError
from ray_macaw.tasks import get_task_family

DESCRIPTION_TAG = "ray-macaw:"


@contextmanager
def _minari_root(path: str | Path | None):
    """Point Minari at `path` for the duration (it reads the variable on each call)."""
    with warnings.catch_warnings():
        # Minari warns about metadata it cannot fill without a registered env (eval_env, ...).
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari(\.|$)")
        if path is None:
            yield
            return
        before = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = str(path)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = before


def dataset_id(namespace: str, family: str, task_id: int) -> str:
    """Minari id of an exported task, e.g. 'ray-macaw/cheetah-vel-task3-v0'."""
    return f"{namespace}/{family}-task{task_id}-v0"


def export_minari(
    root: str | Path,
    family: str | None = None,
    task_ids: list[int] | None = None,
    namespace: str = "ray-macaw",
    minari_root: str | Path | None = None,
) -> list[str]:
    """Write each task as a Minari dataset; returns the dataset ids."""
    import minari
    from minari.data_collector import EpisodeBuffer

    data = TaskDatasets(root, family)
    fam = get_task_family(data.family, seed=data.manifest.family_seed)
    env = fam.make_env(data.task_ids[0])
    ids = []
    with _minari_root(minari_root):
        for task_id in task_ids or list(data.task_ids):
            task = data.load(task_id)
            episodes = [
                EpisodeBuffer(id=i, **_episode(task.columns, rows))
                for i, rows in enumerate(_episode_rows(task.columns))
            ]
            meta = {
                "family": data.family,
                "task_id": task_id,
                "params": data.manifest.tasks[task_id].params,
                "gamma": data.manifest.gamma,
            }
            name = dataset_id(namespace, data.family, task_id)
            minari.create_dataset_from_buffers(
                name,
                episodes,
                observation_space=_float32(env.observation_space),
                action_space=_float32(env.action_space),
                algorithm_name="ray-macaw export",
                description=f"{DESCRIPTION_TAG}{json.dumps(meta)}",
            )
            ids.append(name)
    return ids


def _float32(space: gym.Space) -> gym.spaces.Box:
    assert isinstance(space, gym.spaces.Box)
    return gym.spaces.Box(
        space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32
    )


def _episode_rows(columns: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    ends = np.flatnonzero(np.diff(columns[C.EPISODE_ID])) + 1
    return np.split(np.arange(len(columns[C.EPISODE_ID])), ends)


def _episode(columns: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, Any]:
    return {
        "observations": np.concatenate([columns[C.OBS][rows], columns[C.NEXT_OBS][rows[-1:]]]),
        "actions": columns[C.ACTIONS][rows],
        "rewards": columns[C.REWARDS][rows],
        "terminations": columns[C.TERMINATED][rows],
        "truncations": columns[C.TRUNCATED][rows],
    }


def import_minari(
    root: str | Path,
    datasets: list[str] | Mapping[int, str],
    family: str | None = None,
    minari_root: str | Path | None = None,
    gamma: float = 0.99,
    rows_per_part: int = 100_000,
) -> dict[int, int]:
    """Write Minari datasets as tasks; task ids from the mapping or the export description."""
    import minari

    with _minari_root(minari_root):
        loaded = [(key, minari.load_dataset(name)) for key, name in _items(datasets)]
        resolved = [(*_task_of(key, ds, family), ds) for key, ds in loaded]
        families = {fam for fam, _, _ in resolved}
        if len(families) != 1:
            raise DataError(
                f"datasets belong to families {sorted(families)}",
                "import one family at a time, or pass --family",
            )
        fam = get_task_family(families.pop())
        first = resolved[0][2]
        writer = DatasetWriter(
            root,
            fam,
            obs_dim=first.observation_space.shape[0],
            act_dim=first.action_space.shape[0],
            gamma=gamma,
            collector={"algo": "imported", "source": "minari"},
        )
        rows = {}
        for _, task_id, ds in resolved:
            task_writer = writer.task_writer(task_id, rows_per_part)
            for episode in ds.iterate_episodes():
                obs = np.asarray(episode.observations)
                task_writer.add_episode(
                    obs[:-1],
                    episode.actions,
                    episode.rewards,
                    obs[1:],
                    terminated=bool(episode.terminations[-1]),
                )
            task_writer.flush()
            writer.mark_complete(task_id, {"source_dataset": ds.spec.dataset_id})
            rows[task_id] = task_writer.rows_written
    return rows


def _items(datasets: list[str] | Mapping[int, str]) -> list[tuple[int | None, str]]:
    if isinstance(datasets, Mapping):
        return [(int(k), v) for k, v in datasets.items()]
    return [(None, name) for name in datasets]


def _task_of(key: int | None, ds: Any, family: str | None) -> tuple[str, int]:
    description = ds.storage.metadata.get("description") or ""
    meta = (
        json.loads(description[len(DESCRIPTION_TAG) :])
        if description.startswith(DESCRIPTION_TAG)
        else {}
    )
    task_id = key if key is not None else meta.get("task_id")
    fam = family or meta.get("family")
    if task_id is None or fam is None:
        raise DataError(
            f"dataset '{ds.spec.dataset_id}' does not say which family and task it holds",
            "pass --family and TASK_ID=DATASET_ID pairs",
        )
    return fam, int(task_id)
