"""Read finished or running experiments: a Ray Tune experiment directory or one `train` run.

Each trial becomes a `Run`: its variant label, seed, held-out evaluation curve and, when the
experiment fine-tuned, its fine-tuning summary.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ray_macaw.errors import DataError, MissingDataError
from ray_macaw.outputs import (
    DATA_FINGERPRINT,
    EVALUATION_AT_START,
    FINETUNE_FILE,
    METRICS_FILE,
    POST_ADAPTATION,
    PRE_ADAPTATION,
    SEED_GRID,
    SPEC_FILE,
)

PRE, POST = PRE_ADAPTATION, POST_ADAPTATION
# Never part of a variant label: runs that differ only here are replicates.
SKIPPED = {"seed", SEED_GRID}


@dataclass
class Run:
    """One trial (or one `ray-macaw train` run)."""

    name: str
    label: str
    seed: int
    steps: list[int] = field(default_factory=list)  # meta-steps of the held-out evaluations
    pre: list[float] = field(default_factory=list)  # mean held-out return before adaptation
    post: list[float] = field(default_factory=list)  # ... and after
    # task id -> (pre, post) mean return at the last evaluation that reported tasks
    per_task: dict[str, tuple[float, float]] = field(default_factory=dict)
    finetune: dict[str, Any] | None = None
    error: bool = False
    progress: int = 0  # last meta-step reported
    stop: int | None = None  # the experiment's stop_meta_steps, when its spec file says
    data: str | None = None  # the data fingerprint its results report (None: not recorded)

    @property
    def evaluated(self) -> bool:
        return bool(self.steps)


def load_runs(path: str | Path) -> list[Run]:
    """Every run under `path`: a Tune experiment directory or a `train` output directory."""
    path = Path(path)
    if not path.is_dir():
        raise MissingDataError(
            "no such run directory", "give the directory ray-macaw tune / train printed", path
        )
    if (path / METRICS_FILE).exists():
        return [_train_run(path)]
    trials = sorted(p for p in path.iterdir() if (p / "params.json").exists())
    if not trials:
        raise DataError(
            "neither a Tune experiment (trial directories with params.json) nor a train run "
            f"({METRICS_FILE})",
            "give <storage_path>/<name> of `ray-macaw tune` or the --out of `ray-macaw train`",
            path,
        )
    params = {t: json.loads((t / "params.json").read_text()) for t in trials}
    spec = yaml.safe_load((path / SPEC_FILE).read_text()) if (path / SPEC_FILE).exists() else {}
    varied = _varied_keys(path, list(params.values()))
    runs = []
    for trial in trials:
        label = ", ".join(_label_part(k, params[trial].get(k)) for k in varied) or path.name
        run = Run(trial.name, label, int(params[trial].get("seed") or 0))
        # A trial retried from a checkpoint reports the steps after it again: the last one counts.
        rows = {r.get("training_iteration"): r for r in json_lines(trial / "result.json")}
        for step, result in sorted((k, v) for k, v in rows.items() if k is not None):
            _add_point(run, result.get(EVALUATION_AT_START), 0)  # the untrained model
            _add_point(run, result.get("evaluation"), step)
        last = rows[max(k for k in rows if k is not None)] if rows else {}
        run.error = (trial / "error.txt").exists() and not last.get("done", False)
        run.progress = int(last.get("training_iteration") or 0)
        run.stop = (spec or {}).get("stop_meta_steps")
        run.data = last.get(DATA_FINGERPRINT)
        if (trial / FINETUNE_FILE).exists():
            run.finetune = json.loads((trial / FINETUNE_FILE).read_text())
        runs.append(run)
    return runs


def load_experiments(paths: list[Path]) -> list[Run]:
    """The runs of several experiments in one list (a report comparing them); a variant name
    two experiments share is prefixed with each one's directory name, so their seeds stay apart."""
    loaded = [(path, load_runs(path)) for path in paths]
    experiments_of = Counter(label for _, runs in loaded for label in {r.label for r in runs})
    for path, runs in loaded:
        for run in runs:
            if experiments_of[run.label] > 1:
                run.label = f"{path.name}: {run.label}"
    return [run for _, runs in loaded for run in runs]


def unfinished_runs(runs: list[Run]) -> list[str]:
    """'NAME (19/60 meta-steps)' for each trial short of its experiment's stop_meta_steps."""
    return [
        f"{r.name} ({r.progress}/{r.stop} meta-steps)"
        for r in runs
        if r.stop is not None and r.progress < r.stop and not r.error
    ]


def data_fingerprints(runs: list[Run]) -> dict[str, list[str]]:
    """The runs (by name) that read each data fingerprint: more than one fingerprint means the
    figures come from different bytes (data collected again elsewhere) and do not pair."""
    named: dict[str, list[str]] = {}
    for run in runs:
        if run.data is not None:
            named.setdefault(run.data, []).append(run.name)
    return named


def _train_run(path: Path) -> Run:
    run = Run(path.name, path.name, 0)
    for row in json_lines(path / METRICS_FILE):
        _add_point(run, row, row.get("meta_step"))
    return run


def _add_point(run: Run, figures: dict[str, Any] | None, step: Any) -> None:
    if not figures or POST not in figures or step is None:
        return
    run.steps.append(int(step))
    run.pre.append(float(figures[PRE]))
    run.post.append(float(figures[POST]))
    tasks = figures.get("per_task") or {}
    if tasks:
        run.per_task = {
            str(t): (float(f["pre_adaptation_return"]), float(f["post_adaptation_return"]))
            for t, f in tasks.items()
        }


def _varied_keys(path: Path, params: list[dict[str, Any]]) -> list[str]:
    """The settings that tell variants apart: from the saved experiment file when there is one
    (variant name, then searched settings), else every setting that differs between trials."""
    spec_file = path / SPEC_FILE
    if spec_file.exists():
        spec = yaml.safe_load(spec_file.read_text())
        keys = (["variant"] if spec.get("variants") else []) + list(spec.get("search") or {})
        return [k for k in keys if k not in SKIPPED]
    keys = sorted({k for p in params for k in p})
    return [
        k
        for k in keys
        if k not in SKIPPED and len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1
    ]


def _label_part(key: str, value: Any) -> str:
    if key == "variant":
        return str(value)
    if isinstance(value, float) and not math.isnan(value):
        return f"{key}={value:.3g}"
    return f"{key}={value}"


def json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (a run killed mid-write) is skipped."""
    if not path.exists():
        return
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
