"""MC return-to-go, terminal discount and terminal obs, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ray_macaw.data.returns import episode_returns, undiscounted_returns


def test_three_step_truncated_episode_by_hand() -> None:
    # gamma = 0.5, rewards 1, 2, 4:
    #   R_2 = 4, R_1 = 2 + 0.5 * 4 = 4, R_0 = 1 + 0.5 * 4 = 3
    #   g_t = 0.5^(3 - t): 0.125, 0.25, 0.5  (the value of s^T is bootstrapped)
    out = episode_returns(
        np.array([1.0, 2.0, 4.0]), np.array([7.0, 8.0]), gamma=0.5, terminated=False
    )
    np.testing.assert_allclose(out.mc_return, [3.0, 4.0, 4.0])
    np.testing.assert_allclose(out.terminal_discount, [0.125, 0.25, 0.5])
    np.testing.assert_array_equal(out.terminal_obs, [7.0, 8.0])
    assert out.mc_return.dtype == np.float32 and out.terminal_discount.dtype == np.float32


def test_terminated_episode_terminal_discount() -> None:
    # gamma = 0.9, rewards 1, 1, 1: R = 2.71, 1.9, 1. The authors ignore `done` (spec §4.1), so by
    # default g = 0.729, 0.81, 0.9 even after a true termination; optionally s^T is absorbing: 0.
    out = episode_returns(np.ones(3), np.zeros(2), gamma=0.9, terminated=True)
    np.testing.assert_allclose(out.mc_return, [2.71, 1.9, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out.terminal_discount, [0.729, 0.81, 0.9], rtol=1e-6)
    absorbing = episode_returns(
        np.ones(3), np.zeros(2), gamma=0.9, terminated=True, bootstrap_after_termination=False
    )
    np.testing.assert_array_equal(absorbing.terminal_discount, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(absorbing.mc_return, out.mc_return)


def test_truncated_long_episode_target_identity() -> None:
    # For a truncated episode the bootstrapped target R_t + g_t V(s^T) equals
    # r_t + gamma (R_{t+1} + g_{t+1} V(s^T)) for any V(s^T): the one-step Bellman identity.
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=200)
    out = episode_returns(rewards, np.zeros(3), gamma=0.99, terminated=False)
    v_terminal = 3.7
    target = out.mc_return.astype(np.float64) + out.terminal_discount * v_terminal
    np.testing.assert_allclose(target[:-1], rewards[:-1] + 0.99 * target[1:], rtol=1e-4, atol=1e-4)
    assert out.terminal_discount[0] == pytest.approx(0.99**200, rel=1e-5)


def test_single_step_episode_and_bad_gamma() -> None:
    out = episode_returns(np.array([5.0]), np.array([1.0]), gamma=0.99, terminated=False)
    np.testing.assert_allclose(out.mc_return, [5.0])
    np.testing.assert_allclose(out.terminal_discount, [0.99])
    with pytest.raises(ValueError, match="gamma"):
        episode_returns(np.ones(2), np.zeros(1), gamma=1.5, terminated=False)


def test_undiscounted_returns_per_episode() -> None:
    episode = np.array([0, 0, 1, 1, 1, 2])
    rewards = np.array([1.0, 2.0, -1.0, -1.0, 0.5, 10.0])
    np.testing.assert_allclose(undiscounted_returns(episode, rewards), [3.0, -1.5, 10.0])
