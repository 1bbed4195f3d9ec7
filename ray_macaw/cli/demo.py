"""`ray-macaw demo`: the whole pipeline on an embedded local Ray, end to end.

Collect every task's lifetime buffer with SAC, meta-train MACAW and the multi-task + fine-tuning
baseline on the training tasks, adapt to each held-out task offline, fine-tune MACAW online
briefly, and print one table per held-out task. Re-running the same command reuses what is
already there (collected tasks, finished training), so an interrupted demo picks up where it was.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ray_macaw.evaluation.finetune import FineTuneConfig
from ray_macaw.outputs import LATEST
from ray_macaw.training.run_file import RunOptions, config_from_dict
from ray_macaw.training.train import train

# The paper's multi-task + fine-tuning baseline (spec §9); the objective brings its network
# (bias-transform layers, no advantage head) and one-hot task ids.
MT_FT = {"objective": "multitask"}
SEED = 0  # of both training runs, so of the start states every evaluation uses


@dataclass(frozen=True)
class DemoPlan:
    """How big each stage of the demo is for one family."""

    family: str
    collect_steps: int  # SAC transitions per task
    meta_steps: int
    evaluation_interval: int
    eval_episodes: int  # deterministic episodes per held-out task
    finetune: FineTuneConfig
    training: dict[str, Any] = field(default_factory=dict)  # MACAWConfig settings
    tasks: str = "all"  # tasks to collect ('all'; tests use a few with train/test_tasks set)


PLANS = {
    # Sized to finish within 15 minutes on 2 cores (docs/results.md has the measured times).
    "point-robot": DemoPlan(
        family="point-robot",
        collect_steps=1500,
        meta_steps=400,
        evaluation_interval=50,
        eval_episodes=5,
        # The authors' schedule (spec §7.3) scaled from 500 rounds of 200-step episodes to 30
        # rounds of 20: per round 10 value then 20 policy steps (the authors' 100 and 200 per
        # 200 transitions), 2 burn-in rounds (their 26 of 500), a FIFO of half the budget (their
        # 50k of 100k); episodes as the offline evaluation's, so both columns are paired.
        finetune=FineTuneConfig(
            budgets=(200, 600),
            value_steps=10,
            policy_steps=20,
            burn_in_rounds=2,
            fifo_size=300,
            batch_size=128,
            eval_episodes=5,
        ),
        training={
            "hidden": [64, 64, 64],
            "latent_dim": 32,
            "inner_batch_size": 128,
            "outer_batch_size": 128,
            "eval_adaptation_batch_size": 128,
        },
    ),
    # A larger run for a bigger machine: spec §10 networks, a reduced collection budget.
    "cheetah-vel": DemoPlan(
        family="cheetah-vel",
        collect_steps=50_000,
        meta_steps=20_000,
        evaluation_interval=1000,
        eval_episodes=1,
        finetune=FineTuneConfig(budgets=(2000, 20_000), burn_in_rounds=5),  # 26 of 500 rounds
    ),
}


def run_demo(
    plan: DemoPlan, out: str | Path, *, progress: bool = True, log: Any = print
) -> dict[str, Any]:
    """Run every stage of `plan` under `out`; returns the summary that is also saved as JSON."""
    from ray_macaw.collect.config import CollectConfig
    from ray_macaw.collect.run import collect

    out = Path(out).resolve() / plan.family  # one directory per family: reruns never mix them
    root = out / "data"
    started = time.monotonic()
    seconds: dict[str, float] = {}
    log(f"[1/4] collecting {plan.collect_steps} SAC steps per {plan.family} task -> {root}")
    collect(
        CollectConfig(
            family=plan.family, root=str(root), tasks=plan.tasks, steps=plan.collect_steps
        ),
        show_progress=progress,
    )
    seconds["collect"] = time.monotonic() - started
    runs = {}
    for step, (name, extra) in enumerate((("macaw", {}), ("mt_ft", MT_FT)), start=2):
        log(f"[{step}/4] meta-training {name} for {plan.meta_steps} steps -> {out / name}")
        tic = time.monotonic()
        runs[name] = _train(plan, root, out / name, extra, progress, log)
        seconds[f"train_{name}"] = time.monotonic() - tic
    log("[4/4] adapting to the held-out tasks and fine-tuning online")
    tic = time.monotonic()
    figures = _evaluate(plan, runs, root)
    seconds["evaluate_and_finetune"] = time.monotonic() - tic
    seconds["total"] = time.monotonic() - started
    summary = {
        "family": plan.family,
        "out": str(out),
        "rows": _table_rows(plan, figures),
        "stderr": _standard_errors(figures),
        "seconds": seconds,
        "plot": str(_plot(out, runs)),
    }
    (out / "demo_results.json").write_text(json.dumps(summary, indent=2))
    return summary


def _train(
    plan: DemoPlan, root: Path, out: Path, extra: dict[str, Any], progress: bool, log: Any
) -> Path:
    settings = {
        "family": plan.family,
        "data_root": str(root),
        "seed": SEED,
        "evaluation_interval": plan.evaluation_interval,
        **plan.training,
        **extra,
    }
    config, _ = config_from_dict(settings)
    config.validate()
    options = RunOptions(
        out=str(out), stop_meta_steps=plan.meta_steps, checkpoint_every=plan.meta_steps
    )
    train(config, options, resume=True, log=log, progress=progress)
    return out


def _evaluate(plan: DemoPlan, runs: dict[str, Path], root: Path) -> dict[str, dict[str, Any]]:
    """Offline adaptation of both models; online fine-tuning of MACAW; the behaviour agents on
    the same start states (paired)."""
    from ray_macaw.algorithms.common.checkpoints import open_checkpoint
    from ray_macaw.evaluation.behaviour_level import behaviour_level
    from ray_macaw.evaluation.finetune import finetune

    figures: dict[str, dict[str, Any]] = {}
    for name, path in runs.items():
        algo: Any = open_checkpoint(path / LATEST)
        try:
            figures[name] = algo.evaluate_held_out(episodes=plan.eval_episodes)
            if name == "macaw":
                budget = replace(plan.finetune, batch_size=algo.config.eval_adaptation_batch_size)
                figures["macaw_online"] = finetune(algo, budget)
        finally:
            algo.stop()
    tasks = [int(t) for t in figures["macaw"]["per_task"]]
    figures["behaviour"] = behaviour_level(str(root), plan.family, tasks, SEED, plan.eval_episodes)
    return figures


def _table_rows(plan: DemoPlan, figures: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    behaviour = figures["behaviour"]["per_task"]
    last_budget = max(plan.finetune.budgets)
    rows = []
    for task_id, macaw in figures["macaw"]["per_task"].items():
        online = figures["macaw_online"]["per_task"][task_id]["budgets"][-1]["return"]
        rows.append(
            {
                "task_id": int(task_id),
                "behaviour": behaviour[task_id]["return"],
                "macaw_unadapted": macaw["pre_adaptation_return"],
                "macaw_adapted": macaw["post_adaptation_return"],
                f"macaw_online_ft_{last_budget}": online,
                "mt_ft": figures["mt_ft"]["per_task"][task_id]["post_adaptation_return"],
            }
        )
    mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "task_id"}
    return [*rows, {"task_id": "mean", **mean}]


def _standard_errors(figures: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Standard errors of the mean row over episodes, the tasks held fixed (`held_out.py`)."""
    return {
        "behaviour": figures["behaviour"]["behaviour_return_stderr"],
        "macaw_unadapted": figures["macaw"]["pre_adaptation_return_stderr"],
        "macaw_adapted": figures["macaw"]["post_adaptation_return_stderr"],
        "mt_ft": figures["mt_ft"]["post_adaptation_return_stderr"],
    }


def _plot(out: Path, runs: dict[str, Path]) -> Path:
    from ray_macaw.report.runs import load_runs
    from ray_macaw.report.summary import plot_curves

    labels = {"macaw": "MACAW", "mt_ft": "MT+FT"}
    curves = []
    for name, path in runs.items():
        (run,) = load_runs(path)
        curves.append(replace(run, label=labels[name]))
    return plot_curves(curves, out / "learning_curves.png", title="held-out tasks")


def format_summary(summary: dict[str, Any]) -> str:
    """The per-task table, then where everything was written."""
    rows = summary["rows"]
    keys = [k for k in rows[0] if k != "task_id"]
    headers = {
        "behaviour": "behaviour policy",
        "macaw_unadapted": "MACAW unadapted",
        "macaw_adapted": "MACAW adapted",
        "mt_ft": "MT+FT fine-tuned",
    }
    names = [headers.get(k, k.replace("macaw_online_ft_", "MACAW +online FT ")) for k in keys]
    lines = [f"{'task':>6} " + " ".join(f"{n:>22}" for n in names)]
    for row in rows:
        lines.append(f"{row['task_id']!s:>6} " + " ".join(f"{row[k]:>22.2f}" for k in keys))
    errors = summary.get("stderr", {})  # over episodes, tasks fixed; none for online FT
    lines.append(
        f"{'s.e.':>6} "
        + " ".join(f"{errors[k]:>22.2f}" if k in errors else f"{'-':>22}" for k in keys)
    )
    out = Path(summary["out"])
    lines += [
        "",
        f"data:             {out / 'data'} (inspect: ray-macaw dataset inspect {out / 'data'})",
        f"MACAW:            {out / 'macaw'} (checkpoint {out / 'macaw' / LATEST})",
        f"MT+FT baseline:   {out / 'mt_ft'}",
        f"learning curves:  {summary['plot']}",
        f"all figures:      {out / 'demo_results.json'}",
        f"took {summary['seconds']['total'] / 60:.1f} min",
    ]
    return "\n".join(lines)
