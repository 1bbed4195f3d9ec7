"""Per-variant tables and learning-curve plots (like the paper's Figures 3 and 5).

Each variant's figures are the mean and standard error over its seeds of each run's final held-out
evaluation (and, where the experiment fine-tuned, of each fine-tuning budget's return).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ray_macaw.report.runs import Run


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n); 0 for a single value)."""
    array = np.asarray(values, dtype=float)
    if len(array) == 0:
        return float("nan"), float("nan")
    stderr = float(array.std(ddof=1) / np.sqrt(len(array))) if len(array) > 1 else 0.0
    return float(array.mean()), stderr


def by_label(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by variant label, labels in first-seen order."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.label].append(run)
    return dict(groups)


def summary_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per variant: seeds, meta-steps reached, final pre/post return +- s.e., and the
    fine-tuned return per budget when present."""
    rows = []
    for label, group in by_label(runs).items():
        done = [r for r in group if r.evaluated]
        row: dict[str, Any] = {
            "variant": label,
            "seeds": len(done),
            "errored": sum(r.error for r in group),
            "meta_steps": max((r.steps[-1] for r in done), default=0),
        }
        for key, attr in (("pre", "pre"), ("post", "post")):
            mean, stderr = mean_and_stderr([getattr(r, attr)[-1] for r in done])
            row[f"{key}_mean"], row[f"{key}_stderr"] = mean, stderr
        budgets: dict[int, list[float]] = defaultdict(list)
        for r in group:
            for entry in (r.finetune or {}).get("table", []):
                budgets[int(entry["budget"])].append(float(entry["mean_return"]))
        row["finetune"] = {b: mean_and_stderr(v) for b, v in sorted(budgets.items())}
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    budgets = sorted({b for row in rows for b in row["finetune"]})
    width = max([len("variant"), *(len(r["variant"]) for r in rows)])
    header = f"{'variant':<{width}} {'seeds':>5} {'meta-steps':>10} {'pre-adaptation':>18} "
    header += f"{'post-adaptation':>18}" + "".join(f" {_budget(b):>18}" for b in budgets)
    lines = [header]
    for row in rows:
        line = f"{row['variant']:<{width}} {row['seeds']:>5} {row['meta_steps']:>10} "
        line += f"{plus_minus(row['pre_mean'], row['pre_stderr']):>18} "
        line += f"{plus_minus(row['post_mean'], row['post_stderr']):>18}"
        for b in budgets:
            line += f" {plus_minus(*row['finetune'].get(b, (float('nan'), float('nan')))):>18}"
        if row["errored"]:
            line += f"  ({row['errored']} errored)"
        lines.append(line)
    return "\n".join(lines)


def _budget(steps: int) -> str:
    return f"FT {steps} steps" if steps else "FT offline only"


def plus_minus(mean: float, stderr: float) -> str:
    """Mean and standard error as MEAN +- S.E., two decimals; a dash when there is no figure."""
    return "-" if np.isnan(mean) else f"{mean:.2f} +- {stderr:.2f}"


def plot_curves(
    runs: list[Run], path: str | Path, title: str = "", behaviour: float | None = None
) -> Path:
    """Post-adaptation held-out return vs meta-steps, one line per variant with its standard
    error shaded (at each step, over the seeds evaluated there); `behaviour`, the behaviour
    policies' mean held-out return, as a dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, group in by_label(runs).items():
        points: dict[int, list[float]] = defaultdict(list)
        for run in group:
            for step, value in zip(run.steps, run.post, strict=True):
                points[step].append(value)
        if not points:
            continue
        steps = sorted(points)
        stats = np.array([mean_and_stderr(points[s]) for s in steps])
        (line,) = ax.plot(steps, stats[:, 0], label=f"{label} (n={len(group)})")
        ax.fill_between(
            steps,
            stats[:, 0] - stats[:, 1],
            stats[:, 0] + stats[:, 1],
            color=line.get_color(),
            alpha=0.2,
        )
    if behaviour is not None:
        ax.axhline(
            behaviour, color="black", linestyle="--", linewidth=1, label="behaviour policies"
        )
    ax.set_xlabel("meta-training steps")
    ax.set_ylabel("held-out return after adaptation")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out, write (creating the directory) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
