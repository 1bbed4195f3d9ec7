"""Tables and the Figure-6-like plot of a supervised weight-transform experiment.

Per model: the final post-adaptation loss (sinusoid) or accuracy (Omniglot) on meta-training and on
validation tasks, and the validation figure averaged over the run's evaluations after step 0 (lower
loss or higher accuracy there means faster convergence; step 0 is the initialisation, where an
untrained weight-transform model's first inner step can overshoot by an order of magnitude and
would dominate the mean), each as mean +- standard error over seeds.
The plot is the metric against meta-training steps, one colour per model, train solid and
validation dashed, standard error shaded, like Figure 6.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ray_macaw.errors import DataError, MissingDataError
from ray_macaw.report.summary import mean_and_stderr, save_figure
from ray_macaw.supervised.maml import POST_ACCURACY, POST_LOSS
from ray_macaw.supervised.models import LABELS
from ray_macaw.supervised.tasks import SPLITS
from ray_macaw.supervised.train import META_STEP

PLOT_FILE = "supervised_curves.png"
TABLE_FILE = "supervised_report.json"


@dataclass
class Trial:
    """One trial's evaluations: meta-steps and, per split, the post-adaptation metric there."""

    name: str
    model: str
    seed: int
    steps: list[int] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)  # split -> values


def metric_of(rows: list[dict[str, Any]]) -> str:
    """Accuracy when the family is classification, else the loss."""
    return POST_ACCURACY if any(f"val/{POST_ACCURACY}" in r for r in rows) else POST_LOSS


def load_trials(run_dir: str | Path) -> tuple[list[Trial], str]:
    """Every trial under a `ray-macaw supervised tune` experiment directory, and its metric."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingDataError(
            "no such run directory",
            "give <storage_path>/<name> that the tune command printed",
            run_dir,
        )
    dirs = sorted(p for p in run_dir.iterdir() if (p / "params.json").exists())
    if not dirs:
        raise DataError(
            "not a supervised Tune experiment (no trial directories with params.json)",
            "give <storage_path>/<name> of `ray-macaw supervised tune`",
            run_dir,
        )
    rows = {d: _result_rows(d) for d in dirs}
    metric = metric_of([r for rs in rows.values() for r in rs])
    trials = []
    for d in dirs:
        params = json.loads((d / "params.json").read_text())
        trial = Trial(d.name, str(params.get("model")), int(params.get("seed") or 0))
        for row in rows[d]:
            trial.steps.append(int(row[META_STEP]))
            for split in SPLITS:
                trial.curves.setdefault(split, []).append(float(row[f"{split}/{metric}"]))
        trials.append(trial)
    return trials, metric


def _result_rows(trial_dir: Path) -> list[dict[str, Any]]:
    """Evaluation rows of result.json by meta-step (a restarted trial's repeats: the last wins)."""
    by_step: dict[int, dict[str, Any]] = {}
    path = trial_dir / "result.json"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a killed run
            if META_STEP in row:
                by_step[int(row[META_STEP])] = row
    return [by_step[s] for s in sorted(by_step)]


def by_model(trials: list[Trial]) -> dict[str, list[Trial]]:
    """Trials grouped by model, in Figure 6's model order."""
    groups: dict[str, list[Trial]] = {}
    for trial in sorted(
        trials, key=lambda t: (list(LABELS).index(t.model) if t.model in LABELS else 99, t.seed)
    ):
        groups.setdefault(trial.model, []).append(trial)
    return groups


def summary_rows(trials: list[Trial], metric: str) -> list[dict[str, Any]]:
    """One row per model: seeds, last meta-step, final train/val and run-mean val, mean +- s.e."""
    rows = []
    for model, group in by_model(trials).items():
        done = [t for t in group if t.steps]
        row: dict[str, Any] = {
            "model": model,
            "label": LABELS.get(model, model),
            "metric": metric,
            "seeds": len(done),
            "meta_steps": min((t.steps[-1] for t in done), default=0),
        }
        for split in SPLITS:
            row[f"final_{split}"] = mean_and_stderr([t.curves[split][-1] for t in done])
        row["mean_val"] = mean_and_stderr([_mean_after_start(t, "val") for t in done])
        rows.append(row)
    return rows


def _mean_after_start(trial: Trial, split: str) -> float:
    """Mean of a split's curve over the evaluations after meta-step 0 (all if there are none)."""
    values = [v for s, v in zip(trial.steps, trial.curves[split], strict=True) if s > 0]
    return float(np.mean(values or trial.curves[split]))


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    what = "accuracy" if rows and rows[0]["metric"] == POST_ACCURACY else "loss"
    width = max([len("model"), *(len(r["label"]) for r in rows)])
    header = (
        f"{'model':<{width}} {'seeds':>5} {'meta-steps':>10} {'final train ' + what:>22} "
        f"{'final val ' + what:>22} {'val ' + what + ', mean >0':>22}"
    )
    lines = [f"post-adaptation {what}, mean +- standard error over seeds", header]
    for r in rows:
        lines.append(
            f"{r['label']:<{width}} {r['seeds']:>5} {r['meta_steps']:>10} "
            f"{_pm(*r['final_train']):>22} {_pm(*r['final_val']):>22} {_pm(*r['mean_val']):>22}"
        )
    return "\n".join(lines)


def _pm(mean: float, stderr: float) -> str:
    return "-" if np.isnan(mean) else f"{mean:.4g} +- {stderr:.2g}"


def plot_curves(trials: list[Trial], metric: str, path: str | Path, title: str = "") -> Path:
    """Metric vs meta-steps: one colour per model, train solid, val dashed, s.e. shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for index, (model, group) in enumerate(by_model(trials).items()):
        color = f"C{index}"
        for split, style in (("train", "-"), ("val", "--")):
            steps, mean, stderr = _curve(group, split)
            if not steps:
                continue
            label = f"{LABELS.get(model, model)} ({split}, n={len(group)})"
            ax.plot(steps, mean, style, color=color, label=label)
            ax.fill_between(steps, mean - stderr, mean + stderr, color=color, alpha=0.15)
    accuracy = metric == POST_ACCURACY
    ax.set_xlabel("meta-training steps")
    ax.set_ylabel("post-adaptation accuracy" if accuracy else "post-adaptation MSE (log scale)")
    if not accuracy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def _curve(group: list[Trial], split: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Mean and standard error at each meta-step, over the seeds evaluated there."""
    points: dict[int, list[float]] = {}
    for trial in group:
        for step, value in zip(trial.steps, trial.curves.get(split, []), strict=False):
            points.setdefault(step, []).append(value)
    steps = sorted(points)
    stats = np.array([mean_and_stderr(points[s]) for s in steps]).reshape(-1, 2)
    return steps, stats[:, 0], stats[:, 1]


def write_report(run_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write the plot and the table (JSON) of an experiment; returns both with their paths."""
    trials, metric = load_trials(run_dir)
    rows = summary_rows(trials, metric)
    out = Path(out or run_dir)
    png = plot_curves(trials, metric, out / PLOT_FILE, title=Path(run_dir).name)
    table = out / TABLE_FILE
    table.write_text(json.dumps(rows, indent=2))
    return {"rows": rows, "plot": str(png), "table": str(table)}
