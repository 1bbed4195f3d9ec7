"""`ray-macaw tune` experiment files and Tune runs (grids, seeds, ASHA, parts of a run)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from ray.tune.search.variant_generator import generate_variants

from ray_macaw.outputs import SEED_GRID
from ray_macaw.report.runs import load_runs
from ray_macaw.training.run_file import RunConfigError
from ray_macaw.tune.run import param_space, run_tune
from ray_macaw.tune.spec import load_tune_spec
from ray_macaw.tune.trainable import VARIANT, trial_settings

CONFIGS = Path(__file__).parent.parent / "tune_configs"


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
