"""Supervised weight-transform experiment (appendix C.1): MAML math, models, task families,
configs, the Tune smoke experiment through the CLI, and its report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ray_macaw.cli.main import main
from ray_macaw.errors import DataError, MissingDataError, RayMacawError
from ray_macaw.supervised.config import SupervisedConfig, SupervisedConfigError
from ray_macaw.supervised.experiment import load_experiment
from ray_macaw.supervised.maml import (
    POST_ACCURACY,
    POST_LOSS,
    PRE_LOSS,
    X_QUERY,
    X_SUPPORT,
    Y_QUERY,
    Y_SUPPORT,
    MetaLearner,
    batch_outcomes,
    loss_and_accuracy,
    task_outcome,
)
from ray_macaw.supervised.models import (
    EQUAL_PARAMS,
    EQUAL_WIDTH,
    MODELS,
    WEIGHT_TRANSFORM,
    FewShotMLP,
    build_model,
    model_layout,
    parameter_count,
)
from ray_macaw.supervised.omniglot import OmniglotTasks, vinyals_split
from ray_macaw.supervised.report import PLOT_FILE, Trial, format_table, plot_curves, summary_rows
from ray_macaw.supervised.tasks import AMPLITUDE, SinusoidTasks
from ray_macaw.supervised.train import META_STEP, train
from ray_macaw.supervised.tune_run import (
    STATE_FILE,
    SupervisedTrialsFailedError,
    _check_trials,
)

CONFIGS = Path(__file__).parent.parent / "tune_configs"
SMOKE = CONFIGS / "smoke" / "supervised_weight_transform.yaml"


def one_task(xs: float, ys: float, xq: float, yq: float) -> dict[str, torch.Tensor]:
    """One task with one support and one query point, as (1, 1) float tensors."""
    values = {X_SUPPORT: xs, Y_SUPPORT: ys, X_QUERY: xq, Y_QUERY: yq}
    return {key: torch.tensor([[float(v)]]) for key, v in values.items()}


def linear_learner(first_order: bool = False) -> tuple[FewShotMLP, MetaLearner]:
    """y = w x + b with w = 1, b = 0, alpha = 0.25 (learned, so its gradient is checked too)."""
    model = FewShotMLP([1, 1], "linear")
    with torch.no_grad():
        model.layers[0].weight.fill_(1.0)
        model.layers[0].bias.fill_(0.0)
    learner = MetaLearner(model, "mse", 0.25, learn_inner_lr=True, first_order=first_order)
    return model, learner


def test_maml_step_and_meta_gradient_match_hand_worked_values() -> None:
    # Support (x, y) = (1, 3): residual r = w + b - 3 = -2, so dL/dw = 2 r x = -4, dL/db = -4;
    # w' = 1 - 0.25 (-4) = 2, b' = 0 + 1 = 1. Query (2, 4): residual 2 w' + b' - 4 = 1, L_q = 1,
    # dL_q/dw' = 2 * 1 * 2 = 4, dL_q/db' = 2.
    # Jacobian of (w', b') in (w, b): dw'/dw = 1 - 2 alpha x^2 = 0.5, dw'/db = db'/dw = -2 alpha x
    # = -0.5, db'/db = 1 - 2 alpha = 0.5. Meta-gradient: dL_q/dw = 4 (0.5) + 2 (-0.5) = 1,
    # dL_q/db = 4 (-0.5) + 2 (0.5) = -1 (first order, Jacobian = I: 4 and 2).
    # Inner lrs: dL_q/d alpha_w = 4 * (-dL/dw) = 16, dL_q/d alpha_b = 2 * 4 = 8.
    model, learner = linear_learner()
    out = task_outcome(model, learner.params(), learner.lrs, one_task(1, 3, 2, 4), "mse")
    assert out[PRE_LOSS].item() == pytest.approx(4.0)  # (2 - 4)^2
    assert out[POST_LOSS].item() == pytest.approx(1.0)
    out[POST_LOSS].backward()
    layer = model.layers[0]
    assert layer.weight.grad.item() == pytest.approx(1.0)
    assert layer.bias.grad.item() == pytest.approx(-1.0)
    assert learner.lrs["layers.0.weight"].grad.item() == pytest.approx(16.0)
    assert learner.lrs["layers.0.bias"].grad.item() == pytest.approx(8.0)

    model, learner = linear_learner(first_order=True)
    stacked = {k: v[None] for k, v in one_task(1, 3, 2, 4).items()}
    out = batch_outcomes(model, learner.params(), learner.lrs, stacked, "mse", first_order=True)
    out[POST_LOSS].mean().backward()
    assert model.layers[0].weight.grad.item() == pytest.approx(4.0)
    assert model.layers[0].bias.grad.item() == pytest.approx(2.0)


def test_meta_step_applies_adam_to_the_hand_worked_gradient() -> None:
    model, learner = linear_learner()
    stats = learner.meta_step({k: v[None] for k, v in one_task(1, 3, 2, 4).items()})
    assert stats[POST_LOSS] == pytest.approx(1.0)
    # Adam's first step moves each parameter by -lr * sign(gradient): w by -1e-3, b by +1e-3.
    assert model.layers[0].weight.item() == pytest.approx(1.0 - 1e-3, abs=1e-6)
    assert model.layers[0].bias.item() == pytest.approx(1e-3, abs=1e-6)


def test_vmapped_meta_gradient_matches_per_task_double_backward() -> None:
    """Weight-transform MLP, 2 inner steps: vmap + torch.func.grad against a plain autograd loop."""
    torch.manual_seed(0)
    model = build_model(WEIGHT_TRANSFORM, 2, 1, hidden=6, hidden_layers=2, latent=3)
    learner = MetaLearner(model, "mse", 0.05, inner_steps=2)
    tasks = {
        k: torch.randn(3, 4, 2 if k.startswith("x") else 1)
        for k in (X_SUPPORT, Y_SUPPORT, X_QUERY, Y_QUERY)
    }
    out = batch_outcomes(model, learner.params(), learner.lrs, tasks, "mse", steps=2)
    got = torch.autograd.grad(out[POST_LOSS].mean(), list(model.parameters()))

    names = [n for n, _ in model.named_parameters()]
    losses = []
    for i in range(3):
        params = dict(model.named_parameters())
        for _ in range(2):
            support = torch.nn.functional.mse_loss(
                model.forward_params(params, tasks[X_SUPPORT][i]), tasks[Y_SUPPORT][i]
            )
            grads = torch.autograd.grad(support, [params[n] for n in names], create_graph=True)
            params = {n: params[n] - 0.05 * g for n, g in zip(names, grads, strict=True)}
        pred = model.forward_params(params, tasks[X_QUERY][i])
        losses.append(torch.nn.functional.mse_loss(pred, tasks[Y_QUERY][i]))
    want = torch.autograd.grad(torch.stack(losses).mean(), list(model.parameters()))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    first_order = batch_outcomes(model, learner.params(), learner.lrs, tasks, "mse", 2, True)
    fo = torch.autograd.grad(first_order[POST_LOSS].mean(), list(model.parameters()))
    assert not all(torch.allclose(a, b) for a, b in zip(fo, want, strict=True))


def test_classification_loss_and_accuracy() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    loss, accuracy = loss_and_accuracy(logits, torch.tensor([0, 1, 1]), "cross_entropy")
    assert accuracy is not None and accuracy.item() == pytest.approx(2 / 3)
    expected = -np.mean(
        [2 - math.log(math.exp(2) + 1), 1 - math.log(1 + math.e), -math.log(math.exp(3) + 1)]
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_for_the_papers_omniglot_shapes() -> None:
    wt, width, params = (parameter_count(m, 784, 20) for m in MODELS)
    assert width == 152_596  # the paper's No WT - Equal Width count, exactly
    # Paper: 4,866,048 (weight transform) vs 4,896,720 (1150 units). Our WT layer also has the
    # transform's bias rows, its bias m and z (+3.5%), so the matched width comes out at 1168.
    assert wt == pytest.approx(4_866_048, rel=0.04)
    assert params == pytest.approx(4_896_720, rel=0.04)
    assert params == pytest.approx(wt, rel=1e-3)
    assert model_layout(EQUAL_PARAMS, 784, 20, 128, 4, 32)[1] == [784, *[1168] * 4, 20]
    assert parameter_count(EQUAL_PARAMS, 784, 20, hidden=128, hidden_layers=4, latent=24) < params


@pytest.mark.parametrize("model", MODELS)
def test_counted_parameters_are_the_built_ones(model: str) -> None:
    built = build_model(model, 3, 2, hidden=8, hidden_layers=4, latent=5)
    assert count(built) == parameter_count(model, 3, 2, hidden=8, hidden_layers=4, latent=5)
    assert len(built.layers) == 5 and built(torch.zeros(7, 3)).shape == (7, 2)
    assert torch.allclose(
        built(torch.ones(2, 3)),
        built.forward_params(dict(built.named_parameters()), torch.ones(2, 3)),
    )


def test_equal_params_model_matches_the_weight_transform_count_for_sinusoids() -> None:
    wt, params = parameter_count(WEIGHT_TRANSFORM, 1, 1), parameter_count(EQUAL_PARAMS, 1, 1)
    assert abs(params - wt) / wt < 1e-3
    assert parameter_count(EQUAL_WIDTH, 1, 1) < wt / 30


def test_sinusoid_tasks_are_deterministic_and_follow_finn_et_al() -> None:
    family = SinusoidTasks(shots=5, query=7, train_functions=50, val_functions=20, task_seed=3)
    a = family.sample("train", 4, np.random.default_rng(1))
    b = SinusoidTasks(5, 7, 50, 20, task_seed=3).sample("train", 4, np.random.default_rng(1))
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert a[X_SUPPORT].shape == (4, 5, 1) and a[X_QUERY].shape == (4, 7, 1)
    c = family.sample("train", 4, np.random.default_rng(2))
    assert not torch.equal(a[X_SUPPORT], c[X_SUPPORT])
    assert not np.array_equal(family.pools["train"], SinusoidTasks(task_seed=4).pools["train"][:50])
    assert not set(map(tuple, family.pools["train"])) & set(map(tuple, family.pools["val"]))
    amplitude, phase = family.pools["train"].T
    assert amplitude.min() >= AMPLITUDE[0] and amplitude.max() <= AMPLITUDE[1]
    assert phase.min() >= 0 and phase.max() <= math.pi
    x = torch.cat([a[X_SUPPORT], a[X_QUERY]], 1)
    y = torch.cat([a[Y_SUPPORT], a[Y_QUERY]], 1)
    assert x.abs().max() <= 5
    # Every task is one A sin(x - phi) from the pool: fit it from the task's own points.
    for xi, yi in zip(x, y, strict=True):
        errors = [
            float(np.abs(amp * np.sin(xi.numpy() - ph) - yi.numpy()).max())
            for amp, ph in family.pools["train"]
        ]
        assert min(errors) < 1e-5
    with pytest.raises(RayMacawError, match="did you mean 'val'"):
        family.sample("vla", 1, np.random.default_rng(0))


def test_sinusoid_pools_are_evenly_spread_so_train_and_val_compare() -> None:
    family = SinusoidTasks(train_functions=1000, val_functions=100)
    mean_square = (5**3 - 0.1**3) / (3 * 4.9)  # E[A^2] for A ~ U[0.1, 5]; MSE scales with it
    for pool in (family.pools["train"], family.pools["train"][:100], family.pools["val"]):
        assert np.mean(pool[:, 0] ** 2) == pytest.approx(mean_square, rel=0.01)
        assert np.mean(pool[:, 1]) == pytest.approx(math.pi / 2, rel=0.03)
    first = family.evaluation_tasks("val", 0, 4, np.random.default_rng(0))
    again = family.evaluation_tasks("val", 0, 4, np.random.default_rng(0))
    assert torch.equal(first[Y_QUERY], again[Y_QUERY])
    later = family.evaluation_tasks("val", 4, 4, np.random.default_rng(0))
    assert torch.equal(first[X_QUERY], later[X_QUERY])  # same x draws, other functions
    assert not torch.equal(first[Y_QUERY], later[Y_QUERY])


def write_fake_omniglot(root: Path, characters: dict[str, list[str]], images: int = 4) -> Path:
    """A tiny Omniglot tree of real 105 x 105 PNGs ('folder/alphabet' -> character names)."""
    rng = np.random.default_rng(0)
    for alphabet, names in characters.items():
        for name in names:
            directory = root / alphabet / name
            directory.mkdir(parents=True)
            for i in range(images):
                image = Image.new("L", (105, 105), 255)  # white page, black strokes
                draw = ImageDraw.Draw(image)
                points = [tuple(int(v) for v in rng.integers(5, 100, 2)) for _ in range(4)]
                draw.line(points, fill=0, width=6)
                image.save(directory / f"{name}_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def fake_omniglot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("omniglot")
    return write_fake_omniglot(
        root,
        {
            "images_background/Latin": ["character01", "character02", "character03"],
            "images_background/Hebrew": ["character01", "character02"],
            "images_evaluation/Gurmukhi": ["character41", "character42"],
            "images_evaluation/Kannada": ["character01"],
        },
    )


def test_vinyals_split_rules() -> None:
    assert vinyals_split("images_background", "Latin", "character01") == "train"
    assert vinyals_split("images_background", "Hebrew", "character01") == "val"
    assert vinyals_split("images_evaluation", "Gurmukhi", "character41") == "train"
    assert vinyals_split("images_evaluation", "Gurmukhi", "character42") == "test"
    assert vinyals_split("images_evaluation", "Kannada", "character01") == "test"
    assert vinyals_split("images_evaluation", "Angelic", "character01") == "train"


def test_omniglot_loader_reads_a_local_tree(fake_omniglot: Path) -> None:
    family = OmniglotTasks(fake_omniglot, ways=5, shots=1, query=2)
    # Latin x3 + Gurmukhi 41 in train, Hebrew x2 in val, each in 4 rotations.
    assert (len(family.classes["train"]), len(family.classes["val"])) == (16, 8)
    assert len(family.classes["test"]) == 8
    tasks = family.sample("train", 3, np.random.default_rng(0))
    assert tasks[X_SUPPORT].shape == (3, 5, 784) and tasks[X_QUERY].shape == (3, 10, 784)
    assert tasks[Y_SUPPORT].dtype == torch.long
    assert sorted(tasks[Y_SUPPORT][0].tolist()) == [0, 1, 2, 3, 4]
    assert sorted(tasks[Y_QUERY][0].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert 0.0 <= tasks[X_SUPPORT].min() and tasks[X_SUPPORT].max() <= 1.0
    image = family.images(fake_omniglot / "images_background/Latin/character01")[0]
    assert image.shape == (28, 28) and image.mean() < 0.5  # inverted: strokes bright, page dark
    again = family.sample("train", 3, np.random.default_rng(0))
    assert torch.equal(tasks[X_QUERY], again[X_QUERY])
    unrotated = OmniglotTasks(fake_omniglot, ways=2, shots=1, query=2, rotations=False)
    assert len(unrotated.classes["train"]) == 4


def test_omniglot_errors_name_the_path_and_the_fix(tmp_path: Path, fake_omniglot: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingDataError, match="never downloads") as e:
        OmniglotTasks(missing)
    assert e.value.path == missing and str(missing) in str(e.value)
    (tmp_path / "empty" / "images_background").mkdir(parents=True)
    with pytest.raises(DataError, match="no alphabets") as e:
        OmniglotTasks(tmp_path / "empty")
    assert "empty" in str(e.value)
    (tmp_path / "unrelated").mkdir()
    with pytest.raises(DataError, match="no images_background or images_evaluation"):
        OmniglotTasks(tmp_path / "unrelated")
    with pytest.raises(DataError, match="'train' split has 16 classes; 20-way"):
        OmniglotTasks(fake_omniglot, ways=20)
    with pytest.raises(DataError, match="'val' split has 8 classes; 10-way"):
        OmniglotTasks(fake_omniglot, ways=10)
    with pytest.raises(DataError, match="4 images of a character"):
        OmniglotTasks(fake_omniglot, ways=2, shots=1, query=15).sample(
            "val", 1, np.random.default_rng(0)
        )


def test_maml_runs_on_omniglot_tasks(fake_omniglot: Path) -> None:
    config = SupervisedConfig.from_dict(
        {
            "family": "omniglot",
            "data_dir": str(fake_omniglot),
            "ways": 5,
            "query": 2,
            "hidden": 16,
            "latent_dim": 4,
            "meta_steps": 2,
            "eval_every": 1,
            "eval_tasks": 2,
            "meta_batch_size": 2,
        }
    )
    assert config.inner_lr == 0.4 and config.shots == 1  # Deleu et al.'s Omniglot defaults
    reports: list[dict[str, Any]] = []
    train(config, lambda metrics, state: reports.append(metrics))
    assert [r[META_STEP] for r in reports] == [0, 1, 2]
    assert 0.0 <= reports[-1][f"val/{POST_ACCURACY}"] <= 1.0


def test_config_errors_say_how_to_fix_them() -> None:
    with pytest.raises(SupervisedConfigError, match="did you mean 'inner_lr'"):
        SupervisedConfig.from_dict({"iner_lr": 0.1})
    with pytest.raises(RayMacawError, match="did you mean 'weight_transform'"):
        SupervisedConfig.from_dict({"model": "weight_transfrom"})
    with pytest.raises(SupervisedConfigError, match="meta_steps must be at least 1"):
        SupervisedConfig.from_dict({"meta_steps": 0})
    with pytest.raises(SupervisedConfigError, match="inner_lr must be > 0"):
        SupervisedConfig.from_dict({"inner_lr": -0.1})
    with pytest.raises(SupervisedConfigError, match="'hidden' must be int"):
        SupervisedConfig.from_dict({"hidden": 12.5})
    with pytest.raises(SupervisedConfigError, match="'first_order' must be bool"):
        SupervisedConfig.from_dict({"first_order": 1})
    with pytest.raises(SupervisedConfigError, match="needs data_dir"):
        SupervisedConfig.from_dict({"family": "omniglot"})
    with pytest.raises(RayMacawError, match="did you mean 'sinusoid'"):
        SupervisedConfig.from_dict({"family": "sinusiod"})
    defaults = SupervisedConfig.from_dict({})
    assert (defaults.inner_lr, defaults.shots, defaults.meta_batch_size) == (0.01, 10, 10)


def test_experiment_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: [weight_transform]\nconfig: {}\n")
    with pytest.raises(SupervisedConfigError, match="did you mean 'models'") as e:
        load_experiment(bad)
    assert e.value.path == bad
    bad.write_text("name: x\nconfig: {seed: 3}\n")
    with pytest.raises(SupervisedConfigError, match="'seed' is set by the experiment"):
        load_experiment(bad)
    with pytest.raises(SupervisedConfigError, match="did you mean 'meta_steps'"):
        load_experiment(SMOKE, {"meta_step": 3})
    with pytest.raises(MissingDataError):
        load_experiment(tmp_path / "none.yaml")


def test_supervised_configs_validate(fake_omniglot: Path) -> None:
    full = load_experiment(CONFIGS / "supervised" / "weight_transform.yaml")
    assert set(full.models) == set(MODELS) and full.seeds == (0, 1, 2)
    assert len(full.trial_configs()) == 9
    omniglot = load_experiment(CONFIGS / "supervised" / "weight_transform_omniglot.yaml")
    paper = omniglot.trial_configs()[0]
    assert (paper.ways, paper.shots, paper.hidden, paper.latent_dim) == (20, 1, 128, 32)
    assert paper.inner_lr == 0.4 and paper.hidden_layers == 4
    with pytest.raises(MissingDataError):
        omniglot.with_overrides({"data_dir": "/no/omniglot/here"}).validate(check_data=True)
    omniglot.with_overrides({"data_dir": str(fake_omniglot)}).validate(check_data=True)


def test_training_resumes_exactly_from_a_reported_state(tmp_path: Path) -> None:
    config = SupervisedConfig.from_dict(
        {
            "hidden": 8,
            "latent_dim": 3,
            "meta_steps": 4,
            "eval_every": 2,
            "eval_tasks": 3,
            "meta_batch_size": 2,
            "train_functions": 10,
            "val_functions": 5,
        }
    )
    straight: list[tuple[dict[str, Any], dict[str, Any]]] = []
    train(config, lambda m, s: straight.append((m, s)))
    resumed: list[dict[str, Any]] = []
    assert straight[1][1][META_STEP] == 2
    # Through the checkpoint file format of tune_run (torch.load with weights_only=True).
    torch.save(straight[1][1], tmp_path / STATE_FILE)
    state_at_2 = torch.load(tmp_path / STATE_FILE, weights_only=True)
    train(config, lambda m, s: resumed.append(m), state_at_2)
    assert [r[META_STEP] for r in resumed] == [4]
    assert resumed[0][f"val/{POST_LOSS}"] == straight[2][0][f"val/{POST_LOSS}"]
    assert resumed[0][f"batch/{POST_LOSS}"] == straight[2][0][f"batch/{POST_LOSS}"]


def test_short_meta_training_lowers_the_post_adaptation_loss() -> None:
    config = SupervisedConfig.from_dict(
        {
            "model": EQUAL_WIDTH,
            "hidden": 40,
            "meta_steps": 150,
            "eval_every": 150,
            "eval_tasks": 50,
            "train_functions": 100,
        }
    )
    reports: list[dict[str, Any]] = []
    train(config, lambda m, s: reports.append(m))
    first, last = reports[0], reports[-1]
    assert last[f"val/{POST_LOSS}"] < 0.7 * first[f"val/{POST_LOSS}"]
    assert last[f"val/{POST_LOSS}"] < last[f"val/{PRE_LOSS}"]  # adaptation helps


def test_summary_rows_mean_and_standard_error() -> None:
    trials = [
        Trial("a", WEIGHT_TRANSFORM, 0, [0, 5, 10], {"train": [9, 2, 1], "val": [9, 3.0, 2.0]}),
        Trial("b", WEIGHT_TRANSFORM, 1, [0, 5, 10], {"train": [9, 2, 3], "val": [9, 3.0, 4.0]}),
    ]
    (row,) = summary_rows(trials, POST_LOSS)
    assert row["seeds"] == 2 and row["meta_steps"] == 10
    assert row["final_train"] == pytest.approx((2.0, 1.0))  # std 1.414 / sqrt 2
    assert row["mean_val"] == pytest.approx((3.0, 0.5))  # means after step 0: 2.5 and 3.5


def test_accuracy_report_for_classification(tmp_path: Path) -> None:
    trials = [
        Trial("a", EQUAL_PARAMS, 0, [0, 10], {"train": [0.05, 0.9], "val": [0.05, 0.6]}),
        Trial("b", WEIGHT_TRANSFORM, 0, [0, 10], {"train": [0.05, 0.8], "val": [0.05, 0.7]}),
    ]
    rows = summary_rows(trials, POST_ACCURACY)
    assert [r["model"] for r in rows] == [WEIGHT_TRANSFORM, EQUAL_PARAMS]  # Figure 6's order
    assert "final val accuracy" in format_table(rows) and "0.7 +- 0" in format_table(rows)
    with Image.open(plot_curves(trials, POST_ACCURACY, tmp_path / "acc.png")) as image:
        assert image.size == (700, 450)


def test_interrupted_or_failed_trials_raise_with_the_fix() -> None:
    done = {"trial_dir": "a", "error": None, META_STEP: 4}
    _check_trials([done], 4, "exp", print)
    with pytest.raises(SupervisedTrialsFailedError, match="1 of 2 trials unfinished") as e:
        _check_trials([done, {**done, META_STEP: 2}], 4, "exp", print)
    assert "--resume" in e.value.fix
    with pytest.raises(SupervisedTrialsFailedError, match="1 of 2 trials failed: b"):
        _check_trials([done, {**done, "trial_dir": "b", "error": "boom"}], 4, "exp", print)


@pytest.mark.usefixtures("ray_local")
def test_smoke_experiment_runs_through_the_cli_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = tmp_path / "runs"
    args = ["supervised", "tune", str(SMOKE), "--storage-path", str(storage), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    run_dir = storage / "smoke-supervised-weight-transform"
    assert summary["experiment"] == str(run_dir) and len(summary["trials"]) == 3
    assert all(t["error"] is None and t[META_STEP] == 4 for t in summary["trials"])
    assert main(args) == 2  # exists: needs --resume or another --name
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # finished trials are kept
    capsys.readouterr()

    out = tmp_path / "report"
    assert main(["supervised", "report", str(run_dir), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    for label in ("Weight Transform", "No WT - Equal Width", "No WT - Equal Params"):
        assert label in table
    with Image.open(out / PLOT_FILE) as image:
        assert image.size == (700, 450)
    rows = json.loads((out / "supervised_report.json").read_text())
    assert [r["model"] for r in rows] == list(MODELS)
    assert all(r["seeds"] == 1 and r["meta_steps"] == 4 for r in rows)
    assert main(["supervised", "report", str(tmp_path / "missing")]) == 2
