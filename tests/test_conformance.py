"""The fast meta-gradient (vmap, closed-form low-rank weight-transform step) against the readable
plain-autograd reference (`macaw/reference.py`), over every combination of layer kind, adapted
tensors, inner steps, gradient order and objective, in float64."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

from ray_macaw.data.columns import ACTIONS, MC_RETURN, OBS, TERMINAL_DISCOUNT, TERMINAL_OBS
from ray_macaw.macaw import InnerLoopConfig, MACAWModel, ModelConfig, meta_backward, reference
from ray_macaw.macaw.objectives import OBJECTIVES

LAYERS = ("weight_transform", "bias_transform", "linear")
ADAPT = ("all", "latent")
DIVISOR = 7.0


def batch(tasks: int, rows: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    return {
        OBS: torch.randn(tasks, rows, 3, generator=g, dtype=d),
        ACTIONS: torch.rand(tasks, rows, 2, generator=g, dtype=d) * 2 - 1,
        MC_RETURN: torch.randn(tasks, rows, generator=g, dtype=d) * 3,
        TERMINAL_OBS: torch.randn(tasks, rows, 3, generator=g, dtype=d),
        TERMINAL_DISCOUNT: torch.rand(tasks, rows, generator=g, dtype=d),
    }


def model_for(layer: str, adapt: str, objective: str) -> MACAWModel:
    torch.manual_seed(0)
    config = ModelConfig(
        obs_dim=3,
        act_dim=2,
        hidden=(5, 4),
        policy_layer=layer,  # type: ignore[arg-type]
        value_layer=layer,  # type: ignore[arg-type]
        latent_dim=3,
        head_width=3,
        advantage_head=bool(OBJECTIVES[objective].network["advantage_head"]),
        inner_policy_lr=0.1,  # large enough that second-order terms matter
        inner_value_lr=0.2,
        adv_coef=0.5,
        adapt=adapt,  # type: ignore[arg-type]
    )
    return MACAWModel(config).double()


def cases() -> list[tuple[str, str, int, bool, str]]:
    grid = []
    for layer, adapt, steps, first_order, objective in itertools.product(
        LAYERS, ADAPT, (1, 2), (False, True), OBJECTIVES
    ):
        if layer == "linear" and adapt == "latent":
            continue  # refused: plain linear layers have no latent
        if objective == "multitask" and (steps, first_order) != (1, False):
            continue  # no inner loop: steps and order do not apply
        grid.append((layer, adapt, steps, first_order, objective))
    return grid


def assert_matches_reference(model: MACAWModel, config: InnerLoopConfig, vectorize: bool) -> None:
    inner, outer = batch(2, 8, seed=1), batch(2, 6, seed=2)
    model.zero_grad(set_to_none=True)
    meta_backward(model, inner, outer, config, DIVISOR, vectorize=vectorize)
    expected = reference.meta_gradient(model, inner, outer, config, DIVISOR)
    reached = 0
    for name, param in model.named_parameters():
        want = expected[name]
        got = param.grad
        if want is None:  # no path to the loss: the fast path may give None or zeros
            assert got is None or not got.any(), name
            continue
        reached += 1
        assert got is not None, name
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12, msg=name)
    assert reached > 0


@pytest.mark.parametrize(("layer", "adapt", "steps", "first_order", "objective"), cases())
def test_fast_meta_gradient_equals_the_reference(
    layer: str, adapt: str, steps: int, first_order: bool, objective: str
) -> None:
    config = InnerLoopConfig(steps=steps, first_order=first_order, objective=objective)  # type: ignore[arg-type]
    assert_matches_reference(model_for(layer, adapt, objective), config, vectorize=True)


@pytest.mark.parametrize(
    "changes",
    [
        {"normalize_advantages": False, "temperature": 3.0},  # the authors' no_norm variant
        {"outer_value_target": "mc", "temperature": 0.5, "max_weight": 3.0},
        {"low_rank_wt": False},
        {"target_mix": 0.5, "steps": 2},
    ],
)
@pytest.mark.parametrize("vectorize", [True, False])
def test_variants_equal_the_reference(changes: dict, vectorize: bool) -> None:
    config = replace(InnerLoopConfig(), **changes)
    assert_matches_reference(model_for("weight_transform", "all", "macaw"), config, vectorize)


def test_the_grid_covers_every_objective_and_can_fail() -> None:
    assert {c[4] for c in cases()} == set(OBJECTIVES) and len(cases()) == 65
    # a wrong inner lr in the reference's place would be caught: perturb one weight's gradient
    model = model_for("weight_transform", "all", "macaw")
    inner, outer = batch(2, 8, seed=1), batch(2, 6, seed=2)
    expected = reference.meta_gradient(model, inner, outer, InnerLoopConfig(), DIVISOR)
    first_order = reference.meta_gradient(
        model, inner, outer, InnerLoopConfig(first_order=True), DIVISOR
    )
    name = "value.layers.0.transform.weight"
    assert not torch.allclose(expected[name], first_order[name], rtol=1e-6)  # type: ignore[arg-type]
