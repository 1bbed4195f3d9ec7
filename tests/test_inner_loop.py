"""The functional inner loop and meta-gradient: hand checks, gradient plumbing, paths that agree."""

from __future__ import annotations

import math

import pytest
import torch

from ray_macaw.data.columns import ACTIONS, MC_RETURN, OBS, TERMINAL_DISCOUNT, TERMINAL_OBS
from ray_macaw.macaw import InnerLoopConfig, MACAWModel, ModelConfig, adapt, meta_backward
from ray_macaw.macaw.inner_loop import (
    adapt_value,
    autograd_grad,
    func_grad,
    task_meta_loss,
    value_state,
)
from ray_macaw.macaw.meta_gradient import (
    clip_per_network,
    gradient_norms,
    learned_lrs_without_gradient,
    loss_divisor,
    warn_learned_lrs_without_gradient,
)


def make_batch(
    tasks: int, rows: int, obs_dim: int, act_dim: int, seed: int, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        OBS: torch.randn(tasks, rows, obs_dim, generator=g, dtype=dtype),
        ACTIONS: torch.rand(tasks, rows, act_dim, generator=g, dtype=dtype) * 2 - 1,
        MC_RETURN: torch.randn(tasks, rows, generator=g, dtype=dtype) * 3,
        TERMINAL_OBS: torch.randn(tasks, rows, obs_dim, generator=g, dtype=dtype),
        TERMINAL_DISCOUNT: torch.rand(tasks, rows, generator=g, dtype=dtype),
    }


def grads_of(model: MACAWModel) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def run(
    model: MACAWModel, inner, outer, config: InnerLoopConfig, vectorize: bool, divisor: float = 35.0
):
    model.zero_grad(set_to_none=True)
    stats = meta_backward(model, inner, outer, config, divisor, vectorize=vectorize)
    return grads_of(model), stats


def assert_same_grads(a, b, atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] is None) == (b[name] is None), name
        if a[name] is not None:
            torch.testing.assert_close(a[name], b[name], atol=atol, rtol=1e-4, msg=name)


@pytest.fixture(scope="module")
def cheetah_model() -> MACAWModel:
    torch.manual_seed(0)
    return MACAWModel(ModelConfig(obs_dim=20, act_dim=6))


def test_inner_value_step_by_hand() -> None:
    torch.manual_seed(0)
    model = MACAWModel(
        ModelConfig(
            obs_dim=2,
            act_dim=1,
            hidden=(3,),
            policy_layer="linear",
            value_layer="linear",
            inner_value_lr=0.1,
        )
    )
    batch = {k: v[0] for k, v in make_batch(1, 8, 2, 1, seed=1).items()}
    params = model.params()
    phi, _, _ = adapt_value(
        model,
        value_state(model, params, InnerLoopConfig()),
        batch,
        InnerLoopConfig(),
        autograd_grad,
    )
    loss = (model.value(batch[OBS]) - batch[MC_RETURN]).pow(2).mean()  # pure MC target
    names = list(params["value"])
    grads = torch.autograd.grad(loss, [params["value"][n] for n in names])
    for name, grad in zip(names, grads, strict=True):
        # softplus(log 0.1) = log(1.1)
        expected = params["value"][name] - math.log(1.1) * grad
        torch.testing.assert_close(phi.materialize()[name], expected)


def test_outer_value_target_uses_the_soft_mix_by_hand() -> None:
    """Outer value loss = mean((V_phi'(s) - [R + g V_{0.9 phi + 0.1 phi'}(s^T)])^2) (spec §5)."""
    torch.manual_seed(0)
    model = MACAWModel(
        ModelConfig(
            obs_dim=2,
            act_dim=1,
            hidden=(4,),
            policy_layer="linear",
            value_layer="linear",
            inner_value_lr=0.5,
        )
    )
    inner, outer = ({k: v[0] for k, v in make_batch(1, 8, 2, 1, seed=s).items()} for s in (1, 2))
    phi = {n: p.detach() for n, p in model.value.named_parameters()}
    loss = (model.value(inner[OBS]) - inner[MC_RETURN]).pow(2).mean()
    grads = dict(zip(phi, torch.autograd.grad(loss, list(model.value.parameters())), strict=True))
    adapted = {n: phi[n] - math.log(1.5) * grads[n] for n in phi}  # softplus(log 0.5) = log 1.5
    target_params = {n: 0.9 * phi[n] + 0.1 * adapted[n] for n in phi}
    value = torch.func.functional_call
    target = outer[MC_RETURN] + outer[TERMINAL_DISCOUNT] * value(
        model.value, target_params, (outer[TERMINAL_OBS],)
    )
    expected = (value(model.value, adapted, (outer[OBS],)) - target).pow(2).mean()
    value_loss, _, _ = task_meta_loss(
        model, model.params(), inner, outer, InnerLoopConfig(), autograd_grad
    )
    assert value_loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("layer", ["linear", "weight_transform"])
def test_soft_target_is_updated_after_every_inner_step(layer: str) -> None:
    """phi_bar <- 0.9 phi_bar + 0.1 phi_i after each step i, from phi_bar = phi (authors' loop)."""
    torch.manual_seed(0)
    model = MACAWModel(
        ModelConfig(
            obs_dim=3, act_dim=1, hidden=(4,), value_layer=layer, latent_dim=5, inner_value_lr=0.3
        )
    )
    batch = {k: v[0] for k, v in make_batch(1, 16, 3, 1, seed=3).items()}
    config = InnerLoopConfig(steps=2)
    plain = InnerLoopConfig(steps=1, low_rank_wt=False)
    params = model.params()
    phi_0 = value_state(model, params, plain)
    phi_1, _, _ = adapt_value(
        model, phi_0, {k: v[:8] for k, v in batch.items()}, plain, autograd_grad
    )
    phi_2, _, _ = adapt_value(
        model, phi_1, {k: v[8:] for k, v in batch.items()}, plain, autograd_grad
    )
    p0, p1, p2 = (s.materialize() for s in (phi_0, phi_1, phi_2))
    expected = {n: 0.9 * (0.9 * p0[n] + 0.1 * p1[n]) + 0.1 * p2[n] for n in p0}
    _, target, _ = adapt_value(
        model, value_state(model, params, config), batch, config, autograd_grad
    )
    for name, tensor in target.materialize().items():
        torch.testing.assert_close(tensor, expected[name].detach(), atol=1e-6, rtol=1e-5)


def test_gradients_reach_every_meta_parameter(cheetah_model: MACAWModel) -> None:
    inner, outer = make_batch(5, 64, 20, 6, seed=0), make_batch(5, 64, 20, 6, seed=1)
    grads, stats = run(cheetah_model, inner, outer, InnerLoopConfig(), vectorize=True)
    head_lrs = {n for n in grads if n.startswith("policy_lr.raw.head__")}
    assert len(head_lrs) == 6
    for name, grad in grads.items():
        if name in head_lrs:
            # spec §3: the outer loss never reads the adapted head, so its lrs get no gradient
            assert grad is None, name
        else:
            assert grad is not None and grad.abs().sum() > 0, name
    assert grads["adv_coef_raw"] is not None
    assert set(gradient_norms(cheetah_model)) == {"value", "policy", "value_lr", "policy_lr"}
    for key in (
        "inner_value_loss",
        "outer_value_loss",
        "outer_policy_loss",
        "inner_adv_head_loss",
        "outer_weight_mean",
        "outer_weight_max",
    ):
        assert math.isfinite(stats[key])


def test_learned_lrs_without_gradient_are_reported(
    cheetah_model: MACAWModel, caplog: pytest.LogCaptureFixture
) -> None:
    inner, outer = make_batch(5, 64, 20, 6, seed=0), make_batch(5, 64, 20, 6, seed=1)
    run(cheetah_model, inner, outer, InnerLoopConfig(), vectorize=True)
    expected = sorted(f"policy:{n}" for n in cheetah_model.policy_lr.names if n.startswith("head."))
    assert sorted(learned_lrs_without_gradient(cheetah_model)) == expected and len(expected) == 6
    with caplog.at_level("WARNING"):
        warn_learned_lrs_without_gradient(cheetah_model, InnerLoopConfig())
    assert "6 learned inner lrs receive no meta-gradient" in caplog.text
    assert "policy:head.0.z" in caplog.text
    # Meta-BC never adapts the value network: only the policy's lrs are its business
    run(cheetah_model, inner, outer, InnerLoopConfig(objective="meta_bc"), vectorize=True)
    assert sorted(learned_lrs_without_gradient(cheetah_model, ("policy",))) == expected
    assert len(learned_lrs_without_gradient(cheetah_model)) == 6 + 12


def test_gradient_clipping_is_per_network(cheetah_model: MACAWModel) -> None:
    inner, outer = make_batch(5, 64, 20, 6, seed=0), make_batch(5, 64, 20, 6, seed=1)
    run(cheetah_model, inner, outer, InnerLoopConfig(), vectorize=True)
    lr_grads = {n: p.grad.clone() for n, p in cheetah_model.value_lr.named_parameters()}
    clip_per_network(cheetah_model, 1e-4)
    norms = gradient_norms(cheetah_model)
    assert norms["value"] == pytest.approx(1e-4, rel=1e-3)
    assert norms["policy"] == pytest.approx(1e-4, rel=1e-3)  # not a shared budget of 1e-4
    for name, param in cheetah_model.value_lr.named_parameters():
        torch.testing.assert_close(param.grad, lr_grads[name])  # learned lrs are not clipped


def test_policy_loss_sends_no_gradient_into_the_value_network(cheetah_model: MACAWModel) -> None:
    inner, outer = make_batch(1, 32, 20, 6, seed=2), make_batch(1, 32, 20, 6, seed=3)
    one = {k: v[0] for k, v in inner.items()}, {k: v[0] for k, v in outer.items()}
    for pick, silent in [(1, ("value.", "value_lr.")), (0, ("policy.", "policy_lr.", "adv_coef"))]:
        cheetah_model.zero_grad(set_to_none=True)
        losses = task_meta_loss(
            cheetah_model, cheetah_model.params(), *one, InnerLoopConfig(), autograd_grad
        )
        losses[pick].backward()
        for name, p in cheetah_model.named_parameters():
            if name.startswith(silent):
                assert p.grad is None or not p.grad.any(), name


def test_second_order_terms_are_present(cheetah_model: MACAWModel) -> None:
    inner, outer = make_batch(2, 32, 20, 6, seed=4), make_batch(2, 32, 20, 6, seed=5)
    second, _ = run(cheetah_model, inner, outer, InnerLoopConfig(), vectorize=False)
    first, _ = run(cheetah_model, inner, outer, InnerLoopConfig(first_order=True), vectorize=False)
    # (a learned lr's gradient -g . grad L(phi') has no second-order term, so it is not probed)
    for name in ("value.layers.0.z", "policy.trunk.1.z", "policy.trunk.0.transform.weight"):
        diff = (second[name] - first[name]).norm() / second[name].norm()
        assert diff > 1e-3, name


def test_meta_gradient_matches_finite_differences() -> None:
    """Exact second-order meta-gradient: autograd against central differences, float64.

    MACAW's gradient is a semi-gradient: advantages and the soft value target are constants. With
    the pure-MC outer value target, the outer value loss depends on (phi, rho_V) only through phi',
    and the policy loss on (theta, rho_pi, c) only through theta', so each loss's finite
    differences with respect to its own parameters must equal the autograd meta-gradient.
    """
    torch.manual_seed(0)
    model = MACAWModel(
        ModelConfig(
            obs_dim=3,
            act_dim=2,
            hidden=(5, 5),
            latent_dim=4,
            head_width=3,
            inner_policy_lr=0.05,
            inner_value_lr=0.05,
        )
    )
    model.double()
    inner = make_batch(2, 16, 3, 2, seed=6, dtype=torch.float64)
    outer = make_batch(2, 16, 3, 2, seed=7, dtype=torch.float64)
    config = InnerLoopConfig(outer_value_target="mc")

    def meta_losses() -> tuple[float, float]:
        value_total = policy_total = 0.0
        with torch.no_grad():
            for i in range(2):
                v, p, _ = task_meta_loss(
                    model,
                    model.params(),
                    {k: t[i] for k, t in inner.items()},
                    {k: t[i] for k, t in outer.items()},
                    config,
                    func_grad,
                )
                value_total, policy_total = value_total + float(v), policy_total + float(p)
        return value_total, policy_total

    grads, _ = run(model, inner, outer, config, vectorize=True, divisor=1.0)
    probes = [
        ("value.layers.1.z", 2, 0),
        ("value.layers.0.transform.weight", 7, 0),
        ("value_lr.raw.layers__2__transform__weight", 0, 0),
        ("policy.trunk.0.z", 1, 1),
        ("policy.trunk.2.transform.bias", 3, 1),
        ("policy.head.0.z", 2, 1),
        ("policy_lr.raw.trunk__1__z", 0, 1),
        ("adv_coef_raw", 0, 1),
    ]
    named = dict(model.named_parameters())
    eps = 1e-6
    for name, index, which in probes:
        flat = named[name].data.view(-1)
        original = flat[index].item()
        flat[index] = original + eps
        up = meta_losses()[which]
        flat[index] = original - eps
        down = meta_losses()[which]
        flat[index] = original
        numeric = (up - down) / (2 * eps)
        assert grads[name].view(-1)[index].item() == pytest.approx(numeric, rel=1e-5), name


@pytest.mark.parametrize("low_rank_wt", [True, False])
def test_vmap_equals_loop_on_five_tasks(cheetah_model: MACAWModel, low_rank_wt: bool) -> None:
    inner, outer = make_batch(5, 64, 20, 6, seed=8), make_batch(5, 64, 20, 6, seed=9)
    config = InnerLoopConfig(low_rank_wt=low_rank_wt)
    vectorised, stats_v = run(cheetah_model, inner, outer, config, vectorize=True)
    looped, stats_l = run(cheetah_model, inner, outer, config, vectorize=False)
    assert_same_grads(vectorised, looped, atol=1e-5)
    assert stats_v == pytest.approx(stats_l, rel=1e-4)


def test_low_rank_weight_transform_path_equals_plain_autograd(cheetah_model: MACAWModel) -> None:
    inner, outer = make_batch(5, 64, 20, 6, seed=10), make_batch(5, 64, 20, 6, seed=11)
    for steps in (1, 2):
        low_rank, _ = run(cheetah_model, inner, outer, InnerLoopConfig(steps=steps), vectorize=True)
        plain, _ = run(
            cheetah_model,
            inner,
            outer,
            InnerLoopConfig(steps=steps, low_rank_wt=False),
            vectorize=False,
        )
        assert_same_grads(low_rank, plain, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 2])
def test_first_order_low_rank_path_is_plain_first_order_maml(
    cheetah_model: MACAWModel, steps: int
) -> None:
    """With first_order the closed-form step treats M^T g and g z^T as constants, as plain
    first-order MAML does: no gradient through M or z of the inner step."""
    inner, outer = make_batch(5, 64, 20, 6, seed=21), make_batch(5, 64, 20, 6, seed=22)
    low_rank, _ = run(
        cheetah_model, inner, outer, InnerLoopConfig(steps=steps, first_order=True), True
    )
    plain, _ = run(
        cheetah_model,
        inner,
        outer,
        InnerLoopConfig(steps=steps, first_order=True, low_rank_wt=False),
        vectorize=False,
    )
    assert_same_grads(low_rank, plain, atol=1e-6)
    second, _ = run(cheetah_model, inner, outer, InnerLoopConfig(steps=steps), True)
    assert not torch.allclose(
        second["value.layers.0.transform.weight"], low_rank["value.layers.0.transform.weight"]
    )


def test_k_steps_split_the_inner_batch(cheetah_model: MACAWModel) -> None:
    batch = {k: v[0] for k, v in make_batch(1, 64, 20, 6, seed=12).items()}
    config = InnerLoopConfig(steps=2)
    params = cheetah_model.params()
    two, _, _ = adapt_value(
        cheetah_model, value_state(cheetah_model, params, config), batch, config, autograd_grad
    )
    one = InnerLoopConfig(steps=1)
    state = value_state(cheetah_model, params, one)
    for half in ({k: v[:32] for k, v in batch.items()}, {k: v[32:] for k, v in batch.items()}):
        state, _, _ = adapt_value(cheetah_model, state, half, one, autograd_grad)
    for name, tensor in two.materialize().items():
        torch.testing.assert_close(tensor, state.materialize()[name], msg=name)
    with pytest.raises(ValueError, match="cannot be split into 3 equal steps"):
        adapt_value(
            cheetah_model,
            value_state(cheetah_model, params, config),
            batch,
            InnerLoopConfig(steps=3),
            autograd_grad,
        )


def test_test_time_adaptation(cheetah_model: MACAWModel) -> None:
    batch = {k: v[0] for k, v in make_batch(1, 256, 20, 6, seed=13).items()}
    adapted = adapt(cheetah_model, batch, InnerLoopConfig())
    plain = adapt(cheetah_model, batch, InnerLoopConfig(low_rank_wt=False))
    for net in ("policy", "value"):
        for name, tensor in getattr(adapted, net).items():
            torch.testing.assert_close(tensor, getattr(plain, net)[name], atol=1e-5, rtol=1e-4)
            assert not tensor.requires_grad
    # one step on the whole batch whatever the training steps (spec §7.1), unless asked
    two_step_training = adapt(cheetah_model, batch, InnerLoopConfig(steps=2))
    torch.testing.assert_close(two_step_training.value["layers.0.z"], adapted.value["layers.0.z"])
    two_steps = adapt(cheetah_model, batch, InnerLoopConfig(), steps=2)
    assert not torch.allclose(two_steps.value["layers.0.z"], adapted.value["layers.0.z"])
    obs = batch[OBS][:4]
    before = cheetah_model.policy.mean_action(obs)
    after = torch.func.functional_call(cheetah_model.policy, adapted.policy, (obs,))[0]
    assert not torch.allclose(before, after)


def test_latent_only_adaptation_changes_only_latents() -> None:
    torch.manual_seed(0)
    model = MACAWModel(
        ModelConfig(
            obs_dim=4,
            act_dim=2,
            hidden=(8, 8),
            latent_dim=5,
            adapt="latent",
            inner_policy_lr=0.1,
            inner_value_lr=0.1,
        )
    )
    batch = {k: v[0] for k, v in make_batch(1, 32, 4, 2, seed=14).items()}
    adapted = adapt(model, batch, InnerLoopConfig())
    for name, original in model.policy.named_parameters():
        changed = not torch.equal(adapted.policy[name], original.detach())
        assert changed == name.endswith(".z"), name


def test_outer_value_target_variants(cheetah_model: MACAWModel) -> None:
    inner, outer = make_batch(2, 32, 20, 6, seed=15), make_batch(2, 32, 20, 6, seed=16)
    boot, _ = run(cheetah_model, inner, outer, InnerLoopConfig(), vectorize=True)
    mc, _ = run(cheetah_model, inner, outer, InnerLoopConfig(outer_value_target="mc"), True)
    assert not torch.allclose(boot["value.layers.0.z"], mc["value.layers.0.z"])
    outer[TERMINAL_DISCOUNT].zero_()  # no bootstrap term: the two targets coincide
    boot, _ = run(cheetah_model, inner, outer, InnerLoopConfig(), vectorize=True)
    mc, _ = run(cheetah_model, inner, outer, InnerLoopConfig(outer_value_target="mc"), True)
    torch.testing.assert_close(boot["value.layers.0.z"], mc["value.layers.0.z"])


def test_meta_loss_scaling(cheetah_model: MACAWModel) -> None:
    assert loss_divisor("num_train_tasks", num_train_tasks=35, task_batch=5) == 35
    assert loss_divisor("task_batch", num_train_tasks=35, task_batch=5) == 5
    with pytest.raises(ValueError, match="loss scale"):
        loss_divisor("mean", 35, 5)  # type: ignore[arg-type]
    inner, outer = make_batch(5, 32, 20, 6, seed=17), make_batch(5, 32, 20, 6, seed=18)
    by_35, _ = run(cheetah_model, inner, outer, InnerLoopConfig(), True, divisor=35)
    by_5, _ = run(cheetah_model, inner, outer, InnerLoopConfig(), True, divisor=5)
    torch.testing.assert_close(by_5["policy.trunk.0.z"], 7 * by_35["policy.trunk.0.z"])


def test_bias_transform_networks_vmap_equals_loop() -> None:
    torch.manual_seed(0)
    model = MACAWModel(
        ModelConfig(
            obs_dim=20,
            act_dim=6,
            policy_layer="bias_transform",
            value_layer="bias_transform",
            advantage_head=False,
        )
    )
    inner, outer = make_batch(5, 64, 20, 6, seed=19), make_batch(5, 64, 20, 6, seed=20)
    vectorised, _ = run(model, inner, outer, InnerLoopConfig(), vectorize=True)
    looped, _ = run(model, inner, outer, InnerLoopConfig(), vectorize=False)
    assert_same_grads(vectorised, looped, atol=1e-5)
    assert "adv_coef_raw" not in vectorised


def test_invalid_inner_loop_config() -> None:
    with pytest.raises(ValueError, match="steps"):
        InnerLoopConfig(steps=0)
    with pytest.raises(ValueError, match="target_mix"):
        InnerLoopConfig(target_mix=1.5)
    with pytest.raises(ValueError, match="outer_value_target"):
        InnerLoopConfig(outer_value_target="td")  # type: ignore[arg-type]
