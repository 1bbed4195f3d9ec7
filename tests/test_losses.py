"""Each loss on a 3-sample batch against values worked out by hand; appendix A as tests."""

from __future__ import annotations

import math

import pytest
import torch

from ray_macaw.macaw import losses
from ray_macaw.nn import gaussian_log_prob

T3 = torch.tensor


def test_value_loss_and_targets_by_hand() -> None:
    # (1-1)^2 + (2-1)^2 + (3-1)^2 = 5, over 3 samples
    assert losses.value_loss(T3([1.0, 2.0, 3.0]), T3([1.0, 1.0, 1.0])).item() == pytest.approx(
        5 / 3
    )
    # R + g V(s^T): 1 + 0.5*2, 2 + 0*2, 3 + 1*2
    targets = losses.bootstrapped_targets(T3([1.0, 2.0, 3.0]), T3([0.5, 0.0, 1.0]), T3([2.0] * 3))
    assert targets.tolist() == [2.0, 2.0, 5.0]
    # A = target - V(s) with V(s) = 1
    adv = losses.advantages(T3([1.0, 2.0, 3.0]), T3([0.5, 0.0, 1.0]), T3([2.0] * 3), T3([1.0] * 3))
    assert adv.tolist() == [1.0, 1.0, 4.0]


def test_awr_weights_normalised_with_unbiased_std() -> None:
    # A = [1, 1, 4]: mean 2, unbiased std sqrt((1 + 1 + 4) / 2) = sqrt(3)
    # A_hat = [-1, -1, 2] / sqrt(3); w = exp(A_hat)
    w = losses.awr_weights(T3([1.0, 1.0, 4.0]))
    s3 = math.sqrt(3)
    assert w.tolist() == pytest.approx([math.exp(-1 / s3)] * 2 + [math.exp(2 / s3)], rel=1e-6)
    # temperature 2 halves the exponent
    w2 = losses.awr_weights(T3([1.0, 1.0, 4.0]), temperature=2.0)
    assert w2.tolist() == pytest.approx([math.exp(-0.5 / s3)] * 2 + [math.exp(1 / s3)], rel=1e-6)


def test_awr_weights_clipped_above_at_max_weight_only() -> None:
    # T = 0.1: A_hat = [-10, -10, 20] / sqrt(3) = [-5.77, -5.77, 11.5]; ln 20 caps the last only,
    # so the small weights fall below 1/20
    w = losses.awr_weights(T3([1.0, 1.0, 4.0]), temperature=0.1)
    assert w.tolist() == pytest.approx([math.exp(-10 / math.sqrt(3))] * 2 + [20.0], rel=1e-6)
    assert w.min().item() < 1 / 20


def test_awr_weights_without_normalisation() -> None:
    # A clipped to [-ln 20, ln 20]; the authors' no_norm path never divides by T
    for temperature in (1.0, 5.0):
        w = losses.awr_weights(T3([-10.0, 0.5, 10.0]), temperature, normalize=False)
        assert w.tolist() == pytest.approx([1 / 20, math.exp(0.5), 20.0], rel=1e-6)


def test_awr_policy_loss_by_hand() -> None:
    # -(1*(-1) + 2*(-2) + 3*(-3)) / 3 = 14/3
    loss = losses.awr_policy_loss(T3([-1.0, -2.0, -3.0]), T3([1.0, 2.0, 3.0]))
    assert loss.item() == pytest.approx(14 / 3)


def test_advantage_head_loss_by_hand() -> None:
    # ((0-1)^2 + (1-1)^2 + (2-4)^2) / 3 = 5/3: regression on the raw advantages
    loss = losses.advantage_head_loss(T3([0.0, 1.0, 2.0]), T3([1.0, 1.0, 4.0]))
    assert loss.item() == pytest.approx(5 / 3)


def test_policy_adaptation_loss_by_hand() -> None:
    log_probs, predicted, adv = T3([-1.0, -2.0, -3.0]), T3([0.0, 1.0, 2.0]), T3([1.0, 1.0, 4.0])
    s3 = math.sqrt(3)
    w = [math.exp(-1 / s3), math.exp(-1 / s3), math.exp(2 / s3)]
    awr = -(w[0] * -1 + w[1] * -2 + w[2] * -3) / 3
    loss, stats = losses.policy_adaptation_loss(log_probs, predicted, adv, adv_coef=0.5)
    assert loss.item() == pytest.approx(awr + 0.5 * 5 / 3, rel=1e-6)
    assert stats["awr_loss"].item() == pytest.approx(awr, rel=1e-6)
    assert stats["adv_head_loss"].item() == pytest.approx(5 / 3)
    assert stats["weight_max"].item() == pytest.approx(w[2], rel=1e-6)
    no_head, _ = losses.policy_adaptation_loss(log_probs, None, adv, adv_coef=0.5)
    assert no_head.item() == pytest.approx(awr, rel=1e-6)


# Appendix A. One sample, policy mean mu_hat = 0, sigma = 0.2, temperature T, weights exp(A / T)
# (the paper's un-normalised AWR; max_weight large enough not to clip).
SIGMA, TEMP, LAMBDA, K = 0.2, 1.0, 0.3, 4
LABELS_1 = (torch.ones(K), TEMP)  # a1 = 1-vector, A1 = T
LABELS_2 = (torch.ones(K) / 10, TEMP + TEMP * math.log(10))  # a2 = a1 / 10, A2 = T + T ln 10


def gradients(action: torch.Tensor, advantage: float, head: bool):
    mean = torch.zeros(1, K, requires_grad=True)
    predicted = torch.zeros(1, requires_grad=True)  # A_hat = 0
    log_prob = gaussian_log_prob(mean, action[None], SIGMA)
    loss, _ = losses.policy_adaptation_loss(
        log_prob,
        predicted if head else None,
        torch.tensor([advantage]),
        LAMBDA,
        temperature=TEMP,
        max_weight=1e6,
        normalize=False,
    )
    g_mean, g_adv = torch.autograd.grad(loss, [mean, predicted], allow_unused=True)
    return g_mean[0], None if g_adv is None else g_adv[0]


def test_appendix_a_awr_gradient_is_ambiguous() -> None:
    g1, _ = gradients(*LABELS_1, head=False)
    g2, _ = gradients(*LABELS_2, head=False)
    torch.testing.assert_close(g1, g2)  # Theorem 1: same gradient, different labels
    torch.testing.assert_close(g1, -math.e / SIGMA**2 * torch.ones(K))


def test_appendix_a_macaw_gradient_recovers_both_labels() -> None:
    grads = [gradients(*labels, head=True) for labels in (LABELS_1, LABELS_2)]
    torch.testing.assert_close(grads[0][0], grads[1][0])  # the AWR part alone is still equal
    assert not torch.allclose(grads[0][1], grads[1][1])  # the advantage-head part differs
    for (g_awr, g_adv), (action, advantage) in zip(grads, (LABELS_1, LABELS_2), strict=True):
        # Theorem 2: g_ADV = 2 lambda (A_hat - A)  =>  A = A_hat - g_ADV / (2 lambda)
        recovered_adv = 0.0 - g_adv.item() / (2 * LAMBDA)
        assert recovered_adv == pytest.approx(advantage, rel=1e-5)
        # g_AWR = -(1/sigma^2) exp(A/T) (a - mu_hat)  =>  a = mu_hat - sigma^2 exp(-A/T) g_AWR
        recovered_action = 0.0 - SIGMA**2 * math.exp(-recovered_adv / TEMP) * g_awr
        torch.testing.assert_close(recovered_action, action, rtol=1e-5, atol=1e-6)
