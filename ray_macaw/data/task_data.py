"""One task's transitions held in memory as numpy columns, for fast batch sampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ray_macaw.data import schema as S
from ray_macaw.data.returns import undiscounted_returns
from ray_macaw.data.samplers import (
    MiddleCentre,
    Position,
    contiguous_batch,
    select_rows,
    uniform_batch,
)

Batch = dict[str, np.ndarray]


def table_to_numpy(table: pa.Table) -> Batch:
    """Columns as numpy arrays; fixed-size list columns become (rows, dim) arrays.

    Also the batch function `TaskDatasets.ray_dataset` maps over blocks: Ray Data would otherwise
    give fixed-size lists as object arrays of lists; as 2-D arrays Ray stores them as tensors.
    """
    out = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            out[name] = column.flatten().to_numpy().reshape(-1, column.type.list_size)
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


@dataclass
class TaskData:
    """A task's transitions ordered by `step`, column by column.

    Vector columns (obs, actions, next_obs, terminal_obs) are (rows, dim) float32 arrays; scalar
    columns are (rows,) arrays.
    """

    task_id: int
    columns: dict[str, np.ndarray]

    @classmethod
    def from_table(cls, task_id: int, table: pa.Table) -> TaskData:
        """Convert an Arrow table of the data schema, sorting rows by `step`."""
        return cls(task_id, table_to_numpy(table.sort_by(S.STEP)))

    @property
    def n_rows(self) -> int:
        """Transitions held (any column: a task may hold only the columns it needs)."""
        return len(next(iter(self.columns.values())))

    def batch(self, rows: np.ndarray, columns: Sequence[str] | None = None) -> Batch:
        """The given rows of the given columns (all when None), as a dict of arrays."""
        names = self.columns if columns is None else columns
        return {name: self.columns[name][rows] for name in names}

    def buffer(
        self,
        *,
        size: int = -1,
        stride: int = 1,
        position: Position = "end",
        middle_centre: MiddleCentre = "half",
    ) -> np.ndarray:
        """Row positions of a sub-buffer (see `samplers.select_rows`)."""
        return select_rows(
            self.n_rows, size=size, stride=stride, position=position, middle_centre=middle_centre
        )

    def sample_contiguous(
        self, n: int, rng: np.random.Generator, rows: np.ndarray | None = None
    ) -> Batch:
        """A batch of `n` consecutive rows of `rows` (the whole task when None)."""
        return self.batch(contiguous_batch(self._all(rows), n, rng))

    def sample_uniform(
        self, n: int, rng: np.random.Generator, rows: np.ndarray | None = None
    ) -> Batch:
        """A batch of `n` distinct rows of `rows`, uniformly at random."""
        return self.batch(uniform_batch(self._all(rows), n, rng))

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, in episode order."""
        return undiscounted_returns(self.columns[S.EPISODE_ID], self.columns[S.REWARDS])

    def _all(self, rows: np.ndarray | None) -> np.ndarray:
        return np.arange(self.n_rows, dtype=np.int64) if rows is None else rows
