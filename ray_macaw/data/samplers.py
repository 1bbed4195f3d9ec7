"""Which rows of a task's buffer MACAW uses, and how batches are drawn from them (spec §6.2, §6.3).

Pure numpy, on row positions of a task's data ordered by `step` (its lifetime-buffer index):
- `select_rows` picks the buffer: all rows or a start / middle / end chunk, sub-sampled by a stride
  (`buffer_range`: the same rows as a `range`, which costs no memory however long the buffer);
- `contiguous_batch` draws n consecutive rows of that buffer (train-time inner batch);
- `uniform_batch` draws n rows uniformly without replacement (outer and test-time batches).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ray_macaw.errors import unknown_name

Position = Literal["start", "middle", "end"]
MiddleCentre = Literal["half", "quarter"]
POSITIONS: tuple[Position, ...] = ("start", "middle", "end")
MIDDLE_CENTRES: tuple[MiddleCentre, ...] = ("half", "quarter")


def select_rows(
    n_rows: int,
    *,
    size: int = -1,
    stride: int = 1,
    position: Position = "end",
    middle_centre: MiddleCentre = "half",
) -> np.ndarray:
    """`buffer_range` as ascending int64 row positions."""
    rows = buffer_range(
        n_rows, size=size, stride=stride, position=position, middle_centre=middle_centre
    )
    return np.arange(rows.start, rows.stop, rows.step, dtype=np.int64)


def buffer_range(
    n_rows: int,
    *,
    size: int = -1,
    stride: int = 1,
    position: Position = "end",
    middle_centre: MiddleCentre = "half",
) -> range:
    """Row positions of a buffer of `size` transitions taken at `position`, every `stride`-th.

    As the authors' loader (spec §6.2): size <- floor(size / stride) (size = n_rows when -1);
    n = min(n_rows, size * stride) rows form a chunk, of which every `stride`-th row is kept.
    - end: rows [N - n, N), so with size -1 the first N mod stride rows are dropped;
    - start: rows [0, n);
    - middle: rows centred on c, [c - n//2, c + n//2). c = N//2 by default ('half'); the
      authors' code centres on (N//2)//2 ('quarter', a quirk kept as an option).

    Args:
        n_rows: N, rows in the task's data.
        size: Transitions wanted before striding; -1 for all.
        stride: Keep every `stride`-th row (7 in the standard configuration).
        position: Where the chunk lies in the lifetime buffer.
        middle_centre: 'half' (true middle) or 'quarter' (the authors' N/4 centre).

    Returns:
        The ascending row positions.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if size == 0 or size < -1:
        raise ValueError(f"size must be -1 (all rows) or positive, got {size}")
    if position not in POSITIONS:
        raise unknown_name("buffer position", position, POSITIONS)
    if middle_centre not in MIDDLE_CENTRES:
        raise unknown_name("middle centre", middle_centre, MIDDLE_CENTRES)
    kept = (n_rows if size == -1 else size) // stride
    n = min(n_rows, kept * stride)
    if position == "end":
        start, stop = n_rows - n, n_rows
    elif position == "start":
        start, stop = 0, n
    else:
        centre = n_rows // 2 if middle_centre == "half" else (n_rows // 2) // 2
        start, stop = centre - n // 2, centre + n // 2
        if start < 0 or stop > n_rows:
            raise ValueError(
                f"a middle chunk of {n} rows centred on row {centre} does not fit in {n_rows} "
                "rows; ask for fewer rows or use middle_centre='half'"
            )
    return range(start, stop, stride)


def contiguous_batch(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` consecutive entries of `rows`, starting at a uniform offset (spec §6.3, inner batch)."""
    return rows[contiguous_positions(len(rows), n, rng)]


def uniform_batch(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct entries of `rows`, uniformly at random (outer and test-time batches)."""
    return rows[uniform_positions(len(rows), n, rng)]


def contiguous_positions(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` consecutive positions in a buffer of `size` rows (the draw `contiguous_batch` makes)."""
    _check_batch(size, n)
    start = int(rng.integers(0, size - n + 1))
    return np.arange(start, start + n, dtype=np.int64)


def uniform_positions(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct positions in a buffer of `size` rows (the draw `uniform_batch` makes)."""
    _check_batch(size, n)
    return rng.choice(size, size=n, replace=False)


def _check_batch(size: int, n: int) -> None:
    if n < 1:
        raise ValueError(f"batch size must be positive, got {n}")
    if n > size:
        raise ValueError(
            f"batch of {n} rows asked from a buffer of {size} rows; use a smaller batch, a "
            "smaller stride or more data for this task"
        )
