"""SBX behaviour agents: Stable-Baselines3's SAC and TD3 written in JAX (`sbx-rl`).

Their updates are compiled by XLA, so on one CPU core they run about 1.6x (one update per step)
to 3x (one update every second step) as many environment steps per second as SB3's torch agents
(benchmarks/RESULTS.md, "Behaviour learners"). They keep SB3's API and replay buffer, so the
collector streams their transitions exactly as it does SB3's.

Checkpoints hold the flax train states (parameters, target parameters, optimiser states) and the
PRNG key as flax's msgpack bytes: no pickle, like the torch agents' `weights_only` checkpoints.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

JAX_ALGOS = ("sbx-sac", "sbx-td3")


def limit_xla_threads(num_cpus: float) -> None:
    """Keep XLA to the CPUs the actor reserved; call before jax is first imported."""
    if num_cpus < 2:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


def make_jax_agent(algo: str, env: Any, hp: dict[str, Any], seed: int) -> Any:
    """A fresh SBX SAC or TD3 agent (`hp` already holds policy_kwargs, action noise, the buffer)."""
    import sbx

    cls = sbx.SAC if algo == "sbx-sac" else sbx.TD3
    return cls("MlpPolicy", env, seed=seed, verbose=0, **hp)


def _state(agent: Any) -> dict[str, Any]:
    """Everything that changes as a JAX agent learns, as one pytree."""
    state = {
        "actor_state": agent.policy.actor_state,
        "qf_state": agent.policy.qf_state,
        "key": agent.key,
    }
    if hasattr(agent, "ent_coef_state"):
        state["ent_coef_state"] = agent.ent_coef_state
    return state


def jax_state_bytes(agent: Any) -> np.ndarray:
    """The agent's learning state as msgpack bytes (a uint8 array, to sit in a torch checkpoint)."""
    from flax import serialization

    return np.frombuffer(serialization.to_bytes(_state(agent)), dtype=np.uint8).copy()


def load_jax_state(agent: Any, data: np.ndarray) -> None:
    """Restore what `jax_state_bytes` saved into an agent built with the same settings."""
    from flax import serialization

    state = serialization.from_bytes(_state(agent), np.asarray(data, dtype=np.uint8).tobytes())
    agent.policy.actor_state = state["actor_state"]
    agent.policy.qf_state = state["qf_state"]
    agent.key = state["key"]
    if "ent_coef_state" in state:
        agent.ent_coef_state = state["ent_coef_state"]
