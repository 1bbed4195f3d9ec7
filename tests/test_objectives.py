"""Each objective adapts and fine-tunes with its own losses (spec §7, §9); its network defaults."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import softplus

from ray_macaw.algorithms.macaw.config import MACAWConfig
from ray_macaw.data.columns import ACTIONS, MC_RETURN, OBS, TERMINAL_DISCOUNT, TERMINAL_OBS
from ray_macaw.macaw import InnerLoopConfig, MACAWModel, ModelConfig
from ray_macaw.macaw.inner_loop import adapt
from ray_macaw.macaw.objective import AdaptationSettings
from ray_macaw.macaw.objectives import OBJECTIVES, get_objective
from ray_macaw.nn.networks import gaussian_log_prob


def make_batch(rows: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        OBS: torch.randn(rows, 3, generator=g),
        ACTIONS: torch.rand(rows, 2, generator=g) * 2 - 1,
        MC_RETURN: torch.randn(rows, generator=g) * 3,
        TERMINAL_OBS: torch.randn(rows, 3, generator=g),
        TERMINAL_DISCOUNT: torch.rand(rows, generator=g),
    }


def make_model(objective: str) -> MACAWModel:
    torch.manual_seed(0)
    network = dict(OBJECTIVES[objective].network)
    return MACAWModel(
        ModelConfig(
            obs_dim=3, act_dim=2, hidden=(8, 8), latent_dim=4, inner_policy_lr=0.05, **network
        )
    )


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_meta_bc_adapts_with_one_bc_gradient_step_and_leaves_the_value_network() -> None:
    model, batch = make_model("meta_bc"), make_batch()
    adapted = get_objective("meta_bc").adapt(
        model, batch, InnerLoopConfig(objective="meta_bc"), AdaptationSettings()
    )
    # by hand: theta' = theta - softplus(rho) * d/dtheta [-mean log pi(a|s)]
    params = dict(model.policy.named_parameters())
    log_pi = gaussian_log_prob(model.policy.mean_action(batch[OBS]), batch[ACTIONS], 0.2)
    grads = torch.autograd.grad(-log_pi.mean(), list(params.values()))
    lrs = model.policy_lr.raw_by_name()
    for (name, param), grad in zip(params.items(), grads, strict=True):
        expected = param - softplus(lrs[name]) * grad
        torch.testing.assert_close(
            dict(adapted.policy.named_parameters())[name], expected, atol=1e-6, rtol=1e-5
        )
    assert_same(state(adapted.value), state(model.value))  # never trained, never used
    # MACAW's adaptation (value then AWR) would move the value network and the policy elsewhere
    macaw = adapt(model, batch, InnerLoopConfig())
    assert not torch.allclose(macaw.value["layers.0.z"], model.value.layers[0].z)


def test_macaw_adapts_value_then_policy() -> None:
    model, batch = make_model("macaw"), make_batch()
    adapted = get_objective("macaw").adapt(model, batch, InnerLoopConfig(), AdaptationSettings())
    expected = adapt(model, batch, InnerLoopConfig())
    assert_same(state(adapted.policy), expected.policy)
    assert_same(state(adapted.value), expected.value)
    assert not torch.equal(adapted.value.layers[0].z, model.value.layers[0].z)


def test_multitask_adapts_by_adam_fine_tuning() -> None:
    model, batch = make_model("multitask"), make_batch()
    settings = AdaptationSettings(finetune_steps=3, finetune_value_lr=1e-2, finetune_policy_lr=1e-2)
    adapted = get_objective("multitask").adapt(
        model, batch, InnerLoopConfig(objective="multitask"), settings
    )
    # the same as three (value, AWR) Adam steps taken by hand on a copy
    by_hand = make_model("multitask")
    value_opt = torch.optim.Adam(by_hand.value.parameters(), lr=1e-2)
    policy_opt = torch.optim.Adam(by_hand.policy.parameters(), lr=1e-2)
    objective = get_objective("multitask")
    for _ in range(3):
        objective.value_update(by_hand, value_opt, batch)
        objective.policy_update(by_hand, policy_opt, batch, InnerLoopConfig())
    assert_same(state(adapted.policy), state(by_hand.policy))
    assert_same(state(adapted.value), state(by_hand.value))


class Counting(torch.optim.SGD):
    def __init__(self, params) -> None:
        super().__init__(params, lr=1e-3)
        self.steps = 0

    def step(self, closure=None):  # type: ignore[override]
        self.steps += 1
        return super().step(closure)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_finetune_round_takes_the_configured_steps_with_the_objectives_losses(
    objective: str,
) -> None:
    model = make_model(objective)
    value_before, policy_before = state(model.value), state(model.policy)
    value_opt, policy_opt = Counting(model.value.parameters()), Counting(model.policy.parameters())
    draws = []

    def sample() -> dict[str, torch.Tensor]:
        draws.append(len(draws))
        return make_batch(seed=len(draws))  # a fresh batch per step

    taken = get_objective(objective).finetune_round(
        model,
        (value_opt, policy_opt),
        sample,
        InnerLoopConfig(objective=objective),
        3,
        5,  # type: ignore[arg-type]
    )
    uses_value = OBJECTIVES[objective].uses_value
    assert taken == ((3 if uses_value else 0), 5)
    assert (value_opt.steps, policy_opt.steps) == taken
    assert len(draws) == taken[0] + taken[1]
    moved = any(not torch.equal(state(model.value)[n], value_before[n]) for n in value_before)
    assert moved == uses_value  # Meta-BC's value network is never touched
    assert any(not torch.equal(state(model.policy)[n], policy_before[n]) for n in policy_before)


def test_interleaved_rounds_share_one_batch_per_pair() -> None:
    model = make_model("macaw")
    draws = []
    opts = (Counting(model.value.parameters()), Counting(model.policy.parameters()))
    taken = get_objective("macaw").finetune_round(
        model, opts, lambda: draws.append(1) or make_batch(), InnerLoopConfig(), 4, 99, True
    )
    assert taken == (4, 4) and len(draws) == 4


def test_meta_bc_policy_update_is_the_bc_step() -> None:
    model, batch = make_model("meta_bc"), make_batch()
    before = state(model.policy)
    opt = torch.optim.SGD(model.policy.parameters(), lr=0.1)
    get_objective("meta_bc").policy_update(model, opt, batch, InnerLoopConfig(objective="meta_bc"))
    reference = make_model("meta_bc")
    log_pi = gaussian_log_prob(reference.policy.mean_action(batch[OBS]), batch[ACTIONS], 0.2)
    grads = torch.autograd.grad(-log_pi.mean(), list(reference.policy.parameters()))
    for (name, _), grad in zip(reference.policy.named_parameters(), grads, strict=True):
        torch.testing.assert_close(state(model.policy)[name], before[name] - 0.1 * grad)


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ("macaw", ("weight_transform", "weight_transform", True)),
        ("maml_awr", ("weight_transform", "weight_transform", False)),
        ("meta_bc", ("weight_transform", "weight_transform", False)),
        ("multitask", ("bias_transform", "bias_transform", False)),
    ],
)
def test_the_objective_alone_gives_its_network(objective: str, expected: tuple) -> None:
    config = MACAWConfig().training(objective=objective).model_config(20, 6)
    assert (config.policy_layer, config.value_layer, config.advantage_head) == expected
    # settings given explicitly still win
    explicit = MACAWConfig().training(
        objective=objective, policy_layer="linear", value_layer="linear"
    )
    assert explicit.model_config(20, 6).policy_layer == "linear"


def test_multitask_alone_is_the_spec_network_not_the_weight_transform_default() -> None:
    mt = MACAWModel(MACAWConfig().training(objective="multitask").model_config(20 + 40, 6))
    wt = MACAWModel(MACAWConfig().model_config(20, 6))
    count = lambda m: sum(p.numel() for p in m.policy.parameters())  # noqa: E731
    assert count(wt) == 2_663_263  # spec §2.1
    assert count(mt) < 100_000  # bias-transform MLP of width 100 (spec §9)
