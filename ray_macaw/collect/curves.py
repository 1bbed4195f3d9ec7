"""Behaviour learning curves per task (like the paper's Figure 8): CSV, PNG, manifest summary."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np

from ray_macaw.data import columns as C
from ray_macaw.data.atomic import atomic_write_bytes
from ray_macaw.data.storage import StoragePath
from ray_macaw.data.task_data import TaskData

CURVES_DIR = "_curves"  # leading underscore: skipped by pyarrow's dataset discovery


def curve_paths(family_dir: StoragePath, task_id: int) -> tuple[StoragePath, StoragePath]:
    """(CSV, PNG) paths of a task's curve."""
    stem = family_dir / CURVES_DIR / f"task_id={task_id}"
    return stem.with_suffix(".csv"), stem.with_suffix(".png")


def curve_of(data: TaskData) -> list[tuple[int, float]]:
    """(lifetime step at the episode's end, return) of every episode already written (resume)."""
    ends = np.flatnonzero(np.diff(data.columns[C.EPISODE_ID], append=-1)) + 1
    return list(zip(ends.tolist(), data.episode_returns().tolist(), strict=True))


def write_curve(family_dir: StoragePath, task_id: int, curve: Sequence[tuple[int, float]]) -> None:
    """Write `episode, end_step, return` rows and a plot of return against lifetime steps."""
    csv_path, png_path = curve_paths(family_dir, task_id)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["episode", "end_step", "return"])
    writer.writerows((i, step, f"{ret:.6g}") for i, (step, ret) in enumerate(curve))
    atomic_write_bytes(csv_path, text.getvalue().encode())
    atomic_write_bytes(png_path, _plot(task_id, curve))


def _plot(task_id: int, curve: Sequence[tuple[int, float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([s for s, _ in curve], dtype=np.float64)
    returns = np.array([r for _, r in curve], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(steps, returns, lw=0.6, alpha=0.4, label="episode")
    if len(returns) >= 10:
        window = max(len(returns) // 50, 5)
        smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
    ax.set(xlabel="lifetime steps", ylabel="episode return", title=f"task {task_id}")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def summarise(curve: Sequence[tuple[int, float]], points: int = 100) -> dict[str, list]:
    """At most `points` (end step, mean return) bins, for the manifest."""
    if not curve:
        return {"end_step": [], "mean_return": []}
    bins = np.array_split(np.arange(len(curve)), min(points, len(curve)))
    return {
        "end_step": [int(curve[b[-1]][0]) for b in bins],
        "mean_return": [round(float(np.mean([curve[i][1] for i in b])), 4) for b in bins],
    }
