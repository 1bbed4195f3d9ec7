"""Behaviour policies whose lifetime replay buffers become the offline data (appendix D.2).

- `sac` / `td3`: Stable-Baselines3 agents trained from scratch; a `StreamingReplayBuffer` hands
  every transition the agent stores to the recorder, from its first step to its last.
- `sbx-sac` / `sbx-td3`: the same agents in JAX (`jax_agents.py`), faster on CPU.
- `random`: uniform actions.
- `noisy-init`: a freshly initialised MACAW policy (seeded) acting with N(0, 0.2^2) noise
  (spec §7.3).
Agent checkpoints are torch state dicts read back with `weights_only=True`: nothing is unpickled.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from ray_macaw.collect.jax_agents import (
    JAX_ALGOS,
    jax_state_bytes,
    limit_xla_threads,
    load_jax_state,
    make_jax_agent,
)
from ray_macaw.data import columns as C
from ray_macaw.data.atomic import atomic_write_bytes
from ray_macaw.data.storage import ObjectPath
from ray_macaw.data.task_data import TaskData
from ray_macaw.nn.networks import MACAWPolicy

LEARNED_ALGOS = ("sac", "td3", *JAX_ALGOS)
ALGOS = (*LEARNED_ALGOS, "random", "noisy-init")
NOISY_INIT_SIGMA = 0.2
Sink = Callable[..., None]

# SB3 settings per algorithm; rl-zoo's MuJoCo values. Every key can be overridden.
_COMMON = {
    "buffer_size": 1_000_000,
    "learning_starts": 10_000,
    "batch_size": 256,
    "tau": 0.005,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
}
BASE_HYPERPARAMETERS: Mapping[str, Mapping[str, Any]] = {
    "sac": {**_COMMON, "learning_rate": 3e-4, "net_arch": [256, 256], "ent_coef": "auto"},
    "td3": {**_COMMON, "learning_rate": 1e-3, "net_arch": [400, 300], "action_noise_sigma": 0.1},
}
# The JAX agents are the same algorithms: they take their torch twin's defaults.
TORCH_TWIN = {"sbx-sac": "sac", "sbx-td3": "td3"}
# Point-robot is the fast family for tests and the demo: 20-step episodes, so a short horizon,
# small networks, an update every second step and a small initial entropy bonus. With these, SAC
# goes from about -23 to about -7 in 3,000 steps (about 250 steps/s on one core).
_POINT_ROBOT = {
    "learning_starts": 200,
    "net_arch": [64, 64],
    "train_freq": 2,
    "gamma": 0.9,
    "learning_rate": 1e-3,
}
FAMILY_OVERRIDES: Mapping[tuple[str, str], Mapping[str, Any]] = {
    ("point-robot", "sac"): {**_POINT_ROBOT, "ent_coef": "auto_0.1"},
    ("point-robot", "td3"): _POINT_ROBOT,
}


def default_hyperparameters(family: str, algo: str) -> dict[str, Any]:
    """The SB3 settings a family's collection uses unless overridden."""
    if algo not in LEARNED_ALGOS:
        return {"action_sigma": NOISY_INIT_SIGMA} if algo == "noisy-init" else {}
    twin = TORCH_TWIN.get(algo, algo)
    return {**BASE_HYPERPARAMETERS[twin], **FAMILY_OVERRIDES.get((family, twin), {})}


class StreamingReplayBuffer(ReplayBuffer):
    """SB3's replay buffer that also passes every stored transition to `sink` (one env).

    The sink gets (obs, action in the env's units, reward, next_obs, terminated, truncated).
    SB3 stores the true final observation as next_obs when an episode ends.
    """

    sink: Sink | None = None
    unscale: Callable[[np.ndarray], np.ndarray] | None = None

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        """Store as SB3 does, then stream."""
        super().add(obs, next_obs, action, reward, done, infos)
        if self.sink is None:
            return
        truncated = bool(infos[0].get("TimeLimit.truncated", False))
        env_action = self.unscale(action[0]) if self.unscale is not None else action[0]
        self.sink(
            obs[0],
            env_action,
            float(reward[0]),
            next_obs[0],
            terminated=bool(done[0]) and not truncated,
            truncated=truncated,
        )


def make_agent(
    algo: str, env: gym.Env, hyperparameters: Mapping[str, Any], seed: int, device: str
) -> OffPolicyAlgorithm:
    """A fresh SAC or TD3 agent (SB3 or SBX) on `env` whose replay buffer streams."""
    hp = dict(hyperparameters)
    hp["policy_kwargs"] = {"net_arch": hp.pop("net_arch")}
    hp["replay_buffer_class"] = StreamingReplayBuffer
    if TORCH_TWIN.get(algo, algo) == "td3":
        sigma = hp.pop("action_noise_sigma")
        dim = env.action_space.shape[0]  # type: ignore[index]
        hp["action_noise"] = NormalActionNoise(np.zeros(dim), sigma * np.ones(dim))
    if algo in JAX_ALGOS:
        limit_xla_threads(torch.get_num_threads())
        agent = make_jax_agent(algo, env, hp, seed)
    else:
        cls = SAC if algo == "sac" else TD3
        agent = cls("MlpPolicy", env, seed=seed, device=device, verbose=0, **hp)
    agent.replay_buffer.unscale = agent.policy.unscale_action
    # SB3's default logger makes a /tmp/SB3-<time> directory on every learn() call; the
    # collector keeps its own curves, so log nowhere.
    agent.set_logger(Logger(folder=None, output_formats=[]))
    return agent


def save_checkpoint(agent: OffPolicyAlgorithm, path: Path | ObjectPath, rows: Any) -> None:
    """Agent state after `rows` lifetime transitions, as torch tensors only (atomic).

    `rows` is a task's row count, or a shared agent's {task id: rows} (`shared.py`).
    """
    state: dict[str, Any] = {
        "rows": rows,
        "num_timesteps": agent.num_timesteps,
        "n_updates": agent._n_updates,
    }
    if is_jax_agent(agent):
        state["jax_state"] = torch.from_numpy(jax_state_bytes(agent))
    else:
        _, variables = agent._get_torch_save_params()
        state["state_dicts"] = agent.get_parameters()
        state["variables"] = {name: getattr(agent, name).detach().cpu() for name in variables}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def is_jax_agent(agent: OffPolicyAlgorithm) -> bool:
    """An SBX agent (its state lives in flax train states, not torch modules)."""
    return hasattr(agent.policy, "actor_state")


def load_checkpoint(agent: OffPolicyAlgorithm, path: Path | ObjectPath) -> Any:
    """Restore an agent saved by `save_checkpoint`; returns the rows it was saved after."""
    state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    if is_jax_agent(agent):
        load_jax_state(agent, state["jax_state"].numpy())
    else:
        agent.set_parameters(state["state_dicts"], exact_match=True, device=agent.device)
        for name, value in state["variables"].items():
            getattr(agent, name).data.copy_(value)
    agent.num_timesteps = int(state["num_timesteps"])
    agent._n_updates = int(state["n_updates"])
    return state["rows"]


def refill_replay_buffer(
    agent: OffPolicyAlgorithm, sources: Sequence[tuple[TaskData, np.ndarray | None]]
) -> None:
    """Put the most recent transitions back into the agent's replay buffer on resume.

    The lifetime buffers on disk are what the agent had stored, so resuming needs no pickled
    buffer. Each source is a task's data and the condition a shared agent saw with it (None for
    a per-task agent); the buffer keeps the newest rows of each source, in the given order.
    """
    buffer = agent.replay_buffer
    assert buffer is not None
    parts: dict[str, list[np.ndarray]] = {}  # SB3 buffer attribute -> rows per source
    for data, condition in sources:
        cols, rows = data.columns, slice(max(data.n_rows - buffer.buffer_size, 0), data.n_rows)
        obs, next_obs = cols[C.OBS][rows], cols[C.NEXT_OBS][rows]
        if condition is not None:
            tiled = np.broadcast_to(condition, (len(obs), len(condition)))
            obs, next_obs = np.hstack([obs, tiled]), np.hstack([next_obs, tiled])
        source = {
            "observations": obs,
            "next_observations": next_obs,
            "actions": agent.policy.scale_action(cols[C.ACTIONS][rows]),
            "rewards": cols[C.REWARDS][rows],
            "dones": cols[C.TERMINATED][rows],
        }
        for name, values in source.items():
            parts.setdefault(name, []).append(values)
    n = 0
    for name, chunks in parts.items():
        newest = np.concatenate(chunks)[-buffer.buffer_size :]
        n = len(newest)
        getattr(buffer, name)[:n, 0] = newest
    buffer.timeouts[:n, 0] = False  # terminated already excludes truncation
    buffer.pos = n % buffer.buffer_size
    buffer.full = n == buffer.buffer_size


class ScriptedBehaviour:
    """`random` or `noisy-init` actions for one task.

    Args:
        algo: 'random' or 'noisy-init'.
        env: The task's environment (for spaces).
        seed: Seeds the noisy-init policy's initialisation.
        action_sigma: Noise std of noisy-init, in the policy's [-1, 1] units.
    """

    def __init__(
        self, algo: str, env: gym.Env, seed: int, action_sigma: float = NOISY_INIT_SIGMA
    ) -> None:
        space = env.action_space
        assert isinstance(space, gym.spaces.Box)
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.algo = algo
        self.sigma = action_sigma
        self.policy: MACAWPolicy | None = None
        if algo == "noisy-init":
            torch.manual_seed(seed)
            obs_dim = env.observation_space.shape[0]  # type: ignore[index]
            self.policy = MACAWPolicy(obs_dim, space.shape[0], advantage_head=False)

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One action in the environment's units."""
        if self.policy is None:
            return rng.uniform(self.low, self.high).astype(np.float32)
        with torch.no_grad():
            mean = self.policy.mean_action(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        unit = np.clip(mean + self.sigma * rng.standard_normal(mean.shape), -1.0, 1.0)
        return (self.low + (unit + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)
