"""Offline PEARL's math on hand-worked values: product of Gaussians, KL, Q target and loss,
gradients into the encoder, and the networks' action mapping."""

from __future__ import annotations

import math

import pytest
import torch

from ray_macaw.data import columns as C
from ray_macaw.pearl import (
    PEARLModel,
    PEARLModelConfig,
    SACConfig,
    kl_to_standard_normal,
    losses,
    meta_batch_step,
    product_of_gaussians,
)
from ray_macaw.pearl.losses import critic_loss, q_loss, q_target


def small_model(obs_dim: int = 2, act_dim: int = 2) -> PEARLModel:
    torch.manual_seed(0)
    return PEARLModel(
        PEARLModelConfig(
            obs_dim=obs_dim,
            act_dim=act_dim,
            action_low=(-0.1,) * act_dim,
            action_high=(0.1,) * act_dim,
            hidden=(8, 8),
            encoder_hidden=(8,),
            latent_dim=3,
        )
    )


def constant_output(net: torch.nn.Sequential, value: float) -> None:
    """Make an MLP output `value` everywhere: zero last-layer weights, bias = value."""
    last = net[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)


def test_product_of_gaussians_by_hand() -> None:
    # N(1, 1) x N(3, 1): precision 2 -> var 0.5, mean (1 + 3) / 2 = 2.
    # N(0, 4) x N(6, 2): var 1 / (1/4 + 1/2) = 4/3, mean 4/3 (0/4 + 6/2) = 4.
    means = torch.tensor([[[1.0, 0.0], [3.0, 6.0]]])  # (tasks 1, n 2, d 2)
    variances = torch.tensor([[[1.0, 4.0], [1.0, 2.0]]])
    mean, variance = product_of_gaussians(means, variances)
    torch.testing.assert_close(mean, torch.tensor([[2.0, 4.0]]))
    torch.testing.assert_close(variance, torch.tensor([[0.5, 4.0 / 3.0]]))
    # Permutation invariant: the posterior ignores the order of the context.
    flipped = product_of_gaussians(means.flip(1), variances.flip(1))
    torch.testing.assert_close(flipped[0], mean)


def test_kl_to_standard_normal_by_hand_and_its_gradient() -> None:
    # 0.5 [(0.25 + 0.25 - 1 - ln 0.25) + (2 + 1 - 1 - ln 2)] = 0.5 (0.886294 + 1.306853)
    mean = torch.tensor([[0.5, -1.0]], requires_grad=True)
    variance = torch.tensor([[0.25, 2.0]], requires_grad=True)
    kl = kl_to_standard_normal(mean, variance)
    expected = 0.5 * ((0.5 - 1 - math.log(0.25)) + (3.0 - 1 - math.log(2.0)))
    assert kl.item() == pytest.approx(expected, abs=1e-6)
    assert kl.item() == pytest.approx(1.0965735, abs=1e-6)
    kl.backward()
    # d/dmu = mu; d/dvar = 0.5 (1 - 1/var)
    torch.testing.assert_close(mean.grad, torch.tensor([[0.5, -1.0]]))
    torch.testing.assert_close(variance.grad, torch.tensor([[0.5 * (1 - 4.0), 0.5 * (1 - 0.5)]]))
    # Summed over tasks, as rlkit's compute_kl_div does: two copies give twice the KL.
    doubled = kl_to_standard_normal(mean.detach().repeat(2, 1), variance.detach().repeat(2, 1))
    assert doubled.item() == pytest.approx(2 * expected, abs=1e-6)
    assert kl_to_standard_normal(torch.zeros(4, 5), torch.ones(4, 5)).item() == 0.0


def test_q_target_and_loss_by_hand() -> None:
    cfg = SACConfig(reward_scale=5.0, discount=0.99)
    rewards = torch.tensor([1.0, -0.5])
    terminated = torch.tensor([0.0, 1.0])
    next_value = torch.tensor([2.0, 10.0])
    target = q_target(rewards, terminated, next_value, cfg)
    # 5 * 1 + 0.99 * 2 = 6.98; 5 * -0.5 + 0 (terminal) = -2.5
    torch.testing.assert_close(target, torch.tensor([6.98, -2.5]))
    q1, q2 = torch.tensor([7.0, -2.0]), torch.tensor([6.0, -3.0])
    # Q1: (0.02^2 + 0.5^2) / 2 = 0.1252; Q2: (0.98^2 + 0.5^2) / 2 = 0.6052
    assert q_loss(q1, q2, target).item() == pytest.approx(0.1252 + 0.6052, abs=1e-5)


def test_critic_loss_through_the_model_by_hand() -> None:
    model = small_model()
    constant_output(model.qf1, 1.0)
    constant_output(model.qf2, 2.0)
    constant_output(model.target_vf, 3.0)
    batch = {
        C.OBS: torch.randn(2, 2),
        C.ACTIONS: torch.tensor([[0.1, -0.1], [0.0, 0.05]]),
        C.REWARDS: torch.tensor([0.2, -0.4]),
        C.NEXT_OBS: torch.randn(2, 2),
        C.TERMINATED: torch.tensor([0.0, 1.0]),
    }
    loss, stats = critic_loss(model, batch, torch.zeros(2, 3), SACConfig())
    # y = 5 r + (1 - d) 0.99 * 3 = [1 + 2.97, -2] = [3.97, -2]
    # Q1 = 1: ((1 - 3.97)^2 + (1 + 2)^2) / 2 = (8.8209 + 9) / 2 = 8.91045
    # Q2 = 2: ((2 - 3.97)^2 + (2 + 2)^2) / 2 = (3.8809 + 16) / 2 = 9.94045
    assert loss.item() == pytest.approx(8.91045 + 9.94045, abs=1e-4)
    assert stats["q_target_mean"] == pytest.approx((3.97 - 2) / 2, abs=1e-5)


def test_actions_map_between_the_env_box_and_the_unit_box() -> None:
    model = small_model()
    env = torch.tensor([[0.1, -0.1], [0.0, 0.05]])
    unit = model.to_unit_actions(env)
    torch.testing.assert_close(unit, torch.tensor([[1.0, -1.0], [0.0, 0.5]]))
    torch.testing.assert_close(model.to_env_actions(unit), env)
    z = torch.zeros(3)
    action = model.mean_env_action(torch.zeros(2), z)
    assert action.abs().max() <= 0.1


def all_optimizers(model: PEARLModel) -> dict[str, torch.optim.Optimizer]:
    nets = {"policy": "policy", "qf1": "qf1", "qf2": "qf2", "vf": "vf", "context": "encoder"}
    return {k: torch.optim.Adam(getattr(model, v).parameters(), lr=1e-3) for k, v in nets.items()}


def columns(tasks: int, rows: int) -> dict[str, torch.Tensor]:
    return {
        C.OBS: torch.randn(tasks, rows, 2),
        C.ACTIONS: torch.rand(tasks, rows, 2) * 0.2 - 0.1,
        C.REWARDS: torch.randn(tasks, rows),
        C.NEXT_OBS: torch.randn(tasks, rows, 2),
        C.TERMINATED: torch.zeros(tasks, rows),
    }


def test_one_step_trains_the_encoder_through_kl_and_q_loss_only() -> None:
    model = small_model()
    optimizers = all_optimizers(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target_before = [p.clone() for p in model.target_vf.parameters()]
    stats, finite = meta_batch_step(model, optimizers, columns(3, 5), columns(3, 7), SACConfig())
    assert finite
    for key in ("qf_loss", "vf_loss", "policy_loss", "kl_div", "kl_loss", "z_var_mean"):
        assert math.isfinite(stats[key]), key
    assert stats["kl_loss"] == pytest.approx(0.1 * stats["kl_div"])
    after = model.state_dict()
    for prefix in ("encoder.", "qf1.", "qf2.", "vf.", "policy."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))
    # Polyak: target = 0.995 target + 0.005 V (after V's step).
    for old, new, source in zip(
        target_before, model.target_vf.parameters(), model.vf.parameters(), strict=True
    ):
        torch.testing.assert_close(new, 0.995 * old + 0.005 * source)


def test_a_non_finite_loss_moves_nothing() -> None:
    model = small_model()
    optimizers = {"qf1": torch.optim.Adam(model.qf1.parameters(), lr=1e-3)}
    rows = {
        C.OBS: torch.randn(1, 4, 2),
        C.ACTIONS: torch.zeros(1, 4, 2),
        C.REWARDS: torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]),
        C.NEXT_OBS: torch.randn(1, 4, 2),
        C.TERMINATED: torch.zeros(1, 4),
    }
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, finite = meta_batch_step(model, optimizers, rows, rows, SACConfig())
    assert not finite
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_each_stage_computes_only_its_networks_gradients_and_matches_rlkit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The policy loss reaches the actions through both Qs but not the Qs' weights; the step is
    bit for bit rlkit's, whose full backward passes compute and discard those gradients."""

    def full_backward(loss, optimizers, names, model) -> bool:
        model.zero_grad(set_to_none=True)
        loss.backward()
        for name in names:
            optimizers[name].step()
        return True

    def two_steps() -> PEARLModel:
        model = small_model()
        optimizers = all_optimizers(model)
        for _ in range(2):
            meta_batch_step(model, optimizers, columns(3, 5), columns(3, 7), SACConfig())
        return model

    ours = two_steps()
    # After the last stage (the policy's), only the policy holds gradients.
    assert all(p.grad is not None for p in ours.policy.parameters())
    for net in (ours.qf1, ours.qf2, ours.vf, ours.encoder):
        assert all(p.grad is None for p in net.parameters())
    monkeypatch.setattr(losses, "_apply", full_backward)
    rlkit = two_steps()
    assert all(p.grad is not None for p in rlkit.qf1.parameters())
    for key, value in rlkit.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
