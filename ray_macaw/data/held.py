"""The rows a meta-step can sample, and only those, held in memory (issue 16; spec §6.2).

The standard configuration keeps every 7th row of each task (`buffer_stride` 7), so holding the
whole task would hold seven times the rows that can ever be sampled: about 17 GB instead of 2.5 GB
at Cheetah-Vel's scale. A task's buffers are cut when it is loaded: its outer buffer, and its inner
buffer when that has another cut or its own root (else the outer buffer serves both). Row i of a
held buffer is the i-th row of that buffer, which is what `TaskRequest` positions name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ray_macaw.data.batches import BATCH_COLUMNS
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.samplers import buffer_range
from ray_macaw.data.task_data import TaskData


@dataclass(frozen=True)
class BufferSources:
    """Where a family's buffers come from and how they are cut.

    Args:
        root: The outer buffers' data root.
        family: The task family.
        inner_cut: `select_rows` settings of the inner buffers (`MACAWConfig.inner_buffer()`).
        outer_cut: Those of the outer buffers (`MACAWConfig.outer_buffer()`).
        inner_root: The inner buffers' own root (the authors' random-policy inner data), or None.
    """

    root: str
    family: str
    inner_cut: Mapping[str, Any]
    outer_cut: Mapping[str, Any]
    inner_root: str | None = None


@dataclass(frozen=True)
class HeldTask:
    """One task's held buffers: `outer`, and `inner` when it differs (None: `outer` serves)."""

    outer: TaskData
    inner: TaskData | None

    @property
    def nbytes(self) -> int:
        """Bytes of the held columns."""
        held = [self.outer] if self.inner is None else [self.outer, self.inner]
        return sum(a.nbytes for data in held for a in data.columns.values())


def cut(data: TaskData, rows: range) -> TaskData:
    """The `rows` of `data` (a buffer's), copied so the rest of the task can be freed, of the
    columns meta-training reads."""
    # A basic slice is a view of the whole column; the copy lets the whole column go.
    return TaskData(
        data.task_id,
        {c: np.array(data.columns[c][rows.start : rows.stop : rows.step]) for c in BATCH_COLUMNS},
    )


def load_task(sources: BufferSources, task_id: int) -> HeldTask:
    """Read one task and keep only its buffers' rows; one held buffer serves as inner and outer
    buffer when both keep the same rows of the same root (the standard configuration)."""
    full = TaskDatasets(sources.root, sources.family).load(task_id)
    outer_rows = buffer_range(full.n_rows, **sources.outer_cut)
    outer = cut(full, outer_rows)
    if sources.inner_root not in (None, sources.root):
        del full  # before the inner root's copy of the task is read
        full = TaskDatasets(sources.inner_root, sources.family).load(task_id)
    elif buffer_range(full.n_rows, **sources.inner_cut) == outer_rows:
        return HeldTask(outer, None)
    return HeldTask(outer, cut(full, buffer_range(full.n_rows, **sources.inner_cut)))


def load_tasks(sources: BufferSources, task_ids: list[int]) -> dict[int, HeldTask]:
    """`load_task` for each task, one at a time (the peak is one whole task plus the cuts)."""
    held = {task_id: load_task(sources, task_id) for task_id in task_ids}
    # Arrow's pool keeps the freed read buffers (about 3x the data, benchmarks/scale.py).
    pa.default_memory_pool().release_unused()
    return held


def split_held(
    held: Mapping[int, HeldTask],
) -> tuple[dict[int, TaskData], dict[int, TaskData] | None]:
    """(outer buffers, inner buffers or None when the outer ones serve), as `gather` takes them."""
    outer = {k: h.outer for k, h in held.items()}
    if all(h.inner is None for h in held.values()):
        return outer, None
    return outer, {k: h.outer if h.inner is None else h.inner for k, h in held.items()}
