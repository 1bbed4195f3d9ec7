"""Batch sampling and loading speed of `TaskDatasets` / `TaskData` against plain numpy, same run.

Writes a synthetic root (random episodes through the real `DatasetWriter`: Parquet parts, sha256s,
manifest), loads it keeping the five batch columns as inner-loop workers do (`data/held.py`),
then measures:
(a) contiguous batches of 256 from each task's stride-7 buffer (`TaskData.buffer` +
    `sample_contiguous`) against a numpy strided slice of the same arrays, copied;
(b) uniform batches of 256 (`sample_uniform`) against numpy fancy indexing with
    `rng.choice(..., replace=False)`;
(c) loading every task with `TaskDatasets.load` (checksums, schema and finiteness checks, sort by
    step) against `pyarrow.parquet.read_table` + the same Arrow-to-numpy conversion.
Both sides of (a) and (b) draw the same task and rows from the same seed (checked), so the ratio
is the overhead of our sampler API alone. Prints one JSON line; logs go to stderr.

Usage: python benchmarks/sampling.py [--shape point-robot|cheetah] [--tasks 40] [--rows 20000]
    [--batches 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _common import SHAPES, log, machine, write_root

from ray_macaw.data.batches import BATCH_COLUMNS
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.task_data import Batch, TaskData, table_to_numpy

STRIDE = 7  # the standard buffer stride (spec §6.2)
BATCH = 256  # inner and outer batch size (spec §10)


def ours_contiguous(data: dict[int, TaskData], buffers: dict[int, np.ndarray]) -> Callable:
    """One inner-style batch: a random task, 256 consecutive rows of its stride-7 buffer."""
    tasks = sorted(data)

    def draw(rng: np.random.Generator) -> Batch:
        task = tasks[rng.integers(len(tasks))]
        return data[task].sample_contiguous(BATCH, rng, buffers[task])

    return draw


def numpy_contiguous(arrays: dict[int, Batch], buffers: dict[int, np.ndarray]) -> Callable:
    """The same rows by a strided slice; copied, since a batch must own contiguous memory
    (a view would cost nothing here and be copied later, when the batch is stacked)."""
    tasks = sorted(arrays)
    first = {k: int(b[0]) for k, b in buffers.items()}
    length = {k: len(b) for k, b in buffers.items()}

    def draw(rng: np.random.Generator) -> Batch:
        task = tasks[rng.integers(len(tasks))]
        start = first[task] + STRIDE * int(rng.integers(0, length[task] - BATCH + 1))
        stop = start + BATCH * STRIDE
        return {c: np.ascontiguousarray(a[start:stop:STRIDE]) for c, a in arrays[task].items()}

    return draw


def ours_uniform(data: dict[int, TaskData], buffers: dict[int, np.ndarray]) -> Callable:
    """One outer-style batch: a random task, 256 distinct rows of its buffer."""
    tasks = sorted(data)

    def draw(rng: np.random.Generator) -> Batch:
        task = tasks[rng.integers(len(tasks))]
        return data[task].sample_uniform(BATCH, rng, buffers[task])

    return draw


def numpy_uniform(arrays: dict[int, Batch], buffers: dict[int, np.ndarray]) -> Callable:
    """The same rows by `rng.choice` without replacement and fancy indexing."""
    tasks = sorted(arrays)
    first = {k: int(b[0]) for k, b in buffers.items()}
    length = {k: len(b) for k, b in buffers.items()}

    def draw(rng: np.random.Generator) -> Batch:
        task = tasks[rng.integers(len(tasks))]
        rows = first[task] + STRIDE * rng.choice(length[task], size=BATCH, replace=False)
        return {c: a[rows] for c, a in arrays[task].items()}

    return draw


def same_batches(ours: Callable, plain: Callable, draws: int = 20) -> bool:
    """Both samplers give identical batches from the same seed (so they do the same work)."""
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(draws):
        a, b = ours(rng_a), plain(rng_b)
        if not all(np.array_equal(a[c], b[c]) for c in BATCH_COLUMNS):
            return False
    return True


def batches_per_s(draw: Callable, batches: int) -> float:
    """Batches drawn per second over `batches` draws."""
    rng = np.random.default_rng(2)
    start = time.perf_counter()
    for _ in range(batches):
        draw(rng)
    return batches / (time.perf_counter() - start)


def compare(ours: Callable, plain: Callable, batches: int, repeats: int) -> dict:
    """Best of `repeats` alternating runs each (alternating, so background load hits both)."""
    if not same_batches(ours, plain):
        raise AssertionError("our sampler and the numpy baseline drew different batches")
    best_ours = best_plain = 0.0
    for _ in range(repeats):
        best_ours = max(best_ours, batches_per_s(ours, batches))
        best_plain = max(best_plain, batches_per_s(plain, batches))
    return {
        "ours_batches_per_s": round(best_ours),
        "numpy_batches_per_s": round(best_plain),
        "ratio_ours_over_numpy": round(best_ours / best_plain, 3),
    }


def load_with_task_datasets(root: str, family: str, task_ids: list[int]) -> int:
    """Rows loaded by `TaskDatasets.load` (verification on, as by default); data is dropped."""
    datasets = TaskDatasets(root, family)
    return sum(datasets.load(k).n_rows for k in task_ids)


def load_with_pyarrow(root: str, family: str, task_ids: list[int]) -> int:
    """Rows read by plain `pq.read_table` of the same parts, converted the same way."""
    datasets = TaskDatasets(root, family)  # for the part paths only
    rows = 0
    for task_id in task_ids:
        table = pa.concat_tables(pq.read_table(p) for p in datasets.part_paths(task_id))
        rows += len(table_to_numpy(table)[BATCH_COLUMNS[0]])
    return rows


def compare_loading(root: str, family: str, task_ids: list[int], repeats: int) -> dict:
    """Best of alternating runs; the parts are in the page cache for both (just written)."""
    timings: dict[str, list[float]] = {"ours": [], "pyarrow": []}
    rows = 0
    for _ in range(repeats):
        for name, load in (("ours", load_with_task_datasets), ("pyarrow", load_with_pyarrow)):
            start = time.perf_counter()
            rows = load(root, family, task_ids)
            timings[name].append(time.perf_counter() - start)
    ours, plain = min(timings["ours"]), min(timings["pyarrow"])
    return {
        "tasks": len(task_ids),
        "rows": rows,
        "ours_seconds": round(ours, 3),
        "ours_rows_per_s": round(rows / ours),
        "pyarrow_seconds": round(plain, 3),
        "pyarrow_rows_per_s": round(rows / plain),
        "ratio_ours_over_pyarrow": round(plain / ours, 3),
    }


def prepare(args: argparse.Namespace) -> tuple[dict, dict[int, TaskData], dict[int, np.ndarray]]:
    """Write the root, time loading it, and return (loading figures, batch data, buffers)."""
    family = SHAPES[args.shape][0]
    task_ids = list(range(args.tasks))
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        write_root(root, args.shape, dict.fromkeys(task_ids, args.rows))
        log(f"wrote {args.tasks} x {args.rows} rows in {time.perf_counter() - start:.1f} s")
        loading = compare_loading(root, family, task_ids, args.repeats)
        log(f"loading: {loading}")
        full = TaskDatasets(root, family).load_all(task_ids)
    # Buffers from the full tables: `buffer()` counts rows by the rewards column, which the
    # workers' batch-column copies (`data/held.py`) leave out.
    buffers = {k: d.buffer(stride=STRIDE) for k, d in full.items()}
    # What an inner-loop worker holds: the five batch columns only.
    data = {k: TaskData(k, {c: d.columns[c] for c in BATCH_COLUMNS}) for k, d in full.items()}
    return loading, data, buffers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="point-robot")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per task")
    parser.add_argument("--batches", type=int, default=20_000, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loading, data, buffers = prepare(args)
    arrays = {k: d.columns for k, d in data.items()}  # the very same arrays, for numpy
    contiguous = compare(
        ours_contiguous(data, buffers),
        numpy_contiguous(arrays, buffers),
        args.batches,
        args.repeats,
    )
    log(f"contiguous: {contiguous}")
    uniform = compare(
        ours_uniform(data, buffers), numpy_uniform(arrays, buffers), args.batches, args.repeats
    )
    log(f"uniform: {uniform}")
    _, obs_dim, act_dim = SHAPES[args.shape]
    print(
        json.dumps(
            {
                "benchmark": "sampling",
                "config": f"{args.shape} shape (obs {obs_dim}, act {act_dim}), {args.tasks} tasks "
                f"x {args.rows} rows, stride {STRIDE}, batch {BATCH}, columns "
                f"{list(BATCH_COLUMNS)}, best of {args.repeats} x {args.batches} batches",
                "machine": machine(("numpy", "pyarrow", "torch", "ray")),
                "contiguous": contiguous,
                "uniform": uniform,
                "load": loading,
                "target_ratio_ours_over_numpy_min": 0.5,
            }
        )
    )


if __name__ == "__main__":
    main()
