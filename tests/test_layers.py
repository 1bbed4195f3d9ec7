"""Layers and networks: forward passes against explicit products, parameter counts (spec §2.1)."""

from __future__ import annotations

import pytest
import torch

from ray_macaw.macaw.model import MACAWModel, ModelConfig
from ray_macaw.macaw.net_state import ParamLayer
from ray_macaw.nn import (
    BiasTransformLinear,
    MACAWPolicy,
    PlainLinear,
    ValueNetwork,
    WeightTransformLinear,
    gaussian_log_prob,
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_weight_transform_forward_is_explicit_matrix_product() -> None:
    torch.manual_seed(0)
    layer = WeightTransformLinear(3, 2, latent_dim=4)
    x = torch.randn(5, 3)
    theta = layer.transform.weight @ layer.z + layer.transform.bias  # (3*2 + 2,)
    weight = theta[:6].reshape(3, 2)  # row-major: W[i, j] = theta[2 i + j]
    assert weight[1, 0] == theta[2] and weight[2, 1] == theta[5]
    expected = torch.stack(
        [
            torch.stack(
                [sum(x[n, i] * weight[i, j] for i in range(3)) + theta[6 + j] for j in range(2)]
            )
            for n in range(5)
        ]
    )
    torch.testing.assert_close(layer(x), expected)


def test_weight_transform_initialisation() -> None:
    torch.manual_seed(0)
    layer = WeightTransformLinear(100, 100, latent_dim=100)
    assert layer.z.shape == (100,) and layer.transform.weight.shape == (10_100, 100)
    assert layer.z.std().item() == pytest.approx(1 / 100, rel=0.2)  # N(0, (1/d_out)^2)
    assert layer.transform.weight.abs().max() <= 0.1  # U(-1/sqrt(c), 1/sqrt(c))
    assert layer.transform.bias.abs().max() <= 0.1
    assert layer.transform.bias.std().item() == pytest.approx(0.2 / 12**0.5, rel=0.05)
    assert layer.transform.weight.std().item() == pytest.approx(0.2 / 12**0.5, rel=0.02)
    assert [n for n, _ in layer.named_parameters()] == ["z", "transform.weight", "transform.bias"]


def test_bias_transform_forward() -> None:
    torch.manual_seed(0)
    layer = BiasTransformLinear(3, 2)
    x = torch.randn(4, 3)
    expected = x @ layer.linear.weight.T + layer.linear.bias + layer.beta @ layer.transform
    torch.testing.assert_close(layer(x), expected)
    assert [n for n, _ in layer.named_parameters()] == [
        "beta",
        "transform",
        "linear.weight",
        "linear.bias",
    ]


@pytest.mark.parametrize(
    ("obs_dim", "act_dim", "policy_count", "value_count"),
    [(20, 6, 2_663_263, 2_262_901), (27, 8, 2_760_829, 2_333_601), (17, 6, 2_632_963, 2_232_601)],
)
def test_weight_transform_parameter_counts_match_spec(
    obs_dim: int, act_dim: int, policy_count: int, value_count: int
) -> None:
    assert count(MACAWPolicy(obs_dim, act_dim)) == policy_count
    assert count(ValueNetwork(obs_dim)) == value_count


def test_other_layer_kinds_parameter_counts() -> None:
    assert round(count(MACAWPolicy(20, 6, layer="bias_transform")), -2) == 57_800
    assert round(count(ValueNetwork(20, layer="bias_transform")), -2) == 52_700
    wide = count(MACAWPolicy(20, 6, hidden=(725,) * 3, layer="bias_transform"))
    assert round(wide, -4) == 2_680_000  # "param-matched" no-WT ablation (spec §9)
    plain = MACAWPolicy(20, 6, layer="linear", advantage_head=False)
    assert all(isinstance(layer, PlainLinear) for layer in plain.trunk)
    assert count(plain) == 20 * 100 + 100 + 2 * (100 * 100 + 100) + 100 * 6 + 6


def test_learned_rate_tensors_and_initial_values() -> None:
    model = MACAWModel(ModelConfig(obs_dim=20, act_dim=6))
    assert len(model.policy_lr.names) == 18 and len(model.value_lr.names) == 12
    lrs = model.inner_lrs()
    assert lrs["policy"]["trunk.0.z"] == pytest.approx(9.995e-4, rel=1e-4)  # log(1 + 1e-3)
    assert model.adv_coef() == pytest.approx(0.00995, rel=1e-3)  # log(1 + 0.01)
    latent = MACAWModel(ModelConfig(obs_dim=20, act_dim=6, adapt="latent"))
    assert latent.policy_lr.names == [
        "trunk.0.z",
        "trunk.1.z",
        "trunk.2.z",
        "trunk.3.z",
        "head.0.z",
        "head.1.z",
    ]
    bias = MACAWModel(
        ModelConfig(
            obs_dim=20,
            act_dim=6,
            policy_layer="bias_transform",
            value_layer="bias_transform",
            inner_policy_lr=1e-2,
        )
    )
    assert len(bias.policy_lr.names) == 24 and len(bias.value_lr.names) == 16
    assert bias.inner_lrs()["policy"]["trunk.0.beta"] == pytest.approx(9.95e-3, rel=1e-3)
    assert MACAWModel(ModelConfig(2, 2, advantage_head=False)).adv_coef() is None


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"adapt": "latent", "policy_layer": "linear"}, "plain linear layers have no latent"),
        ({"inner_value_lr": 0.0}, "inner_value_lr must be > 0"),
        ({"policy_layer": "conv"}, "policy_layer must be one of"),
        ({"hidden": ()}, "hidden needs at least one"),
    ],
)
def test_invalid_model_config(changes: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ModelConfig(obs_dim=4, act_dim=2, **changes)


def test_advantage_head_reads_pre_relu_hidden_and_relus_the_concatenation() -> None:
    torch.manual_seed(0)
    policy = MACAWPolicy(3, 2, hidden=(4, 4), layer="linear")
    obs, actions = torch.randn(6, 3), torch.tensor([[-0.5, 0.3]] * 6)
    h = policy.trunk[1](torch.relu(policy.trunk[0](obs)))  # pre-ReLU last hidden layer
    mean, advantage = policy(obs, actions)
    torch.testing.assert_close(mean, torch.tanh(policy.trunk[2](torch.relu(h))))
    x = torch.relu(torch.cat([h, actions], -1))  # negative action components zeroed
    expected = policy.head[1](torch.relu(policy.head[0](x))).squeeze(-1)
    torch.testing.assert_close(advantage, expected)
    assert policy(obs)[1] is None and policy.mean_action(obs).shape == (6, 2)


def test_gaussian_log_prob_by_hand() -> None:
    # N(0.2; 0, 0.2^2) per dimension: -0.5 - ln 0.2 - 0.5 ln(2 pi) = -0.5 + 1.6094379 - 0.9189385
    value = gaussian_log_prob(torch.zeros(1, 2), torch.full((1, 2), 0.2), sigma=0.2)
    assert value.item() == pytest.approx(2 * 0.1904994, rel=1e-5)


def single_sample_step(layer: torch.nn.Module) -> torch.Tensor:
    """Change of the effective weight after one SGD step (lr 0.5) on one sample's squared loss."""
    torch.manual_seed(1)
    x, target = torch.randn(1, layer.in_features), torch.randn(1, layer.out_features)
    params = dict(layer.named_parameters())
    state = ParamLayer(layer, params, {n: torch.tensor(0.5).log() for n in params})
    loss = (layer(x) - target).pow(2).sum()
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    before = state.effective({})[0]
    after = state.stepped(grads).effective({})[0]
    return (after - before).detach()


def test_appendix_b_weight_transform_updates_have_rank_above_one() -> None:
    plain_change = single_sample_step(PlainLinear(6, 5))
    assert torch.linalg.matrix_rank(plain_change).item() == 1
    wt_change = single_sample_step(WeightTransformLinear(6, 5, latent_dim=8))
    assert torch.linalg.matrix_rank(wt_change, rtol=1e-4).item() > 1
