"""Per-episode quantities MACAW's value targets need (spec §4, §6.1): R, s^T and g.

Pure numpy. For an episode of length L with rewards r_0..r_{L-1}:
    R_t = sum_{k=t}^{L-1} gamma^(k-t) r_k        (mc_return: discounted return-to-go)
    s^T = next_obs_{L-1}                          (terminal_obs: the episode's last next state)
    g_t = gamma^(L-t)                             (terminal_discount)
so that R_t + g_t V(s^T) is the bootstrapped target of the outer value loss (spec §5). As in the
authors' data, g_t = gamma^(L-t) even when the episode ended in a true terminal state (spec §4.1:
"the done flag is ignored"); with `bootstrap_after_termination=False`, such episodes get g_t = 0,
since the value of an absorbing state is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpisodeReturns:
    """What `episode_returns` computes for one episode."""

    mc_return: np.ndarray  # (L,) float32
    terminal_discount: np.ndarray  # (L,) float32
    terminal_obs: np.ndarray  # (obs_dim,) float32


def episode_returns(
    rewards: np.ndarray,
    last_next_obs: np.ndarray,
    gamma: float,
    terminated: bool,
    bootstrap_after_termination: bool = True,
) -> EpisodeReturns:
    """Discounted return-to-go, terminal discount and terminal observation of one episode.

    Walks the episode backwards as the authors' writer does (utils.py:239-267), in float64 so long
    episodes do not accumulate float32 rounding, then stores float32.

    Args:
        rewards: (L,) rewards in time order.
        last_next_obs: The next observation of the episode's final step.
        gamma: Discount factor.
        terminated: Whether the episode ended in a true terminal state rather than being
            truncated (time limit, end of collection).
        bootstrap_after_termination: Keep g = gamma^(L-t) after a true termination (the
            authors' data, the default); False gives g = 0 there.

    Returns:
        EpisodeReturns with float32 arrays.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    length = len(r)
    mc = np.empty(length, dtype=np.float64)
    running = 0.0
    for t in range(length - 1, -1, -1):
        running = r[t] + gamma * running
        mc[t] = running
    steps_to_end = length - np.arange(length)
    absorbing = terminated and not bootstrap_after_termination
    discount = np.zeros(length) if absorbing else np.power(gamma, steps_to_end, dtype=np.float64)
    return EpisodeReturns(
        mc_return=mc.astype(np.float32),
        terminal_discount=discount.astype(np.float32),
        terminal_obs=np.asarray(last_next_obs, dtype=np.float32).reshape(-1),
    )


def undiscounted_returns(episode_id: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Sum of rewards of every episode, ordered by episode id."""
    _, inverse = np.unique(episode_id, return_inverse=True)
    return np.bincount(inverse, weights=np.asarray(rewards, dtype=np.float64))
