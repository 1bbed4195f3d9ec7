"""Import the authors' per-task HDF5 buffers (spec §6.1) into the Parquet format.

Their writer walks each episode backwards, so a file holds each episode in reverse time order, and
it stores g = gamma^(L-t) (gamma for an episode's last step) even after true terminations. The
importer finds episodes from that pattern, restores time order and keeps the stored R, g and s^T.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ray_macaw.data.interchange.safe_pickle import load_task_spec
from ray_macaw.data.returns import EpisodeReturns
from ray_macaw.data.shards import DatasetWriter
from ray_macaw.errors import DataError, NonFiniteDataError, SchemaError
from ray_macaw.tasks import TaskFamily

VECTORS = ("obs", "actions", "next_obs", "terminal_obs")
SCALARS = ("rewards", "mc_rewards", "terminals", "terminal_discounts")
FILE_TASK_ID = re.compile(r"_train_(\d+)_")


@dataclass(frozen=True)
class HDF5Buffer:
    """One task's arrays, file order."""

    arrays: dict[str, np.ndarray]
    gamma: float

    @property
    def rows(self) -> int:
        return len(self.arrays["rewards"])


def read_buffer(path: Path, default_gamma: float = 0.99) -> HDF5Buffer:
    """Read and check one authors' HDF5 file."""
    try:
        with h5py.File(path, "r") as f:
            missing = [name for name in (*VECTORS, *SCALARS) if name not in f]
            if missing:
                raise SchemaError(
                    f"HDF5 buffer lacks datasets {missing}",
                    "pass files in the authors' layout (spec §6.1)",
                    path,
                )
            arrays = {name: np.asarray(f[name][()]) for name in (*VECTORS, *SCALARS)}
            gamma = float(f["discount_factor"][()]) if "discount_factor" in f else default_gamma
    except OSError as e:
        raise DataError(f"not a readable HDF5 file ({e})", "check the path", path) from e
    arrays = {
        k: (v.reshape(len(v)) if k in SCALARS else v.astype(np.float32)) for k, v in arrays.items()
    }
    rows = {len(v) for v in arrays.values()}
    if len(rows) != 1:
        raise SchemaError("HDF5 datasets have different lengths", "re-export the buffer", path)
    for name, values in arrays.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise NonFiniteDataError(
                f"dataset '{name}' holds NaN or inf", "drop the bad rows", path
            )
    if not 0.0 < gamma < 1.0:
        raise DataError(
            f"discount factor {gamma} cannot delimit episodes",
            "only buffers written with 0 < gamma < 1 can be imported",
            path,
        )
    return HDF5Buffer(arrays, gamma)


def episodes(buffer: HDF5Buffer) -> Iterator[tuple[dict[str, np.ndarray], EpisodeReturns, bool]]:
    """(steps in time order, stored R / g / s^T, terminated) per episode."""
    g = buffer.arrays["terminal_discounts"].astype(np.float64)
    last_step = np.isclose(g, buffer.gamma, rtol=1e-5)  # g = gamma only at an episode's end
    reverse = _written_backwards(g, buffer.gamma)
    edges = np.flatnonzero(last_step)
    bounds = (
        zip(edges, [*edges[1:], buffer.rows], strict=True)
        if reverse
        else zip([0, *(edges[:-1] + 1)], edges + 1, strict=True)
    )
    for start, stop in bounds:
        rows = np.arange(start, stop)[::-1] if reverse else np.arange(start, stop)
        steps = {k: buffer.arrays[k][rows] for k in ("obs", "actions", "rewards", "next_obs")}
        stored = EpisodeReturns(
            mc_return=buffer.arrays["mc_rewards"][rows].astype(np.float32),
            terminal_discount=g[rows].astype(np.float32),
            terminal_obs=buffer.arrays["terminal_obs"][rows[-1]],
        )
        yield steps, stored, bool(buffer.arrays["terminals"][rows[-1]])


def _written_backwards(g: np.ndarray, gamma: float) -> bool:
    """Whether g grows by a factor gamma from row to row (reverse) rather than shrinks."""
    if len(g) < 2:
        return True
    backwards = np.isclose(g[1:], g[:-1] * gamma, rtol=1e-4).sum()
    forwards = np.isclose(g[:-1], g[1:] * gamma, rtol=1e-4).sum()
    return bool(backwards >= forwards)


def task_files(paths: Mapping[int, str] | list[str]) -> dict[int, Path]:
    """Task id -> file, from {id: path} or the authors' names (..._train_<i>_...hdf5)."""
    if isinstance(paths, Mapping):
        return {int(k): Path(v) for k, v in paths.items()}
    out: dict[int, Path] = {}
    for path in paths:
        match = FILE_TASK_ID.search(Path(path).name)
        if match is None:
            raise DataError(
                "cannot tell the task id from the file name",
                "name it ..._train_<id>_... or pass ID=PATH",
                path,
            )
        out[int(match.group(1))] = Path(path)
    return out


def import_hdf5(
    files: Mapping[int, Path],
    family: TaskFamily,
    root: str | Path,
    task_specs: Mapping[int, Path] | None = None,
    rows_per_part: int = 100_000,
) -> dict[int, int]:
    """Write each file as a task of `family` under `root`; returns rows per task."""
    buffers = {task_id: read_buffer(path) for task_id, path in files.items()}
    gammas = {b.gamma for b in buffers.values()}
    if len(gammas) != 1:
        raise DataError(
            f"files were written with different discounts {sorted(gammas)}",
            "import them into separate roots",
        )
    first = next(iter(buffers.values())).arrays
    writer = DatasetWriter(
        root,
        family,
        obs_dim=first["obs"].shape[1],
        act_dim=first["actions"].shape[1],
        gamma=gammas.pop(),
        collector={"algo": "imported", "source": "macaw-hdf5"},
    )
    rows = {}
    for task_id, buffer in buffers.items():
        task_writer = writer.task_writer(task_id, rows_per_part)
        if task_writer.rows_written:
            raise DataError(
                f"task {task_id} already has data in this root",
                "import into a new root",
                writer.family_dir,
            )
        for steps, stored, terminated in episodes(buffer):
            task_writer.add_episode(**steps, terminated=terminated, precomputed=stored)
        task_writer.flush()
        info: dict[str, object] = {"source_file": str(files[task_id])}
        if task_specs and task_id in task_specs:
            info["source_task_params"] = load_task_spec(task_specs[task_id])
        writer.mark_complete(task_id, info)
        rows[task_id] = buffer.rows
    return rows
