"""`ray-macaw tune` experiment files, Tune runs (fine-tuning, ASHA) and `ray-macaw report`."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import write_root
from PIL import Image
from ray.tune.search.variant_generator import generate_variants

from ray_macaw.algorithms.common.checkpoints import open_checkpoint
from ray_macaw.algorithms.macaw.algorithm import MACAW
from ray_macaw.algorithms.pearl.algorithm import PEARL
from ray_macaw.cli.main import main
from ray_macaw.errors import DataError, MissingDataError
from ray_macaw.outputs import FINETUNE_FILE, SEED_GRID
from ray_macaw.report.per_task import format_per_task, load_behaviour, per_task_rows
from ray_macaw.report.runs import Run, load_runs
from ray_macaw.report.summary import format_table, summary_rows
from ray_macaw.training.run_file import RunConfigError
from ray_macaw.tune.run import param_space, run_tune
from ray_macaw.tune.spec import load_tune_spec
from ray_macaw.tune.trainable import VARIANT, trial_settings

CONFIGS = Path(__file__).parent.parent / "tune_configs"
SMOKE_TASKS = (0, 1, 2, 3, 4)  # tune_configs/smoke: train 0, 1, 2, 4; held out 3


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Point-robot data as the smoke configs expect: 400 random transitions per task."""
    root = tmp_path_factory.mktemp("smoke-data")
    write_root(root, "point-robot", task_ids=SMOKE_TASKS, episodes=20, rows_per_part=200)
    return str(root)


def all_config_files() -> list[Path]:
    """`ray-macaw tune` experiment files (the supervised WT experiment has its own format and
    tests: tests/test_supervised.py)."""
    return sorted(p for p in CONFIGS.rglob("*.yaml") if "supervised" not in str(p))


@pytest.mark.parametrize("path", all_config_files(), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_tune_config_parses_and_validates(path: Path, smoke_root: str) -> None:
    smoke = path.parent.name == "smoke"
    spec = load_tune_spec(path, {"data_root": smoke_root} if smoke else None)
    trials = spec.trial_settings()
    assert trials and all("seed" in t for t in trials)
    spec.validate(check_data=smoke)  # the real families' data is not on this machine


def test_paper_experiments_are_all_there() -> None:
    names = {str(p.relative_to(CONFIGS)) for p in all_config_files()}
    families = ("cheetah-dir", "cheetah-vel", "ant-dir", "walker-params", "ml45")
    assert {f"main/{f}.yaml" for f in families} <= names
    ablations = ("weight_transform", "advantage_head", "data_quality", "task_quantity", "baselines")
    assert {f"ablations/{a}.yaml" for a in ablations} <= names
    assert {"ood_finetune.yaml", "search/learning_rates.yaml"} <= names
    for name in [*(f"ablations/{a}" for a in ablations), "ood_finetune", "search/learning_rates"]:
        assert f"smoke/{Path(name).name}.yaml" in names
    quality = load_tune_spec(CONFIGS / "ablations/data_quality.yaml")
    assert {v["inner_buffer_position"] for v in quality.variants.values()} == {
        "start",
        "middle",
        "end",
    }
    assert load_tune_spec(CONFIGS / "main/ml45.yaml").base_config().hidden == (300, 300, 300)
    ood = load_tune_spec(CONFIGS / "ood_finetune.yaml")
    assert ood.config["split"] == "ood" and ood.finetune.budgets == (20000, 200000)


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("config: {family: point-robot}\nseed: [0]\n", "did you mean 'seeds'"),
        ("config: {famly: point-robot}\n", "did you mean 'family'"),
        ("config: {}\nvariants: {a: {hiden: [3]}}\n", "did you mean 'hidden'"),
        ("config: {}\nsearch: {outer_policy_lr: {logunifrm: [1, 2]}}\n", "did you mean"),
        ("config: {}\nsearch: {outer_policy_lr: {uniform: [1]}}\n", "takes [low, high]"),
        ("config: {}\nsearch: {seed: 3}\n", "non-empty list"),
        (
            "config: {}\nvariants: {a: {latent_dim: 4}}\nsearch: {latent_dim: [2]}\n",
            "set by both",
        ),
        ("config: {}\nscheduler: {type: hyperband}\n", "unknown scheduler"),
        ("config: {data_root: $NOT_SET_ANYWHERE}\n", "unset environment variable"),
        ("config: {}\nfinetune: {budgets: [0]}\n", "budgets must be positive"),
        ("name: x\n", "needs a 'config' section"),
        ("config: {stop_meta_steps: 5}\n", "are run options"),
        ("config: {}\nvariants: {a: {seed: 1}}\n", "unknown setting of variant 'a' 'seed'"),
        ("config: {outer_policy_lr: fast}\n", "must be a number"),
        ("config: {}\nsearch: {outer_policy_lr: {uniform: [1e-5, x]}}\n", "is not a number"),
    ],
)
def test_bad_experiment_files_name_the_fix(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(RunConfigError, match="Fix:") as error:
        load_tune_spec(write_spec(tmp_path / "bad.yaml", text))
    assert needle in str(error.value)


@pytest.mark.parametrize(
    ("grace_period", "overrides", "needle"),
    [
        (1, {}, "grace_period 1 is shorter"),
        (7, {}, "beyond the end of the trials"),
        (2, {"evaluation_interval": 0}, "evaluation_interval is off"),
    ],
)
def test_asha_needs_an_evaluation_before_each_rung(
    smoke_root: str, grace_period: int, overrides: dict, needle: str
) -> None:
    spec = load_tune_spec(
        CONFIGS / "smoke/learning_rates.yaml", {"data_root": smoke_root, **overrides}
    )
    spec = replace(spec, scheduler=replace(spec.scheduler, grace_period=grace_period))
    with pytest.raises(RunConfigError, match=needle):
        spec.validate()


def test_yaml_numbers_without_a_dot_and_extends(tmp_path: Path) -> None:
    child = write_spec(
        tmp_path / "child.yaml",
        f"extends: {CONFIGS / 'smoke/grid.yaml'}\nconfig: {{outer_value_lr: 1e-5}}\n"
        "search: {outer_policy_lr: {loguniform: [1e-5, 1e-3]}}\n",
    )
    spec = load_tune_spec(child)
    assert spec.name == "child"  # its own name, not the parent's
    assert spec.base_config().outer_value_lr == 1e-5 and spec.seeds == (0, 1)
    assert spec.search["outer_policy_lr"] == {"loguniform": [1e-5, 1e-3]}


def test_seeds_vary_slowest_so_a_partial_run_covers_every_variant(tmp_path: Path) -> None:
    spec = load_tune_spec(
        write_spec(
            tmp_path / "order.yaml",
            "config: {family: point-robot}\nvariants: {b: {}, a: {outer_value_lr: 1.0e-4}}\n"
            "search: {outer_policy_lr: [1.0e-4, 1.0e-3]}\nseeds: [0, 1]\n",
        )
    )
    configs = [config for _, config in generate_variants(param_space(spec))]
    order = [(c["seed"], c[VARIANT], c["outer_policy_lr"]) for c in configs]
    assert [seed for seed, _, _ in order] == [0] * 4 + [1] * 4
    grid = {(v, lr) for v in ("a", "b") for lr in (1e-4, 1e-3)}
    assert {o[1:] for o in order[:4]} == {o[1:] for o in order[4:]} == grid
    config = next(c for c in configs if c[VARIANT] == "a" and c["seed"] == 0)
    settings = trial_settings(config)
    assert settings["seed"] == 0 and settings["outer_value_lr"] == 1e-4
    assert SEED_GRID not in settings


def test_a_trial_with_impossible_settings_is_refused_before_tune_starts(smoke_root: str) -> None:
    spec = load_tune_spec(CONFIGS / "smoke/grid.yaml", {"data_root": smoke_root})
    spec = replace(spec, variants={"ok": {}, "huge": {"inner_batch_size": 10**6}})
    with pytest.raises(RunConfigError, match=r"variant 'huge'.*inner batch"):
        spec.validate()


@pytest.fixture(scope="module")
def finetune_experiment(
    smoke_root: str, tmp_path_factory: pytest.TempPathFactory, ray_local: None
) -> Iterator[tuple[Path, dict]]:
    storage = tmp_path_factory.mktemp("tune")
    spec = load_tune_spec(CONFIGS / "smoke/ood_finetune.yaml", {"data_root": smoke_root})
    spec = replace(spec, storage_path=str(storage))
    yield Path(storage / spec.name), run_tune(spec, log=lambda *_: None)


def test_trials_checkpoint_restore_and_fine_tune(finetune_experiment: tuple[Path, dict]) -> None:
    _, summary = finetune_experiment
    assert len(summary["trials"]) == 3  # MACAW, MT+FT and Offline PEARL + FT
    for trial in summary["trials"]:
        assert trial["error"] is None and trial["meta_steps"] == 4
        restored = open_checkpoint(trial["checkpoint"])
        try:
            pearl = Path(trial["trial_dir"]).name.startswith("pearl_ft")
            assert isinstance(restored, PEARL if pearl else MACAW)
            assert restored.num_meta_steps == 4
        finally:
            restored.stop()
        finetuned = json.loads((Path(trial["trial_dir"]) / FINETUNE_FILE).read_text())
        assert [row["budget"] for row in finetuned["table"]] == [0, 40, 80]
        assert finetuned["per_task"].keys() == {"3"}  # the smoke split's held-out task


def test_every_result_carries_the_latest_held_out_figures(
    finetune_experiment: tuple[Path, dict],
) -> None:
    _, summary = finetune_experiment
    results = (Path(summary["trials"][0]["trial_dir"]) / "result.json").read_text().splitlines()
    held_out = [json.loads(line)["held_out"] for line in results]
    # evaluation at meta-step 0 (the untrained model), then every 2 steps
    start = json.loads(results[0])["evaluation_at_start"]["post_adaptation_return_mean"]
    assert held_out[0]["meta_step"] == 0 and held_out[0]["post_adaptation_return_mean"] == start
    assert all("evaluation_at_start" not in json.loads(line) for line in results[1:])
    evaluated = json.loads(results[1])["evaluation"]["post_adaptation_return_mean"]
    assert (
        held_out[1]["post_adaptation_return_mean"]
        == evaluated
        == held_out[2]["post_adaptation_return_mean"]
    )
    assert held_out[2]["meta_step"] == 2 and held_out[3]["meta_step"] == 4


def test_report_shows_variants_and_fine_tuning_budgets(
    finetune_experiment: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = finetune_experiment
    assert main(["report", str(path), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["variant", "seeds", "meta-steps"]
    assert "FT 80 steps" in out
    for variant in ("mt_ft", "pearl_ft"):
        assert any(line.startswith(f"{variant} ") for line in out.splitlines())
    with Image.open(tmp_path / "learning_curves.png") as image:
        assert image.size == (700, 450)


def test_report_per_task_table_and_behaviour_level(
    finetune_experiment: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, summary = finetune_experiment
    level = {"task_id": 3, "return": -4.5, "return_stderr": 0.25, "returns": [-4.25, -4.75]}
    doc = {"behaviour_return_mean": -4.5, "behaviour_return_stderr": 0.25, "per_task": {"3": level}}
    behaviour = tmp_path / "behaviour.json"
    behaviour.write_text(json.dumps(doc))
    assert main(["report", str(path), "--out", str(tmp_path), "--behaviour", str(behaviour)]) == 0
    out = capsys.readouterr().out
    assert "behaviour policies: -4.50 +- 0.25" in out
    table = out.split("per task, final evaluation:\n")[1].splitlines()
    assert table[0].split()[-1] == "behaviour"
    # one row per variant on the smoke split's one held-out task, its level beside it
    assert [line.split()[1:3] for line in table[1:4]] == [["3", "1"]] * 3
    assert all(line.endswith("-4.50 +- 0.25") for line in table[1:4])
    report = json.loads((tmp_path / "report.json").read_text())
    trial = Path(summary["trials"][0]["trial_dir"])
    final = json.loads((trial / "result.json").read_text().splitlines()[-1])["evaluation"]
    row = next(r for r in report["per_task"] if r["variant"] == trial.name.split("_seed")[0])
    assert row["post"][0] == pytest.approx(final["per_task"]["3"]["post_adaptation_return"])
    assert report["behaviour"] == doc


def test_report_joins_experiments_and_keeps_shared_variant_names_apart(
    finetune_experiment: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = finetune_experiment
    other = tmp_path / "again"  # the same trials under another experiment name
    shutil.copytree(path, other, ignore=shutil.ignore_patterns("checkpoint_*"))
    assert main(["report", str(path), "--with", str(other), "--out", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    labels = [row["variant"] for row in rows]
    assert len(labels) == 6 and len(set(labels)) == 6  # 3 variants x 2 experiments, 1 seed each
    assert {label.split(": ")[0] for label in labels} == {path.name, "again"}
    assert all(row["seeds"] == 1 for row in rows)


def test_behaviour_file_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="dataset behaviour"):
        load_behaviour(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(DataError, match="not JSON"):
        load_behaviour(broken)
    broken.write_text(json.dumps({"behaviour_return_mean": 1.0}))
    with pytest.raises(DataError, match="lacks behaviour_return_stderr, per_task"):
        load_behaviour(broken)


def test_baselines_smoke_experiment_trains_every_algorithm(
    smoke_root: str, tmp_path: Path, ray_local: None
) -> None:
    spec = load_tune_spec(CONFIGS / "smoke/baselines.yaml", {"data_root": smoke_root})
    pearl = next(t for t in spec.trial_settings() if t["variant"] == "pearl")
    assert "inner_batch_size" not in pearl and pearl["hidden"] == [32, 32]  # shared, not MACAW's
    summary = run_tune(replace(spec, storage_path=str(tmp_path)), log=lambda *_: None)
    trials = {Path(t["trial_dir"]).name.split("_seed")[0]: t for t in summary["trials"]}
    assert set(trials) == {"macaw", "mt_ft", "meta_bc", "pearl"}
    seeds = [Path(t["trial_dir"]).name.split("_seed")[1].split("_")[0] for t in summary["trials"]]
    assert seeds == ["0"] * 4  # `<variant>_seed<k>_<id>` (the grid's seed, not a placeholder)
    for trial in trials.values():
        assert trial["error"] is None and trial["meta_steps"] == 4
        assert math.isfinite(trial["held_out"]["post_adaptation_return_mean"])
    rows = (Path(trials["pearl"]["trial_dir"]) / "result.json").read_text().splitlines()
    assert "qf_loss" in json.loads(rows[-1])["learners"]["pearl"]


def test_asha_search_samples_and_finishes(smoke_root: str, tmp_path: Path, ray_local: None) -> None:
    spec = load_tune_spec(CONFIGS / "smoke/learning_rates.yaml", {"data_root": smoke_root})
    summary = run_tune(replace(spec, storage_path=str(tmp_path)), log=lambda *_: None)
    assert len(summary["trials"]) == 4 and not any(t["error"] for t in summary["trials"])
    params = [
        json.loads((Path(t["trial_dir"]) / "params.json").read_text()) for t in summary["trials"]
    ]
    lrs = [p["outer_policy_lr"] for p in params]
    assert len(set(lrs)) == 4 and all(1e-5 <= lr <= 1e-3 for lr in lrs)
    runs = load_runs(tmp_path / spec.name)
    assert len({r.label for r in runs}) == 4


def test_summary_is_mean_and_standard_error_over_seeds() -> None:
    runs = [
        Run("a0", "a", 0, steps=[10, 20], pre=[-5.0, -4.0], post=[-3.0, -1.0]),
        Run("a1", "a", 1, steps=[10, 20], pre=[-6.0, -6.0], post=[-2.0, -3.0]),
        Run("a2", "a", 2, steps=[10, 20], pre=[-7.0, -8.0], post=[-1.0, -5.0]),
        Run("b0", "b", 0, steps=[10], pre=[-9.0], post=[-8.0]),
    ]
    rows = {row["variant"]: row for row in summary_rows(runs)}
    # a's final post returns: -1, -3, -5 -> mean -3, sample std 2, s.e. 2 / sqrt(3)
    assert rows["a"]["post_mean"] == -3.0
    assert rows["a"]["post_stderr"] == pytest.approx(2 / np.sqrt(3))
    assert rows["a"]["pre_mean"] == -6.0 and rows["a"]["seeds"] == 3
    assert rows["b"]["post_stderr"] == 0.0 and rows["b"]["meta_steps"] == 10
    assert "-3.00 +- 1.15" in format_table(list(rows.values()))


def test_per_task_rows_are_each_tasks_final_figures_over_seeds() -> None:
    tasks = [{"1": (1.0, 10.0), "0": (-1.0, 4.0)}, {"0": (-3.0, 8.0), "1": (3.0, 20.0)}]
    runs = [
        Run(f"a{seed}", "a", seed, steps=[10], pre=[0.0], post=[0.0], per_task=figures)
        for seed, figures in enumerate(tasks)
    ]
    rows = per_task_rows(runs)
    assert [(r["variant"], r["task"], r["seeds"]) for r in rows] == [("a", 0, 2), ("a", 1, 2)]
    # task 0: pre -1, -3 -> -2 +- 1; post 4, 8 -> 6 +- 2
    assert rows[0]["pre"] == pytest.approx((-2.0, 1.0)) and rows[0]["post"] == pytest.approx(
        (6.0, 2.0)
    )
    assert rows[1]["post"] == pytest.approx((15.0, 5.0))
    lines = format_per_task(rows, None).splitlines()
    assert lines[0].split()[-1] == "post-adaptation" and lines[2].endswith("15.00 +- 5.00")
