"""Task and row sampling for one meta-step (Alg. 1 L3-L5; spec §4.2, §6.3).

The driver decides which tasks and rows a meta-step uses from each buffer's length alone (it never
holds the data, and keeps each buffer as a `range`); whoever holds the buffers (the driver with 0
workers, else the inner-loop replicas) holds only their rows (`data/held.py`) and gathers the
requested ones. So the same seed gives the same batches with any number of workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ray_macaw.data import columns as C
from ray_macaw.data.samplers import buffer_range, contiguous_positions, uniform_positions
from ray_macaw.data.task_data import TaskData

BATCH_COLUMNS = (C.OBS, C.ACTIONS, C.MC_RETURN, C.TERMINAL_OBS, C.TERMINAL_DISCOUNT)


@dataclass(frozen=True)
class TaskRequest:
    """The rows of one task that a meta-step uses, as positions in its buffers (row i of the
    inner buffer is the i-th row the buffer keeps, spec §6.2)."""

    task_id: int
    inner_rows: np.ndarray  # contiguous positions in the inner buffer
    outer_rows: np.ndarray  # uniform positions in the outer buffer


@dataclass(frozen=True)
class BufferLayout:
    """Row positions of each training task's inner and outer buffers (spec §6.2), as ranges
    (no memory per row: 35 tasks x 2.5M rows cost nothing to lay out)."""

    inner: Mapping[int, range]
    outer: Mapping[int, range]

    @classmethod
    def build(
        cls,
        rows_per_task: Mapping[int, int],
        inner: Mapping[str, Any],
        outer: Mapping[str, Any],
        inner_rows_per_task: Mapping[int, int] | None = None,
    ) -> BufferLayout:
        """Each task's buffers from `select_rows` settings (`MACAWConfig.inner_buffer()` and
        `.outer_buffer()`); `inner_rows_per_task` when the inner buffers have their own root."""
        inner_rows = rows_per_task if inner_rows_per_task is None else inner_rows_per_task
        return cls(
            {k: buffer_range(n, **inner) for k, n in inner_rows.items()},
            {k: buffer_range(n, **outer) for k, n in rows_per_task.items()},
        )


def sample_requests(
    layout: BufferLayout,
    train_tasks: Sequence[int],
    task_batch: int,
    inner_batch: int,
    outer_batch: int,
    rng: np.random.Generator,
) -> list[TaskRequest]:
    """`task_batch` distinct training tasks (all when fewer), each with its inner/outer rows."""
    count = min(task_batch, len(train_tasks))
    tasks = sorted(int(t) for t in rng.choice(train_tasks, size=count, replace=False))
    return [
        TaskRequest(
            t,
            contiguous_positions(len(layout.inner[t]), inner_batch, rng),
            uniform_positions(len(layout.outer[t]), outer_batch, rng),
        )
        for t in tasks
    ]


def gather(
    data: Mapping[int, TaskData],
    requests: Sequence[TaskRequest],
    one_hot_tasks: int = 0,
    inner_data: Mapping[int, TaskData] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Stacked (tasks, rows, ...) inner and outer batches of the requested rows.

    `data` holds each task's outer buffer (`data/held.py`), `inner_data` its inner buffer when
    that differs (its own root or cut; else the outer buffer serves both).
    With `one_hot_tasks` > 0 (the multi-task baseline), observations get the task's one-hot id
    of that length appended.
    """
    batches = []
    sources = {"inner_rows": data if inner_data is None else inner_data, "outer_rows": data}
    for rows, source in sources.items():
        batch = {
            c: np.stack([source[r.task_id].columns[c][getattr(r, rows)] for r in requests])
            for c in BATCH_COLUMNS
        }
        if one_hot_tasks:
            ids = np.eye(one_hot_tasks, dtype=np.float32)[[r.task_id for r in requests]]
            for column in (C.OBS, C.TERMINAL_OBS):
                tags = np.broadcast_to(ids[:, None, :], (*batch[column].shape[:2], one_hot_tasks))
                batch[column] = np.concatenate([batch[column], tags], axis=-1)
        batches.append(_tensors(batch))
    return batches[0], batches[1]


def _tensors(batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {
        k: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float32) for k, v in batch.items()
    }
