"""`ray-macaw demo`'s pipeline at a tiny size: every stage runs and the table and plot appear."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from ray_macaw.cli.demo import PLANS, format_summary, run_demo
from ray_macaw.evaluation.finetune import FineTuneConfig

TINY = replace(
    PLANS["point-robot"],
    tasks="0-4",
    collect_steps=300,
    meta_steps=4,
    evaluation_interval=2,
    eval_episodes=1,
    finetune=FineTuneConfig(
        budgets=(20, 40), value_steps=2, policy_steps=2, burn_in_rounds=0, num_cpus_per_task=0.5
    ),
    training={
        "train_tasks": [0, 1, 2, 4],
        "test_tasks": [3],
        "hidden": [32, 32],
        "latent_dim": 8,
        "task_batch_size": 2,
        "inner_batch_size": 16,
        "outer_batch_size": 16,
        "eval_adaptation_batch_size": 16,
        "eval_finetune_steps": 2,
        "eval_num_cpus_per_task": 0.5,
    },
)


def test_demo_runs_every_stage_and_rerun_reuses_them(tmp_path: Path, ray_local: None) -> None:
    lines: list[str] = []
    summary = run_demo(TINY, tmp_path, progress=False, log=lines.append)
    out = tmp_path / "point-robot"  # one directory per family
    assert [line[:5] for line in lines if line.startswith("[")] == [
        "[1/4]", "[2/4]", "[3/4]", "[4/4]"
    ]  # fmt: skip
    task, mean = summary["rows"]
    assert task["task_id"] == 3 and mean["task_id"] == "mean"
    assert set(task) == {
        "task_id", "behaviour", "macaw_unadapted", "macaw_adapted",
        "macaw_online_ft_40", "mt_ft",
    }  # fmt: skip
    assert mean["macaw_adapted"] == task["macaw_adapted"]  # one held-out task
    for name in ("macaw", "mt_ft"):
        steps = [json.loads(x)["meta_step"] for x in (out / name / "metrics.jsonl").open()]
        assert steps == [0, 1, 2, 3, 4]  # 0: the untrained model's evaluation
    with Image.open(summary["plot"]) as image:
        assert image.size == (700, 450)
    assert json.loads((out / "demo_results.json").read_text())["rows"] == summary["rows"]
    text = format_summary(summary)
    assert "MACAW adapted" in text and "MT+FT fine-tuned" in text and str(tmp_path) in text

    again = run_demo(TINY, tmp_path, progress=False, log=lines.append)  # reuses data and runs
    for name in ("macaw", "mt_ft"):
        assert len((out / name / "metrics.jsonl").read_text().splitlines()) == 5  # unchanged
    assert again["rows"][0]["behaviour"] == task["behaviour"]


def test_unknown_demo_family_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from ray_macaw.cli.main import main

    assert main(["demo", "--family", "cheetah-vl"]) == 2
    assert "did you mean 'cheetah-vel'" in capsys.readouterr().err
